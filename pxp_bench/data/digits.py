"""The embedded digits dataset (scikit-learn's ``load_digits``) with PROTOCOL section 1's fixed split.

60 % train / 20 % tune / 20 % eval, stratified, ``random_state=0``, independent of the run's seed.
Images are scaled to [0, 1] and upsampled bilinearly from 8x8 to 32x32 so that CNNs of a usual shape
(several conv stages with pooling) fit them.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.specs import DatasetSplits

IMAGE_SIZE = 32
SPLIT_SEED = 0


@lru_cache(maxsize=1)
def _load() -> DatasetSplits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    labels = digits.target.tolist()
    indices = list(range(len(labels)))
    train, rest = train_test_split(indices, train_size=0.6, stratify=labels, random_state=SPLIT_SEED)
    tune, evaluation = train_test_split(
        rest, train_size=0.5, stratify=[labels[i] for i in rest], random_state=SPLIT_SEED
    )

    def part(chosen: list[int]) -> LabelledTensors:
        chosen = sorted(chosen)
        return LabelledTensors(images[chosen].contiguous(), [labels[i] for i in chosen])

    return DatasetSplits(
        train=part(train),
        tune=part(tune),
        eval=part(evaluation),
        num_classes=10,
        class_names=[str(d) for d in range(10)],
        input_shape=(1, IMAGE_SIZE, IMAGE_SIZE),
    )


def load_digits_splits(name: str = "digits", root: object = None) -> DatasetSplits:
    """The digits splits (cached: the set is tiny and the split fixed)."""
    return _load()
