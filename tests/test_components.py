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


def test_linear_layers_inside_conv_blocks_are_not_classifier_neurons():
    """ConvNeXt's MLPs are channels-last Linear layers on (batch, H, W, C): their units are not along dim 1,
    so they are never CNN neurons (masking dim 1 would zero a row of the feature map)."""
    from pxp_bench.models.pretrained import build_torchvision

    model = build_torchvision("convnext_tiny", weights="none", num_classes=5, image_size=32).module
    example = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ComponentError, match="no hidden fully connected layer.*ConvNeXt's channels-last MLP"):
        discover_components(model, "neurons", example)
    assert discover_components(model, "filters", example).total > 0


def test_a_hidden_linear_on_pooled_features_is_a_neuron_and_a_token_linear_is_not():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.channels_last = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4, 4)
            self.hidden, self.logits = nn.Linear(4, 6), nn.Linear(6, 3)

        def forward(self, x):
            x = self.channels_last(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            return self.logits(torch.relu(self.hidden(x.mean(dim=(2, 3)))))

    components = discover_components(Mixed().eval(), "neurons", torch.zeros(1, 1, 8, 8))
    assert [(g.name, g.channel_dim, g.size) for g in components.groups] == [("hidden", 1, 6)]


class TwoAttentions(nn.Module):
    """One attention block runs explicitly; the other asks for weights and runs the fused path."""

    def __init__(self):
        super().__init__()
        self.first = nn.MultiheadAttention(8, 2, batch_first=True)
        self.second = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = x + self.first(x, x, x, need_weights=False)[0]
        x = x + self.second(x, x, x, need_weights=True)[0]
        return self.head(x.mean(dim=1))


def test_a_fused_attention_is_excluded_with_a_warning_and_recorded():
    model = TwoAttentions().eval()
    with pytest.warns(UserWarning, match="attention modules second ran their fused path"):
        components = discover_components(model, "heads", torch.zeros(1, 5, 8))
    assert [g.name for g in components.groups] == ["first"] and components.excluded == ("second",)


def test_the_logits_layer_is_found_even_when_it_is_not_fed_a_flat_tensor():
    class TokenHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.hidden, self.logits = nn.Conv2d(1, 4, 3), nn.Linear(4, 6), nn.Linear(6, 3)

        def forward(self, x):
            hidden = torch.relu(self.hidden(self.conv(x).mean(dim=(2, 3))))
            return self.logits(hidden[:, None, :])[:, 0]

    components = discover_components(TokenHead().eval(), "neurons", torch.zeros(1, 1, 8, 8))
    assert components.names == ["hidden"]
