"""The first thing to run on a GPU (`make gpu-check`): every CUDA path and the GPU figures, in one call.

A GPU is lent for minutes, so this checks in one go, in under 8 minutes on one H100 at ``--scale full``:

1. the CUDA-only tests (``pytest tests/test_pretrained.py -k cuda``, in a subprocess): passed or not;
2. an ImageNet-layout folder of generated JPEGs (`pxp_bench.testing.data.write_jpeg_folder`, 3 classes);
3. ``pxp-bench run`` (the installed command, in a subprocess) of random-weight resnet50 and vit_b_16 on it,
   without and with ``--amp bf16``: exit 0 and a result file, wall seconds;
4. in this process (`pxp_bench.benchmark`'s stages ``prepare -> score -> evaluate``): LRP (resnet50) and
   AttnLRP (vit_b_16) scoring throughput, masked evaluation throughput (images x rates per second), the
   peak GPU memory of each, on the GPU and on the CPU (fewer samples there), after one warm-up call each;
5. all of it in a JSON file (``--out``) with the device, versions and commit, and a markdown table for the
   README on stdout.

Without CUDA it runs the same steps at ``--scale tiny`` on the CPU (32 px inputs, 1 reference image per class,
a 2-rate grid, no latency timing, one CPU thread; the CUDA tests skipped, the GPU columns "n/a"), so that it
cannot rot before a GPU comes:
``tests/test_gpu_check.py`` runs it that way. Exit status 0 when every step passed, 1 otherwise (the JSON is
written either way).

    python benchmarks/gpu_check.py [--scale tiny|full] [--device auto|cuda|cpu] [--out gpu-check.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pxp_bench.benchmark import evaluate, prepare, score
from pxp_bench.device import device_name, resolve_device
from pxp_bench.plan import Benchmark
from pxp_bench.results import environment
from pxp_bench.testing.data import write_jpeg_folder

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"resnet50": "LRP", "vit_b_16": "AttnLRP"}  # the method is `lrp` for both: zennit / lxt by family
AMPS = (None, "bf16")


@dataclass(frozen=True)
class Scale:
    per_split: tuple[int, int]
    """JPEGs per class in train/ and val/ (train: the reference samples, val: the evaluation set)."""
    jpeg_size: tuple[int, int]
    run_options: tuple[str, ...]
    """``pxp-bench run``'s options beyond model, data, device and amp."""
    image_size: int | None
    gpu_ref: int
    """Reference samples per class scored per call on the GPU (a few batches' worth: throughput)."""
    cpu_per_split: tuple[int, int] | None
    """The CPU measurement's own smaller folder (None: the same folder)."""
    gpu_rates: tuple[float, ...]
    cpu_rates: tuple[float, ...]
    repeats: dict[str, int]
    """Timed calls of each stage per device type, after one warm-up call."""
    timeout_s: int
    """The most seconds a subprocess (the tests, one run) may take."""
    threads: int | None = None
    """CPU threads of this process and the runs (None: torch's default, all cores). One at the tiny scale: its
    passes are too small to share, and a second thread on a busy machine only waits (OpenMP spinning)."""


SCALES = {
    "full": Scale(per_split=(64, 50), jpeg_size=(500, 375), run_options=("--ref-per-class", "10"), image_size=None,
                  gpu_ref=64, cpu_per_split=(3, 8), gpu_rates=(0.0, 0.2, 0.4, 0.6, 0.8), cpu_rates=(0.0, 0.5),
                  repeats={"cuda": 5, "cpu": 1}, timeout_s=180),
    "tiny": Scale(per_split=(1, 2), jpeg_size=(160, 120),
                  run_options=("--ref-per-class", "1", "--image-size", "32", "--rates", "0,0.5",
                               "--latency-repeats", "0"), image_size=32,
                  gpu_ref=1, cpu_per_split=None, gpu_rates=(0.0, 0.5), cpu_rates=(0.0, 0.5),
                  repeats={"cuda": 1, "cpu": 1}, timeout_s=120, threads=1),
}


class Clock:
    def __init__(self):
        self.started = time.perf_counter()

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f} s] {text}", flush=True)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _environ(scale: Scale) -> dict[str, str]:
    """This process's environment, with the scale's thread count for the subprocesses."""
    if scale.threads is None:
        return dict(os.environ)
    return {**os.environ, "OMP_NUM_THREADS": str(scale.threads), "MKL_NUM_THREADS": str(scale.threads)}


