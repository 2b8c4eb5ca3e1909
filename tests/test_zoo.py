from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from pxp_bench.cli import app
from pxp_bench.errors import CheckpointError, ConfigError
from pxp_bench.evaluate import accuracy
from pxp_bench.models.checkpoints import file_sha256, load_state_dict
from pxp_bench.models.training import train_zoo_model
from pxp_bench.models.zoo import build_zoo_model, checkpoint_sha256, packaged_checkpoint

ZOO = ("digits-vgg", "digits-resnet", "digits-vit")


@pytest.mark.parametrize("name", ZOO)
def test_packaged_checkpoints_match_manifest_and_reach_97_percent(name, digits):
    loaded = build_zoo_model(name)
    manifest = json.loads(packaged_checkpoint(name).with_suffix(".json").read_text())
    assert loaded.weights == "packaged:" + manifest["sha256"]
    measured = accuracy(loaded.module, DataLoader(digits.eval, batch_size=512), list(range(10)), torch.device("cpu"))
    assert measured >= (0.95 if name == "digits-vit" else 0.97)
    assert measured == pytest.approx(manifest["eval_accuracy"], abs=1e-4)
    assert manifest["trained_on"].startswith("train") and manifest["command"].startswith("pxp-bench zoo train")


def _copy_packaged(name: str, folder: Path) -> Path:
    target = folder / f"{name}.safetensors"
    shutil.copy(packaged_checkpoint(name), target)
    shutil.copy(packaged_checkpoint(name).with_suffix(".json"), target.with_suffix(".json"))
    return target


def test_a_corrupted_checkpoint_is_refused_against_its_manifest(tmp_path):
    target = _copy_packaged("digits-vgg", tmp_path)
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its manifest.*zoo train digits-vgg"):
        build_zoo_model("digits-vgg", weights=str(target))


def test_a_state_dict_file_loads(tmp_path, zoo_model):
    model = zoo_model("digits-vgg")
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    loaded = build_zoo_model("digits-vgg", weights=str(path))
    assert loaded.weights == "file:" + file_sha256(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.module.state_dict().values(), model.state_dict().values()))


def _one_error_line(result) -> str:
    """The CLI's error output, which must be a single line and exit status 2."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


class Payload:
    """Unpickling this would run code (``call(*args)``); weights_only loading must refuse it."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


@pytest.mark.parametrize("payload, named", [
    (lambda marker: Payload(Path.write_text, marker, "pwned"), "getattr"),  # a method, pickled through getattr
    (lambda marker: Payload(os.mkdir, str(marker)), "mkdir"),  # posix.mkdir: torch blocks its module outright
])
def test_a_checkpoint_carrying_pickled_code_is_refused_and_nothing_runs(tmp_path, payload, named):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"weight": payload(marker)}, path)
    with pytest.raises(CheckpointError, match=rf"refused: it holds pickled Python objects \(\S*{named}\).*state_dict"):
        build_zoo_model("digits-vgg", weights=str(path))
    assert not marker.exists()


def test_a_pickled_whole_model_is_refused_in_one_line_naming_its_class(tmp_path, zoo_model):
    path = tmp_path / "whole.pt"
    torch.save(zoo_model("digits-vgg"), path)
    line = _one_error_line(CliRunner().invoke(app, ["run", "--weights", str(path), "--out", str(tmp_path)]))
    assert "refused" in line and "(pxp_bench.models.architectures.DigitsVGG)" in line
    assert "torch.save(model.state_dict(), PATH)" in line and "weights_only" not in line


