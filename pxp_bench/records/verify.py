"""`pxp-bench verify`: rerun records and compare what they measured, bit for bit.

Every run is deterministic on one platform: the same code, library versions, device kind and CPU thread
count give the same scores, the same pruned sets and the same per-sample outcomes. A record is rerun from
what it records (`pxp_bench.records.rerun`) and the rerun's curve (counts, accuracies, pruned counts,
parameters, FLOPs, perplexities, probe accuracies), outcomes, layers, sample sets, diagnostics and metrics
must equal the record's exactly. Latencies and timings are measurements of the machine, not of the method,
and are not compared (the rerun does not time them); neither is the agreement with ablation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pxp_bench.errors import ConfigError, PxpBenchError
from pxp_bench.records.load import result_files
from pxp_bench.records.rerun import CannotRerun, rerun_benchmark
from pxp_bench.results import read_result

REPRODUCED, DIFFERS, CANNOT = "reproduced", "differs", "cannot rerun"

SAME_FIELDS = ("method", "variant", "model", "dataset", "components", "params", "seed", "classes", "rates",
               "weights", "evaluate", "samples", "diagnostics", "layers", "outcomes")
"""Record fields a rerun must reproduce exactly (the curve and the metrics are compared point by point)."""

UNTIMED_METRICS = ("speedup_at_top_pr", "speedup_at_top_pr_spread")
"""Metrics of latency: the machine's, not the method's, and not timed by a rerun."""


@dataclass(frozen=True)
class Verification:
    """One record's verdict: reproduced, differs (the first field that does) or cannot rerun (why)."""

    path: Path
    status: str
    detail: str = ""


def _timed(key: str) -> bool:
    return key.startswith("latency")


def _value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _where(old: Any, new: Any, rates: Sequence[float]) -> str:
    """``[i] (rate r)`` for lists of one entry per rate (outcomes per rate, layers) that differ at entry i."""
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) == len(rates):
        index = next(i for i, (a, b) in enumerate(zip(old, new)) if a != b)
        return f"[{index}] (rate {rates[index]:g})"
    return ""


def first_difference(recorded: dict[str, Any], reproduced: dict[str, Any]) -> str | None:
    """The first field in which ``reproduced`` differs from ``recorded`` (with the first rate, for the curve),
    or None when every compared field is equal."""
    for index, (old, new) in enumerate(zip(recorded.get("curve") or [], reproduced["curve"])):
        keys = sorted({key for key in (*old, *new) if not _timed(key)})
        for key in keys:
            if old.get(key) != new.get(key):
                return (f"curve[{index}].{key} (rate {new['rate']:g}): recorded {_value(old.get(key))}, "
                        f"reproduced {_value(new.get(key))}")
    if len(recorded.get("curve") or []) != len(reproduced["curve"]):
        return f"curve: recorded {len(recorded.get('curve') or [])} points, reproduced {len(reproduced['curve'])}"
    for field in SAME_FIELDS:
        old, new = recorded.get(field), reproduced.get(field)
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted({*old, *new}):
                if old.get(key) != new.get(key):
                    return f"{field}.{key}{_where(old.get(key), new.get(key), reproduced['rates'])}: recorded " \
                           f"{_value(old.get(key))}, reproduced {_value(new.get(key))}"
        elif old != new:
            return f"{field}: recorded {_value(old)}, reproduced {_value(new)}"
    metrics, again = recorded.get("metrics") or {}, reproduced["metrics"]
    for key in sorted({*metrics, *again} - set(UNTIMED_METRICS)):
        if metrics.get(key) != again.get(key):
            return f"metrics.{key}: recorded {_value(metrics.get(key))}, reproduced {_value(again.get(key))}"
    return None


def _commit_note(record: dict[str, Any], reproduced: dict[str, Any]) -> str:
    recorded, here = (record.get("environment") or {}), reproduced["environment"]
    notes = []
    if recorded.get("git_sha") != here.get("git_sha"):
        notes.append(f"recorded at {str(recorded.get('git_sha'))[:12]}, rerun at {str(here.get('git_sha'))[:12]}")
    if recorded.get("git_dirty") or here.get("git_dirty"):
        notes.append("a tree with uncommitted changes took part")
    return "; ".join(notes)


def rerun(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` run again here, as its record says it ran (`CannotRerun` where it cannot)."""
    import torch

    from pxp_bench.benchmark import run_prepared
    from pxp_bench.prepare import prepare

    bench, threads = rerun_benchmark(record)
    before = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        return run_prepared(prepare(bench)).to_dict()
    except PxpBenchError as exc:
        raise CannotRerun(str(exc).rstrip(".")) from None
    finally:
        torch.set_num_threads(before)


def verify_file(path: Path) -> Verification:
    """Rerun the record in ``path`` and compare."""
    try:
        record = read_result(path)
        reproduced = rerun(record)
    except (ConfigError, CannotRerun) as exc:
        return Verification(path, CANNOT, str(exc).replace(str(path), path.name).rstrip("."))
    difference = first_difference(record, reproduced)
    if difference:
        return Verification(path, DIFFERS, difference)
    return Verification(path, REPRODUCED, _commit_note(record, reproduced))


def chosen_files(sources: Sequence[Path], sample: int | None, seed: int) -> tuple[list[Path], int]:
    """The result files of ``sources`` (files, or folders' top-level results), or a seeded sample of
    ``sample`` of them, in name order; and how many there were."""
    files: list[Path] = []
    for source in map(Path, sources):
        files += [source] if source.is_file() else result_files(source)
    if not files:
        raise ConfigError(f"{', '.join(map(str, sources))} hold no result file; give result JSON files or folders.")
    total = len(files)
    if sample is not None:
        if sample < 1:
            raise ConfigError(f"--sample must be at least 1, got {sample}.")
        if sample < total:
            files = sorted(random.Random(seed).sample(files, sample))
    return files, total


def verify_files(files: Iterable[Path], *, on_done: Callable[[Verification], None] | None = None) -> list[Verification]:
    """`verify_file` of each file, in order; ``on_done`` sees each verdict as it is reached."""
    verdicts = []
    for path in files:
        verdicts.append(verify_file(Path(path)))
        if on_done is not None:
            on_done(verdicts[-1])
    return verdicts
