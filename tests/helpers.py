"""Helpers shared by the tests (kept out of conftest.py, which benchmarks/ also has)."""

from __future__ import annotations

import torch

QUICK_RATES = (0.0, 0.3, 0.6)


def state_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def has_hooks(model: torch.nn.Module) -> bool:
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or getattr(m, "_backward_pre_hooks", None)
        for m in model.modules()
    )


def write_image_folder(root, classes, per_split=(6, 3), size=40, seed=0):
    """A real image-folder dataset of JPEG files: ROOT/{train,val}/<class>/*.jpg, colour-coded classes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "val"), per_split):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
                pixels[..., index % 3] += np.uint8(120 + 40 * (index // 3))
                Image.fromarray(pixels).save(folder / f"img{i}.jpg", quality=90)
    return root
