"""Layer collapse: the first rate of a pruning curve at which a whole layer is gone.

A global ranking can empty a layer long before the others; past that rate the network is cut in two and
the curve's cliff says nothing about the other components. Each record's ``layers`` holds every layer's
pruned fraction per rate; this finds where the first one reaches 1 (``metrics.collapse_rate``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

EMPTY = 1.0 - 1e-9
"""A layer with at least this fraction pruned is empty."""


def layer_collapse(rates: Sequence[float], layers: Mapping[str, Sequence[float]]) -> tuple[float | None, list[str]]:
    """The first rate of the grid at which a layer is pruned entirely, and the layers emptied there
    (``layers``: per layer, its pruned fraction at each rate); (None, []) when no layer ever is."""
    for position, rate in enumerate(rates):
        emptied = sorted(name for name, fractions in layers.items() if fractions[position] >= EMPTY)
        if emptied:
            return float(rate), emptied
    return None, []
