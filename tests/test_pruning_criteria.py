"""The Torch-Pruning criteria (l1, l2, lamp, bn_scale, group_taylor, hessian, fpgm) against hand computations.

Each criterion is recomputed here from its formula on the parameter slices that Torch-Pruning's dependency
group of a layer holds (written out by hand in `GROUPS`), with gradients computed here independently of the
bridge (full batch, or one sample at a time, on a copy of the model).
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset

from pxp_bench.api import LabelledTensors, ReferenceSet, RunContext
from pxp_bench.attribution import torch_pruning_bridge as bridge
from pxp_bench.components import find_components
from pxp_bench.errors import ConfigError
from pxp_bench.guards import model_state, state_changes
from pxp_bench.plugins import Plugins
from pxp_bench.testing import check_method

CRITERIA = ("l1", "l2", "lamp", "bn_scale", "group_taylor", "hessian", "fpgm")
SCORE = {name: getattr(bridge, f"{name}_scores") for name in CRITERIA}
BUILTINS = Plugins(load_external=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread here: hessian's per-sample passes are many tiny ops, which a second thread only
    slows down (by 30x when the 2 cores are busy with other work); restored for the other modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Tiny(nn.Module):
    """conv-BN-ReLU, conv-BN-ReLU, global pool, Linear-ReLU-Linear: filters conv1, conv2; neurons fc1."""

    def __init__(self, batchnorm: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        norm = nn.BatchNorm2d if batchnorm else (lambda channels: nn.Identity())
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1, bias=False), norm(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 6, 3, padding=1, bias=False), norm(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Linear(6, 5), nn.Linear(5, 3)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                if isinstance(bn, nn.BatchNorm2d):  # gammas of both signs, non-trivial statistics
                    bn.weight.copy_(torch.randn(bn.num_features))
                    bn.bias.copy_(torch.randn(bn.num_features))
                    bn.running_mean.copy_(0.1 * torch.randn(bn.num_features))
                    bn.running_var.copy_(0.5 + torch.rand(bn.num_features))
        self.eval()

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc2(F.relu(self.fc1(self.pool(x).flatten(1))))


GROUPS = {
    # what Torch-Pruning removes with channel c of each layer: (parameter, axis holding c)
    "conv1": [("conv1.weight", 0), ("bn1.weight", 0), ("conv2.weight", 1)],
    "conv2": [("conv2.weight", 0), ("bn2.weight", 0), ("fc1.weight", 1)],
    "fc1": [("fc1.weight", 0), ("fc2.weight", 1)],
}
CLASS_IDS = [0, 2]
"""The run's classes: a 3-logit model restricted to 2, so a loss over the full logits would show."""


def _data(n: int = 8):
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(n, 1, 6, 6, generator=generator)
    targets = [CLASS_IDS[i % 2] for i in range(n)]
    return LabelledTensors(inputs, targets)


def _reference(dataset, batch_size: int = 3, class_ids=CLASS_IDS) -> ReferenceSet:
    return ReferenceSet(dataset, class_ids, batch_size, torch.device("cpu"))


def _components(model, kind: str, dataset):
    return find_components(model, kind, dataset.inputs[:2] if hasattr(dataset, "inputs") else dataset[0][0][None])


def _rows(tensor: torch.Tensor, axis: int) -> torch.Tensor:
    """(channels, everything else) of a parameter, channels along ``axis``."""
    moved = tensor.detach().double().movedim(axis, 0)
    return moved.reshape(moved.shape[0], -1)


def _slices(tensors: dict, layer: str, with_bn: bool = True) -> list[torch.Tensor]:
    return [_rows(tensors[name], axis) for name, axis in GROUPS[layer] if with_bn or not name.startswith("bn")]


def _mean_normalized(per_layer: list[torch.Tensor]) -> torch.Tensor:
    """Torch-Pruning's defaults: group_reduction=mean over the layers, normalizer=mean over the channels."""
    score = torch.stack(per_layer).mean(dim=0)
    return score / score.mean()


