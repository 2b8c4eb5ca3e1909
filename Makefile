# `make run` and `make test` each create .venv and install the package when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean zoo-leaderboard zoo-optimize

# The example plugin is installed for real (not editable), as a user installs a third-party plugin;
# editing it reinstalls it.
EXAMPLE := plugins/pxp-bench-example
EXAMPLE_FILES := $(shell find $(EXAMPLE)/pyproject.toml $(EXAMPLE)/src -type f \( -name '*.py' -o -name '*.toml' -o -name '*.safetensors' \))

$(STAMP): pyproject.toml $(EXAMPLE_FILES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet ./$(EXAMPLE)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pxp-bench run

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-enable -q

clean:
	rm -rf $(VENV) build *.egg-info $(EXAMPLE)/build $(EXAMPLE)/src/*.egg-info

# The README's leaderboard: every built-in method and LRP preset on the zoo models, seeds 0-2
# (filters for the CNNs, heads and neurons for the ViT).
ZOO_RESULTS := leaderboard/zoo
ZOO_RUNS := digits-vgg:filters digits-resnet:filters digits-vit:heads digits-vit:neurons
zoo-leaderboard: $(STAMP)
	rm -rf $(ZOO_RESULTS)
	for run in $(ZOO_RUNS); do model=$${run%%:*}; kind=$${run##*:}; for seed in 0 1 2; do \
	  for method in random magnitude taylor ig smoothgrad; do \
	    $(BIN)/pxp-bench run --model $$model --components $$kind --method $$method --seed $$seed --out $(ZOO_RESULTS) >/dev/null || exit 1; done; \
	  for preset in default yeom; do \
	    $(BIN)/pxp-bench run --model $$model --components $$kind --method lrp --preset $$preset --seed $$seed --out $(ZOO_RESULTS) >/dev/null || exit 1; done; \
	done; done
	$(BIN)/pxp-bench leaderboard $(ZOO_RESULTS) --readme README.md

# The optimised LRP composites of the README: optuna-tpe, 50 trials, tuning A_PR over seeds 0-2 on each
# zoo setting; the study artefacts go to leaderboard/optimize, the optimised results join leaderboard/zoo.
ZOO_OPTIMIZE := leaderboard/optimize
zoo-optimize: $(STAMP)
	rm -rf $(ZOO_OPTIMIZE) && rm -f $(ZOO_RESULTS)/*optimised*.json
	for run in $(ZOO_RUNS); do model=$${run%%:*}; kind=$${run##*:}; \
	  $(BIN)/pxp-bench optimize --method lrp --model $$model --components $$kind --seeds 0,1,2 --trials 50 \
	    --out $(ZOO_OPTIMIZE) >/dev/null || exit 1; \
	done
	cp $(ZOO_OPTIMIZE)/*optimised*.json $(ZOO_RESULTS)/
	$(BIN)/pxp-bench leaderboard $(ZOO_RESULTS) --readme README.md
