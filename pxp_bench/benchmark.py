"""One standardized prune-and-evaluate run, in stages an optimizer can drive.

`prepare` (once per seed: plan, model, the protocol's draws, components) -> `score` (a method's
scores under some parameters) -> `evaluate` (the pruning curve on the evaluation or the tuning set,
reusing evaluations of pruned sets seen before) -> `run_benchmark` composes them into a `Result`.
Every step is a plain function; the CLI only parses options and renders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import torch

from pxp_bench.agreement import ABLATION, agreement_record, cached_ablation
from pxp_bench.conditions import condition_of
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.data.loading import loader
from pxp_bench.data.protocol import index_hash, method_seeds
from pxp_bench.device import device_name, with_oom_backoff
from pxp_bench.errors import ComponentError, ConfigError, PluginError, PxpBenchError
from pxp_bench.evaluate import CurvePoint, EvaluationMemo, prune_curve
from pxp_bench.guards import check_scores, model_state, state_changes
from pxp_bench.masking import masked, rank_components
from pxp_bench.metrics import curve_metrics, record_metrics
from pxp_bench.outcomes import ProbeOutcomes, outcomes_record
from pxp_bench.plan import Benchmark, plan_benchmark, run_options
from pxp_bench.plugins import Plugins, plugin_culprit
from pxp_bench.prepare import Prepared, example_input, prepare
from pxp_bench.recovery import recovered_copy
from pxp_bench.results import Result, environment
from pxp_bench.schedule import pruning_order
from pxp_bench.scores import load_scores
from pxp_bench.slim.curve import slim_curve
from pxp_bench.specs import MethodSpec

__all__ = ["Benchmark", "Prepared", "Scored", "evaluate", "plan_benchmark", "prepare", "run_benchmark", "score"]
SPLITS = ("eval", "tune")


class Progress(Protocol):
    """Receives progress of the long stages (``scoring`` in samples, ``evaluating`` in rates)."""

    def start(self, stage: str, total: int) -> None: ...

    def advance(self, stage: str, amount: int = 1) -> None: ...

    def finish(self, stage: str) -> None: ...


@dataclass
class Scored:
    """A method's scores and what it reported while scoring (``diagnostics``)."""

    scores: dict[str, torch.Tensor]
    diagnostics: dict[str, Any]


