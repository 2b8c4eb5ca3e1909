"""Hyperparameter optimisation: honest objective, exhaustive grid, resumable seeded studies, the command."""

from __future__ import annotations

import dataclasses
import json

import optuna
import pytest
import torch
from typer.testing import CliRunner

from helpers import QUICK_RATES
from pxp_bench.benchmark import prepare
from pxp_bench.cli import app
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.errors import ConfigError, PxpBenchError
from pxp_bench.optimize.study import StudyConfig, run_study, tuning_a_pr
from pxp_bench.plan import Benchmark

optuna.logging.set_verbosity(optuna.logging.WARNING)
SMALL = Benchmark(method="taylor", n_classes=3, tune_per_class=10, rates=QUICK_RATES)
AGGREGATIONS = ("abs", "abs_per_position", "signed")


def config(tmp_path, **overrides) -> StudyConfig:
    return StudyConfig(**({"bench": SMALL, "seeds": (0, 1), "trials": 3, "out": tmp_path} | overrides))


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
    rerun = runner.invoke(app, ["run", "--method", "taylor", "--params", str(best), "--rates", "0,0.5",
                                "--out", str(tmp_path / "runs")])
    assert rerun.exit_code == 0, rerun.output
    refused = runner.invoke(app, [*args[:-2], "--out", str(tmp_path), "--trials", "0"])
    assert refused.exit_code == 2 and "--trials must be at least 1" in refused.output


def test_local_workers_share_the_journal_study(tmp_path):
    result = CliRunner().invoke(app, ["optimize", "--method", "taylor", "--classes", "3", "--tune-per-class", "10",
                                      "--rates", "0,0.3,0.6", "--trials", "6", "--jobs", "2", "--optimizer", "random",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "digits-vgg_filters_taylor_seeds0.journal")))
    trials = optuna.load_study(study_name="digits-vgg_filters_taylor_seeds0", storage=storage).trials
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE} and 6 <= len(trials) <= 7
    assert "Warning" not in result.output


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
def test_trials_report_each_seed_and_rate_and_clearly_worse_ones_stop_mid_curve(plugins, tmp_path, pruner):
    rates = tuple(i / 10 for i in range(10))
    bench = dataclasses.replace(SMALL, rates=rates)
    outcome = run_study(config(tmp_path, bench=bench, optimizer="random", trials=12, pruner=pruner),
                        plugins=plugins, evaluate_best=False)
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
