from __future__ import annotations

import pytest
import torch

from helpers import has_hooks
from pxp_bench.components import ComponentGroup, Components, discover_components
from pxp_bench.errors import ComponentError
from pxp_bench.masking import keep_masks, masked, pruned_count, pruned_fractions, rank_components

EXAMPLE = torch.zeros(1, 1, 32, 32)


def _pair() -> Components:
    return Components("filters", (ComponentGroup("a", "a", 3), ComponentGroup("b", "b", 2)))


def test_ranking_is_ascending_with_stable_ties():
    order = rank_components(_pair(), {"a": torch.tensor([0.5, 0.1, 0.5]), "b": torch.tensor([0.1, 0.0])})
    assert order.tolist() == [4, 1, 3, 0, 2]


def test_pruned_count_floors_with_tolerance():
    assert pruned_count(0.3, 10) == 3  # 0.3 * 10 = 2.9999999999999996
    assert pruned_count(0.05, 160) == 8
    assert pruned_count(0.0, 5) == 0


def test_pruned_sets_are_nested():
    components = _pair()
    order = rank_components(components, {"a": torch.rand(3), "b": torch.rand(2)})
    previous = torch.zeros(5, dtype=torch.bool)
    for n in range(6):
        pruned = ~torch.cat(list(keep_masks(components, order, n).values()))
        assert int(pruned.sum()) == n and bool((pruned | ~previous).all()) and bool((pruned & previous).eq(previous).all())
        previous = pruned
    assert pruned_fractions(keep_masks(components, order, 5)) == {"a": 1.0, "b": 1.0}


@pytest.mark.parametrize("scores, message", [
    ({"a": torch.zeros(3)}, "missing \\['b'\\]"),
    ({"a": torch.zeros(3), "b": torch.zeros(2), "c": torch.zeros(1)}, "unexpected \\['c'\\]"),
    ({"a": torch.zeros(4), "b": torch.zeros(2)}, r"have shape \(4,\); expected \(3,\)"),
    ({"a": torch.tensor([0.0, float("nan"), 1.0]), "b": torch.zeros(2)}, "not all finite"),
])
def test_scores_that_do_not_fit_are_refused(scores, message):
    with pytest.raises(ComponentError, match=message):
        rank_components(_pair(), scores)


def test_masked_components_output_zero_and_others_are_untouched(zoo_model):
    model = zoo_model("digits-vgg")
    components = discover_components(model, "filters", EXAMPLE)
    x = torch.rand(4, 1, 32, 32)
    up_to_second_bn = model.features[:5]
    masks = {g.name: torch.ones(g.size, dtype=torch.bool) for g in components.groups}
    masks["features.3"] = torch.arange(16) % 2 == 0
    with torch.no_grad():
        plain = up_to_second_bn(x)
        with masked(model, components, masks):
            out = up_to_second_bn(x)
    assert plain[:, 1::2].abs().sum() > 0
    assert torch.equal(out[:, 1::2], torch.zeros_like(out[:, 1::2]))
    assert torch.equal(out[:, ::2], plain[:, ::2])
    assert not has_hooks(model)


def test_hooks_are_removed_on_exceptions(zoo_model):
    model = zoo_model("digits-vgg")
    components = discover_components(model, "filters", EXAMPLE)
    masks = {g.name: torch.ones(g.size, dtype=torch.bool) for g in components.groups}
    with pytest.raises(RuntimeError, match="inside"):
        with masked(model, components, masks):
            raise RuntimeError("inside")
    assert not has_hooks(model)


def test_a_mask_on_a_module_that_never_runs_is_reported(zoo_model):
    model = zoo_model("digits-vgg")
    components = Components("filters", (ComponentGroup("features.0", "features.1", 16),
                                        ComponentGroup("ghost", "classifier.3", 128)))
    masks = {"features.0": torch.ones(16, dtype=torch.bool), "ghost": torch.arange(128) > 0}
    with torch.no_grad(), masked(model, components, masks) as handle:
        model.features(EXAMPLE)
        with pytest.raises(ComponentError, match="classifier.3 did not run"):
            handle.check_all_fired()


def test_unpruned_groups_get_no_hook_and_masking_works_under_autograd(zoo_model):
    model = zoo_model("digits-vgg")
    components = discover_components(model, "filters", EXAMPLE)
    masks = {g.name: torch.ones(g.size, dtype=torch.bool) for g in components.groups}
    masks["features.0"] = torch.arange(16) >= 4
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    with masked(model, components, masks) as handle:
        assert sum(len(m._forward_hooks) for m in model.modules()) == 1
        out = model.features[:2](x)
        handle.check_all_fired()
    out.sum().backward()
    assert torch.equal(out[:, :4], torch.zeros_like(out[:, :4])) and x.grad is not None
