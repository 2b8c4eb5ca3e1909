# `make run` and `make test` each create .venv and install the package when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-quick bench gpu-check architecture clean leaderboard leaderboard-fresh verify-added

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
	$(BIN)/python -m pytest -q --durations=25

# The loop while changing a module: the unit-level tests, that is every test in tests/ and the example's but
# suites, end-to-end runs, multi-worker runs, the method matrix and the cluster jobs (the markers in pyproject.toml), and not the
# speed suites in benchmarks/, on two pytest-xdist workers. `make test` (what CI runs) runs them all, in one process.
QUICK_MARKERS := not suite and not e2e and not workers and not matrix and not cluster
test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "$(QUICK_MARKERS)" tests $(EXAMPLE)/tests

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-enable -q

# The first thing to run on a GPU (a lent one, for minutes): the CUDA tests, resnet50 and vit_b_16 end to end in
# fp32 and bf16, scoring and evaluation throughput and peak memory on GPU and CPU; gpu-check.json and a README
# table. Under 8 minutes on one H100 (estimated); without CUDA the same steps at a tiny scale on the CPU.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

# The import levels in docs/architecture.md, from the package's own imports (fails on an import circle).
architecture: $(STAMP)
	$(BIN)/python tools/import_graph.py

clean:
	rm -rf $(VENV) build *.egg-info $(EXAMPLE)/build $(EXAMPLE)/src/*.egg-info

# The leaderboard (leaderboard/, linked from the README): the results of the digits-full suite (the digits
# suite and captum's two slow methods), of the lm suite (the embedded language model) and of digits-beyond
# (the paper's protocol against other removals, recoveries, schedules and scopes),
# its markdown and plots. `leaderboard` runs what is missing from $(LEADERBOARD)/results (resumable) and regenerates the
# markdown, the plots and the README's headline table; `leaderboard-fresh` reruns every cell first (what
# CI's leaderboard workflow does). SUITES=digits runs the digits suite alone; SUITE_ARGS adds `suite run`
# options, e.g. --only 'digits-vgg/*'.
LEADERBOARD ?= leaderboard
README_FILE ?= README.md
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SUITES ?= digits-full lm digits-beyond
SUITE_ARGS ?=
leaderboard: $(STAMP)
	for suite in $(SUITES); do \
		$(BIN)/pxp-bench suite run $$suite --jobs $(JOBS) --out $(LEADERBOARD)/results $(SUITE_ARGS) || exit 1; \
	done
	$(BIN)/pxp-bench leaderboard $(LEADERBOARD)/results --out $(LEADERBOARD) --readme $(README_FILE)

leaderboard-fresh: $(STAMP)
	rm -rf $(LEADERBOARD)/results
	$(MAKE) leaderboard

# Before the leaderboard takes records from a change (CI's leaderboard workflow, on a pull request): rerun
# the result records it adds to $(LEADERBOARD)/results against git revision BASE (a seeded sample of
# VERIFY_SAMPLE when it adds more) and fail when one does not reproduce bit for bit or cannot be rerun here.
BASE ?= origin/main
VERIFY_SAMPLE ?= 20
verify-added: $(STAMP)
	@added=$$(git -C $(LEADERBOARD)/results diff --name-only --relative --diff-filter=A $(BASE) -- ':(glob)*.json'); \
	if [ -z "$$added" ]; then echo "no result records added to $(LEADERBOARD)/results since $(BASE)"; exit 0; fi; \
	cd $(LEADERBOARD)/results && $(abspath $(BIN))/pxp-bench verify --strict --sample $(VERIFY_SAMPLE) $$added