@pytest.mark.e2e
def test_torch_warnings_and_messages_do_not_reach_the_user(tmp_path):
    """A real process: torch warns about this file's pickle protocol, and its error spans many lines."""
    path = tmp_path / "protocol4.pt"
    torch.save({"weight": torch.zeros(2), "note": Payload(print, "pwned")}, path, pickle_protocol=4)
    completed = subprocess.run(
        [sys.executable, "-m", "pxp_bench.cli", "run", "--weights", str(path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=dict(os.environ, PXP_BENCH_LOAD_PLUGINS=""), timeout=300)
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.strip().splitlines() == [
        f"Error: checkpoint {path} is corrupt or not a torch file that loads safely (one saved with a "
        "pickle_protocol above 2 is not). Re-save it with torch.save(model.state_dict(), PATH) or safetensors' "
        "save_file(model.state_dict(), PATH)."]


def test_unreadable_checkpoints(tmp_path, zoo_model):
    text, missing = tmp_path / "text.pt", tmp_path / "missing.pt"
    text.write_bytes(b"not a checkpoint")
    truncated = tmp_path / "truncated.pt"
    torch.save(zoo_model("digits-vgg").state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    for path, message in [(text, "is not a checkpoint"), (missing, "does not exist"),
                          (truncated, r"corrupt or not a torch file \(PytorchStreamReader failed .*\)\. Re-save")]:
        with pytest.raises(CheckpointError, match=message):
            load_state_dict(path)


def test_a_folder_passed_as_weights_is_named(tmp_path):
    line = _one_error_line(CliRunner().invoke(app, ["run", "--weights", str(tmp_path), "--out", str(tmp_path)]))
    assert line == f"Error: checkpoint {tmp_path} is a folder; pass the checkpoint file inside it to --weights."


def test_a_checkpoint_of_another_model_is_summarised_in_one_line(tmp_path):
    other = packaged_checkpoint("digits-resnet")
    line = _one_error_line(CliRunner().invoke(app, ["run", "--weights", str(other), "--out", str(tmp_path)]))
    assert line == (f"Error: checkpoint {other} does not fit model 'digits-vgg', keys: 34 missing (features.0.weight, "
                    "features.1.weight, ...); 56 unexpected (layer1.bn1.num_batches_tracked, "
                    "layer1.bn2.num_batches_tracked, ...). Pass a checkpoint saved from 'digits-vgg'.")


def test_a_tensor_of_another_shape_is_named(tmp_path, zoo_model):
    state = zoo_model("digits-vgg").state_dict()
    state["classifier.4.weight"] = torch.zeros(3, 128)
    path = tmp_path / "three-classes.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"keys: 1 of another shape, file vs model \(classifier\.4\.weight "
                                              r"3x128 vs 10x128\)\. Pass"):
        build_zoo_model("digits-vgg", weights=str(path))


@pytest.mark.parametrize("field, value, expected", [
    ("sha256", 123, "64 lowercase hex digits"),
    ("sha256", "abc123", "64 lowercase hex digits"),
    ("eval_accuracy", "0.99", "a number"),
    ("epochs", 1.5, "an integer"),
    ("seed", True, "an integer"),
])
def test_a_malformed_manifest_names_the_field(tmp_path, field, value, expected):
    target = _copy_packaged("digits-vgg", tmp_path)
    manifest = json.loads(target.with_suffix(".json").read_text())
    target.with_suffix(".json").write_text(json.dumps({**manifest, field: value}))
    with pytest.raises(CheckpointError, match=rf"manifest .* is malformed: '{field}' must be {expected}, got "):
        build_zoo_model("digits-vgg", weights=str(target))


def test_a_packaged_checkpoint_without_its_manifest_says_so(tmp_path):
    target = _copy_packaged("digits-vgg", tmp_path)
    assert checkpoint_sha256("digits-vgg", target, packaged=True) == file_sha256(target)
    target.with_suffix(".json").unlink()
    assert checkpoint_sha256("digits-vgg", target, packaged=False) == file_sha256(target)
    with pytest.raises(CheckpointError, match=r"the manifest of the packaged checkpoint of 'digits-vgg' is missing "
                                              r"\(.*digits-vgg\.json\).*zoo train digits-vgg"):
        checkpoint_sha256("digits-vgg", target, packaged=True)
    target.unlink()
    with pytest.raises(CheckpointError, match="the packaged checkpoint of 'digits-vgg' is missing"):
        checkpoint_sha256("digits-vgg", target, packaged=True)


def test_broken_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_state_dict(path)


def test_training_is_reproducible_and_writes_a_manifest(tmp_path):
    first = train_zoo_model("digits-resnet", tmp_path / "a", epochs=1)
    second = train_zoo_model("digits-resnet", tmp_path / "b", epochs=1)
    assert first.sha256 == second.sha256 == file_sha256(first.checkpoint)
    manifest = json.loads(first.manifest.read_text())
    assert manifest["sha256"] == first.sha256 and manifest["torch"] == torch.__version__
    assert manifest["epochs"] == 1 and manifest["eval_accuracy"] == pytest.approx(first.eval_accuracy, abs=1e-6)
    assert build_zoo_model("digits-resnet", weights=str(first.checkpoint)).weights == f"file:{first.sha256}"


def test_training_refuses_unknown_models_and_zero_epochs(tmp_path):
    with pytest.raises(ConfigError, match="not a zoo model"):
        train_zoo_model("resnet50", tmp_path)
    with pytest.raises(ConfigError, match="--epochs"):
        train_zoo_model("digits-vgg", tmp_path, epochs=0)


def test_a_state_dict_torch_accepts_is_accepted(tmp_path):
    """An old BatchNorm state without num_batches_tracked loads in torch: it must load here too."""
    from pxp_bench.models.checkpoints import apply_state_dict

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    apply_state_dict(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)), state,
                     tmp_path / "old.pt", "old-style")
