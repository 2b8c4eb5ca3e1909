"""What a method's ``score`` receives besides the model: the reference data and the run's context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pxp_bench.data.protocol import method_seeds
from pxp_bench.tasks.base import Task
from pxp_bench.tasks.classification import CLASSIFICATION_TASK

Batch = TypeVar("Batch", bound=tuple)


@dataclass(frozen=True)
class ReferenceSet:
    """The reference samples (PROTOCOL section 1), delivered in batches on ``device``.

    For classification ``targets`` are original class ids: the restricted logit of the true class equals
    the full logit at that id, so ``model(x).gather(1, target)`` is the protocol's target output.
    ``class_ids`` are the run's classes (the logits the evaluation compares): a run passes a ``list[int]`` of
    original class ids, sorted; for language modelling ``[0]`` (text is one class), and targets are the
    sequences' token ids. `target_outputs` gives the target output of either ``task``, `log_likelihood` its
    log-likelihood (minus its loss) over the run's classes.
    """

    dataset: Dataset
    class_ids: Sequence[int]
    batch_size: int
    device: torch.device
    task: Task = CLASSIFICATION_TASK
    """What the run evaluates (`pxp_bench.tasks`): it defines the target output a method explains."""

    def target_outputs(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per sample, the output a method explains: the true class's logit, or the summed logits of the
        true next tokens (`pxp_bench.tasks.base.Task.target_outputs`)."""
        return self.task.target_outputs(logits, targets)

    def log_likelihood(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per sample, the log-likelihood of the true outputs, differentiable: minus the cross-entropy of the
        logits restricted to the run's classes (``class_ids``), or the summed log-probabilities of the true
        next tokens (`pxp_bench.tasks.base.Task.log_likelihood`). ``-log_likelihood(...).mean()`` is the loss."""
        return self.task.log_likelihood(logits, targets, torch.as_tensor(list(self.class_ids), device=logits.device))

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(inputs, targets)`` batches on the device, in a fixed order."""
        for _, inputs, targets in self.indexed_batches():
            yield inputs, targets

    def indexed_batches(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(index of the first sample, inputs, targets)``: for per-sample randomness that must not
        depend on the batch size (`RunContext.sample_generator`)."""
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False,
                            pin_memory=self.device.type == "cuda")
        start = 0
        for inputs, targets in loader:
            yield start, inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
            start += len(targets)


@dataclass
class RunContext:
    """The run around a method's scoring: seeded random streams, the device, progress and diagnostics."""

    device: torch.device
    seeds: Mapping[str, int]
    """One seed per random stream, derived from the run's seed: ``random_baseline`` (scores that are
    random by design) and ``sampler`` (sampling inside a method: noise, baselines)."""
    progress: Callable[[int], None] | None = None
    """Called with a number of reference samples just scored (see `track`)."""
    diagnostics: dict = field(default_factory=dict)
    """What a method reports about its scoring (e.g. ``near_zero_logits_skipped``); recorded in the result."""

    @classmethod
    def seeded(cls, seed: int, device: torch.device | str = "cpu") -> RunContext:
        """The context of a run with seed ``seed``: the same streams as ``pxp-bench run --seed``."""
        return cls(torch.device(device), method_seeds(seed))

    def generator(self, stream: str) -> torch.Generator:
        """A fresh CPU generator for ``stream``: the same draws on every call."""
        return torch.Generator().manual_seed(self._seed(stream))

    def sample_generator(self, index: int, stream: str = "sampler") -> torch.Generator:
        """A CPU generator for reference sample ``index`` of ``stream``: independent of the batch size."""
        state = np.random.SeedSequence([self._seed(stream), index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def track(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """Yield ``batches`` (tuples whose last item holds one entry per sample) and report each one to
        the progress bar once the method is done with it."""
        for batch in batches:
            yield batch
            if self.progress is not None:
                self.progress(len(batch[-1]))

    def _seed(self, stream: str) -> int:
        if stream not in self.seeds:
            raise ValueError(f"unknown random stream '{stream}'; this run has {', '.join(sorted(self.seeds))}.")
        return self.seeds[stream]