def _loss_gradients(model, dataset, per_sample: bool) -> dict[str, torch.Tensor]:
    """Gradients of the cross-entropy over the run's classes: of the mean over all samples, or the mean of
    the squared per-sample gradients. On a copy of the model, all in one batch or one sample at a time."""
    twin = copy.deepcopy(model)
    for param in twin.parameters():
        param.requires_grad_(True)
    ids = torch.tensor(CLASS_IDS)
    positions = (torch.tensor(dataset.targets)[:, None] == ids).int().argmax(dim=1)
    if not per_sample:
        F.cross_entropy(twin(dataset.inputs)[:, ids], positions).backward()
        return {name: p.grad.clone() for name, p in twin.named_parameters()}
    squares = {name: torch.zeros_like(p) for name, p in twin.named_parameters()}
    for i in range(len(dataset)):
        twin.zero_grad()
        F.cross_entropy(twin(dataset.inputs[i:i + 1])[:, ids], positions[i:i + 1]).backward()
        for name, p in twin.named_parameters():
            squares[name] += p.grad.square()
    return {name: value / len(dataset) for name, value in squares.items()}


def _lamp(s: torch.Tensor) -> torch.Tensor:
    """LAMP: s(c) / sum of the scores not smaller than s(c) (no ties here)."""
    return torch.stack([s[c] / s[s >= s[c]].sum() for c in range(len(s))])


