"""Parse a pruning-rate grid: a comma list (``0,0.1,0.5``) or ``start:stop:step`` with stop excluded."""

from __future__ import annotations

import math

from pxp_bench.errors import ConfigError

DEFAULT_GRID = "0:1:0.05"


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
        rates = [round(start + i * step, 10) for i in range(max(count, 0))]
    else:
        rates = [_number(p.strip(), text) for p in text.split(",") if p.strip()]
    return normalise_rates(rates, text)


def normalise_rates(rates, source: str | None = None) -> tuple[float, ...]:
    """Sorted, de-duplicated rates in [0, 1] with rate 0 (the unpruned baseline) always included."""
    rates = [float(r) for r in rates]
    bad = [r for r in rates if not (math.isfinite(r) and 0.0 <= r <= 1.0)]
    if bad:
        where = f"--rates '{source}'" if source else "rates"
        raise ConfigError(f"{where}: rates must lie in [0, 1]; got {', '.join(f'{r:g}' for r in bad)}.")
    return tuple(sorted({0.0, *rates}))


DEFAULT_RATES = parse_rates(DEFAULT_GRID)
