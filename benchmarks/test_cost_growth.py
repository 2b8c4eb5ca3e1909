"""How cost grows (figures and picture in the README, `benchmarks/cost_growth.py` for every axis): the log-log
slopes of a cheap subset, each point one ``pxp-bench run`` in a fresh process.

Under ``make bench``: evaluation samples 100 / 200 / 400 and grid sizes 5 / 10 / 20 rates, random-weight
resnet18 at 224 px on generated JPEGs (the script's samples and rates axes), each point run again (3 runs at
most, the fastest kept) while the machine was busy with other work; 2 min 18 s on a quiet 2-core machine. The
evaluation stage (the record's ``timings.evaluate``: no process start, no loading) must grow about linearly in
both, and peak RSS must stay about flat in the samples. Plain pytest runs only the check of the fitting rule
below (made-up numbers, nothing measured).
"""

from __future__ import annotations

import math

import pytest
from cost_growth import AXES, QUICK, Data, Point, fitted_points, loglog_slope, measure_axis, summarise


def _point(x: float, wall: float, stage: float) -> Point:
    return Point(axis="samples", value=int(x), x=x, wall_s=wall, cpu_s=wall, peak_rss_mb=1000.0, cuda_peak_mb=None,
                 timings={}, stage_s=stage, evaluation_samples=int(x), reference_samples=20, rates=5, parameters=None,
                 flops=None, batch_size=None)


def test_slopes_are_fitted_past_the_fixed_costs():
    """A fixed 10 s and a part linear in x: the fit leaves out the points the fixed part dominates."""
    xs = [50, 100, 200, 400, 800, 1600]
    points = [_point(x, 10 + 0.05 * x, 0.05 * x) for x in xs]
    used = fitted_points(points)
    assert [points[i].x for i in used] == [200, 400, 800, 1600]  # 10 s is at most half of the wall time there
    assert loglog_slope(xs, [0.05 * x for x in xs]) == pytest.approx(1.0)
    summary = summarise(AXES["samples"], points)
    assert summary["slopes"]["stage_time"] == pytest.approx(1.0)
    assert 0.5 < summary["slopes"]["wall_time"] < 1.0  # the fixed part still bends the fitted stretch a little
    assert summary["slopes"]["peak_rss"] == pytest.approx(0.0)
    assert summary["segments"]["wall_time"][0] == pytest.approx(math.log(15 / 12.5) / math.log(2), abs=1e-3)


def test_cost_growth_slopes(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("heavy on a CPU (6 runs or more, minutes): runs under `make bench` only")
    data = Data(tmp_path)

    def measure():
        return {name: summarise(AXES[name], measure_axis(AXES[name], data, values))
                for name, values in QUICK.items()}

    summary = benchmark.pedantic(measure, rounds=1, iterations=1)
    slopes = {name: result["slopes"] for name, result in summary.items()}
    benchmark.extra_info.update({f"{name}_{key}": value for name, values in slopes.items()
                                 for key, value in values.items() if value is not None})
    benchmark.extra_info.update({f"{name}_evaluate_s": [p["stage_s"] for p in result["points"]]
                                 for name, result in summary.items()})
    assert 0.6 <= slopes["samples"]["stage_time"] <= 1.4, summary["samples"]["segments"]
    assert 0.6 <= slopes["rates"]["stage_time"] <= 1.4, summary["rates"]["segments"]
    assert slopes["samples"]["peak_rss_all_points"] < 0.3, [p["peak_rss_mb"] for p in summary["samples"]["points"]]
