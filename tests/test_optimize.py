"""Hyperparameter optimisation: honest objective, exhaustive grid, resumable seeded studies, the command."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import optuna
import pytest
import torch
from typer.testing import CliRunner

from helpers import QUICK_RATES
from pxp_bench.attribution.options import GRADIENT_OPTIONS
from pxp_bench.benchmark import prepare
from pxp_bench.cli import app
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.errors import ConfigError, PxpBenchError
from pxp_bench.hookspecs import hookimpl
from pxp_bench.optimize import study as study_module
from pxp_bench.optimize.config import StudyConfig, config_to_json
from pxp_bench.optimize.provenance import optimizers_ran
from pxp_bench.optimize.report import provenance_json, trials_summary
from pxp_bench.optimize.storage import storage_label
from pxp_bench.optimize.study import run_study, tuning_a_pr
from pxp_bench.plan import Benchmark
from pxp_bench.plugins import Plugins
from pxp_bench.specs import MethodSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
SMALL = Benchmark(method="taylor", n_classes=3, tune_per_class=10, rates=QUICK_RATES)
AGGREGATIONS = ("abs", "abs_per_position", "signed")
COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
REPEAT_ATTR = "repeat_of"  # a trial answered from an earlier one names it
PROVENANCE_KEYS = {"study", "trial", "optimizer", "optimizers", "seeds", "trials_completed", "trials_stopped",
                   "distinct_configurations", "tuning_a_pr", "study_wall_s", "study_trial_s", "storage"}


def config(tmp_path, **overrides) -> StudyConfig:
    return StudyConfig(**({"bench": SMALL, "seeds": (0, 1), "trials": 3, "out": tmp_path} | overrides))


class WideTaylor:
    """Taylor with its aggregation, normalisation and initial relevance all searched: 12 points, enough
    distinct configurations for the median pruner's 5 startup trials."""

    @hookimpl
    def register_methods(self, register):
        register(MethodSpec(name="taylor-wide", score="pxp_bench.attribution.gradients:taylor_scores",
                            summary="taylor, more searched",
                            params={key: dataclasses.replace(p, searched=True) for key, p in GRADIENT_OPTIONS.items()}))


def test_the_objective_never_reads_the_evaluation_set(plugins):
    prepared = prepare(SMALL, plugins=plugins)
    params = prepared.plan.params
    before = tuning_a_pr(prepared, params)
    eval_split = prepared.splits.eval  # poison (a copy of) the evaluation set: the objective must not notice
    poisoned = LabelledTensors(torch.full_like(eval_split.inputs, float("nan")), eval_split.targets)
    prepared.splits = dataclasses.replace(prepared.splits, eval=poisoned)
    assert tuning_a_pr(prepared, params) == before and set(prepared.memos) == {"tune"}
    assert prepared.sets.tuning_split == "tune"  # digits' own tune split: disjoint from eval and reference
    assert not torch.isnan(prepare(SMALL, plugins=plugins).splits.eval.inputs).any()  # the shared data is intact


def test_grid_finds_the_exhaustive_optimum_with_the_default_as_trial_0(plugins, tmp_path):
    outcome = run_study(config(tmp_path, optimizer="grid"), plugins=plugins)
    trials = outcome.study.trials
    assert [t.params["aggregation"] for t in trials][0] == "abs" and trials[0].user_attrs["default"]
    assert sorted(t.params["aggregation"] for t in trials) == sorted(AGGREGATIONS)  # each point once
    prepared = {seed: prepare(dataclasses.replace(SMALL, seed=seed), plugins=plugins) for seed in (0, 1)}
    exhaustive = {a: sum(tuning_a_pr(prepared[s], {**prepared[s].plan.params, "aggregation": a}) for s in (0, 1)) / 2
                  for a in AGGREGATIONS}
    assert outcome.best_value == max(exhaustive.values())
    assert exhaustive[outcome.best_params["aggregation"]] == outcome.best_value
    assert outcome.best_value >= outcome.default_value


@pytest.mark.parametrize("optimizer", ["optuna-tpe", "optuna-gp", "random", "nevergrad"])
def test_every_optimizer_starts_from_the_default_and_reports_optimised_results(plugins, tmp_path, optimizer):
    outcome = run_study(config(tmp_path, optimizer=optimizer, trials=2), plugins=plugins)
    assert outcome.study.trials[0].user_attrs.get("default") and len(outcome.study.trials) == 2
    assert outcome.best_value >= outcome.default_value
    for seed, result in zip((0, 1), outcome.results):
        assert (result.variant, result.seed, result.params) == ("optimised", seed, outcome.best_params)
        assert result.optimisation["tuning_a_pr"] == outcome.best_value
        assert result.optimisation["trial"] == outcome.study.best_trial.number
        assert result.samples["evaluation"] == len(prepare(dataclasses.replace(SMALL, seed=seed),
                                                           plugins=plugins).sets.evaluation)


