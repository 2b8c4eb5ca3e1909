"""`make gpu-check` (benchmarks/gpu_check.py) at its tiny scale on the CPU, as a maintainer runs it, so that
the script a borrowed GPU's minutes depend on cannot rot before one comes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
ROWS = ("| resnet50 LRP |", "| vit_b_16 AttnLRP |")


@pytest.mark.e2e
def test_the_gpu_check_runs_every_step_at_tiny_scale_on_the_cpu(tmp_path):
    out = tmp_path / "report" / "gpu-check.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["scale"] == "tiny" and report["device"] == "cpu" and report["ok"] and report["failures"] == []
    assert report["environment"]["torch"] and "git_sha" in report["environment"] and report["device_name"]
    steps = report["steps"]
    assert set(steps) == {"cuda_tests", "data", "end_to_end", "throughput"}
    assert steps["cuda_tests"]["skipped"] and "GPU" in steps["cuda_tests"]["note"]
    runs = {(run["model"], run["amp"]): run for run in steps["end_to_end"]}
    assert set(runs) == {(model, amp) for model in ("resnet50", "vit_b_16") for amp in (None, "bf16")}
    for (model, amp), run in runs.items():
        assert run["ok"] and run["returncode"] == 0 and run["result_file"].startswith(model), run
        assert run["recorded_amp"] == amp and run["seconds"] > 0 and run["rates"] == 2
        assert run["command"].split()[0].endswith("pxp-bench") and "--device cpu" in run["command"]
    assert set(steps["throughput"]) == {"cpu"}  # no GPU measured without one
    for model, figures in steps["throughput"]["cpu"].items():
        assert figures["score_images_per_s"] > 0 and figures["evaluate_images_per_s"] > 0, model
        assert figures["reference_images"] == 3 and figures["evaluation_images"] == 6
        assert figures["peak_gpu_mib"] is None
    table = report["table"].splitlines()
    for row in ROWS:
        line = next(line for line in table if line.startswith(row))
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 9 and cells[1] == cells[3] == cells[4] == cells[6] == "n/a", line  # the GPU columns
        assert float(cells[2].replace(",", "")) > 0 and float(cells[5].replace(",", "")) > 0, line
        assert all(cell.endswith(" s") for cell in cells[7:]), line
        assert line in done.stdout  # printed, ready to paste
    assert "CUDA tests: skipped" in done.stdout and "3/4 pxp-bench run --model vit_b_16" in done.stdout
