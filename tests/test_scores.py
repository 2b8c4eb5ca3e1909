from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from helpers import QUICK_RATES, untimed
from pxp_bench.benchmark import Benchmark, run_benchmark
from pxp_bench.cli import app
from pxp_bench.errors import ConfigError
from pxp_bench.results import write_result


def test_saved_scores_reproduce_the_curve_without_rescoring(plugins, tmp_path):
    scored = run_benchmark(Benchmark(method="taylor", rates=QUICK_RATES, n_classes=4, seed=2), plugins=plugins)
    path = write_result(scored, tmp_path, save_scores=True)
    record = json.loads(path.read_text())
    scores_path = tmp_path / record["scores_file"]
    assert scores_path.is_file() and record["scores_source"] is None
    again = run_benchmark(Benchmark(rates=QUICK_RATES, n_classes=4, seed=2, scores_file=scores_path), plugins=plugins)
    assert untimed(again.curve) == untimed(scored.curve) and untimed(again.metrics) == untimed(scored.metrics)
    assert (again.method, again.variant, again.params) == (scored.method, scored.variant, scored.params)
    assert again.scores_source == str(scores_path) and "score" in again.timings
    for name, tensor in scored.scores.items():
        assert torch.equal(again.scores[name], tensor)


def test_scores_that_do_not_fit_are_refused(plugins, tmp_path):
    scored = run_benchmark(Benchmark(method="magnitude", rates=(0.0, 0.5)), plugins=plugins)
    scores_path = tmp_path / json.loads(write_result(scored, tmp_path, save_scores=True).read_text())["scores_file"]
    with pytest.raises(ConfigError, match="does not match this model's filters.*9 groups"):
        run_benchmark(Benchmark(model="digits-resnet", scores_file=scores_path), plugins=plugins)
    with pytest.raises(ConfigError, match="does not match this model's neurons"):
        run_benchmark(Benchmark(components="neurons", scores_file=scores_path), plugins=plugins)
    with pytest.raises(ConfigError, match="holds 'magnitude' scores, not 'taylor'"):
        run_benchmark(Benchmark(method="taylor", scores_file=scores_path), plugins=plugins)


@pytest.mark.parametrize("content, message", [(b"junk", "not a valid safetensors"), (None, "does not exist")])
def test_unreadable_scores_files(plugins, tmp_path, content, message):
    path = tmp_path / "s.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        run_benchmark(Benchmark(scores_file=path), plugins=plugins)


def test_a_safetensors_file_that_is_not_scores(plugins, tmp_path):
    from pxp_bench.models.zoo import packaged_checkpoint

    with pytest.raises(ConfigError, match="not a pxp-bench scores file"):
        run_benchmark(Benchmark(scores_file=packaged_checkpoint("digits-vgg")), plugins=plugins)


def test_cli_save_scores_then_scores(tmp_path):
    runner = CliRunner()
    first = runner.invoke(app, ["run", "--method", "magnitude", "--rates", "0,0.5", "--out", str(tmp_path),
                                "--save-scores"])
    assert first.exit_code == 0, first.output
    saved = next(tmp_path.glob("*.scores.safetensors"))
    second = runner.invoke(app, ["run", "--scores", str(saved), "--rates", "0,0.5", "--out", str(tmp_path / "again")])
    assert second.exit_code == 0, second.output
    bad = runner.invoke(app, ["run", "--scores", str(saved), "--model", "digits-resnet", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "does not match" in bad.output


def test_scores_from_another_draw_or_with_params_are_refused(plugins, tmp_path):
    scored = run_benchmark(Benchmark(method="magnitude", rates=(0.0, 0.5), n_classes=3, seed=1), plugins=plugins)
    scores_path = tmp_path / json.loads(write_result(scored, tmp_path, save_scores=True).read_text())["scores_file"]
    with pytest.raises(ConfigError, match="saved for classes"):
        run_benchmark(Benchmark(rates=(0.0, 0.5), n_classes=3, seed=2, scores_file=scores_path), plugins=plugins)
    with pytest.raises(ConfigError, match="--param do not apply"):
        run_benchmark(Benchmark(scores_file=scores_path, param_texts={"normalize": "layer"}), plugins=plugins)
