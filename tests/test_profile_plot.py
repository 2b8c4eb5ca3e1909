"""Layer profiles: `profile_png` draws, per method configuration, the fraction of each layer pruned at each
rate (seeds averaged, collapsed layers marked); `pxp-bench plot --profile` writes it for result files. A real
run's profile (`run --plot`) is checked in test_plots.py, on the run that test already makes."""

from __future__ import annotations

import io
import json

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from helpers import QUICK_RATES, leaderboard_result
from pxp_bench.cli import app
from pxp_bench.errors import ConfigError
from pxp_bench.leaderboard import profile_png
from pxp_bench.leaderboard.plots import DPI, _layer_labels, profile_panels
from pxp_bench.results import write_result

runner = CliRunner()
LAYERS = ("features.0", "features.3", "features.7", "features.10", "features.14")
"""digits-vgg's filter groups, in forward order, as a real run records them."""


def _record(method="lrp", seed=0, last=1.0, **fields):
    """A complete record on QUICK_RATES whose deeper layers are pruned harder; the last layer reaches
    ``last`` at the top rate (1.0: it collapses there)."""
    result = leaderboard_result(method, seed, rates=QUICK_RATES, **fields)
    result.layers = {name: [0.0, round(0.1 * depth + 0.01 * seed, 4), 0.2 * depth] for depth, name in enumerate(LAYERS)}
    result.layers[LAYERS[-1]][-1] = last
    return result


def _records(*specs):
    return [_record(*spec).to_dict() if isinstance(spec, tuple) else spec.to_dict() for spec in specs]


def test_panels_are_method_configurations_in_order_of_first_appearance_with_seeds_averaged():
    records = _records(("lrp", 0), ("magnitude", 0), ("lrp", 1, 0.5))
    lrp, magnitude = profile_panels(records)
    assert (lrp.label, lrp.seeds, lrp.caption()) == ("lrp (default)", (0, 1), "lrp (default)\nmean of 2 seeds")
    assert (magnitude.label, magnitude.caption()) == ("magnitude (default)", "magnitude (default)\nseed 0")
    assert lrp.layers == LAYERS and lrp.rates == QUICK_RATES
    assert lrp.fractions.shape == (len(LAYERS), len(QUICK_RATES))
    assert lrp.fractions[1, 1] == pytest.approx((0.1 + 0.11) / 2)  # the mean of the two seeds, cell by cell
    assert lrp.fractions[-1, -1] == pytest.approx(0.75)
    assert lrp.collapsed[-1, -1] == 1 and magnitude.collapsed[-1, -1] == 1  # empty in one of two seeds; in its one
    assert int(lrp.collapsed.sum()) == 1 and not magnitude.collapsed[:-1].any()


def test_the_same_method_with_other_parameters_is_a_panel_of_its_own():
    records = _records(("lrp", 0), _record("lrp", 0, params={"aggregation": "max"}))
    first, second = profile_panels(records)
    assert first.label != second.label and first.label.startswith("lrp (default) ")


def test_the_profile_decodes_with_a_column_per_panel_and_grows_a_row_past_four():
    one, two, five = (imread(_png(profile_png(records))) for records in (
        _records(("lrp", 0)), _records(("lrp", 0), ("random", 0)),
        _records(*((method, 0) for method in ("lrp", "random", "magnitude", "taylor", "ig")))))
    assert one.shape[2] == 4
    assert two.shape[1] - one.shape[1] == round(1.9 * DPI)  # one panel column more
    assert five.shape[1] - one.shape[1] == 3 * round(1.9 * DPI)  # four columns, the fifth panel on a second row
    assert five.shape[0] > two.shape[0] == one.shape[0]
    assert (one[..., :3] < 0.9).any(axis=2).mean() > 0.05  # a heatmap, not a blank canvas


