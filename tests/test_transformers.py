"""Vision Transformers: explicit attention, heads and MLP neurons, AttnLRP through lxt, no patch leaks."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn
from torch.utils.data import Subset

from helpers import QUICK_RATES, has_hooks, state_snapshot
from pxp_bench.attention import explicit_attention
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.benchmark import Benchmark, run_benchmark
from pxp_bench.components import discover_components
from pxp_bench.data.protocol import draw_sets
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.masking import masked
from pxp_bench.models.pretrained import build_torchvision
from pxp_bench.params import grid_size, resolve_params
from pxp_bench.plugins import Plugins

BUILTINS = Plugins(load_external=False)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_vits():
    torchvision_vit = build_torchvision("vit_b_16", weights="none", num_classes=5, image_size=32).module
    with torch.random.fork_rng():
        torch.manual_seed(0)
        timm_vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=5).eval()
    return {"torchvision": torchvision_vit, "timm": timm_vit}


def _inputs(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _reference(n: int = 4, batch_size: int = 2) -> ReferenceSet:
    return ReferenceSet(LabelledTensors(_inputs(n), [i % 5 for i in range(n)]), list(range(5)), batch_size, CPU)


def lrp(model, components, reference, **values):
    spec = BUILTINS.methods.get("lrp")
    params = resolve_params(spec.space_for("transformer"), owner="lrp", values=values)
    return spec.load_score()(model, components, reference, RunContext.seeded(0), **params)


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_explicit_attention_matches_the_fused_module(tiny_vits, library):
    model = tiny_vits[library]
    x = _inputs().requires_grad_(True)
    fused = model(x)
    (fused_grad,) = torch.autograd.grad(fused.square().sum(), x)
    with explicit_attention(model):
        explicit = model(x)
        (explicit_grad,) = torch.autograd.grad(explicit.square().sum(), x)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit_grad, fused_grad, atol=1e-5, rtol=1e-5)
    assert all("forward" not in vars(m) for m in model.modules())


@pytest.mark.parametrize("library, heads, neurons", [("torchvision", 144, 36864), ("timm", 36, 9216)])
def test_heads_and_neurons_are_discovered(tiny_vits, library, heads, neurons):
    model = tiny_vits[library]
    assert discover_components(model, "heads", _inputs(1)).total == heads
    assert discover_components(model, "neurons", _inputs(1)).total == neurons
    assert not has_hooks(model) and all("forward" not in vars(m) for m in model.modules())


def _projection_io(model, block: int, masks):
    components = discover_components(model, "heads", _inputs(1))
    projection = model.encoder.layers[block].self_attention.out_proj
    seen = {}

    def record(module, args, output):
        seen["in"], seen["out"] = args[0].detach().clone(), output.detach().clone()

    handle = projection.register_forward_hook(record)
    try:
        with torch.no_grad(), masked(model, components, masks):
            model(_inputs(2))
    finally:
        handle.remove()
    return seen


def test_masking_a_head_zeroes_only_its_slice(tiny_vits):
    model = tiny_vits["torchvision"]
    components = discover_components(model, "heads", _inputs(1))
    keep_all = {g.name: torch.ones(g.size, dtype=torch.bool) for g in components.groups}
    first = components.groups[0].name
    plain = _projection_io(model, 0, keep_all)
    one_off = dict(keep_all, **{first: torch.arange(12) != 3})
    masked_io = _projection_io(model, 0, one_off)
    head = slice(3 * 64, 4 * 64)
    assert torch.equal(masked_io["in"][..., head], torch.zeros_like(masked_io["in"][..., head]))
    others = torch.ones(768, dtype=torch.bool)
    others[head] = False
    assert torch.equal(masked_io["in"][..., others], plain["in"][..., others])
    all_off = dict(keep_all, **{first: torch.zeros(12, dtype=torch.bool)})
    bias = model.encoder.layers[0].self_attention.out_proj.bias.detach()
    assert torch.equal(_projection_io(model, 0, all_off)["out"], bias.expand_as(plain["out"]))


def test_head_scores_are_finite_varied_and_depend_on_the_attention_rule(tiny_vits):
    model = tiny_vits["timm"]
    components = discover_components(model, "heads", _inputs(1))
    attn = lrp(model, components, _reference(), attention="attnlrp")
    cp = lrp(model, components, _reference(), attention="cp")
    flat = torch.cat(list(attn.values()))
    assert torch.isfinite(flat).all() and flat.std() > 0
    assert not torch.allclose(flat, torch.cat(list(cp.values())))


def test_no_patch_leaks(tiny_vits, digits, zoo_model):
    from zennit.core import BasicHook

    patched = (nn.GELU, nn.LayerNorm, timm.layers.LayerNorm, BasicHook, nn.MultiheadAttention)
    before = {cls: dict(vars(cls)) for cls in patched}
    cnn = zoo_model("digits-vgg")
    cnn_components = discover_components(cnn, "filters", torch.zeros(1, 1, 32, 32))
    sets = draw_sets(digits, n_classes=3, ref_per_class=2, tune_per_class=0, seed=0)
    cnn_reference = ReferenceSet(Subset(digits.train, sets.reference), sets.classes, 8, CPU)
    cnn_before = lrp(cnn, cnn_components, cnn_reference, mid="gamma")
    for model in tiny_vits.values():
        state = state_snapshot(model)
        lrp(model, discover_components(model, "neurons", _inputs(1)), _reference(), low="gamma")
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert not has_hooks(model) and all("forward" not in vars(m) for m in model.modules())
    assert {cls: dict(vars(cls)) for cls in patched} == before
    cnn_after = lrp(cnn, cnn_components, cnn_reference, mid="gamma")
    assert all(torch.equal(cnn_before[k], cnn_after[k]) for k in cnn_before)


def test_the_transformer_lrp_space_has_1536_points():
    spec = BUILTINS.methods.get("lrp")
    assert grid_size(spec.space_for("transformer")) == 1536 and grid_size(spec.space_for("cnn")) == 768


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["heads", "neurons"])
def test_vit_b_16_end_to_end_on_an_image_folder(plugins, imagenet_like, kind):
    result = run_benchmark(Benchmark(model="vit_b_16", method="lrp", dataset="imagenet", data_root=imagenet_like,
                                     weights="none", image_size=32, components=kind, ref_per_class=2,
                                     rates=QUICK_RATES, batch_size=4), plugins=plugins)
    assert result.samples["components"] == {"heads": 144, "neurons": 36864}[kind]
    assert result.params["attention"] == "attnlrp" and len(result.curve) == 3


@pytest.mark.e2e
def test_vit_b_16_smoke_run_at_224_px(plugins, imagenet_like):
    result = run_benchmark(Benchmark(model="vit_b_16", method="lrp", dataset="imagenet", data_root=imagenet_like,
                                     weights="none", components="heads", n_classes=2, ref_per_class=1,
                                     rates=(0.0, 0.5), batch_size=4), plugins=plugins)
    assert result.samples["image_size"] is None and result.samples["evaluation"] == 6


def test_vit_image_sizes_that_do_not_fit_the_patches_are_a_clear_error():
    from pxp_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot be built with --image-size 100"):
        build_torchvision("vit_b_16", weights="none", image_size=100)


def test_gated_timm_attention_keeps_its_heads_for_gradients_but_refuses_lrp_rules():
    from pxp_bench.errors import ComponentError

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=5).eval()
    attention = model.blocks[0].attn
    attention.gate = nn.Linear(192, 192)
    x = _inputs(2)
    plain = model(x)
    with explicit_attention(model):
        torch.testing.assert_close(model(x), plain)  # falls back to timm's own forward
        with pytest.raises(ComponentError, match="cannot be applied"), explicit_attention(model, rule="cp"):
            model(x)


def test_patches_and_explicit_attention_are_undone_when_scoring_raises(tiny_vits):
    from zennit.core import BasicHook

    patched = (nn.GELU, nn.LayerNorm, timm.layers.LayerNorm, BasicHook, nn.MultiheadAttention)
    before = {cls: dict(vars(cls)) for cls in patched}
    for model in tiny_vits.values():
        components = discover_components(model, "heads", _inputs(1))
        out_of_range = ReferenceSet(LabelledTensors(_inputs(2), [0, 7]), list(range(5)), 2, CPU)
        with pytest.raises(RuntimeError, match="out of bounds|index"):
            lrp(model, components, out_of_range)  # raises inside every context, at the target's gather
        assert not has_hooks(model) and all("forward" not in vars(m) for m in model.modules())
    assert {cls: dict(vars(cls)) for cls in patched} == before


class ChannelFirstNormViT(nn.Module):
    """A hybrid: a conv stem with timm's channel-first LayerNorm2d, then a timm attention block."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 8, stride=8)
        self.norm = timm.layers.LayerNorm2d(16)
        self.block = nn.Module()
        self.block.attn = timm.layers.Attention(16, num_heads=2)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        tokens = self.norm(self.stem(x)).flatten(2).transpose(1, 2)
        return self.head(self.block.attn(tokens).mean(dim=1))


def test_lrp_refuses_channel_first_norms_instead_of_normalising_the_wrong_axis():
    from pxp_bench.errors import ComponentError

    model = ChannelFirstNormViT().eval()
    components = discover_components(model, "heads", _inputs(1))
    before = dict(vars(timm.layers.LayerNorm2d))
    with pytest.raises(ComponentError, match="cannot handle the model's LayerNorm2d.*another --method"):
        lrp(model, components, _reference())
    assert dict(vars(timm.layers.LayerNorm2d)) == before and not has_hooks(model)
    assert torch.isfinite(torch.cat(list(BUILTINS.methods.get("taylor").load_score()(
        model, components, _reference(), RunContext.seeded(0)).values()))).all()