def _fpgm_layer(rows: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Sum over the other channels of the euclidean distance between |w|^p rows."""
    a = rows.abs() ** p
    return torch.stack([(a[c] - a).norm(dim=1).sum() for c in range(len(a))])


def _expected(criterion: str, model: nn.Module, layer: str, dataset) -> torch.Tensor:
    w = dict(model.named_parameters())
    if criterion in ("l1", "l2"):
        p = 1 if criterion == "l1" else 2
        return _mean_normalized([(s.abs() ** p).sum(1) for s in _slices(w, layer)])
    if criterion == "lamp":  # p=2, no normaliser but LAMP's own
        return _lamp(torch.stack([(s ** 2).sum(1) for s in _slices(w, layer)]).mean(0))
    if criterion == "bn_scale":
        gamma = [s for (name, _), s in zip(GROUPS[layer], _slices(w, layer)) if name.startswith("bn")]
        return _mean_normalized([g.abs().sum(1) for g in gamma])
    if criterion == "fpgm":  # conv / Linear slices only
        return _mean_normalized([_fpgm_layer(s) for s in _slices(w, layer, with_bn=False)])
    if criterion == "group_taylor":
        # Torch-Pruning 1.6.1 leaves BatchNorm out of group Taylor (its BN branch tests GroupNorm's function)
        g = _loss_gradients(model, dataset, per_sample=False)
        return _mean_normalized([(s * d).abs().sum(1) for s, d in zip(_slices(w, layer, False), _slices(g, layer, False))])
    if criterion == "hessian":
        h = _loss_gradients(model, dataset, per_sample=True)
        return _mean_normalized([(s ** 2 * d).sum(1) for s, d in zip(_slices(w, layer), _slices(h, layer))])
    raise AssertionError(criterion)


CASES = [(criterion, "filters", layer) for criterion in CRITERIA for layer in ("conv1", "conv2")] + \
        [(criterion, "neurons", "fc1") for criterion in CRITERIA if criterion != "bn_scale"]


@pytest.mark.parametrize("criterion, kind, layer", CASES)
def test_each_criterion_matches_its_formula_on_the_group(criterion, kind, layer):
    model, data = Tiny(), _data()
    scores = SCORE[criterion](model, _components(model, kind, data), _reference(data), RunContext.seeded(0))
    expected = _expected(criterion, model, layer, data)
    assert scores[layer].dtype == torch.float32 and scores[layer].device.type == "cpu"
    torch.testing.assert_close(scores[layer].double(), expected, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(expected, expected[0].expand_as(expected))  # the comparison can fail


def test_torch_pruning_parameters_are_passed_through():
    model, data = Tiny(), _data()
    components, reference, w = _components(model, "filters", data), _reference(data), dict(model.named_parameters())
    # normalizer none + group_reduction first: the classic L1 norm of the filter's own kernel (Li et al.)
    first = bridge.l1_scores(model, components, reference, RunContext.seeded(0), normalizer="none",
                             group_reduction="first")
    torch.testing.assert_close(first["conv1"].double(), _rows(w["conv1.weight"], 0).abs().sum(1))
    # bias: the BatchNorm's beta joins the group as a layer of its own (4 layers averaged), normalizer max
    with_bias = bridge.l1_scores(model, components, reference, RunContext.seeded(0), normalizer="max", bias=True)
    per_layer = [s.abs().sum(1) for s in _slices(w, "conv1")] + [w["bn1.bias"].detach().double().abs()]
    expected = torch.stack(per_layer).mean(0)
    torch.testing.assert_close(with_bias["conv1"].double(), expected / expected.max())
    # multivariable Taylor: |sum w * g| per layer slice, summed over the group's conv layers, sum reduction
    g = _loss_gradients(model, data, per_sample=False)
    taylor = bridge.group_taylor_scores(model, components, reference, RunContext.seeded(0), normalizer="none",
                                        group_reduction="sum", multivariable=True)
    expected = sum((s * d).sum(1).abs() for s, d in zip(_slices(w, "conv1", False), _slices(g, "conv1", False)))
    torch.testing.assert_close(taylor["conv1"].double(), expected, rtol=1e-5, atol=1e-8)
    # FPGM with p=1 and the gaussian normaliser
    fpgm = bridge.fpgm_scores(model, components, reference, RunContext.seeded(0), p=1, normalizer="gaussian")
    raw = torch.stack([_fpgm_layer(s, p=1) for s in _slices(w, "conv2", with_bn=False)]).mean(0)
    torch.testing.assert_close(fpgm["conv2"].double(), (raw - raw.mean()) / (raw.std() + 1e-8), rtol=1e-5, atol=1e-6)


def test_gradient_criteria_do_not_depend_on_the_batch_size_and_report_progress():
    model, data = Tiny(), _data()
    components = _components(model, "filters", data)
    for criterion in ("group_taylor", "hessian"):
        seen: list[int] = []
        context = RunContext(torch.device("cpu"), RunContext.seeded(0).seeds, progress=seen.append)
        small = SCORE[criterion](model, components, _reference(data, batch_size=3), context)
        whole = SCORE[criterion](model, components, _reference(data, batch_size=8), RunContext.seeded(0))
        assert sum(seen) == len(data) and len(seen) == 3
        for name in small:
            torch.testing.assert_close(small[name], whole[name], rtol=1e-5, atol=1e-7)


def test_l1_on_the_zoo_flatten_and_transformer_groups(zoo_model, digits):
    """Real models: digits-vgg's last conv feeds a Linear through Flatten (16 input columns per channel);
    digits-vit's MLP neurons group the MLP's two Linears."""
    reference = ReferenceSet(Subset(digits.train, range(4)), list(range(10)), 4, torch.device("cpu"))
    example = digits.train[0][0][None]

    vgg = zoo_model("digits-vgg")
    scores = bridge.l1_scores(vgg, find_components(vgg, "filters", example), reference, RunContext.seeded(0))
    w = dict(vgg.named_parameters())
    columns = w["classifier.1.weight"].detach().double().abs().sum(0).view(64, 16).sum(1)  # flatten: c*16 .. c*16+15
    expected = _mean_normalized([_rows(w["features.14.weight"], 0).abs().sum(1),
                                 w["features.15.weight"].detach().double().abs(), columns])
    torch.testing.assert_close(scores["features.14"].double(), expected, rtol=1e-5, atol=1e-7)

    vit = zoo_model("digits-vit")
    scores = bridge.l1_scores(vit, find_components(vit, "neurons", example), reference, RunContext.seeded(0))
    prefix = "encoder.layers.encoder_layer_0.mlp"
    w = dict(vit.named_parameters())
    expected = _mean_normalized([_rows(w[f"{prefix}.0.weight"], 0).abs().sum(1), _rows(w[f"{prefix}.3.weight"], 1).abs().sum(1)])
    assert len(scores) == 4
    torch.testing.assert_close(scores[f"{prefix}.0"].double(), expected, rtol=1e-5, atol=1e-7)


COUPLED = [("stem.0", "layer1.conv2"), ("layer2.conv2", "layer2.downsample.0"), ("layer3.conv2", "layer3.downsample.0")]


@pytest.mark.parametrize("criterion", CRITERIA)
def test_coupled_residual_producers_get_equal_scores_and_the_model_is_left_as_found(criterion, zoo_model, digits):
    model = zoo_model("digits-resnet")
    reference = ReferenceSet(Subset(digits.train, range(6)), list(range(10)), 3, torch.device("cpu"))
    components = find_components(model, "filters", digits.train[0][0][None])
    before = model_state(model, exact=True)
    scores = SCORE[criterion](model, components, reference, RunContext.seeded(0))
    assert state_changes(before, model) == []
    for a, b in COUPLED:
        torch.testing.assert_close(scores[a], scores[b], rtol=1e-5, atol=1e-7)
    # not a tautology: an uncoupled producer has scores of its own
    assert not torch.allclose(scores["layer1.conv1"], scores["layer1.conv2"], rtol=1e-3)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_the_model_is_left_exactly_as_found(criterion):
    """Train mode, a frozen weight, a gradient already present and a hook of the caller's: all as they were."""
    model, data = Tiny(), _data()
    components = _components(model, "filters", data)
    model.train()
    model.conv1.weight.requires_grad_(False)
    existing_grad = torch.ones_like(model.fc2.weight)
    model.fc2.weight.grad = existing_grad
    handle = model.bn2.register_forward_hook(lambda *args: None)
    before = model_state(model, exact=True)
    SCORE[criterion](model, components, _reference(data), RunContext.seeded(0))
    assert state_changes(before, model) == []
    assert model.fc2.weight.grad is existing_grad and list(model.bn2._forward_hooks) == [handle.id]
    assert model.training and model.bn1.training and not model.conv1.weight.requires_grad


class Untraceable(Tiny):
    """Fails half-way through a forward pass in grad mode, i.e. in Torch-Pruning's trace (after its hooks on
    conv1 fired), but runs in pxp-bench's no-grad probe."""

    def forward(self, x):
        x = self.conv1(x)
        if torch.is_grad_enabled():
            raise RuntimeError("data-dependent control flow")
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(x)))))
        return self.fc2(F.relu(self.fc1(self.pool(x).flatten(1))))


