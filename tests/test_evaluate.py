from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from pxp_bench.components import discover_components
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.device import channels_last_suits
from pxp_bench.evaluate import EvaluationMemo, accuracy, correct_predictions, prune_curve
from pxp_bench.metrics import curve_metrics
from pxp_bench.models.zoo import build_zoo_model
from pxp_bench.plan import MIN_LATENCY_REPEATS
from pxp_bench.slim.curve import slim_curve
from pxp_bench.slim.efficiency import BatchTimes


def test_metrics_of_a_hand_made_curve():
    rates = [0.0, 0.25, 0.5, 0.75]
    metrics = curve_metrics(rates, [50, 48, 45, 10], 50)  # 1.0, 0.96, 0.9, 0.2
    assert metrics["a_pr"] == pytest.approx(0.765)
    assert metrics["top_pr"] == 0.25  # 0.9 < 0.95 * 1.0
    assert metrics["auc"] == pytest.approx(((1 + 0.96) + (0.96 + 0.9) + (0.9 + 0.2)) / 2 * 0.25 / 0.75)
    assert (metrics["acc_25"], metrics["acc_50"], metrics["acc_75"]) == (0.96, 0.9, 0.2)


def test_top_pr_needs_every_rate_up_to_it():
    assert curve_metrics([0.0, 0.1, 0.2, 0.3], [80, 70, 80, 80], 100)["top_pr"] == 0.0
    assert curve_metrics([0.0, 0.1, 0.2], [80, 79, 77], 100)["top_pr"] == 0.2


def test_top_pr_compares_counts_exactly_at_the_boundary():
    # 19/53 against 20/53 is exactly 95 %: it keeps the accuracy (19/53 < 0.95 * 20/53 in floats)
    assert 19 / 53 < 0.95 * (20 / 53)
    assert curve_metrics([0.0, 0.5], [20, 19], 53)["top_pr"] == 0.5
    assert curve_metrics([0.0, 0.5], [40, 37], 53)["top_pr"] == 0.0  # 37/40 = 92.5 %


def test_missing_grid_points_are_interpolated_or_none():
    metrics = curve_metrics([0.0, 0.4, 0.6], [10, 8, 6], 10)
    assert metrics["acc_50"] == pytest.approx(0.7)
    assert metrics["acc_75"] is None
    assert curve_metrics([0.0], [1], 2)["auc"] == 0.5


class Fixed(nn.Module):
    """Logits equal to the input vector: the prediction is chosen by the test."""

    def forward(self, x):
        return x


def test_accuracy_is_over_the_restricted_classes():
    logits = torch.tensor([[0.0, 5.0, 1.0, 0.0], [9.0, 0.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0]])
    loader = DataLoader(LabelledTensors(logits, [2, 3, 3]), batch_size=2)
    # full argmax would say 1, 0, 3; restricted to classes [2, 3] it says 2, 3, 3
    assert accuracy(Fixed(), loader, [2, 3], torch.device("cpu")) == 1.0
    assert accuracy(Fixed(), loader, [0, 1, 2, 3], torch.device("cpu")) == pytest.approx(1 / 3)


class _FlattensWithView(nn.Module):
    """A CNN that flattens a conv's output with ``.view``: channels-last batches cannot pass."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.classify = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x)
        return self.classify(features.view(features.size(0), -1))


def test_channels_last_only_for_models_that_compute_the_same_with_it():
    torch.manual_seed(0)
    images = torch.randn(6, 3, 8, 8)
    convolutional = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(4, 3)).eval()
    assert channels_last_suits(convolutional, images[:1])
    assert not channels_last_suits(_FlattensWithView().eval(), images[:1])
    assert not channels_last_suits(convolutional, images[0, 0])  # not an image batch
    loader = DataLoader(LabelledTensors(images, [0, 1, 2, 0, 1, 2]), batch_size=4)
    counts = [correct_predictions(convolutional, loader, [0, 1, 2], torch.device("cpu"), channels_last=layout)
              for layout in (False, True)]
    assert counts[0] == counts[1]


def test_the_evaluation_times_every_batch_and_keeps_the_first_for_more_passes():
    logits = torch.randn(5, 3)
    times = BatchTimes()
    correct_predictions(Fixed(), DataLoader(LabelledTensors(logits, [0, 1, 2, 0, 1]), batch_size=2), [0, 1, 2],
                        torch.device("cpu"), batch_times=times)
    assert [size for size, _ in times.times] == [2, 2, 1] and all(ms > 0 for _, ms in times.times)
    assert torch.equal(times.first, logits[:2])


def test_a_slimmed_curve_times_both_latencies_on_at_least_5_passes_with_one_evaluation_batch():
    torch.manual_seed(0)
    model = build_zoo_model("digits-vgg").module.eval()
    images = torch.randn(6, 1, 32, 32)
    loader = DataLoader(LabelledTensors(images, [0, 1, 2, 0, 1, 2]), batch_size=4)  # one full batch: the warm-up
    components = discover_components(model, "filters", images[:1])
    order = torch.randperm(components.total)
    memo = EvaluationMemo()

    def curve() -> list:
        return prune_curve(model, components, order, (0.0, 0.5), loader, [0, 1, 2], torch.device("cpu"),
                           memo=memo, slim=slim_curve(model, components, images[:1], latency_repeats=MIN_LATENCY_REPEATS))

    first = [point.efficiency for point in curve()]
    for record in first:
        assert record["latency_batch1_passes"] >= 5 and record["latency_batches"] >= 5
        assert record["latency_batch_size"] == 4
        assert 0 <= record["latency_ms_batch1_iqr"] and 0 <= record["latency_ms_batch_iqr"]
    again = [point.efficiency for point in curve()]  # answered by the memo: the same evaluation-batch latency
    assert memo.hits == 2
    assert [{key: r[key] for key in r if "batch1" not in key} for r in again] == \
        [{key: r[key] for key in r if "batch1" not in key} for r in first]
