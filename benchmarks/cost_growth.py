"""How the cost of `pxp-bench run` grows as the work grows, one axis at a time (figures in the README).

Each point is one ``pxp-bench run`` in a fresh interpreter (the installed CLI, called in a small wrapper that
reports the child's own peak RSS and, where CUDA is present, ``torch.cuda.max_memory_allocated``); the parent
reads the child's wall time, CPU time and peak RSS from ``os.wait4`` (the rusage of that child alone: the
RUSAGE_CHILDREN maximum would carry a bigger earlier run into a smaller later one) and its stage times from the
result record. One axis moves while the others stay at a small baseline:

- ``samples``: evaluation samples, 50 to 800; ``rates``: grid size, 5 to 40 (``--rates 0:1:1/n``); ``reference``:
  reference samples, 1 to 40 per class. All three on random-weight torchvision ``resnet18`` at its native 224 px
  (LRP) on an ImageNet-layout folder of generated 500x375 JPEGs, 2 classes; the baseline 50 evaluation samples,
  10 reference samples per class and 5 rates. Not on digits: the embedded set has 360 evaluation samples in all
  (36 per class, its fixed 20 % split), ``run`` changes that count only through ``--classes`` (which moves the
  reference set too), and a digits run is mostly process start (about 6 s of its 6-10 s, evaluation under a
  second at 5 rates), so its slopes would say little about the work; the digits zoo is on the model axis;
- ``model``: the digits zoo (``digits-vgg``, ``digits-resnet``, ``digits-vit``) on digits and random-weight
  torchvision ``resnet18``, ``resnet50`` (LRP) and ``vit_b_16`` (AttnLRP, heads) at their native 224 px on the
  JPEG folder; 2 classes, 36 evaluation samples and 2 reference samples per class (what digits has for 2
  classes), 5 rates; x is the parameter count;
- ``seq_len``: the embedded ``tiny-llama`` (AttnLRP on its 8 heads, 8 rates) on its generated corpus written as a
  text dataset, 8,192 evaluation and 10 reference sequences of 8 to 64 tokens (64 is its context).

Slopes are least-squares fits of log(cost) on log(size) (`numpy.polyfit`), over the points past the fixed costs
(process start, imports, model loading, latency timing): the points whose driven stage (the record's timings the
axis scales: ``evaluate`` for samples and rates, ``score`` for references, the run's ``total`` for models and
sequence lengths) is at least half the wall time, or the three largest when no three are. The driven stage's own
slope is fitted over every point; segment slopes between neighbours show where a curve bends. Writes
``cost-growth.json`` (points, slopes, fitted points, machine, versions, commit) and one picture ``cost-growth.png``.

    python benchmarks/cost_growth.py                       # every axis (~11 min, 2 quiet cores) into docs/
    python benchmarks/cost_growth.py --axes samples,rates --out-dir /tmp/cost --max-repeats 1

On a shared machine a run that overlaps someone else's work can take several times as long. So each point first
waits (up to 30 s) for other processes to use less than 0.3 of a core, and is run again (up to ``--max-repeats``
runs, 3; the model axis ``--heavy-max-repeats``, 2) while no run of it was quiet (others' CPU seconds during the
run, from ``/proc/stat`` less the run's own, under 0.3 per wall second); the fastest run is kept and every run is
recorded.

``benchmarks/test_cost_growth.py`` checks the slopes of a cheap subset under ``make bench``. Importing this module
runs nothing (torch and matplotlib are imported inside the functions that need them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pxp_bench.testing.data import write_jpeg_folder

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO / "docs"
IMAGENET_CLASSES = ("n01440764", "n01443537")
SHARE_PAST_FIXED = 0.5
"""A point is past the fixed costs when its driven stage takes at least this share of its wall time."""
MIN_FIT_POINTS = 3

CHILD = r"""
import atexit, json, os, resource, sys

