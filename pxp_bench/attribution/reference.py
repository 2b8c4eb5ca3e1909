"""What a method's ``score`` receives besides the model: the reference samples and the run's context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset


@dataclass
class ReferenceSet:
    """The reference samples (PROTOCOL section 1), delivered in batches on the run's device.

    ``targets`` are original class ids: the restricted logit of the true class equals the full logit
    at that id, so ``model(x).gather(1, target)`` is the protocol's target output.
    """

    dataset: Dataset
    class_ids: list[int]
    batch_size: int
    device: torch.device
    seed: int
    """Seed of the run's ``random_baseline`` stream (random scores)."""
    sampler_seed: int = 0
    """Seed of the run's ``sampler`` stream (noise, sampling inside a method): use `sample_generator`."""
    on_batch: Callable[[int], None] | None = None
    """Called with the batch size after each batch is handed out (progress reporting)."""
    diagnostics: dict = field(default_factory=dict)
    """What a method reports about its scoring (e.g. ``near_zero_logits_skipped``); recorded in the result."""

    def __len__(self) -> int:
        return len(self.dataset)

    def sample_generator(self, index: int) -> torch.Generator:
        """A CPU generator for reference sample ``index``: independent of the batch size."""
        import numpy as np

        state = np.random.SeedSequence([self.sampler_seed, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(inputs, targets)`` batches on the device, in a fixed order."""
        for _, inputs, targets in self.indexed_batches():
            yield inputs, targets

    def indexed_batches(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(index of the first sample, inputs, targets)``: for per-sample randomness that must not
        depend on the batch size."""
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False,
                            pin_memory=self.device.type == "cuda")
        start = 0
        for inputs, targets in loader:
            yield start, inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
            start += len(targets)
            if self.on_batch is not None:
                self.on_batch(len(targets))