def test_a_rerun_resumes_and_a_study_for_another_setting_is_refused(plugins, tmp_path):
    first = run_study(config(tmp_path, trials=2), plugins=plugins)
    again = run_study(config(tmp_path, trials=3), plugins=plugins)
    assert (first.trials_run, again.trials_run, len(again.study.trials)) == (2, 1, 3)
    other = dataclasses.replace(SMALL, n_classes=4)
    with pytest.raises(ConfigError, match="created for another setting \\(differs in classes\\)"):
        run_study(config(tmp_path, bench=other, study=first.study.study_name), plugins=plugins)
    with pytest.raises(ConfigError, match="differs in pruner"):  # its trials reported for another pruner
        run_study(config(tmp_path, trials=4, pruner="median"), plugins=plugins)


def test_the_same_seed_gives_the_same_sequence(plugins, tmp_path):
    runs = [run_study(config(tmp_path / str(i), optimizer="random", trials=3), plugins=plugins) for i in range(2)]
    assert [t.params for t in runs[0].study.trials] == [t.params for t in runs[1].study.trials]


@pytest.mark.parametrize("overrides, message", [
    ({"trials": 0}, "--trials must be at least 1"),
    ({"bench": dataclasses.replace(SMALL, tune_per_class=0)}, "needs a tuning set"),
    ({"bench": dataclasses.replace(SMALL, method="random")}, "no searched parameters"),
    ({"seeds": (0, 0)}, "distinct"),
    ({"storage": "redis://localhost"}, "not a database URL"),
    ({"optimizer": "optuna-tp"}, "Did you mean 'optuna-tpe'"),
])
def test_bad_study_options_are_one_clear_error(plugins, tmp_path, overrides, message):
    with pytest.raises(PxpBenchError, match=message):
        run_study(config(tmp_path, **overrides), plugins=plugins)


