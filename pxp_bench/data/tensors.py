"""A labelled dataset held as one tensor, for small embedded or generated data."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class LabelledTensors(Dataset):
    """Inputs ``(N, ...)`` with integer ``targets``; indexing returns ``(input, target)``."""

    def __init__(self, inputs: torch.Tensor, targets: list[int]) -> None:
        if len(inputs) != len(targets):
            raise ValueError("inputs and targets differ in length")
        self.inputs = inputs
        self.targets = list(targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inputs[index], self.targets[index]