def _score(spec: MethodSpec, plugins: Plugins, model, components, reference, context, params: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The method's scores, checked against the components, with the model checked to be as the method
    found it (`pxp_bench.guards`); a plugin's failure names the plugin."""
    method = spec.load_score()
    owner = plugins.methods.owner(spec.name)
    culprit = plugin_culprit(plugins, f"method '{spec.name}'", owner)
    before = model_state(model)
    try:
        scores = method(model, components, reference, context, **params)
    except (PxpBenchError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:
        if plugins.infos[owner].source == "builtin":
            raise
        raise PluginError(f"{culprit} failed while scoring: {type(exc).__name__}: {exc}.") from exc
    if changes := state_changes(before, model):
        raise PluginError(f"{culprit} left the model changed after scoring: {'; '.join(changes)}. Undo every "
                          "change in a `with` block or try / finally (pxp_bench.testing.check_method shows more).")
    try:
        check_scores(components, scores)
    except ComponentError as exc:
        raise PluginError(f"{culprit} returned unusable scores: {exc}") from None
    return scores


def score(prepared: Prepared, params: Mapping[str, Any] | None = None, *,
          progress: Progress | None = None) -> Scored:
    """The run's method on its reference set, under ``params`` (typed; default: the plan's)."""
    return _scored(prepared, prepared.plan.method, dict(prepared.plan.params if params is None else params), progress)


def score_with(prepared: Prepared, spec: MethodSpec, params: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Another registered method's scores on the run's reference set (typed ``params``), e.g. ablation's
    for `pxp_bench.agreement`."""
    return _scored(prepared, spec, dict(params), None).scores


def _scored(prepared: Prepared, spec: MethodSpec, params: dict[str, Any], progress: Progress | None) -> Scored:
    seeds = method_seeds(prepared.bench.seed)
    reference_data = prepared.samples("reference")

    def score_at(batch_size: int) -> Scored:
        reference = ReferenceSet(reference_data, prepared.sets.classes, batch_size, prepared.device, prepared.task)
        context = RunContext(prepared.device, seeds)
        if progress is not None:
            progress.start("scoring", len(reference))
            context.progress = lambda n: progress.advance("scoring", n)
        scores = _score(spec, prepared.plugins, prepared.model, prepared.components, reference, context, params)
        if progress is not None:
            progress.finish("scoring")  # data-free methods never ask for a batch
        return Scored(scores, dict(context.diagnostics))

    return with_oom_backoff("scoring", prepared.batch_size, score_at)


@dataclass
class ConditionCurve:
    """A curve under the run's condition (`pxp_bench.conditions`): ``points`` are what the condition
    measures (recovered, where it recovers); ``oneshot`` the same pruned sets before recovery (None without
    one), with the seconds recovery and re-scoring (iterative, per rate) took."""

    points: list[CurvePoint]
    oneshot: list[CurvePoint] | None = None
    recovery_seconds: float = 0.0
    rescore_seconds: list[float] = field(default_factory=list)


def evaluate(prepared: Prepared, scores: Mapping[str, torch.Tensor], split: str = "eval", *,
             params: Mapping[str, Any] | None = None, progress: Progress | None = None, reuse: bool = True,
             on_rate: Callable[[CurvePoint], None] | None = None) -> list[CurvePoint]:
    """The pruning curve of ``scores`` on the evaluation (``eval``) or tuning (``tune``) set, under the run's
    condition (`evaluate_condition`; ``params``: the method's, for re-scoring, default the plan's).

    ``reuse=False`` forgets the pruned sets evaluated by earlier calls (to measure what reuse saves).
    ``on_rate`` sees each point as soon as it is measured (rates in ascending order); an exception it
    raises stops the curve there, e.g. a pruner stopping a trial.
    """
    return evaluate_condition(prepared, scores, split, params=params, progress=progress, reuse=reuse,
                              on_rate=on_rate).points


def _rescorer(prepared: Prepared, params: Mapping[str, Any]):
    """The iterative schedule's scoring of the pruned model: the run's method and reference samples, with
    the pruned components removed as the curve removes them."""
    def rescore(masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with masked(prepared.model, prepared.components, masks, prepared.fills):
            return _scored(prepared, prepared.plan.method, dict(params), None).scores

    return rescore


def evaluate_condition(prepared: Prepared, scores: Mapping[str, torch.Tensor], split: str = "eval", *,
                       params: Mapping[str, Any] | None = None, progress: Progress | None = None,
                       reuse: bool = True, on_rate: Callable[[CurvePoint], None] | None = None) -> ConditionCurve:
    """`evaluate`, with what the condition adds: the one-shot curve under a recovery, the costs."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}.")
    bench, condition = prepared.bench, condition_of(prepared.bench)
    data = prepared.samples(split)
    counts, rescore_seconds = None, []
    if condition.schedule == "oneshot" and condition.scope == "global":  # the paper's: one global ranking
        order = rank_components(prepared.components, scores, bench.max_layer_rate)
    else:
        rescore = (_rescorer(prepared, prepared.plan.params if params is None else params)
                   if condition.schedule == "iterative" else None)
        pruning = pruning_order(prepared.components, prepared.rates, scores, scope=condition.scope,
                                max_layer_rate=bench.max_layer_rate, rescore=rescore)
        order, counts, rescore_seconds = pruning.order, pruning.counts, pruning.rescore_seconds
    memo = prepared.memos.setdefault(split, EvaluationMemo()) if reuse else EvaluationMemo()
    recovering = condition.recover != "none"

    def measured(point: CurvePoint) -> None:
        if progress is not None:
            progress.advance("evaluating")

    def reported(point: CurvePoint) -> None:
        measured(point)
        if on_rate is not None:
            on_rate(point)

    def curve(batch_size: int, **particular) -> list[CurvePoint]:
        """The pruned sets' curve on ``data`` (the one-shot and the recovered curve differ in ``particular``)."""
        return prune_curve(prepared.model, prepared.components, order, prepared.rates,
                           loader(data, batch_size, prepared.device), prepared.sets.classes, prepared.device,
                           amp=bench.amp, channels_last=prepared.channels_last, task=prepared.task,
                           probe=prepared.splits.probe if split == "eval" else None,  # tuning reads A_PR only
                           counts=counts, fills=prepared.fills, **particular)

    def curve_at(batch_size: int) -> list[CurvePoint]:
        if progress is not None:
            progress.start("evaluating", len(prepared.rates) * (2 if recovering else 1))
        slim = None
        if bench.evaluate == "slim" and split == "eval":  # tuning curves stay masked: the same counts,
            slim = slim_curve(prepared.model, prepared.components, example_input(prepared),  # and no copy
                              latency_repeats=bench.latency_repeats, amp=bench.amp,  # per trial
                              channels_last=prepared.channels_last, fills=prepared.fills)
        return curve(batch_size, memo=memo, on_rate=measured if recovering else reported, slim=slim)

    points = with_oom_backoff("evaluating", prepared.batch_size, curve_at)
    if not recovering:
        return ConditionCurve(points, rescore_seconds=rescore_seconds)
    seconds = [0.0]
    samples = prepared.samples("recovery")

    def recovered(masks: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        clock = time.perf_counter()
        model = recovered_copy(prepared.model, prepared.components, masks, prepared.fills, recover=condition.recover,
                               steps=condition.recover_steps, samples=samples, device=prepared.device,
                               task=prepared.task, class_ids=prepared.sets.classes, seed=bench.seed)
        seconds[0] += time.perf_counter() - clock
        return model

    recovered_memo = prepared.memos.setdefault(f"{split}:recovered", EvaluationMemo()) if reuse else EvaluationMemo()

    def recovered_at(batch_size: int) -> list[CurvePoint]:
        return curve(batch_size, memo=recovered_memo, on_rate=reported, model_at=recovered)

    after = with_oom_backoff("evaluating", prepared.batch_size, recovered_at)
    after = [replace(point, efficiency=before.efficiency) for point, before in zip(after, points)]  # the same
    return ConditionCurve(after, points, round(seconds[0], 4), rescore_seconds)                 # structure


def _saved_scores(prepared: Prepared) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Saved scores checked against this run; with the method record they came from."""
    bench, plan = prepared.bench, prepared.plan
    saved = load_scores(bench.scores_file, prepared.components)
    if bench.method is not None and bench.method != saved.metadata.get("method"):
        raise ConfigError(
            f"--scores {bench.scores_file} holds '{saved.metadata.get('method')}' scores, not "
            f"'{bench.method}'; drop --method or rescore."
        )
    for key, ours in (("model", plan.model.name), ("weights", prepared.loaded.weights),
                      ("classes", prepared.sets.classes)):
        if saved.metadata.get(key) != ours:
            raise ConfigError(
                f"--scores {bench.scores_file} was saved for {key} {saved.metadata.get(key)!r}, this run has "
                f"{ours!r}. Use the same --model, --weights, --classes and --seed, or rescore."
            )
    return saved.scores, {key: saved.metadata.get(key) for key in ("method", "variant", "params")}


def _own_scores(prepared: Prepared, progress: Progress | None) -> tuple[dict[str, torch.Tensor], dict[str, Any], float | None]:
    """The run's scores and diagnostics; for an ``ablation`` run with an ablation cache (a suite's), the
    scores the agreement of its setting computes anyway, with the seconds they took when computed."""
    if prepared.plan.method.name != ABLATION or prepared.bench.ablation_cache is None:
        scored = score(prepared, progress=progress)
        return scored.scores, scored.diagnostics, None
    diagnostics: dict[str, Any] = {}

    def compute() -> dict[str, torch.Tensor]:
        scored = score(prepared, progress=progress)
        diagnostics.update(scored.diagnostics)
        return scored.scores

    scores, seconds = cached_ablation(prepared, prepared.plan.params, compute)
    return scores, diagnostics, seconds


def run_benchmark(bench: Benchmark, *, plugins: Plugins | None = None, progress: Progress | None = None) -> Result:
    """Run one benchmark end to end and return its `Result` (not yet written to disk)."""
    started = time.perf_counter()
    return run_prepared(prepare(bench, plugins=plugins), progress=progress, started=started)


def run_prepared(prepared: Prepared, *, progress: Progress | None = None, started: float | None = None) -> Result:
    """Score (or load saved scores) and evaluate on a prepared run; its `Result`."""
    started = time.perf_counter() if started is None else started
    bench, plan = prepared.bench, prepared.plan
    clock = time.perf_counter()
    score_seconds = None
    if bench.scores_file is not None:
        scores, record = _saved_scores(prepared)
        diagnostics: dict[str, Any] = {}
    else:
        scores, diagnostics, score_seconds = _own_scores(prepared, progress)
        record = {"method": plan.method.name, "variant": plan.variant, "params": plan.params}
    elapsed = time.perf_counter() - clock
    score_seconds = elapsed if score_seconds is None else score_seconds  # cached ablation: what computing it took
    started -= score_seconds - elapsed  # so the total is the method's cost, as for any other run
    timings = {**prepared.timings, "score": round(score_seconds, 4)}
    agreement = None
    if bench.agreement:
        agreement, seconds = agreement_record(prepared, scores, lambda spec, params: score_with(prepared, spec, params))
        timings["agreement"] = round(seconds, 4)
        started += seconds  # the total is the run's own cost: a method's time must not include ablation's
    clock = time.perf_counter()
    curve = evaluate_condition(prepared, scores, "eval", progress=progress)
    timings["evaluate"] = round(time.perf_counter() - clock, 4)
    timings["total"] = round(time.perf_counter() - started, 4)
    result = make_result(prepared, record, curve.points, scores, timings,
                         {"excluded_attention": list(prepared.components.excluded), **diagnostics}, curve)
    result.agreement = agreement
    return result


def make_result(prepared: Prepared, record: dict[str, Any], points: list[CurvePoint], scores, timings: dict,
                diagnostics: dict[str, Any], curve: ConditionCurve | None = None) -> Result:
    """The `Result` of ``points`` on the evaluation set; ``record`` holds method, variant and params, ``curve``
    (`evaluate_condition`'s) what a recovery or a schedule adds."""
    bench, sets, components = prepared.bench, prepared.sets, prepared.components
    curve = curve or ConditionCurve(points)
    if curve.rescore_seconds:
        timings = {**timings, "rescore": round(sum(curve.rescore_seconds), 4)}
    if curve.oneshot is not None:
        timings = {**timings, "recover": curve.recovery_seconds}
    rates = [p.rate for p in points]
    layers = {g.name: [p.layers[g.name] for p in points] for g in components.groups}
    positions = {class_id: position for position, class_id in enumerate(sets.classes)}
    slimmed = all(p.efficiency is not None for p in points)
    perplexity = points[0].nll is not None
    probe = prepared.splits.probe.name if points[0].probe_hits is not None else None
    metrics = record_metrics(rates, [p.correct for p in points], points[0].total, layers=layers,
                             efficiency=[p.efficiency for p in points] if slimmed else None,
                             perplexities=[p.perplexity for p in points] if perplexity else None,
                             probe=(probe, [p.probe_accuracy for p in points]) if probe else None)
    return Result(
        **record,
        model=prepared.plan.model.name,
        dataset=prepared.plan.dataset.name,
        components=prepared.plan.components,
        seed=bench.seed,
        classes=sets.classes,
        rates=[p.rate for p in points],
        curve=[{"rate": p.rate, "pruned": p.pruned, "correct": p.correct, "accuracy": p.accuracy,
                **({"total": p.total, "perplexity": p.perplexity} if perplexity else {}),
                **({f"{probe}_accuracy": p.probe_accuracy} if probe else {}),
                **(p.efficiency if slimmed else {})} for p in points],
        metrics=metrics,
        evaluate="slim" if slimmed else "masked",
        layers=layers,
        timings=timings,
        environment=environment(device_name(prepared.device)),
        weights=prepared.loaded.weights,
        samples={
            "class_names": [prepared.splits.class_names[c] for c in sets.classes],
            "class_hash": index_hash(sets.classes),
            "reference": len(sets.reference),
            "reference_hash": index_hash(sets.reference),
            "tuning": len(sets.tuning),
            "tuning_split": sets.tuning_split,
            "tuning_hash": index_hash(sets.tuning),
            "evaluation": len(sets.evaluation),
            "evaluation_hash": index_hash(sets.evaluation),
            "components": components.total,
            "amp": bench.amp,
            "image_size": bench.image_size,
            "max_layer_rate": bench.max_layer_rate,
            **({"probe": probe, "probe_predictions": int(points[0].probe_units.sum())} if probe else {}),
        },
        diagnostics={"near_zero_logits_skipped": 0, **diagnostics},
        outcomes=outcomes_record([p.hits for p in points], [positions[int(label)] for label in points[0].labels],
                                 index_hash(sets.evaluation), points[0].units,
                                 ProbeOutcomes(probe, np.stack([p.probe_hits for p in points]), points[0].probe_units)
                                 if probe else None),
        scores_source=str(bench.scores_file) if bench.scores_file is not None else None,
        recovery=None if curve.oneshot is None else _recovery_record(prepared, curve),
        rescoring={"seconds_per_rate": curve.rescore_seconds} if curve.rescore_seconds else None,
        options=run_options(bench),
        scores=scores,
        scored=components,
    )


def _recovery_record(prepared: Prepared, curve: ConditionCurve) -> dict[str, Any]:
    """What a recovered record keeps beside its (recovered) curve: the recovery, its samples and cost, and
    the one-shot curve of the same pruned sets with its metrics."""
    condition, before = condition_of(prepared.bench), curve.oneshot
    indices = prepared.recovery_sample_indices
    return {
        "kind": condition.recover, "steps": condition.recover_steps, "samples": len(indices),
        "samples_hash": index_hash(indices), "seconds": curve.recovery_seconds,
        "oneshot": {
            "curve": [{"rate": p.rate, "pruned": p.pruned, "correct": p.correct, "accuracy": p.accuracy} for p in before],
            "metrics": curve_metrics([p.rate for p in before], [p.correct for p in before], before[0].total),
        },
    }