def test_the_profile_is_drawn_deterministically_and_shows_seeds_collapses_and_titles():
    records = _records(("lrp", 0), ("lrp", 1), ("random", 0))
    drawn = profile_png(records)
    assert drawn == profile_png(records) == profile_png(json.loads(json.dumps(records)))
    assert drawn.startswith(b"\x89PNG") and b"Software" not in drawn
    assert drawn != profile_png(records[:1] + records[2:])  # one seed less: another mean
    assert profile_png(_records(("lrp", 0, 0.99))) != profile_png(_records(("lrp", 0, 1.0)))  # the collapse mark
    assert profile_png(records, title="a table") != drawn


@pytest.mark.parametrize("field, value, words", [
    ("model", "digits-resnet", ["one setting", "digits-resnet"]),
    ("components", "neurons", ["one setting", "neurons"]),
])
def test_records_of_several_settings_are_refused(field, value, words):
    other = _record("random", 0, **{field: value}).to_dict()
    with pytest.raises(ConfigError) as refused:
        profile_png(_records(("lrp", 0)) + [other])
    assert "\n" not in str(refused.value) and all(word in str(refused.value) for word in words)


def test_records_without_layers_or_of_another_grid_are_refused():
    no_layers = leaderboard_result("lrp", 0, rates=QUICK_RATES).to_dict()
    with pytest.raises(ConfigError, match="records no layers"):
        profile_png([no_layers])
    short = _record("lrp", 0).to_dict()
    short["layers"]["features.3"] = [0.0, 0.1]
    with pytest.raises(ConfigError, match="layers.features.3 is not one pruned fraction"):
        profile_png([short])
    grid = leaderboard_result("random", 0, rates=(0.0, 0.5))
    grid.layers = {name: [0.0, 0.5] for name in LAYERS}
    with pytest.raises(ConfigError, match="one grid"):
        profile_png(_records(("lrp", 0)) + [grid.to_dict()])


def test_long_layer_names_are_shortened_in_the_middle_and_stay_distinct():
    names = [f"encoder.layers.encoder_layer_{index}.self_attention" for index in range(12)]
    labels = _layer_labels(names)
    assert len(set(labels)) == 12 and all("…" in label and len(label) <= 30 for label in labels)
    assert labels[11].endswith("11.self_attention")
    assert _layer_labels(list(LAYERS)) == list(LAYERS)


def test_plot_profile_writes_the_png_of_result_files(tmp_path, monkeypatch):
    files = [write_result(_record(method, seed), tmp_path / "runs") for method, seed in (("lrp", 0), ("lrp", 1), ("random", 0))]
    out = tmp_path / "new" / "profile.png"
    done = runner.invoke(app, ["plot", "--profile", *map(str, files), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert str(out) in done.stdout
    assert out.read_bytes() == profile_png([json.loads(path.read_text()) for path in files])
    monkeypatch.chdir(tmp_path)
    done = runner.invoke(app, ["plot", "--profile", str(files[0])])
    assert done.exit_code == 0, done.output
    assert imread(tmp_path / "profile.png").shape[2] == 4 and not (tmp_path / "curve.png").exists()


def test_plot_profile_errors_are_one_line(tmp_path):
    lrp = write_result(_record("lrp", 0), tmp_path / "runs")
    other = write_result(_record("random", 0, model="digits-resnet"), tmp_path / "runs")
    out = tmp_path / "profile.png"
    _one_line_error(runner.invoke(app, ["plot", "--profile", str(lrp), str(other), "--out", str(out)]),
                    "one setting", "digits-vgg", "digits-resnet")
    bare = write_result(leaderboard_result("lrp", 1, rates=QUICK_RATES), tmp_path / "runs")
    _one_line_error(runner.invoke(app, ["plot", "--profile", str(bare), "--out", str(out)]),
                    "cannot plot the layer profile", str(bare), "no layers")
    _one_line_error(runner.invoke(app, ["plot", "--profile", str(lrp), "--out", str(tmp_path / "p.svg")]), ".png")
    assert not out.exists()


def _png(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def _one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output and all(word in result.stderr for word in words), result.stderr