def test_the_command_writes_best_params_history_and_results(tmp_path):
    runner = CliRunner()
    args = ["optimize", "--method", "taylor", "--classes", "3", "--tune-per-class", "10", "--rates", "0,0.3,0.6",
            "--seeds", "0,1", "--trials", "2", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    best = tmp_path / "digits-vgg_filters_taylor_seeds0-1.best.json"
    assert set(json.loads(best.read_text())) == {"aggregation", "normalize", "init"}
    assert (tmp_path / "digits-vgg_filters_taylor_seeds0-1.history.png").read_bytes()[:4] == b"\x89PNG"
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*optimised*.json")]
    assert sorted(r["seed"] for r in records) == [0, 1] and "tuning A_PR: best" in result.output
    provenance = tmp_path / "digits-vgg_filters_taylor_seeds0-1.provenance.json"  # beside X.best.json
    text = provenance.read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert set(json.loads(text)) == PROVENANCE_KEYS and all(r["optimisation"] == json.loads(text) for r in records)
    assert str(provenance) in re.sub(r"\s*\n", "", result.output)
    rerun = runner.invoke(app, ["run", "--method", "taylor", "--params", str(best), "--rates", "0,0.5",
                                "--out", str(tmp_path / "runs")])
    assert rerun.exit_code == 0, rerun.output
    refused = runner.invoke(app, [*args[:-2], "--out", str(tmp_path), "--trials", "0"])
    assert refused.exit_code == 2 and "--trials must be at least 1" in refused.output


@pytest.mark.workers
def test_local_workers_share_the_journal_study(tmp_path):
    result = CliRunner().invoke(app, ["optimize", "--method", "taylor", "--classes", "3", "--tune-per-class", "10",
                                      "--rates", "0,0.3,0.6", "--trials", "6", "--jobs", "2", "--optimizer", "random",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    trials = _journal_trials(tmp_path / "digits-vgg_filters_taylor_seeds0.journal", "digits-vgg_filters_taylor_seeds0")
    assert [t.state for t in trials] == [COMPLETE] * 6  # the workers stop together at exactly --trials
    assert "Warning" not in result.output


def _journal_trials(path, name) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.load_study(study_name=name, storage=storage).trials


@pytest.mark.workers
def test_workers_started_together_stop_at_exactly_the_trials_and_again_on_resume(tmp_path):
    # two workers on one study, trials of seconds: when 4 of 5 were finished both saw 4 and each started one,
    # so a study of 5 ended with 6 (and a resume to 8 with 9); a worker claims its slot before its trial starts
    bench = dataclasses.replace(SMALL, method="lrp")
    for trials in (5, 8):
        study = config(tmp_path, bench=bench, seeds=(0,), trials=trials, optimizer="random", pruner="none")
        workers = [subprocess.Popen([sys.executable, "-m", "pxp_bench.optimize.worker",
                                     config_to_json(dataclasses.replace(study, worker=index)), str(os.getpid())],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                   for index in (1, 2)]
        for worker in workers:
            _, stderr = worker.communicate(timeout=600)
            assert worker.returncode == 0, stderr[-2000:]
        found = _journal_trials(tmp_path / "digits-vgg_filters_lrp_seeds0.journal", "digits-vgg_filters_lrp_seeds0")
        assert [t.state for t in found] == [COMPLETE] * trials, [(t.number, t.state) for t in found]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits-vgg_filters_lrp_seeds0.journal"]  # no lock left


def test_parameters_given_by_the_user_are_fixed_not_searched(plugins, tmp_path):
    bench = dataclasses.replace(SMALL, method="lrp", param_texts={"low": "zplus", "mid": "zplus", "high": "zplus"})
    outcome = run_study(config(tmp_path, bench=bench, trials=3, optimizer="random"), plugins=plugins)
    assert set(outcome.space) == {"fc", "aggregation"}
    assert all(set(t.params) == {"fc", "aggregation"} for t in outcome.study.trials)
    assert {outcome.best_params[g] for g in ("low", "mid", "high")} == {"zplus"}
    params_file = tmp_path / "bad.json"
    params_file.write_text('{"lowest": "zplus"}')
    result = CliRunner().invoke(app, ["optimize", "--method", "lrp", "--params", str(params_file), "--out",
                                      str(tmp_path)])
    assert result.exit_code == 2 and "unknown parameter 'lowest'" in result.output


@pytest.mark.parametrize("pruner", ["wilcoxon", "median"])
def test_trials_report_each_seed_and_rate_and_clearly_worse_ones_stop_mid_curve(tmp_path, pruner):
    rates = tuple(i / 10 for i in range(10))
    bench = dataclasses.replace(SMALL, method="taylor-wide", rates=rates)
    outcome = run_study(config(tmp_path, bench=bench, optimizer="random", trials=12, pruner=pruner),
                        plugins=Plugins(load_external=False, extra=(WideTaylor(),)), evaluate_best=False)
    steps = 2 * len(rates)  # seeds 0 and 1, rates ascending
    complete = [t for t in outcome.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in outcome.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    for trial in complete:
        reported = [trial.intermediate_values[step] for step in range(steps)]
        # wilcoxon sees each accuracy, median the sum so far; either way they make up the objective
        total = sum(reported) if pruner == "wilcoxon" else reported[-1]
        assert total / steps == pytest.approx(trial.value, abs=1e-12)
    assert pruned, "no trial was stopped"
    warm_up = 13 if pruner == "wilcoxon" else len(rates) // 2  # SciPy's test needs 14 pairs
    for trial in pruned:  # stopped after the warm-up, before the last step, and never the best
        assert warm_up <= max(trial.intermediate_values) < steps - 1
    assert outcome.study.best_trial.state == optuna.trial.TrialState.COMPLETE
    for trial in outcome.study.trials:  # a repeat shows its earlier trial's reports and ends as it did
        if REPEAT_ATTR in trial.user_attrs:
            earlier = outcome.study.trials[trial.user_attrs[REPEAT_ATTR]]
            assert (trial.params, trial.state, trial.intermediate_values) == (
                earlier.params, earlier.state, earlier.intermediate_values)


def test_an_optimised_result_records_its_studys_provenance(plugins, tmp_path):
    run_study(config(tmp_path, seeds=(0,), optimizer="random", trials=2), plugins=plugins, evaluate_best=False)
    outcome = run_study(config(tmp_path, seeds=(0,), optimizer="random", trials=4), plugins=plugins)  # resumed
    found, study = outcome.provenance, outcome.study
    finished = study.get_trials(states=(COMPLETE, PRUNED))
    assert set(found) == PROVENANCE_KEYS and outcome.results[0].optimisation == found
    assert found["optimizers"] == [builtin_optimizer(plugins, "random", 4)]
    assert (found["study"], found["optimizer"], found["seeds"], found["storage"]) == (
        study.study_name, "random", [0], "journal")
    assert (found["trial"], found["tuning_a_pr"]) == (study.best_trial.number, outcome.best_value)
    assert found["trials_completed"] + found["trials_stopped"] == len(finished) == 4
    assert found["distinct_configurations"] == len({tuple(sorted(t.params.items())) for t in finished}) < 4
    # timed from the storage: the wall time spans both runs, from trial 0's start to the last trial's end
    assert found["study_wall_s"] == round((finished[-1].datetime_complete - finished[0].datetime_start)
                                          .total_seconds(), 1)
    assert found["study_wall_s"] >= found["study_trial_s"] > 0
    assert storage_label("postgresql+psycopg2://me:secret@db:5432/pxp") == "postgresql+psycopg2://me@db:5432/pxp"
    assert storage_label("postgresql://me@db.example/pxp?password=secret") == "postgresql://me@db.example/pxp"


def builtin_optimizer(plugins, name: str, trials: int) -> dict:
    """How a study's provenance lists built-in optimizer ``name`` and the finished trials it ran."""
    info = plugins.infos[plugins.optimizers.owner(name)]
    return {"optimizer": name, "plugin": info.name, "distribution": "pxp-bench", "version": info.version,
            "trials": trials}


def test_a_study_resumed_with_another_optimizer_records_every_optimizer(plugins, tmp_path):
    run_study(config(tmp_path, seeds=(0,), optimizer="random", trials=2), plugins=plugins, evaluate_best=False)
    outcome = run_study(config(tmp_path, seeds=(0,), optimizer="optuna-tpe", trials=4), plugins=plugins,
                        evaluate_best=False)  # resumed with another optimizer
    found = outcome.provenance
    assert found["optimizer"] == "optuna-tpe"  # the one this command ran; every one, in order, below
    assert found["optimizers"] == [builtin_optimizer(plugins, "random", 2), builtin_optimizer(plugins, "optuna-tpe", 2)]
    assert json.loads(provenance_json(outcome))["optimizers"] == found["optimizers"]
    assert [t.user_attrs["optimizer"]["optimizer"] for t in outcome.study.trials] == ["random"] * 2 + ["optuna-tpe"] * 2
    assert "run by random (2 finished trials), then optuna-tpe (2 finished trials)" in trials_summary(outcome.study)
    # a trial that notes no optimizer (a study made before trials noted it) is counted, not attributed
    unnoted = optuna.trial.create_trial(value=0.5, params={"aggregation": "abs"},
                                        distributions={"aggregation": optuna.distributions.CategoricalDistribution(AGGREGATIONS)})
    assert optimizers_ran([unnoted]) == [{"optimizer": None, "trials": 1}]


def test_a_repeated_proposal_is_answered_from_the_study_not_evaluated_again(plugins, tmp_path, monkeypatch):
    scored = []
    score = study_module.score
    monkeypatch.setattr(study_module, "score", lambda prepared, params, **kw: scored.append(params["aggregation"])
                        or score(prepared, params, **kw))
    run_study(config(tmp_path, seeds=(0,), optimizer="random", trials=2), plugins=plugins, evaluate_best=False)
    outcome = run_study(config(tmp_path, seeds=(0,), optimizer="random", trials=5), plugins=plugins,
                        evaluate_best=False)
    trials = outcome.study.trials
    # resumed with the same seed, the random sampler proposes trial 1's configuration again as trial 2
    assert trials[2].params == trials[1].params and trials[2].user_attrs[REPEAT_ATTR] == 1
    for trial in trials:
        first = next(t for t in trials if t.params == trial.params)
        assert trial.value == first.value and trial.user_attrs.get(REPEAT_ATTR, trial.number) == first.number
    assert sorted(scored) == sorted({t.params["aggregation"] for t in trials})  # each configuration scored once


def test_the_report_ranks_completed_trials_and_shows_stopped_ones_without_a_value(tmp_path):
    rates = ",".join(str(i / 10) for i in range(10))  # 20 steps over two seeds: the Wilcoxon pruner stops trials
    result = CliRunner().invoke(app, ["optimize", "--method", "taylor", "--classes", "3", "--tune-per-class", "10",
                                      "--rates", rates, "--seeds", "0,1", "--optimizer", "random", "--trials", "4",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    name = "digits-vgg_filters_taylor_seeds0-1"
    journal = optuna.storages.journal.JournalFileBackend(str(tmp_path / f"{name}.journal"))
    trials = optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(journal)).trials
    stopped = [t for t in trials if t.state == PRUNED]
    assert stopped and all(t.value is not None for t in stopped)  # Optuna keeps a stopped trial's last report
    rows = re.findall(r"^│ (\d+)[^│]*│ (\d\.\d{4}) ", result.output, re.MULTILINE)  # the best-trials table
    evaluated = [t for t in trials if t.state == COMPLETE and REPEAT_ATTR not in t.user_attrs]
    assert {int(number): float(value) for number, value in rows} == {t.number: round(t.value, 4) for t in evaluated}
    output, repeats = " ".join(result.output.split()), sum(REPEAT_ATTR in t.user_attrs for t in trials)
    assert f"{len(trials) - len(stopped)} completed, {len(stopped)} stopped mid-curve (no value), 0 failed" in output
    assert f"repeated proposals answered from earlier trials: {repeats}" in output
    provenance = json.loads((tmp_path / f"{name}.provenance.json").read_text())
    assert (provenance["trials_completed"], provenance["trials_stopped"]) == (len(trials) - len(stopped), len(stopped))
