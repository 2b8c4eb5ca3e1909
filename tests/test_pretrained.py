"""torchvision and timm models through the whole protocol on a generated ImageNet-layout folder."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from helpers import QUICK_RATES
from pxp_bench.benchmark import Benchmark, run_benchmark
from pxp_bench.cli import app
from pxp_bench.errors import CheckpointError, ConfigError, DataError
from pxp_bench.evaluate import restricted_logits
from pxp_bench.models.pretrained import build_timm, build_torchvision


@pytest.mark.e2e
@pytest.mark.parametrize("model, method", [
    ("resnet18", "lrp"), ("vgg11_bn", "lrp"), ("vgg11_bn", "taylor"), ("timm/resnet10t", "taylor"),
])
def test_the_whole_protocol_with_random_weights(plugins, imagenet_like, model, method):
    bench = Benchmark(model=model, method=method, dataset="imagenet", data_root=imagenet_like, weights="none",
                      image_size=32, n_classes=2, ref_per_class=2, rates=QUICK_RATES, batch_size=4)
    result = run_benchmark(bench, plugins=plugins)
    assert result.weights == "random:seed0" and len(result.classes) == 2
    assert result.samples["evaluation"] == 6 and result.samples["class_names"][0].startswith("n0")
    assert all(0.0 <= point["accuracy"] <= 1.0 for point in result.curve)
    assert torch.isfinite(torch.cat(list(result.scores.values()))).all()
    assert result.samples["components"] == sum(g.size for g in result.scored.groups)


def test_random_weights_are_reproducible_and_keep_the_callers_rng():
    state = torch.random.get_rng_state()
    first = build_torchvision("resnet18", weights="none", num_classes=3, image_size=32)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = build_torchvision("resnet18", weights="none", num_classes=3, image_size=32)
    assert all(torch.equal(a, b) for a, b in zip(first.module.state_dict().values(),
                                                 second.module.state_dict().values()))
    assert first.input_shape == (3, 32, 32) and first.num_classes == 3


def test_vit_random_head_is_not_zero():
    vit = build_torchvision("vit_b_16", weights="none", num_classes=3, image_size=32)
    assert vit.module.heads.head.weight.abs().sum() > 0 and vit.family == "transformer"


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_local_checkpoints_load(plugins, imagenet_like, tmp_path, suffix):
    source = build_torchvision("resnet18", weights="none", num_classes=3).module
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pt":
        torch.save(source.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = build_torchvision("resnet18", weights=str(path))
    assert loaded.num_classes == 3 and loaded.weights.startswith("file:")
    assert all(torch.equal(a, b) for a, b in zip(loaded.module.state_dict().values(), source.state_dict().values()))
    result = run_benchmark(Benchmark(model="resnet18", method="magnitude", dataset="imagenet", data_root=imagenet_like,
                                     weights=str(path), image_size=32, ref_per_class=2, rates=(0.0, 0.5)),
                           plugins=plugins)
    assert result.weights == loaded.weights


def test_a_class_count_mismatch_is_refused(plugins, imagenet_like, tmp_path):
    path = tmp_path / "five.pt"
    torch.save(build_torchvision("resnet18", weights="none", num_classes=5).module.state_dict(), path)
    with pytest.raises(DataError, match="3 classes, but model 'resnet18' has 5 outputs"):
        run_benchmark(Benchmark(model="resnet18", dataset="imagenet", data_root=imagenet_like, weights=str(path),
                                image_size=32), plugins=plugins)


def _run_torchvision(model: str, weights, data, out) -> str:
    """``pxp-bench run`` of a torchvision model that must fail with one error line (returned)."""
    result = CliRunner().invoke(app, ["run", "--model", model, "--weights", str(weights), "--dataset", "imagenet",
                                      "--data", str(data), "--image-size", "32", "--out", str(out)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_a_checkpoint_of_another_architecture_is_summarised_in_one_line(imagenet_like, tmp_path):
    path = tmp_path / "resnet18.pt"
    torch.save(build_torchvision("resnet18", weights="none", num_classes=3).module.state_dict(), path)
    line = _run_torchvision("vgg11", path, imagenet_like, tmp_path)
    assert line == (f"Error: checkpoint {path} does not fit model 'vgg11', keys: 22 missing (features.0.weight, "
                    "features.0.bias, ...); 122 unexpected (conv1.weight, bn1.weight, ...). Pass a checkpoint saved "
                    "from 'vgg11'.")


def test_a_timm_checkpoint_loads_with_its_class_count_and_another_is_summarised(tmp_path):
    source = build_timm("timm/resnet10t", weights="none", num_classes=3).module
    own, other = tmp_path / "resnet10t.pt", tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), own)
    loaded = build_timm("timm/resnet10t", weights=str(own))
    assert loaded.num_classes == 3 and loaded.weights.startswith("file:")
    assert all(torch.equal(a, b) for a, b in zip(loaded.module.state_dict().values(), source.state_dict().values()))
    torch.save(build_torchvision("resnet18", weights="none", num_classes=3).module.state_dict(), other)
    with pytest.raises(CheckpointError) as refused:
        build_timm("timm/resnet10t", weights=str(other))
    message = str(refused.value)
    assert "does not fit model 'timm/resnet10t', keys: 28 missing (conv1.0.weight, conv1.1.weight, ...); " in message
    assert "; 3 of another shape, file vs model (layer2.0.downsample.1.weight 128 vs 128x64x1x1, " in message
    assert len(message) - len(str(other)) < 350 and "\n" not in message


def test_a_folder_passed_as_weights_is_named(imagenet_like, tmp_path):
    line = _run_torchvision("resnet18", tmp_path, imagenet_like, tmp_path / "out")
    assert line == f"Error: checkpoint {tmp_path} is a folder; pass the checkpoint file inside it to --weights."


def test_restricted_logits_are_the_full_logits_at_the_chosen_ids_in_order():
    model = build_torchvision("resnet18", weights="none", num_classes=10, image_size=32).module
    inputs = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        full = model(inputs)
        restricted = restricted_logits(model, inputs, torch.tensor([7, 2, 5]))
    assert torch.equal(restricted, full[:, [7, 2, 5]])


def test_digits_do_not_fit_an_imagenet_model(plugins):
    with pytest.raises(DataError, match=r"shape \(1, 32, 32\).*expects \(3, 32, 32\)"):
        run_benchmark(Benchmark(model="resnet18", dataset="digits", weights="none", image_size=32), plugins=plugins)


def test_bad_sizes_and_amp_values(plugins, imagenet_like):
    with pytest.raises(ConfigError, match="--image-size must be between"):
        run_benchmark(Benchmark(model="resnet18", data_root=imagenet_like, image_size=4), plugins=plugins)
    with pytest.raises(ConfigError, match="--amp must be bf16 or fp16"):
        run_benchmark(Benchmark(model="resnet18", data_root=imagenet_like, amp="int8"), plugins=plugins)


def test_bf16_evaluation_runs_on_the_cpu(plugins):
    result = run_benchmark(Benchmark(method="magnitude", rates=(0.0, 0.5), amp="bf16"), plugins=plugins)
    assert result.curve[0]["accuracy"] > 0.95 and result.samples["amp"] == "bf16"


@pytest.mark.e2e
def test_offline_timm_weights_say_what_to_do(imagenet_like, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PXP_BENCH_LOAD_PLUGINS="")
    completed = subprocess.run(
        [sys.executable, "-m", "pxp_bench.cli", "run", "--model", "timm/resnet10t", "--data", str(imagenet_like),
         "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 2, completed.stderr
    assert "cannot fetch the pretrained weights" in completed.stderr and "--weights" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA paths need a GPU")
def test_cuda_amp_evaluation(plugins, imagenet_like):
    results = {
        amp: run_benchmark(Benchmark(model="resnet18", method="lrp", dataset="imagenet", data_root=imagenet_like,
                                     weights="none", image_size=64, device="cuda", amp=amp, ref_per_class=2,
                                     rates=QUICK_RATES), plugins=plugins)
        for amp in (None, "bf16", "fp16")
    }
    assert results[None].environment["device"] == torch.cuda.get_device_name()
    assert results["bf16"].scores_metadata() == results[None].scores_metadata()  # scoring stays float32
    for amp in ("bf16", "fp16"):  # 9 evaluation images: at most one prediction may flip at rate 0
        assert abs(results[amp].curve[0]["accuracy"] - results[None].curve[0]["accuracy"]) <= 1 / 9 + 1e-9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA paths need a GPU")
def test_cuda_out_of_memory_halves_the_batch_once_then_fails_clearly():
    from pxp_bench.device import with_oom_backoff

    sizes = []

    def work(batch_size):
        sizes.append(batch_size)
        torch.empty(1 << 50, device="cuda")  # far beyond any GPU's memory

    with warnings.catch_warnings(record=True), pytest.raises(ConfigError, match="also at batch size 4"):
        with_oom_backoff("evaluating", 8, work)
    assert sizes == [8, 4]
