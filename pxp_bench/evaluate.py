"""Top-1 accuracy over the restricted classes, the pruning curve, and its metrics (PROTOCOL section 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from pxp_bench.components import Components
from pxp_bench.masking import keep_masks, masked, pruned_count, pruned_fractions

AMP_DTYPES = {None: torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOP_PR_FRACTION = 0.95


def restricted_logits(model: nn.Module, inputs: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
    """The logits of ``class_ids`` only, in that order (PROTOCOL section 1's domain restriction)."""
    return model(inputs)[:, class_ids]


@torch.no_grad()
def accuracy(
    model: nn.Module,
    loader: Iterable,
    class_ids: Sequence[int],
    device: torch.device,
    *,
    amp: str | None = None,
    on_first_batch: Callable[[], None] | None = None,
) -> float:
    """Top-1 over the logits restricted to ``class_ids``; labels are original class ids.

    ``amp`` (``bf16`` / ``fp16``) runs the forward passes under autocast.
    """
    ids = torch.as_tensor(list(class_ids), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    autocast = torch.autocast(device.type, dtype=AMP_DTYPES[amp], enabled=amp is not None)
    for inputs, labels in loader:
        with autocast:
            logits = restricted_logits(model, inputs.to(device, non_blocking=True), ids)
        correct += (ids[logits.argmax(dim=1)] == labels.to(device, non_blocking=True)).sum()
        seen += len(labels)
        if on_first_batch is not None:
            on_first_batch()
            on_first_batch = None
    if seen == 0:
        raise ValueError("the evaluation set is empty")
    return correct.item() / seen


@dataclass(frozen=True)
class CurvePoint:
    rate: float
    pruned: int
    accuracy: float
    layers: dict[str, float]
    """Per group, the fraction of its components pruned at this rate."""


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
) -> list[CurvePoint]:
    """Accuracy at each rate with the first ``floor(rate * N)`` components of ``order`` masked."""
    points = []
    for rate in rates:
        n_pruned = pruned_count(rate, components.total)
        masks = keep_masks(components, order, n_pruned)
        with masked(model, components, masks) as handle:
            acc = accuracy(model, loader, class_ids, device, amp=amp, on_first_batch=handle.check_all_fired)
        point = CurvePoint(rate, n_pruned, acc, pruned_fractions(masks))
        points.append(point)
        if on_rate is not None:
            on_rate(point)
    return points


def _interpolated(rates: np.ndarray, accs: np.ndarray, at: float) -> float | None:
    if at < rates[0] - 1e-9 or at > rates[-1] + 1e-9:
        return None
    return float(np.interp(at, rates, accs))


def curve_metrics(rates: Sequence[float], accuracies: Sequence[float]) -> dict[str, float | None]:
    """A_PR (mean over the grid), Top-PR, normalised trapezoid AUC, accuracy at 25/50/75 %.

    Accuracy at 25/50/75 % is interpolated linearly when the grid lacks that rate and is None outside
    the grid's span. Top-PR is the largest rate up to which every rate keeps >= 95 % of rate 0's
    accuracy.
    """
    order = np.argsort(rates, kind="stable")
    r = np.asarray(rates, dtype=float)[order]
    a = np.asarray(accuracies, dtype=float)[order]
    span = r[-1] - r[0]
    area = float(np.sum((a[1:] + a[:-1]) * np.diff(r)) / 2 / span) if span > 0 else float(a[0])
    threshold = TOP_PR_FRACTION * a[0]
    top_pr = 0.0
    for rate, acc in zip(r, a):
        if acc < threshold:
            break
        top_pr = float(rate)
    return {
        "a_pr": float(a.mean()),
        "top_pr": top_pr,
        "auc": area,
        "acc_25": _interpolated(r, a, 0.25),
        "acc_50": _interpolated(r, a, 0.50),
        "acc_75": _interpolated(r, a, 0.75),
    }