def _report():
    peak = None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak = torch.cuda.max_memory_allocated()
    with open(os.environ["PXP_COST_REPORT"], "w") as handle:
        json.dump({"self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   "cuda_peak_bytes": peak}, handle)

atexit.register(_report)
sys.argv = ["pxp-bench", *sys.argv[1:]]
from pxp_bench.cli import main
main()
"""
"""The child: the installed CLI's ``main`` (exits through ``sys.exit``, so the report is written on the way out)."""


# ---------------------------------------------------------------------------------------------- the data

def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        target.write_bytes(source.read_bytes())


class Data:
    """The generated datasets, made on first use under ``root``: one pool of JPEGs (`POOL` per class and split),
    and per point a folder of hard links to the first images of each class, so that ``run`` reads exactly that
    many."""

    POOL = (40, 400)
    """(train, val) images per class in the pool: the most any point reads."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def jpegs(self, train_per_class: int, val_per_class: int) -> Path:
        if train_per_class > self.POOL[0] or val_per_class > self.POOL[1]:
            raise ValueError(f"the JPEG pool holds {self.POOL} (train, val) images per class")
        folder = self.root / f"jpeg-{train_per_class}-{val_per_class}"
        if folder.exists():
            return folder
        pool = self.root / "pool"
        if not pool.exists():
            write_jpeg_folder(self.root / "pool-partial", classes=IMAGENET_CLASSES, per_split=self.POOL).rename(pool)
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            for name in IMAGENET_CLASSES:
                (folder / split / name).mkdir(parents=True)
                for index in range(count):
                    file = f"{name}_{index}.JPEG"
                    _link_or_copy(pool / split / name / file, folder / split / name / file)
        return folder

    def text(self, length: int, n_eval: int = 512, n_train: int = 256) -> Path:
        """``train.txt`` / ``val.txt`` of exactly ``n_train`` / ``n_eval`` sequences of ``length`` bytes, cut from
        the embedded LM's own generated corpus (its train and eval streams), so that only the length changes."""
        folder = self.root / f"text-{length}-{n_eval}"
        if folder.exists():
            return folder
        from pxp_bench.lm.corpus import corpus_splits

        streams = corpus_splits(0, length=64, n_train=math.ceil(n_train * length / 64),
                                n_eval=math.ceil(n_eval * length / 64), n_tune=1)
        folder.mkdir(parents=True)
        for name, tokens, count in (("train.txt", streams.train, n_train), ("val.txt", streams.eval, n_eval)):
            data = bytes(tokens.reshape(-1).tolist())[:count * length]
            (folder / name).write_text(data.decode("ascii"), encoding="utf-8")
        return folder


# ---------------------------------------------------------------------------------------------- the axes

BASE_EVALUATION, BASE_REFERENCE, BASE_RATES = 50, 10, 5
"""The baseline of the samples, rates and reference axes: 50 evaluation samples (2 classes x 25), 10 reference
samples per class, 5 rates."""
LM_EVAL_SEQUENCES = 8192
"""Evaluation sequences on the sequence-length axis: 16x the generated corpus's 512 (at 512, or 2,048, the run
is process start and loading at every length: 2,048 sequences of 64 tokens evaluate in under 6 s)."""
FIVE_RATES = ("--rates", "0:1:0.2")


@dataclass(frozen=True)
class Axis:
    name: str
    title: str
    x_label: str
    values: tuple
    stage: tuple[str, ...]
    """The record's timings (summed) that this axis drives."""
    heavy: bool
    fixed: str
    """What stays fixed, in words."""
    arguments: Callable[[Any, Data], list[str]]
    """``pxp-bench run`` arguments for one value (``--out`` aside)."""
    x_of: Callable[[Any, dict], float]
    """The point's size, read from its record where the record holds it."""
    stage_over_all: bool = True
    """Fit the driven stage over every point (False: over the wall time's fitted points, where the smallest
    points are another kind of work, as the digits zoo on the model axis)."""


def _resnet18_args(data: Data, *, evaluation: int = BASE_EVALUATION, reference: int = BASE_REFERENCE,
                   rates: int = BASE_RATES) -> list[str]:
    """Random-weight resnet18 at 224 px on the generated JPEGs, 2 classes: ``evaluation`` samples in all,
    ``reference`` per class, a grid of ``rates`` rates (LRP, every other option at its default)."""
    folder = data.jpegs(max(reference, 10), evaluation // len(IMAGENET_CLASSES))
    return ["--model", "resnet18", "--weights", "none", "--dataset", "imagenet", "--data", str(folder),
            "--ref-per-class", str(reference), "--rates", f"0:1:{1 / rates!r}"]


def _model_args(name: str, data: Data) -> list[str]:
    common = ["--ref-per-class", "2", *FIVE_RATES]
    if name.startswith("digits-"):
        return ["--model", name, "--classes", "2", *common]
    return ["--model", name, "--weights", "none", "--dataset", "imagenet", "--data", str(data.jpegs(10, 36)), *common]


def _seq_len_args(length: int, data: Data) -> list[str]:
    return ["--model", "tiny-llama", "--dataset", "text", "--data", str(data.text(length, LM_EVAL_SEQUENCES)),
            "--seq-len", str(length),
            "--rates", "0:1:0.125"]


AXES: dict[str, Axis] = {axis.name: axis for axis in (
    Axis("samples", "evaluation samples", "evaluation samples", (50, 100, 200, 400, 800), ("evaluate",), False,
         f"resnet18, 224 px, 2 classes, {BASE_REFERENCE} reference per class, {BASE_RATES} rates",
         lambda n, data: _resnet18_args(data, evaluation=n), lambda n, record: record["samples"]["evaluation"]),
    Axis("rates", "grid size", "rates in the grid", (5, 10, 20, 40), ("evaluate",), False,
         f"resnet18, 224 px, {BASE_EVALUATION} evaluation samples, {BASE_REFERENCE} reference per class",
         lambda n, data: _resnet18_args(data, rates=n), lambda n, record: len(record["rates"])),
    Axis("reference", "reference samples", "reference samples (2 classes)", (1, 2, 5, 10, 20, 40), ("score",),
         False, f"resnet18, 224 px, {BASE_EVALUATION} evaluation samples, {BASE_RATES} rates",
         lambda k, data: _resnet18_args(data, reference=k), lambda k, record: record["samples"]["reference"]),
    Axis("model", "model", "parameters",
         ("digits-vgg", "digits-resnet", "digits-vit", "resnet18", "resnet50", "vit_b_16"), ("total",), True,
         "2 classes x (36 evaluation + 2 reference), 5 rates; digits zoo on digits (32 px), torchvision models "
         "with random weights at 224 px on generated JPEGs; LRP, AttnLRP on the ViTs' heads",
         _model_args, lambda name, record: record["curve"][0]["parameters"], stage_over_all=False),
    Axis("seq_len", "sequence length", "tokens per sequence", (8, 16, 32, 64), ("total",), False,
         f"tiny-llama (AttnLRP, its 8 heads, 8 rates), {LM_EVAL_SEQUENCES} evaluation and 10 reference sequences "
         "of its corpus",
         _seq_len_args, lambda length, record: length),
)}

QUICK = {"samples": (100, 200, 400), "rates": (5, 10, 20)}
"""The cheap subset ``benchmarks/test_cost_growth.py`` measures (about 2 minutes on 2 cores)."""


# ---------------------------------------------------------------------------------------------- measuring

@dataclass
class Point:
    axis: str
    value: Any
    x: float
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    """The largest peak RSS of the run's processes: the run itself or one of its data-loader workers."""
    cuda_peak_mb: float | None
    timings: dict[str, float]
    stage_s: float
    evaluation_samples: int
    reference_samples: int
    rates: int
    parameters: int | None
    flops: float | None
    batch_size: int | None
    load_average: tuple[float, float] = (0.0, 0.0)
    """The machine's 1-minute load average before and after the run."""
    others_cores: float = 0.0
    peak_rss_main_mb: float | None = None
    """The peak RSS of the run's own process alone (without its loader workers)."""
    """Other processes' CPU seconds per wall second while this run ran (0: it had the machine to itself)."""
    runs: list[dict] = field(default_factory=list)
    """Every run of this point (wall seconds, others' cores, seconds waited for quiet); the fastest is kept."""
    command: list[str] = field(default_factory=list)


QUIET_CORES = 0.3
"""Others' work on the machine, in cores (their CPU seconds per wall second), below which a run counts as quiet."""
QUIET_WAIT_S = 30.0
"""How long a point waits, at most, for the machine to be quiet before it starts."""


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``; None where there is none)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(value) for value in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is already in user time


def wait_for_quiet(limit_s: float = QUIET_WAIT_S) -> float:
    """Wait (at most ``limit_s``) until other processes use less than `QUIET_CORES` over 2 s; the seconds waited."""
    started = time.perf_counter()
    while True:
        before = busy_cpu_seconds()
        if before is None:
            return 0.0
        time.sleep(2.0)
        busy = (busy_cpu_seconds() - before) / 2.0
        waited = time.perf_counter() - started
        if busy < QUIET_CORES or waited >= limit_s:
            return round(waited, 1)
        time.sleep(3.0)


def run_point(axis: Axis, value: Any, data: Data, *, repeats: int = 1, max_repeats: int = 3,
              env: dict | None = None) -> Point:
    """``pxp-bench run`` for one value of ``axis`` in a fresh interpreter, at least ``repeats`` times and up to
    ``max_repeats`` while no run was quiet (others used `QUIET_CORES` or more while it ran); the fastest kept. On a
    shared 2-core machine a run that overlaps someone else's work can take several times as long: torch's two
    threads wait for each other whenever another process holds a core, which slows small operations most."""
    best: Point | None = None
    runs = []
    while len(runs) < max(repeats, 1):
        waited = wait_for_quiet()
        point = _measure_once(axis, value, data, env=env)
        runs.append({"wall_s": point.wall_s, "others_cores": point.others_cores, "waited_s": waited})
        if best is None or point.wall_s < best.wall_s:
            best = point
        if len(runs) >= repeats and len(runs) < max_repeats and min(r["others_cores"] for r in runs) >= QUIET_CORES:
            repeats += 1  # no quiet run yet: once more
    assert best is not None
    best.runs = runs
    return best


def _measure_once(axis: Axis, value: Any, data: Data, *, env: dict | None) -> Point:
    arguments = ["run", *axis.arguments(value, data)]
    with tempfile.TemporaryDirectory(prefix="cost-point-") as scratch:
        out, report = Path(scratch) / "out", Path(scratch) / "report.json"
        child_env = {**os.environ, "PXP_BENCH_LOAD_PLUGINS": "", "PXP_COST_REPORT": str(report), **(env or {})}
        log = Path(scratch) / "log.txt"
        load_before = os.getloadavg()[0]
        busy_before = busy_cpu_seconds()
        with open(log, "wb") as handle:
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-c", CHILD, *arguments, "--out", str(out)], env=child_env,
                                       stdout=handle, stderr=subprocess.STDOUT, cwd=scratch)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            busy_after = busy_cpu_seconds()
            process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"pxp-bench {' '.join(arguments)} exited {process.returncode}:\n{tail}")
        records = sorted(out.glob("*.json"))
        records = [path for path in records if not path.name.endswith(".best.json")]
        record = json.loads(records[0].read_text())
        own = json.loads(report.read_text())
    timings = {key: float(seconds) for key, seconds in record["timings"].items()}
    first = record["curve"][0]
    cuda = own.get("cuda_peak_bytes")
    own_cpu = usage.ru_utime + usage.ru_stime
    others = 0.0 if busy_before is None else max(0.0, busy_after - busy_before - own_cpu) / wall
    return Point(
        axis=axis.name, value=value, x=float(axis.x_of(value, record)), wall_s=round(wall, 3),
        cpu_s=round(own_cpu, 3),
        peak_rss_mb=round(max(usage.ru_maxrss, own["self_maxrss_kb"]) / 1024, 1),
        cuda_peak_mb=None if cuda is None else round(cuda / 2**20, 1),
        timings=timings, stage_s=round(sum(timings.get(key, 0.0) for key in axis.stage), 4),
        evaluation_samples=record["samples"]["evaluation"], reference_samples=record["samples"]["reference"],
        rates=len(record["rates"]), parameters=first.get("parameters"), flops=first.get("flops"),
        batch_size=first.get("latency_batch_size"), load_average=(round(load_before, 2), round(os.getloadavg()[0], 2)),
        others_cores=round(others, 2), peak_rss_main_mb=round(own["self_maxrss_kb"] / 1024, 1),
        command=["pxp-bench", *arguments])


