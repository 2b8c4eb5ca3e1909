"""The pruning curve on slimmed models: one `Slimmer` per curve, each rate checked against masking."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import torch
from torch import nn

from pxp_bench.components import Components
from pxp_bench.device import autocast, in_layout
from pxp_bench.masking import masked
from pxp_bench.slim.efficiency import BatchTimes, batch1_latency, counted_forward, efficiency, evaluation_latency
from pxp_bench.slim.surgery import Slimmer, logits_agree


class SlimCurve:
    """Slimmed copies along one curve (rates ascending), with their efficiency.

    `at` gives, for a rate's keep-masks, the model to evaluate and the masks (and, under mean removal, the
    fills, `pxp_bench.removal`) still to apply to it. Each
    rate's slimmed logits are compared with the masked original's on ``example`` (the pass that also
    counts the slimmed model's FLOPs); should they ever differ beyond float rounding, the rest of the
    curve is evaluated masked, with a warning, so a curve is never wrong for being slimmed.
    ``latency_repeats`` is the fewest timed passes of a latency (0: none); `latency` times a model `at` gave.
    """

    def __init__(self, model: nn.Module, components: Components, example: torch.Tensor, slimmer: Slimmer, *,
                 latency_repeats: int, amp: str | None = None, channels_last: bool = False) -> None:
        self.original, self.components, self.example = model, components, example
        self.fills = slimmer.fills
        self.slimmer = slimmer
        self.latency_repeats = latency_repeats
        self.timed_example = in_layout(example, channels_last)
        """The batch of one timed as the evaluation runs: in its layout, under its autocast."""
        self.autocast = autocast(example.device, amp)
        self.mode = "slim"

    def at(self, keep: Mapping[str, torch.Tensor]) -> tuple[nn.Module, Mapping[str, torch.Tensor],
                                                             Mapping[str, torch.Tensor] | None, dict[str, Any] | None]:
        if self.mode == "masked":
            return self.original, keep, self.fills, None
        remaining = self.slimmer.advance(keep)
        slim, fills = self.slimmer.model, self.slimmer.present_fills()
        with torch.no_grad():
            with masked(self.original, self.components, keep, self.fills):
                expected = self.original(self.example)
            with masked(slim, self.components, remaining, fills):
                got, flops = counted_forward(slim, self.example)
        if not logits_agree(got, expected):
            warnings.warn("the slimmed model's logits differ from the masked model's here; the rest of the curve "
                          "is evaluated masked (please report this model).", stacklevel=2)
            self.mode = "masked"
            return self.original, keep, self.fills, None
        return slim, remaining, fills, efficiency(slim, flops)

    @property
    def timed(self) -> bool:
        """Whether latencies are measured (``latency_repeats`` > 0)."""
        return self.latency_repeats > 0

    def latency(self, model: nn.Module, masks: Mapping[str, torch.Tensor], fills: Mapping[str, torch.Tensor] | None,
                batch_times: BatchTimes) -> dict[str, Any]:
        """The latencies of ``model`` (an `at` model, with its ``masks`` and ``fills``) under the evaluation's layout and
        autocast: at batch 1, and at the evaluation batch from the evaluation's ``batch_times``, topped up
        with passes of its first batch (none when the evaluation was answered by a memo and ran no pass)."""
        with torch.no_grad(), masked(model, self.components, masks, fills), self.autocast:
            record = batch1_latency(model, self.timed_example[:1], self.latency_repeats)
            if len(batch_times):
                record.update(evaluation_latency(batch_times, self.latency_repeats, model))
        return record


def slim_curve(model: nn.Module, components: Components, example: torch.Tensor, *,
               latency_repeats: int, amp: str | None = None, channels_last: bool = False,
               fills: Mapping[str, torch.Tensor] | None = None) -> SlimCurve | None:
    """A `SlimCurve`, or None (with a warning) when no component of this model can be removed physically;
    ``fills``: mean removal's values (`pxp_bench.removal`), folded into biases where exact."""
    try:
        slimmer = Slimmer(model, components, example, fills)
    except Exception as exc:  # Torch-Pruning cannot trace every model: masked evaluation still can
        warnings.warn(f"the model cannot be slimmed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                      "evaluating masked.", stacklevel=2)
        return None
    if not slimmer.present:
        why = ("no attention module of this model can lose heads physically (only plain self-attention can); "
               if components.kind == "heads" else
               f"no {components.kind} of this model can be removed physically (each is coupled to other layers); ")
        warnings.warn(why + "evaluating masked, with the same accuracy.", stacklevel=2)
        return None
    return SlimCurve(model, components, example, slimmer, latency_repeats=latency_repeats, amp=amp,
                     channels_last=channels_last)
