"""Turn ``--device`` text into a ``torch.device``, refusing devices this machine lacks."""

from __future__ import annotations

import re

import torch

from pxp_bench.errors import ConfigError


def resolve_device(text: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    text = text.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", text):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {text}: CUDA is not available on this machine. Use --device cpu or auto.")
        device = torch.device(text)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered from 0."
            )
        return device
    raise ConfigError(f"unknown device '{text}'; use auto, cpu, cuda or cuda:N.")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