def measure_axis(axis: Axis, data: Data, values: Sequence | None = None, *, repeats: int = 1, max_repeats: int = 3,
                 echo: Callable[[str], None] | None = None) -> list[Point]:
    points = []
    for value in values or axis.values:
        point = run_point(axis, value, data, repeats=repeats, max_repeats=max_repeats)
        if echo:
            echo(f"  {axis.name}={value}: x={point.x:g} wall {point.wall_s:.1f} s (cpu {point.cpu_s:.1f} s), "
                 f"{'+'.join(axis.stage)} {point.stage_s:.2f} s, peak RSS {point.peak_rss_mb:.0f} MB"
                 + ("" if point.cuda_peak_mb is None else f", CUDA peak {point.cuda_peak_mb:.0f} MB")
                 + f", others {point.others_cores:.2f} cores"
                 + ("" if len(point.runs) < 2 else f"; runs {[(r['wall_s'], r['others_cores']) for r in point.runs]}"))
        points.append(point)
    return points


# ---------------------------------------------------------------------------------------------- fitting

def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The least-squares slope of log(y) on log(x); None for fewer than two distinct sizes."""
    import numpy as np

    pairs = [(x, y) for x, y in zip(xs, ys) if x > 0 and y is not None and y > 0]
    if len({x for x, _ in pairs}) < 2:
        return None
    slope, _ = np.polyfit(np.log([x for x, _ in pairs]), np.log([y for _, y in pairs]), 1)
    return round(float(slope), 3)


def segment_slopes(xs: Sequence[float], ys: Sequence[float]) -> list[float | None]:
    """The slope between each point and the next: where a curve bends."""
    return [loglog_slope(xs[i:i + 2], ys[i:i + 2]) for i in range(len(xs) - 1)]


def fitted_points(points: Sequence[Point]) -> list[int]:
    """Indices of the points past the fixed costs: driven stage >= `SHARE_PAST_FIXED` of the wall time; the
    `MIN_FIT_POINTS` largest when fewer are (the fixed costs dominate the whole axis)."""
    ordered = sorted(range(len(points)), key=lambda i: points[i].x)
    past = [i for i in ordered if points[i].stage_s >= SHARE_PAST_FIXED * points[i].wall_s]
    if len(past) >= MIN_FIT_POINTS:
        return past
    return ordered[-min(MIN_FIT_POINTS, len(points)):]


def summarise(axis: Axis, points: Sequence[Point]) -> dict[str, Any]:
    """Slopes of one axis: wall time, CPU time and peak memory over the fitted points, the driven stage over all,
    and every segment slope."""
    points = sorted(points, key=lambda p: p.x)
    used = fitted_points(points)
    xs = [p.x for p in points]

    def over(indices, values):
        return loglog_slope([xs[i] for i in indices], [values[i] for i in indices])

    wall, cpu = [p.wall_s for p in points], [p.cpu_s for p in points]
    rss, stage = [p.peak_rss_mb for p in points], [p.stage_s for p in points]
    cuda = [p.cuda_peak_mb for p in points]
    everything = list(range(len(points)))
    shares = [p.stage_s / p.wall_s for p in points]
    stage_name = "+".join(axis.stage)
    if all(shares[i] >= SHARE_PAST_FIXED for i in used):
        skipped = [p.value for i, p in enumerate(points) if i not in used]
        bend = (f"past the fixed costs from {points[used[0]].value} on ({stage_name} {shares[used[0]]:.0%} of the wall "
                f"time there" + (f"; below, at {skipped}, {max(shares[:used[0]]):.0%} at most" if skipped else "")
                + ")")
    else:
        bend = (f"fixed costs dominate the whole axis ({stage_name} at most {max(shares):.0%} of the wall time); "
                f"fitted on the {len(used)} largest")
    return {
        "title": axis.title, "x_label": axis.x_label, "fixed": axis.fixed, "stage": "+".join(axis.stage),
        "stage_fitted_values": [p.value for p in points] if axis.stage_over_all else [points[i].value for i in used],
        "fitted_values": [points[i].value for i in used],
        "past_fixed_costs": all(shares[i] >= SHARE_PAST_FIXED for i in used), "bend": bend,
        "stage_share": [round(share, 3) for share in shares],
        "slopes": {"wall_time": over(used, wall), "cpu_time": over(used, cpu), "peak_rss": over(used, rss),
                   "cuda_peak": over(used, cuda) if all(c is not None for c in cuda) else None,
                   "stage_time": over(everything if axis.stage_over_all else used, stage),
                   "wall_time_all_points": over(everything, wall), "peak_rss_all_points": over(everything, rss)},
        "segments": {"values": [p.value for p in points], "wall_time": segment_slopes(xs, wall),
                     "stage_time": segment_slopes(xs, stage), "peak_rss": segment_slopes(xs, rss)},
        "points": [p.__dict__ for p in points],
    }


# ---------------------------------------------------------------------------------------------- the record

def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_start": os.getloadavg()}
    return info


def git_commit() -> dict[str, Any]:
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def plot(summary: dict[str, Any], path: Path) -> None:
    """One panel per axis, log-log: wall time, the driven stage and peak RSS (and CUDA peak) against size; filled
    markers are the fitted points, the fitted line is drawn over them, the slope is in each legend entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")

    axes_done = summary["axes"]
    columns = 3
    rows = math.ceil((len(axes_done) + 1) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.2 * rows), squeeze=False)
    panels = list(grid.flat)
    for panel, (name, result) in zip(panels, axes_done.items()):
        points = result["points"]
        xs = np.array([p["x"] for p in points], dtype=float)
        used = {str(v) for v in result["fitted_values"]}
        mask = np.array([str(p["value"]) in used for p in points])
        slopes = result["slopes"]
        memory = panel.twinx()

        def draw(target, ys, slope, label, colour, marker, fit_mask, style="-"):
            ys = np.array(ys, dtype=float)
            target.plot(xs, ys, style, color=colour, alpha=0.35, linewidth=1)
            target.scatter(xs[~fit_mask], ys[~fit_mask], facecolors="none", edgecolors=colour, marker=marker, zorder=3)
            target.scatter(xs[fit_mask], ys[fit_mask], color=colour, marker=marker, zorder=3,
                           label=f"{label}: slope {slope:.2f}" if slope is not None else label)
            if slope is not None and fit_mask.sum() >= 2:
                fx, fy = np.log(xs[fit_mask]), np.log(ys[fit_mask])
                intercept = float(np.mean(fy) - slope * np.mean(fx))
                line_x = np.linspace(fx.min(), fx.max(), 20)
                target.plot(np.exp(line_x), np.exp(intercept + slope * line_x), style, color=colour, linewidth=2)

        stage_used = {str(v) for v in result.get("stage_fitted_values", [p["value"] for p in points])}
        stage_mask = np.array([str(p["value"]) in stage_used for p in points])
        draw(panel, [p["wall_s"] for p in points], slopes["wall_time"], "wall time", "tab:blue", "o", mask)
        stage = STAGE_LABELS.get(result["stage"], f"{result['stage']} stage")
        draw(panel, [max(p["stage_s"], 1e-3) for p in points], slopes["stage_time"], stage, "tab:green", "s",
             stage_mask, style="-.")
        draw(memory, [p["peak_rss_mb"] for p in points], slopes["peak_rss"], "peak RSS", "tab:red", "^", mask,
             style="--")
        if slopes.get("cuda_peak") is not None:
            draw(memory, [p["cuda_peak_mb"] for p in points], slopes["cuda_peak"], "CUDA peak", "tab:purple", "v",
                 mask, style=":")
        for target in (panel, memory):
            target.set_xscale("log")
            target.set_yscale("log")
            target.yaxis.set_major_formatter(plain)
            target.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            target.yaxis.set_minor_formatter(plain)
        panel.xaxis.set_minor_formatter(NullFormatter())
        if name == "model":  # sizes a decade apart, named at the points
            panel.xaxis.set_major_locator(LogLocator(base=10))
            panel.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 1e6:g}M"))
        else:
            panel.xaxis.set_major_locator(FixedLocator(xs))
            panel.xaxis.set_major_formatter(plain)
        panel.set_xlabel(result["x_label"])
        panel.set_ylabel("seconds")
        memory.set_ylabel("MB")
        low, high = min(p["peak_rss_mb"] for p in points), max(p["peak_rss_mb"] for p in points)
        memory.set_ylim(low / 1.6, max(high * 1.6, low * 4))
        if name == "model":
            for index, p in enumerate(points):
                last = index == len(points) - 1  # the largest's name to its left, the others' alternating
                offset = (-6, -12) if last else (4, (-22, 6, -10)[index % 3])
                panel.annotate(str(p["value"]), (p["x"], p["wall_s"]), fontsize=7, textcoords="offset points",
                               xytext=offset, ha="right" if last else "left")
        panel.set_title(f"{result['title']}", fontsize=11)
        handles, labels = [], []
        for target in (panel, memory):
            h, l = target.get_legend_handles_labels()
            handles += h
            labels += l
        panel.legend(handles, labels, fontsize=7.5, loc="best", framealpha=0.8)
    notes = panels[len(axes_done)]
    notes.axis("off")
    info = summary["machine"]
    lines = [f"{info['cores']} CPU cores ({info['cpu']}), torch {info['torch']}",
             f"commit {str(summary['git']['commit'])[:7]}{' (dirty)' if summary['git']['dirty'] else ''}, "
             f"{summary['measured_at'][:10]}",
             "", "each point: one `pxp-bench run` in a fresh process", "filled: points past the fixed costs (fitted)",
             "hollow: fixed costs dominate (not fitted)", "stage: the record's own timings (no process start)", ""]
    for name, result in axes_done.items():
        lines.append(f"{result['title']}: {result['fixed']}")
    notes.text(0, 1, "\n".join(_wrap(line, 62) for line in lines), va="top", fontsize=7.5, family="monospace")
    for panel in panels[len(axes_done) + 1:]:
        panel.axis("off")
    figure.suptitle("How the cost of `pxp-bench run` grows (log-log; slopes fitted on the filled points)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


STAGE_LABELS = {"evaluate": "evaluate stage", "score": "score stage", "total": "run stages (no process start)"}


def _wrap(line: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(line, width, subsequent_indent="  ")) or line


def run(axes: Sequence[str], out_dir: Path, *, max_repeats: int = 3, heavy_max_repeats: int = 2,
        values: dict[str, Sequence] | None = None, work: Path | None = None,
        echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure ``axes`` (each point once, again up to ``max_repeats`` runs, the model axis ``heavy_max_repeats``,
    while no run was quiet; the fastest kept), write ``cost-growth.json`` and ``cost-growth.png`` into
    ``out_dir``; the summary."""
    started = time.perf_counter()
    summary: dict[str, Any] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                               "git": git_commit(), "max_repeats": {"light": max_repeats, "heavy": heavy_max_repeats},
                               "quiet_cores": QUIET_CORES, "share_past_fixed": SHARE_PAST_FIXED, "axes": {}}
    with tempfile.TemporaryDirectory(prefix="cost-growth-", dir=work) as scratch:
        data = Data(Path(scratch))
        for name in axes:
            axis = AXES[name]
            echo(f"{name}: {axis.fixed}")
            points = measure_axis(axis, data, (values or {}).get(name), echo=echo,
                                  max_repeats=heavy_max_repeats if axis.heavy else max_repeats)
            summary["axes"][name] = summarise(axis, points)
            slopes = summary["axes"][name]["slopes"]
            result = summary["axes"][name]
            echo(f"  slopes: wall {slopes['wall_time']}, stage {slopes['stage_time']}, peak RSS {slopes['peak_rss']}"
                 f" (fitted on {result['fitted_values']}): {result['bend']}")
            echo(f"  segment slopes {result['segments']['values']}: wall {result['segments']['wall_time']}, "
                 f"stage {result['segments']['stage_time']}, peak RSS {result['segments']['peak_rss']}")
    summary["measurement_s"] = round(time.perf_counter() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cost-growth.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(summary, out_dir / "cost-growth.png")
    echo(f"wrote {out_dir / 'cost-growth.json'} and {out_dir / 'cost-growth.png'} ({summary['measurement_s']:.0f} s)")
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--axes", default=",".join(AXES), help=f"comma list of {', '.join(AXES)}")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--max-repeats", type=int, default=3,
                        help="runs per point at most: again while no run was quiet, the fastest kept (default 3)")
    parser.add_argument("--heavy-max-repeats", type=int, default=2, help="the same for the model axis (default 2)")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw cost-growth.png from the cost-growth.json in --out-dir, measuring nothing")
    arguments = parser.parse_args(argv)
    if arguments.plot_only:
        plot(json.loads((arguments.out_dir / "cost-growth.json").read_text()), arguments.out_dir / "cost-growth.png")
        return
    axes = [name.strip() for name in arguments.axes.split(",") if name.strip()]
    unknown = [name for name in axes if name not in AXES]
    if unknown:
        parser.error(f"unknown axes {unknown}; choose from {', '.join(AXES)}")
    run(axes, arguments.out_dir, max_repeats=max(1, arguments.max_repeats),
        heavy_max_repeats=max(1, arguments.heavy_max_repeats))


if __name__ == "__main__":
    main()
