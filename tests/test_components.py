from __future__ import annotations

import pytest
import torch
from torch import nn

from pxp_bench.components import discover_components
from pxp_bench.errors import ComponentError

EXAMPLE = torch.zeros(1, 1, 32, 32)


def test_vgg_filters_are_masked_at_their_batchnorm(zoo_model):
    components = discover_components(zoo_model("digits-vgg"), "filters", EXAMPLE)
    assert [(g.name, g.site, g.size) for g in components.groups] == [
        ("features.0", "features.1", 16), ("features.3", "features.4", 16), ("features.7", "features.8", 32),
        ("features.10", "features.11", 32), ("features.14", "features.15", 64),
    ]
    assert components.total == 160


def test_resnet_filters_include_downsample_convs_in_execution_order(zoo_model):
    components = discover_components(zoo_model("digits-resnet"), "filters", EXAMPLE)
    sites = {g.name: g.site for g in components.groups}
    assert sites["layer2.downsample.0"] == "layer2.downsample.1"
    assert sites["layer2.conv1"] == "layer2.bn1"
    assert len(components.groups) == 9
    assert components.names.index("layer2.conv2") < components.names.index("layer2.downsample.0")


class BatchNormDeclaredFirst(nn.Module):
    """Module order says the BN belongs to nothing; dataflow says it consumes conv_b."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(4)
        self.conv_a = nn.Conv2d(1, 4, 3)
        self.conv_b = nn.Conv2d(4, 4, 3)
        self.unused = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = torch.relu(self.conv_a(x))
        x = torch.relu(self.bn(self.conv_b(x)))
        return self.fc(x.mean(dim=(2, 3)))


def test_batchnorm_is_found_by_dataflow_and_unused_modules_are_skipped():
    components = discover_components(BatchNormDeclaredFirst().eval(), "filters", torch.zeros(1, 1, 8, 8))
    assert [(g.name, g.site) for g in components.groups] == [("conv_a", "conv_a"), ("conv_b", "bn")]


def test_cnn_neurons_are_the_hidden_classifier_units(zoo_model):
    components = discover_components(zoo_model("digits-vgg"), "neurons", EXAMPLE)
    assert [(g.name, g.site, g.size) for g in components.groups] == [("classifier.1", "classifier.1", 128)]


def test_a_single_linear_head_has_no_neurons(zoo_model):
    with pytest.raises(ComponentError, match="no hidden fully connected layer"):
        discover_components(zoo_model("digits-resnet"), "neurons", EXAMPLE)


def test_heads_need_a_transformer(zoo_model):
    with pytest.raises(ComponentError, match="heads"):
        discover_components(zoo_model("digits-vgg"), "heads", EXAMPLE)


def test_shared_modules_are_refused():
    conv = nn.Conv2d(2, 2, 3, padding=1)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), conv, conv).eval()
    with pytest.raises(ComponentError, match="run more than once"):
        discover_components(model, "filters", torch.zeros(1, 1, 8, 8))


def test_discovery_leaves_no_hooks(zoo_model):
    from helpers import has_hooks

    model = zoo_model("digits-vgg")
    discover_components(model, "filters", EXAMPLE)
    assert not has_hooks(model)