def cuda_tests(scale: Scale) -> dict:
    """``pytest -q tests/test_pretrained.py -k cuda`` in a subprocess: passed when they all ran and passed."""
    command = [sys.executable, "-m", "pytest", "-q", "tests/test_pretrained.py", "-k", "cuda"]
    clock = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=2 * scale.timeout_s,
                              env=_environ(scale))
    except subprocess.TimeoutExpired:
        return {"command": " ".join(command), "passed": False, "error": f"timed out after {2 * scale.timeout_s} s"}
    output = done.stdout + done.stderr
    summary = tail(output, 1)  # e.g. "2 passed, 27 deselected in 31.20s"
    passed = done.returncode == 0 and " passed" in summary and "skipped" not in summary  # on a GPU none may skip
    return {"command": " ".join(command), "passed": passed, "returncode": done.returncode, "summary": summary,
            "seconds": round(time.perf_counter() - clock, 2), **({} if passed else {"output_tail": tail(output, 40)})}


def pxp_bench_command() -> list[str]:
    """The installed ``pxp-bench`` beside this interpreter (or on PATH), as a user runs it."""
    beside = Path(sys.executable).parent / "pxp-bench"
    found = str(beside) if beside.exists() else shutil.which("pxp-bench")
    return [found] if found else [sys.executable, "-m", "pxp_bench.cli"]


def end_to_end(model: str, amp: str | None, data: Path, out: Path, device: str, scale: Scale) -> dict:
    """One ``pxp-bench run`` in a subprocess: exit 0, one result file, its amp and timings, wall seconds."""
    command = [*pxp_bench_command(), "run", "--model", model, "--method", "lrp", "--weights", "none",
               "--dataset", "imagenet", "--data", str(data), "--device", device, *scale.run_options,
               *(["--amp", amp] if amp else []), "--out", str(out)]
    record = {"model": model, "amp": amp, "command": " ".join(command)}
    clock = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=scale.timeout_s, env=_environ(scale))
    except subprocess.TimeoutExpired:
        return {**record, "ok": False, "error": f"timed out after {scale.timeout_s} s"}
    record.update(returncode=done.returncode, seconds=round(time.perf_counter() - clock, 2))
    files = sorted(out.glob("*.json"))
    record["ok"] = done.returncode == 0 and len(files) == 1
    if files:
        result = json.loads(files[0].read_text())
        record.update(result_file=files[0].name, recorded_amp=result["samples"]["amp"],
                      recorded_device=result["environment"]["device"], timings=result["timings"],
                      evaluation_images=result["samples"]["evaluation"], rates=len(result["rates"]))
        record["ok"] = record["ok"] and result["samples"]["amp"] == amp
    if not record["ok"]:
        record["output_tail"] = tail(done.stdout + done.stderr, 40)
    return record


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, repeats: int, call) -> tuple[float, int | None, object]:
    """Seconds of ``repeats`` calls of ``call`` (after a warm-up call), the peak GPU bytes allocated during
    them (None on the CPU), and the last call's value."""
    value = call()  # warm-up: CUDA kernels chosen, lazy imports and patching done
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    clock = time.perf_counter()
    for _ in range(repeats):
        value = call()
    _sync(device)
    seconds = time.perf_counter() - clock
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return seconds, peak, value


def throughput(model: str, data: Path, device: torch.device, ref_per_class: int, rates: tuple[float, ...],
               repeats: int, image_size: int | None) -> dict:
    """Scoring and masked-evaluation images per second of ``model`` on ``device`` through the Python API."""
    bench = Benchmark(model=model, method="lrp", weights="none", dataset="imagenet", data_root=data,
                      device=str(device), ref_per_class=ref_per_class, rates=rates, image_size=image_size,
                      evaluate="masked", latency_repeats=0)
    prepared = prepare(bench)
    reference, evaluation = prepared.samples("reference"), prepared.samples("eval")  # decoded before timing
    batch_size = prepared.batch_size
    score_s, score_peak, scored = _timed(device, repeats, lambda: score(prepared))
    eval_s, eval_peak, points = _timed(device, repeats, lambda: evaluate(prepared, scored.scores, reuse=False))
    evaluated = len(evaluation) * len({point.pruned for point in points})  # a pruned set is evaluated once
    peaks = [peak for peak in (score_peak, eval_peak) if peak is not None]
    figures = {
        "device": device_name(device), "batch_size": batch_size, "repeats": repeats,
        "reference_images": len(reference), "evaluation_images": len(evaluation), "rates": list(prepared.rates),
        "score_seconds": round(score_s, 4), "score_images_per_s": round(repeats * len(reference) / score_s, 2),
        "evaluate_seconds": round(eval_s, 4), "evaluate_images_per_s": round(repeats * evaluated / eval_s, 2),
        "peak_gpu_mib": round(max(peaks) / 2**20, 1) if peaks else None,
        "peak_gpu_mib_scoring": round(score_peak / 2**20, 1) if score_peak is not None else None,
        "peak_gpu_mib_evaluation": round(eval_peak / 2**20, 1) if eval_peak is not None else None,
    }
    return figures


