"""`pxp-bench export`: the slimmed model of one rate, loadable by torch alone, reproducing its accuracy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch.utils.data import Subset
from typer.testing import CliRunner

from pxp_bench.benchmark import prepare, score
from pxp_bench.cli import app
from pxp_bench.masking import keep_masks, masked, pruned_count, rank_components
from pxp_bench.plan import Benchmark
from pxp_bench.slim.efficiency import parameter_count

ARGS = ["--method", "taylor", "--classes", "3", "--rates", "0,0.2,0.4,0.6", "--latency-repeats", "0"]
CHECK = """
import json, sys
import torch
program = torch.export.load(sys.argv[1])
data = torch.load(sys.argv[2], weights_only=True)
info = json.load(open(sys.argv[3]))
classes = torch.tensor(info["classes"])
with torch.no_grad():
    logits = program.module()(data["inputs"])[:, classes]
correct = int((classes[logits.argmax(dim=1)] == data["targets"]).sum())
assert "pxp_bench" not in sys.modules
print(json.dumps({"correct": correct, "parameters": sum(p.numel() for p in program.module().parameters())}))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("model, where", [("digits-vgg", []), ("digits-vit", ["--components", "heads", "--rate", "0.4"])])
def test_the_export_loads_without_pxp_bench_and_reproduces_the_recorded_accuracy(plugins, tmp_path, model, where):
    target = tmp_path / "slim" / f"{model}.pt2"
    done = CliRunner().invoke(app, ["export", "--model", model, *ARGS, *where, "--out", str(tmp_path), "--to", str(target)])
    assert done.exit_code == 0, done.output
    info = json.loads(target.with_suffix(".json").read_text())
    record = json.loads(next(tmp_path.glob(f"{model}_*.json")).read_text())
    assert info["rate"] == (0.4 if where else record["metrics"]["top_pr"]) and info["method"] == "taylor"
    assert info["accuracy"] == next(p["accuracy"] for p in record["curve"] if p["rate"] == info["rate"])
    assert sum(len(indices) for indices in info["pruned"].values()) == next(
        p["pruned"] for p in record["curve"] if p["rate"] == info["rate"])
    prepared = prepare(Benchmark(model=model, method="taylor", n_classes=3, rates=(0.0, 0.5),
                                 components="heads" if where else None), plugins=plugins)
    evaluation = Subset(prepared.splits.eval, prepared.sets.evaluation)
    inputs = torch.stack([evaluation[i][0] for i in range(len(evaluation))])
    targets = torch.tensor([evaluation[i][1] for i in range(len(evaluation))])
    torch.save({"inputs": inputs, "targets": targets}, tmp_path / "data.pt")
    fresh = subprocess.run([sys.executable, "-c", CHECK, str(target), str(tmp_path / "data.pt"),
                            str(target.with_suffix(".json"))], capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    measured = json.loads(fresh.stdout)
    assert measured["correct"] == info["correct"] and measured["parameters"] == info["parameters"]
    assert info["parameters"] < parameter_count(prepared.model)  # removed, not only zeroed (heads too)


@pytest.mark.parametrize("extra, message", [
    (["--rate", "0.3"], "--rate 0.3 is not on the run's grid (0, 0.2, 0.4, 0.6)"),
    (["--at", "best"], "--at must be top-pr"),
    (["--to", "model.onnx"], "must end in .pt2"),
    (["--rate", "0.2", "--to", None], "--rate chooses the rate to export; add --to"),
])
def test_bad_export_options_are_one_clear_line(tmp_path, extra, message):
    if None in extra:  # `run` with --rate but nothing to export to
        args = ["run", *ARGS, "--out", str(tmp_path), *extra[:2]]
    else:
        args = ["export", *ARGS, "--out", str(tmp_path), "--to", str(tmp_path / "m.pt2"), *extra]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2 and message in done.output and "Traceback" not in done.output, done.output


def test_export_needs_a_destination_and_a_writable_one(tmp_path):
    missing = CliRunner().invoke(app, ["export", *ARGS, "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "export needs --to FILE.pt2" in missing.output
    (tmp_path / "file").write_text("not a folder")
    blocked = CliRunner().invoke(app, ["export", *ARGS, "--out", str(tmp_path), "--to", str(tmp_path / "file" / "m.pt2")])
    assert blocked.exit_code == 2 and "Traceback" not in blocked.output, blocked.output


@pytest.mark.parametrize("name, what", [("m" * 300 + ".pt2", "its file name is 304 bytes long"),
                                        ("m" * 251 + ".pt2", "the name of its sidecar"),  # .pt2 fits, .json not
                                        ("d" * 300 + "/m.pt2", "a folder name in it is 300 bytes long")])
def test_a_destination_name_too_long_is_refused_in_one_line_before_the_run(tmp_path, name, what):
    done = CliRunner().invoke(app, ["export", *ARGS, "--out", str(tmp_path / "out"), "--to", str(tmp_path / name)])
    assert done.exit_code == 2 and "Traceback" not in done.output, done.output
    said = " ".join(done.output.split())
    assert said.startswith("Error: --to ") and what in said and "choose a shorter --to" in said
    assert list(tmp_path.iterdir()) == []  # refused before the run: no result, no output folder


LM_CHECK = """
import sys
import torch
program = torch.export.load(sys.argv[1])
data = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    logits = program.module()(data["tokens"])
assert "pxp_bench" not in sys.modules and "transformers" not in sys.modules
assert torch.allclose(logits, data["logits"], atol=1e-5, rtol=1e-4), (logits - data["logits"]).abs().max()
print(sum(p.numel() for p in program.module().parameters()))
"""


@pytest.mark.e2e
def test_a_language_model_exports_and_the_program_reproduces_its_masked_logits(plugins, tmp_path):
    # Hugging Face builds its attention mask with vmap, which torch.export captured but could not save
    target = tmp_path / "tiny-llama.pt2"
    done = CliRunner().invoke(app, ["export", "--model", "tiny-llama", "--method", "magnitude", "--rates", "0,0.5",
                                    "--rate", "0.5", "--latency-repeats", "0", "--out", str(tmp_path / "out"),
                                    "--to", str(target)])
    assert done.exit_code == 0, done.output
    info = json.loads(target.with_suffix(".json").read_text())
    assert info["rate"] == 0.5 and info["components"] == "heads"
    prepared = prepare(Benchmark(model="tiny-llama", method="magnitude", rates=(0.0, 0.5)), plugins=plugins)
    components = prepared.components
    order = rank_components(components, score(prepared).scores, None)
    keep = keep_masks(components, order, pruned_count(0.5, components.total))
    assert {name: (~mask).nonzero().flatten().tolist() for name, mask in keep.items() if not mask.all()} == info["pruned"]
    reference = prepared.samples("reference")
    tokens = torch.stack([reference[i][0] for i in range(3)])
    with torch.no_grad(), masked(prepared.model, components, keep):
        logits = prepared.model(tokens)
    torch.save({"tokens": tokens, "logits": logits}, tmp_path / "data.pt")
    fresh = subprocess.run([sys.executable, "-c", LM_CHECK, str(target), str(tmp_path / "data.pt")],
                           capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    assert int(fresh.stdout) == info["parameters"] < parameter_count(prepared.model)  # heads removed, not zeroed
