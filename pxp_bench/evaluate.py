"""The pruning curve of a task's accuracy (`pxp_bench.tasks`: top-1 over the restricted classes, or next
tokens) and its metrics (PROTOCOL sections 4 and 12)."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from pxp_bench.components import Components
from pxp_bench.device import autocast as amp_autocast, in_layout
from pxp_bench.errors import PxpBenchError, unwrap_worker_error
from pxp_bench.masking import keep_masks, masked, pruned_count, pruned_fractions
from pxp_bench.metrics import keeps_top_pr_accuracy
from pxp_bench.slim.efficiency import BatchTimes, Stopwatch
from pxp_bench.specs import Probe
from pxp_bench.tasks.base import BatchOutcome, Task
from pxp_bench.tasks.classification import CLASSIFICATION_TASK

if TYPE_CHECKING:
    from pxp_bench.slim.curve import SlimCurve

def restricted_logits(model: nn.Module, inputs: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
    """The logits of ``class_ids`` only, in that order (PROTOCOL section 1's domain restriction)."""
    return model(inputs)[:, class_ids]


@torch.no_grad()
def correct_predictions(
    model: nn.Module,
    loader: Iterable,
    class_ids: Sequence[int],
    device: torch.device,
    *,
    task: Task = CLASSIFICATION_TASK,
    amp: str | None = None,
    on_first_batch: Callable[[], None] | None = None,
    batch_times: BatchTimes | None = None,
    channels_last: bool = False,
    per_sample: list[BatchOutcome] | None = None,
    probe: Probe | None = None,
) -> tuple[int, int]:
    """(correct, predictions): the ``task``'s hits over the loader (classification: top-1 over the logits
    restricted to ``class_ids``, labels are original ids; language modelling: next tokens).

    ``amp`` (``bf16`` / ``fp16``) runs the forward passes under autocast. Counts, not a ratio, so that
    thresholds such as Top-PR's 95 % compare exactly. ``batch_times`` receives each batch's
    forward pass, timed (device-synchronised), and keeps the first batch: the evaluation is its own
    latency measurement. ``channels_last`` feeds image batches in that layout (`pxp_bench.device`).
    ``per_sample`` receives each batch's `BatchOutcome` on the CPU, in the loader's order, with the
    ``probe``'s counts where the dataset has one.
    """
    ids = torch.as_tensor(list(class_ids), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = torch.zeros((), dtype=torch.long, device=device)
    autocast = amp_autocast(device, amp)
    probed = {"probe": probe} if probe is not None else {}  # a task without probes need not take the keyword
    try:
        for inputs, labels in loader:
            inputs = in_layout(inputs.to(device, non_blocking=True), channels_last)
            labels = labels.to(device, non_blocking=True)
            clock = Stopwatch(device) if batch_times is not None else None
            with autocast:
                outcome = task.outcome(model, inputs, labels, ids, **probed)
            if clock is not None:
                batch_times.add(inputs, clock.milliseconds())
            correct += outcome.hits.sum()
            seen += outcome.units.sum()
            if per_sample is not None:
                per_sample.append(BatchOutcome(**{item.name: _on_cpu(getattr(outcome, item.name))
                                                  for item in fields(BatchOutcome)}))
            if on_first_batch is not None:
                on_first_batch()
                on_first_batch = None
    except PxpBenchError as exc:  # e.g. an unreadable image, raised inside a loader worker
        raise unwrap_worker_error(exc) from None
    if int(seen) == 0:
        raise ValueError("the evaluation set is empty")
    return int(correct.item()), int(seen.item())


def _on_cpu(value: torch.Tensor | None) -> torch.Tensor | None:
    return None if value is None else value.cpu()


def accuracy(model: nn.Module, loader: Iterable, class_ids: Sequence[int], device: torch.device, *,
             amp: str | None = None, task: Task = CLASSIFICATION_TASK) -> float:
    """The task's accuracy (see `correct_predictions`)."""
    correct, seen = correct_predictions(model, loader, class_ids, device, amp=amp, task=task)
    return correct / seen


class EvaluationMemo:
    """Correct-prediction counts and per-sample outcomes per pruned set, for one model on one split.

    The accuracy at a rate depends only on which components are pruned, so configurations (or rates)
    that prune the same set are evaluated once: exact, keyed by a digest of the sorted pruned indices.
    """

    def __init__(self) -> None:
        self._counts: dict[bytes, tuple[int, int]] = {}
        self.correct_samples: dict[bytes, np.ndarray] = {}
        """Per pruned set, each sample's correct predictions (in the loader's order): 0 / 1 for a classifier."""
        self.nll: dict[bytes, float] = {}
        """Per pruned set, the summed negative log-likelihood, for tasks that have one (perplexity)."""
        self.probe_hits: dict[bytes, np.ndarray] = {}
        """Per pruned set, each sample's correct predictions among the dataset's `Probe`'s, where it has one."""
        self.probe_units: np.ndarray | None = None
        """Each sample's predictions that the `Probe` marks, in the loader's order."""
        self.labels: np.ndarray | None = None
        """Each sample's stratum (original class id), in the loader's order: the same for every pruned set."""
        self.units: np.ndarray | None = None
        """Each sample's predictions (1 for a classifier, L - 1 for a sequence), in the loader's order."""
        self.latencies: dict[bytes, dict[str, Any]] = {}
        """Per pruned set, the slimmed model's latencies (batch 1 and the evaluation batch, the latter timed
        on the evaluation's own forward passes): the same pruned set gives the same slimmed model."""
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(order: torch.Tensor, n_pruned: int) -> bytes:
        pruned = torch.sort(order[:n_pruned]).values.numpy().tobytes()
        return hashlib.blake2b(pruned, digest_size=16).digest()

    def counts(self, key: bytes, evaluate: Callable[[list], tuple[int, int]]) -> tuple[int, int]:
        """The stored counts of ``key``, or ``evaluate(per_sample)``'s, stored with the per-sample hits
        it appended to ``per_sample`` (see `correct_predictions`)."""
        if key in self._counts:
            self.hits += 1
        else:
            self.misses += 1
            per_sample: list[BatchOutcome] = []
            self._counts[key] = evaluate(per_sample)
            self.correct_samples[key] = torch.cat([batch.hits for batch in per_sample]).numpy()
            if per_sample[0].nll is not None:
                self.nll[key] = float(torch.cat([batch.nll for batch in per_sample]).double().sum())
            if per_sample[0].probe_hits is not None:
                self.probe_hits[key] = torch.cat([batch.probe_hits for batch in per_sample]).numpy()
                if self.probe_units is None:
                    self.probe_units = torch.cat([batch.probe_units for batch in per_sample]).numpy()
            if self.labels is None:
                self.labels = torch.cat([batch.strata for batch in per_sample]).numpy()
                self.units = torch.cat([batch.units for batch in per_sample]).numpy()
        return self._counts[key]

    @property
    def hit_rate(self) -> float:
        """The share of curve points answered from the memo."""
        return self.hits / max(1, self.hits + self.misses)


@dataclass(frozen=True)
class CurvePoint:
    rate: float
    pruned: int
    correct: int
    total: int
    layers: dict[str, float]
    """Per group, the fraction of its components pruned at this rate."""
    efficiency: dict[str, Any] | None = None
    """Parameters and FLOPs of the slimmed model at this rate, and at rate 0 and Top-PR its latencies
    (`pxp_bench.slim.efficiency`)."""
    hits: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Each sample's correct predictions, in the loader's order."""
    labels: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Each sample's stratum (original class id), in the same order (one array shared by a curve's points)."""
    units: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Each sample's predictions, in the same order (all 1 for a classifier)."""
    nll: float | None = None
    """The summed negative log-likelihood over all predictions, for tasks that have one."""
    probe_hits: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Each sample's correct predictions among the dataset's `Probe`'s, where it has one."""
    probe_units: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Each sample's predictions that the `Probe` marks (one array shared by a curve's points)."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    @property
    def perplexity(self) -> float | None:
        return None if self.nll is None else float(np.exp(self.nll / self.total))

    @property
    def probe_accuracy(self) -> float | None:
        """The probe's correct predictions over its predictions (a ratio of sums, as accuracy is)."""
        if self.probe_hits is None:
            return None
        return int(self.probe_hits.sum()) / max(1, int(self.probe_units.sum()))


def prune_curve(
    model: nn.Module,
    components: Components,
    order: torch.Tensor,
    rates: Sequence[float],
    loader: Iterable,
    class_ids: Sequence[int],
    device: torch.device,
    *,
    amp: str | None = None,
    on_rate: Callable[[CurvePoint], None] | None = None,
    memo: EvaluationMemo | None = None,
    slim: SlimCurve | None = None,
    channels_last: bool = False,
    task: Task = CLASSIFICATION_TASK,
    probe: Probe | None = None,
    counts: Sequence[int] | None = None,
    fills: Mapping[str, torch.Tensor] | None = None,
    model_at: Callable[[Mapping[str, torch.Tensor]], nn.Module] | None = None,
) -> list[CurvePoint]:
    """Accuracy at each rate with the first ``floor(rate * N)`` components of ``order`` pruned (all of
    ``order`` where it is shorter: a per-layer cap, `pxp_bench.masking.capped_order`): masked,
    or with ``slim`` removed from a slimmed copy where they can be (the same counts).

    Rates (and, with a shared ``memo``, other scorings) that prune the same set are evaluated once.
    ``channels_last`` feeds image batches in that layout (`pxp_bench.device.channels_last_suits`).
    Latencies (slim) are timed where the speedup is read only: at rate 0 and at Top-PR (``rates`` ascend
    from 0). Top-PR is known once a rate falls below it (or the grid ends), so the slimmed copy of the
    last rate within it is kept until then; ``on_rate`` sees that point before its latencies are added.
    ``probe`` (the dataset's, `pxp_bench.specs.Probe`) adds its accuracy to each point.
    ``counts`` (per rate, how many of ``order`` are pruned) replaces the global count where the pruned sets
    come from a schedule or a per-layer scope (`pxp_bench.schedule`); ``fills`` replace pruned components by
    those values instead of zero (`pxp_bench.removal`); ``model_at(masks)`` gives the model to evaluate for a
    pruned set, masked (a recovered copy, `pxp_bench.recovery`; built only for sets not in the memo).
    """
    memo = memo if memo is not None else EvaluationMemo()
    points: list[CurvePoint] = []
    baseline: int | None = None
    within_top_pr = True  # every rate so far keeps 95 % of rate 0's correct predictions
    candidate: _TopPrCandidate | None = None  # the last rate within Top-PR past rate 0, not yet timed
    for index, rate in enumerate(rates):
        n_pruned = (min(pruned_count(rate, components.total), len(order)) if counts is None  # a capped order
                    else counts[index])                                                        # may be shorter
        masks = keep_masks(components, order, n_pruned)
        target, target_masks, target_fills, record = slim.at(masks) if slim is not None else (model, masks, fills, None)
        key = EvaluationMemo.key(order, n_pruned)
        batch_times = BatchTimes() if record is not None and slim.timed else None

        def count(per_sample, target=target, target_masks=target_masks, target_fills=target_fills,
                  batch_times=batch_times) -> tuple[int, int]:
            if model_at is not None:
                target = model_at(target_masks)
            with masked(target, components, target_masks, target_fills) as handle:
                return correct_predictions(target, loader, class_ids, device, amp=amp, task=task,
                                           on_first_batch=handle.check_all_fired, batch_times=batch_times,
                                           channels_last=channels_last, per_sample=per_sample, probe=probe)

        correct, total = memo.counts(key, count)
        baseline = correct if baseline is None else baseline
        was_within, within_top_pr = within_top_pr, within_top_pr and keeps_top_pr_accuracy(correct, baseline)
        points.append(CurvePoint(rate, n_pruned, correct, total, pruned_fractions(masks), record,
                                 memo.correct_samples[key], memo.labels, memo.units, memo.nll.get(key),
                                 memo.probe_hits.get(key), memo.probe_units))
        if batch_times is not None and within_top_pr:
            candidate = _TopPrCandidate(len(points) - 1, key, target, target_masks, target_fills, batch_times)
            if len(points) == 1:  # rate 0 is always read; a later rate waits until Top-PR is known
                candidate.time(points, memo, slim)
                candidate = None
            elif key not in memo.latencies:
                candidate.keep()  # the next rate slims the copy further, in place
        elif was_within and not within_top_pr and candidate is not None:  # the first rate past Top-PR
            candidate.time(points, memo, slim)
            candidate = None
        if on_rate is not None:
            on_rate(points[-1])
    if candidate is not None:  # the whole grid is within Top-PR
        candidate.time(points, memo, slim)
    return points


@dataclass
class _TopPrCandidate:
    """A curve point that may turn out to be Top-PR's, with what it takes to time its latencies then."""

    index: int
    key: bytes
    model: nn.Module
    masks: Any
    fills: Any
    batch_times: BatchTimes

    def keep(self) -> None:
        """Keep the slimmed copy as it is now: `pxp_bench.slim.surgery.Slimmer` slims its copy in place."""
        self.model = copy.deepcopy(self.model)

    def time(self, points: list[CurvePoint], memo: EvaluationMemo, slim: SlimCurve) -> None:
        """Add the point's latencies (a pruned set timed before keeps its latencies: the same slimmed model)."""
        if self.key not in memo.latencies:
            memo.latencies[self.key] = slim.latency(self.model, self.masks, self.fills, self.batch_times)
        point = points[self.index]
        points[self.index] = replace(point, efficiency={**point.efficiency, **memo.latencies[self.key]})