def _release(device: torch.device) -> None:
    """The last measurement's model and samples freed before the next one's peak memory is read."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _number(value, pattern: str = "{:,.1f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def _measured(figures: dict, key: str, pattern: str = "{:,.1f}") -> str:
    """A measured figure, "failed" where its measurement failed, "n/a" where none was made."""
    return "failed" if "error" in figures else _number(figures.get(key), pattern)


def table(report: dict) -> str:
    """The README's markdown table: one row per model, GPU columns "n/a" without a GPU."""
    measured = report["steps"].get("throughput", {})
    done = report["steps"].get("end_to_end")
    runs = {(run["model"], run["amp"]): run for run in done} if isinstance(done, list) else {}
    env = report["environment"]
    lines = [
        f"Measured {report['date']} on {report['device_name']} (scale {report['scale']}, torch {env.get('torch')}, "
        f"commit {(env.get('git_sha') or 'unknown')[:10]}{' (dirty)' if env.get('git_dirty') else ''}); "
        f"end-to-end runs on `--device {report['device']}`:",
        "",
        "| model, method | scoring img/s GPU | scoring img/s CPU | GPU/CPU | evaluation img/s GPU | "
        "evaluation img/s CPU | peak GPU memory | end to end fp32 | end to end bf16 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, method in MODELS.items():
        gpu = measured.get("cuda", {}).get(model) or {}
        cpu = measured.get("cpu", {}).get(model) or {}
        ratio = (gpu["score_images_per_s"] / cpu["score_images_per_s"]
                 if gpu.get("score_images_per_s") and cpu.get("score_images_per_s") else None)
        seconds = [runs.get((model, amp), {}) for amp in AMPS]
        lines.append("| " + " | ".join([
            f"{model} {method}", _measured(gpu, "score_images_per_s"), _measured(cpu, "score_images_per_s"),
            _number(ratio, "{:,.1f}x"), _measured(gpu, "evaluate_images_per_s"),
            _measured(cpu, "evaluate_images_per_s"), _measured(gpu, "peak_gpu_mib", "{:,.0f} MiB"),
            *(_number(run.get("seconds"), "{:.1f} s") if run.get("ok") else "failed" if run else "n/a"
              for run in seconds),
        ]) + " |")
    return "\n".join(lines)


def step(report: dict, name: str, clock: Clock, work) -> None:
    """Run one step; an exception is recorded (and the check goes on) rather than losing the GPU's minutes."""
    try:
        report["steps"][name] = work()
    except Exception as exc:  # noqa: BLE001 - a failed step is a finding, the others still run
        report["steps"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        report["failures"].append(f"{name}: {type(exc).__name__}: {exc}")
        clock.say(f"{name} FAILED: {type(exc).__name__}: {exc}")


def check(scale_name: str, device: torch.device, work: Path, clock: Clock) -> dict:
    scale = SCALES[scale_name]
    cuda = device.type == "cuda"
    report = {"scale": scale_name, "device": device.type, "device_name": device_name(device),
              "date": time.strftime("%Y-%m-%d"), "environment": environment(device_name(device)),
              "cuda_available": torch.cuda.is_available(), "cpu_threads": torch.get_num_threads(),
              "scale_settings": asdict(scale), "steps": {}, "failures": []}

    def tests() -> dict:
        if not cuda:
            clock.say("1/4 CUDA tests: skipped (no CUDA device selected; they need a GPU)")
            return {"skipped": True, "note": "no CUDA device selected: the CUDA-only tests need a GPU"}
        clock.say("1/4 CUDA tests: pytest tests/test_pretrained.py -k cuda ...")
        outcome = cuda_tests(scale)
        clock.say(f"    {'passed' if outcome['passed'] else 'FAILED'}: {outcome.get('summary', outcome.get('error'))}")
        if not outcome["passed"]:
            report["failures"].append("cuda_tests")
        return outcome

    def data() -> dict:
        folders = {"main": write_jpeg_folder(work / "imagenet", per_split=scale.per_split, size=scale.jpeg_size)}
        folders["cpu"] = (write_jpeg_folder(work / "imagenet-cpu", per_split=scale.cpu_per_split, size=scale.jpeg_size)
                          if scale.cpu_per_split else folders["main"])
        width, height = scale.jpeg_size
        clock.say(f"2/4 data: 3 classes x {scale.per_split} train/val JPEGs of {width}x{height} in {folders['main']}")
        return {"folders": {key: str(path) for key, path in folders.items()}, "per_split": scale.per_split,
                "cpu_per_split": scale.cpu_per_split or scale.per_split, "jpeg_size": scale.jpeg_size}

    def runs() -> list[dict]:
        records = []
        for model in MODELS:
            for amp in AMPS:
                amp_option = f" --amp {amp}" if amp else ""
                clock.say(f"3/4 pxp-bench run --model {model} --device {device.type}{amp_option} ...")
                record = end_to_end(model, amp, Path(report["steps"]["data"]["folders"]["main"]),
                                    work / f"results-{model}-{amp or 'fp32'}", device.type, scale)
                clock.say(f"    {'ok' if record['ok'] else 'FAILED'} in {record.get('seconds', '?')} s"
                          + ("" if record["ok"] else f": {record.get('error') or record.get('output_tail')}"))
                if not record["ok"]:
                    report["failures"].append(f"end_to_end {model} {amp or 'fp32'}")
                records.append(record)
        return records

    def measure() -> dict:
        folders = report["steps"]["data"]["folders"]
        plans = ([("cuda", device, Path(folders["main"]), scale.gpu_ref, scale.gpu_rates)] if cuda else []) + \
            [("cpu", torch.device("cpu"), Path(folders["cpu"]), (scale.cpu_per_split or scale.per_split)[0],
              scale.cpu_rates)]
        measured: dict[str, dict] = {}
        for kind, where, folder, ref, rates in plans:
            for model in MODELS:
                clock.say(f"4/4 throughput of {model} on {kind} ({ref} reference images per class, "
                          f"{len(rates)} rates) ...")
                try:
                    figures = throughput(model, folder, where, ref, rates, scale.repeats[kind], scale.image_size)
                except Exception as exc:  # noqa: BLE001 - recorded; the other measurements still run
                    measured.setdefault(kind, {})[model] = {"error": f"{type(exc).__name__}: {exc}"}
                    report["failures"].append(f"throughput {model} {kind}: {type(exc).__name__}: {exc}")
                    clock.say(f"    FAILED: {type(exc).__name__}: {exc}")
                    continue
                finally:
                    _release(where)
                measured.setdefault(kind, {})[model] = figures
                clock.say(f"    scoring {figures['score_images_per_s']:,.1f} img/s, evaluation "
                          f"{figures['evaluate_images_per_s']:,.1f} img/s, peak GPU memory "
                          f"{_number(figures['peak_gpu_mib'], '{:,.0f} MiB')}")
        return measured

    step(report, "cuda_tests", clock, tests)
    step(report, "data", clock, data)
    if "folders" in report["steps"]["data"]:
        step(report, "end_to_end", clock, runs)
        step(report, "throughput", clock, measure)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES),
                        help="default: full on CUDA (sized for one GPU: under 8 minutes on an H100), tiny otherwise")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"), help="the JSON report")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)  # --device cuda without CUDA: a one-line error
    scale = args.scale or ("full" if device.type == "cuda" else "tiny")
    if SCALES[scale].threads is not None:
        torch.set_num_threads(SCALES[scale].threads)
    clock = Clock()
    clock.say(f"gpu check at scale {scale} on {device_name(device)} (torch {torch.__version__})")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        report = check(scale, device, Path(work), clock)
    report["seconds"] = round(time.perf_counter() - clock.started, 1)
    report["ok"] = not report["failures"]
    report["table"] = table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    clock.say(f"{'all steps passed' if report['ok'] else 'FAILED: ' + '; '.join(report['failures'])}; "
              f"report written to {args.out}\n")
    print(report["table"], flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # e.g. --device cuda without CUDA (pxp_bench.errors.ConfigError)
        from pxp_bench.errors import PxpBenchError

        if not isinstance(exc, PxpBenchError):
            raise
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