def test_a_model_torch_pruning_cannot_trace_is_refused_and_left_without_hooks():
    model, data = Untraceable(), _data()
    components = _components(model, "filters", data)
    before = model_state(model, exact=True)
    with pytest.raises(ConfigError, match=r"Torch-Pruning cannot trace the model: RuntimeError: data-dependent control flow "
                                         r"\(last layer entered: 'conv1'\); choose a method"):
        bridge.l1_scores(model, components, _reference(data), RunContext.seeded(0))
    assert state_changes(before, model) == []


def test_bn_scale_refuses_a_filter_without_batchnorm():
    model, data = Tiny(batchnorm=False), _data()
    components = _components(model, "filters", data)
    before = model_state(model, exact=True)
    with pytest.raises(ConfigError, match="layer 'conv1' has no BatchNorm after it, so bn_scale .* another method"):
        bridge.bn_scale_scores(model, components, _reference(data), RunContext.seeded(0))
    assert state_changes(before, model) == []


def test_the_specs_declare_what_works_and_listing_imports_no_torch():
    specs = {name: BUILTINS.methods.get(name) for name in CRITERIA}
    assert all(spec.components == frozenset({"filters", "neurons"}) for name, spec in specs.items() if name != "bn_scale")
    assert specs["bn_scale"].components == frozenset({"filters"}) and specs["bn_scale"].families == frozenset({"cnn"})
    assert all(spec.params.get("normalizer") is None or spec.params["normalizer"].default == "mean"
               for spec in specs.values())
    code = ("import sys, pxp_bench.attribution.torch_pruning_builtin as m; "
            "names = []; m.register_methods(register=lambda spec: names.append(spec.name)); "
            "assert 'torch' not in sys.modules and 'torch_pruning' not in sys.modules, 'imported torch'; print(*names)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == list(CRITERIA)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_each_criterion_passes_the_conformance_kit(criterion):
    check_method(criterion, plugins=BUILTINS)
