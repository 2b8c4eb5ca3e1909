from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from pxp_bench.errors import CheckpointError, ConfigError
from pxp_bench.evaluate import accuracy
from pxp_bench.models.checkpoints import file_sha256, load_state_dict
from pxp_bench.models.training import train_zoo_model
from pxp_bench.models.zoo import build_zoo_model, packaged_checkpoint

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


class Payload:
    """Unpickling this would run code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def test_a_checkpoint_carrying_pickled_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker.txt"
    payload = Payload()
    payload.target = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"weight": payload}, path)
    with pytest.raises(CheckpointError, match="refused"):
        build_zoo_model("digits-vgg", weights=str(path))
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint", "corrupt or not a torch file"),
    (None, "does not exist"),
])
def test_unreadable_checkpoints(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_state_dict(path)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not fit this model"):
        build_zoo_model("digits-resnet", weights=str(packaged_checkpoint("digits-vgg")))


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
