"""Parse a pruning-rate grid: a comma list (``0,0.1,0.5``) or ``start:stop:step`` with stop excluded."""

from __future__ import annotations

import math
import numbers
from typing import Sequence

from pxp_bench.errors import ConfigError

DEFAULT_GRID = "0:1:0.05"
MAX_RATES = 1000
"""A grid of more rates than this is refused (before it is built: ``0:1:1e-9`` must not fill memory)."""


def _number(text: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--rates '{whole}': '{text}' is not a number.") from None
    if not math.isfinite(value):
        raise ConfigError(f"--rates '{whole}': '{text}' is not a finite number.")
    return value


def parse_rates(text: str) -> tuple[float, ...]:
    """Sorted, de-duplicated rates in [0, 1]; rate 0 (the unpruned baseline) is always included."""
    text = text.strip()
    if not text:
        raise ConfigError("--rates is empty; give e.g. '0,0.1,0.5' or '0:1:0.05'.")
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ConfigError(f"--rates '{text}': a range is start:stop:step, e.g. 0:1:0.05.")
        start, stop, step = (_number(p, text) for p in parts)
        if step <= 0:
            raise ConfigError(f"--rates '{text}': the step must be positive.")
        count = math.ceil((stop - start) / step - 1e-9)
        if count > MAX_RATES:
            raise ConfigError(f"--rates '{text}' has {count:,} rates; at most {MAX_RATES:,} are allowed. "
                              "Use a coarser step.")
        rates = [round(start + i * step, 10) for i in range(max(count, 0))]
    else:
        parts = [part.strip() for part in text.split(",")]
        if "" in parts:  # "0,,0.5" is a typo, not a grid of two rates
            raise ConfigError(f"--rates '{text}' has an empty item; give e.g. '0,0.1,0.5' or '0:1:0.05'.")
        rates = [_number(part, text) for part in parts]
    return normalise_rates(rates, text)


def normalise_rates(rates, source: str | None = None) -> tuple[float, ...]:
    """Sorted, de-duplicated rates in [0, 1] with rate 0 (the unpruned baseline) always included.

    Refuses what is not a sequence of numbers, a grid with no rate above 0 (nothing would be measured)
    and a grid of more than `MAX_RATES` rates.
    """
    where = f"--rates '{source}'" if source is not None else "rates"
    if isinstance(rates, (str, bytes)) or not hasattr(rates, "__iter__"):
        raise ConfigError(f"{where}: expected a sequence of numbers such as (0.0, 0.5), got {rates!r}.")
    rates = list(rates)
    if any(isinstance(r, bool) or not isinstance(r, numbers.Real) for r in rates):
        raise ConfigError(f"{where}: every rate must be a number, got {rates!r}.")
    rates = [float(r) for r in rates]
    bad = [r for r in rates if not (math.isfinite(r) and 0.0 <= r <= 1.0)]
    if bad:
        raise ConfigError(f"{where}: rates must lie in [0, 1]; got {', '.join(f'{r:g}' for r in bad)}.")
    grid = tuple(sorted({0.0, *rates}))
    if len(grid) == 1:
        raise ConfigError(f"{where}: no rate above 0, so nothing would be pruned. Give e.g. '0:1:0.05'.")
    if len(grid) > MAX_RATES:
        raise ConfigError(f"{where}: {len(grid):,} rates; at most {MAX_RATES:,} are allowed.")
    return grid


def check_grid_fits(rates: tuple[float, ...], components: int) -> None:
    """Refuse a grid with more rates than components (the standard grid is always accepted); rates that
    still prune the same count are evaluated once."""
    allowed = max(components, len(DEFAULT_RATES) - 1)
    if len(rates) - 1 > allowed:
        raise ConfigError(
            f"--rates has {len(rates) - 1} rates above 0, but the model has only {components} components: "
            f"more rates than components only repeat points. Use at most {allowed} rates above 0."
        )


def _at_least_one(value: float, size: int) -> str:
    """``value`` (about 1 / ``size``) rounded up to 3 significant digits, so that it still takes one of
    ``size`` components (``floor(value * size + 1e-9) >= 1``, as `pxp_bench.masking` counts)."""
    scale = 10.0 ** (2 - math.floor(math.log10(value)))
    shown = math.ceil(value * scale - 1e-6) / scale
    while math.floor(shown * size + 1e-9) < 1:
        shown = (round(shown * scale) + 1) / scale
    return f"{shown:g}"


def check_grid_prunes(rates: tuple[float, ...], sizes: Sequence[int], max_layer_rate: float | None = None) -> None:
    """Refuse a grid rate above 0 that would prune nothing, so would be reported as pruned while
    measuring the unpruned model: a per-layer cap under which no layer can give up one component
    (``floor(R * size) == 0`` for every layer; any grid), or a grid whose smallest rate above 0 prunes
    ``floor(r * N) == 0`` components — the standard grid too, on a model of fewer than 20 components. The
    counts are `pxp_bench.masking`'s; several rates pruning the same capped count stay accepted (the
    curve's ``pruned`` shows it)."""
    total = sum(sizes)
    if max_layer_rate is not None and sizes and all(math.floor(max_layer_rate * n + 1e-9) == 0 for n in sizes):
        largest = max(sizes)
        if largest < 2:
            raise ConfigError(f"--max-layer-rate {max_layer_rate:g} lets no layer give up a component, and every "
                              "layer has a single one, so no cap below 1 prunes anything: drop --max-layer-rate.")
        raise ConfigError(
            f"--max-layer-rate {max_layer_rate:g} lets no layer give up a component (floor(R * size) is 0 even for "
            f"the largest, {largest} components), so no rate would prune anything. Use --max-layer-rate "
            f"{_at_least_one(1 / largest, largest)} or more (1/{largest}), or drop it."
        )
    smallest = min(rate for rate in rates if rate > 0)
    if total and math.floor(smallest * total + 1e-9) == 0:
        step = _at_least_one(1 / total, total)
        grid = "the standard grid's" if tuple(rates) == DEFAULT_RATES else "the"
        raise ConfigError(
            f"--rates: {grid} smallest rate above 0, {smallest:g}, prunes none of the model's {total} components "
            f"(floor({smallest:g} * {total}) = 0), so its point would measure the unpruned model. Make the "
            f"smallest rate above 0 at least {step} (1/{total}), e.g. --rates 0:1:{step} (one more component "
            "per rate)."
        )


def check_layer_grid_prunes(rates: tuple[float, ...], sizes: Sequence[int]) -> None:
    """Under ``--scope layer`` a rate prunes ``floor(r * size)`` of each layer: refuse a grid whose smallest rate
    above 0 prunes none in every layer (e.g. 0.125 of 4 heads a layer), naming the smallest workable rate."""
    smallest = min(rate for rate in rates if rate > 0)
    if sizes and all(math.floor(smallest * n + 1e-9) == 0 for n in sizes):
        largest = max(sizes)
        step = _at_least_one(1 / largest, largest)
        raise ConfigError(
            f"--scope layer prunes floor(r * size) of each layer, and the smallest rate above 0, {smallest:g}, prunes "
            f"none of any layer (the largest has {largest} components), so its point would measure the unpruned "
            f"model. Make the smallest rate above 0 at least {step} (1/{largest}), e.g. --rates 0:1:{step}, or use "
            "--scope global."
        )


DEFAULT_RATES = parse_rates(DEFAULT_GRID)
