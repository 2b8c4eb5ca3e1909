"""Train faces-cnn on the lfw-faces train split and write the packaged weights:
``python -m pxp_bench_example.train [OUT.safetensors]``. Deterministic on the CPU (seeded, full batch)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from pxp_bench_example.faces import faces_cnn, load_lfw_faces, packaged_weights

EPOCHS = 60


def train() -> nn.Module:
    torch.manual_seed(0)
    splits = load_lfw_faces("lfw-faces", None)
    inputs, targets = splits.train.inputs, torch.tensor(splits.train.targets)
    model = faces_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(EPOCHS):
        model.train()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(splits.eval.inputs).argmax(1) == torch.tensor(splits.eval.targets)).float().mean()
    print(f"eval accuracy {accuracy:.3f}")
    return model


def main() -> None:
    from safetensors.torch import save_file

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else packaged_weights()
    save_file({k: v.contiguous() for k, v in train().state_dict().items()}, str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
