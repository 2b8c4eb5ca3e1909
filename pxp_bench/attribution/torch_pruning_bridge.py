"""The pruning literature's criteria, computed by Torch-Pruning on its dependency groups.

One bridge, no re-implementation: for each `ComponentGroup` (its ``name`` is the producing module, a
Conv2d for filters, a Linear for neurons) the bridge asks Torch-Pruning's `DependencyGraph` for the
group of that module's output channels and calls a Torch-Pruning importance on it, which returns one
score per channel. What the bridge adds is only what Torch-Pruning leaves to its caller: the graph is
traced on the first reference batch, the gradients that ``group_taylor`` and ``hessian`` read from the
parameters' ``.grad`` are computed from the reference set, and the model is put back exactly as found
(`_left_as_found`): Torch-Pruning's tracing switches the model to eval mode and leaves its forward hooks
behind when the forward pass raises; the gradient criteria need ``requires_grad`` and ``.grad``.

Group semantics (Torch-Pruning's): a filter's group holds every parameter that would be removed with
it: the conv's kernel, the BatchNorm after it, the next layer's input slice (for the Linear after a
Flatten, all its input columns of that channel), and, where a residual sum couples layers, the kernels,
BatchNorms and consumers of every producer of the sum. Each layer ``l`` of the group gives a local
importance ``I_l(c)``; ``group_reduction`` combines them (``mean``: ``sum_l I_l(c) / L``) and
``normalizer`` rescales the group's scores (``mean``: divide by their mean over the group's channels).
Coupled producers (the convs feeding one residual sum in a ResNet) share one group, so they get the
same scores (up to float rounding), as Torch-Pruning's own pruners prune them together; only
``group_reduction=first``, which keeps the root layer's term alone, scores each producer by its own weights.
Heads are not offered: Torch-Pruning's group of an attention module is its embedding channels, not heads.

Data: the trace uses the first reference batch. ``group_taylor`` and ``hessian`` use the loss
``CE`` = cross-entropy over the logits restricted to the run's classes (`ReferenceSet.class_ids`,
PROTOCOL section 1.2: the logits the evaluation compares), the target being the true class's position
among them. ``group_taylor`` reads ``g`` = the gradient of the mean loss over all reference samples;
``hessian`` reads ``h`` = the mean over the reference samples of the squared per-sample gradient (the
empirical Fisher diagonal, OBD's Hessian approximation), computed one sample at a time. Both are
independent of the batch size.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.components import ComponentGroup, Components
from pxp_bench.errors import ConfigError, first_line

NORMALIZERS = ("mean", "none", "max", "sum", "standarization", "gaussian")
"""Torch-Pruning's per-group normalisers (its spelling): score / mean, unchanged, / max, / sum,
(s - min) / (max - min + 1e-8), (s - mean) / (std + 1e-8)."""
GROUP_REDUCTIONS = ("mean", "sum", "max", "prod", "first")
"""How the layers of a group combine (``first``: only the first layer that contributes, the root)."""

_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
               "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks")


@contextmanager
def _left_as_found(model: nn.Module) -> Iterator[list[nn.Parameter]]:
    """Within the block the model is in eval mode (as Torch-Pruning's trace sets it; BatchNorm statistics
    never move) and every parameter requires grad (tracing and gradients need it); on exit, also when
    raising, restore each module's train / eval flag, each parameter's ``requires_grad`` and ``.grad``
    (the same object, usually None), and remove every hook added meanwhile."""
    modules = list(model.modules())
    training = [module.training for module in modules]
    hooks = [{attr: set(getattr(module, attr, None) or ()) for attr in _HOOK_DICTS} for module in modules]
    params = list(model.parameters())
    requires = [param.requires_grad for param in params]
    grads = [param.grad for param in params]
    try:
        model.eval()
        for param in params:
            param.requires_grad_(True)
        yield params
    finally:
        for module, flag in zip(modules, training):
            module.training = flag
        for module, before in zip(modules, hooks):
            for attr, keys in before.items():
                registry = getattr(module, attr, None)
                if registry:
                    for key in [key for key in registry if key not in keys]:
                        del registry[key]
        for param, flag, grad in zip(params, requires, grads):
            param.grad = grad
            param.requires_grad_(flag)


def _graph(model: nn.Module, example: torch.Tensor):
    """Torch-Pruning's dependency graph, traced on ``example``; a failing trace names the last layer entered."""
    import torch_pruning as tp

    entered: list[str] = []
    handles = [module.register_forward_pre_hook(lambda *args, name=name: entered.append(name))
               for name, module in model.named_modules() if name]
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "unwrapped parameters detected" (ViT's class token): expected
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=example, forward_fn=lambda module, inputs: module(inputs), verbose=False)
    except Exception as exc:  # tracing is Torch-Pruning's: any failure means this model is out of its reach
        where = f" (last layer entered: '{entered[-1]}')" if entered else ""
        raise ConfigError(
            f"Torch-Pruning cannot trace the model: {first_line(exc)}{where}; "
            "choose a method that needs no dependency graph (magnitude, taylor, lrp)."
        ) from None
    finally:
        for handle in handles:
            handle.remove()


def _pruning_group(graph, module: nn.Module, group: ComponentGroup):
    import torch_pruning as tp

    if isinstance(module, nn.Conv2d):
        handler = tp.prune_conv_out_channels
    elif isinstance(module, nn.Linear):
        handler = tp.prune_linear_out_channels
    else:
        raise ConfigError(
            f"layer '{group.name}' is a {type(module).__name__}; the Torch-Pruning criteria score Conv2d filters "
            "and Linear neurons: choose --components filters or neurons, or another method."
        )
    if module not in graph.module2node:
        raise ConfigError(
            f"Torch-Pruning's dependency graph does not contain layer '{group.name}' (its trace did not reach it); "
            "choose a method that needs no dependency graph (magnitude, taylor, lrp)."
        )
    return graph.get_pruning_group(module, handler, idxs=list(range(group.size)))


def _targets_among(class_ids, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's class ids on the device and each target's position among them."""
    ids = torch.as_tensor(list(class_ids), device=targets.device)
    matches = targets[:, None] == ids[None, :]
    if not bool(matches.any(dim=1).all()):
        raise ConfigError("a reference target is not one of the run's classes; check the class selection.")
    return ids, matches.int().argmax(dim=1)


def _loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, class_ids) -> torch.Tensor:
    """Summed cross-entropy over the logits restricted to the run's classes."""
    ids, positions = _targets_among(class_ids, targets)
    return F.cross_entropy(model(inputs)[:, ids], positions, reduction="sum")


def _mean_gradient(model, params, reference: ReferenceSet, context: RunContext) -> list[torch.Tensor]:
    """g = gradient of (1/n) sum_i CE_i over the reference set."""
    total = [torch.zeros_like(p) for p in params]
    count = 0
    with torch.enable_grad():
        for inputs, targets in context.track(reference.batches()):
            grads = torch.autograd.grad(_loss(model, inputs, targets, reference.class_ids), params,
                                        allow_unused=True)
            for acc, grad in zip(total, grads):
                if grad is not None:
                    acc += grad
            count += len(targets)
    return [acc / max(count, 1) for acc in total]


def _mean_squared_gradient(model, params, reference: ReferenceSet, context: RunContext) -> list[torch.Tensor]:
    """h = (1/n) sum_i (dCE_i/dw)^2, one sample at a time.

    (Torch-Pruning 1.6.1's ``GroupHessianImportance.accumulate_grad`` tests ``name not in`` a dict keyed by
    parameter, so it keeps the last sample's square only; the bridge accumulates itself and hands the
    importance the mean through ``.grad``, which is what it reads when it has nothing accumulated.)
    """
    total = [torch.zeros_like(p) for p in params]
    count = 0
    with torch.enable_grad():
        for inputs, targets in context.track(reference.batches()):
            for index in range(len(targets)):
                sample = slice(index, index + 1)
                grads = torch.autograd.grad(_loss(model, inputs[sample], targets[sample], reference.class_ids),
                                            params, allow_unused=True)
                for acc, grad in zip(total, grads):
                    if grad is not None:
                        acc += grad.square()
            count += len(targets)
    return [acc / max(count, 1) for acc in total]


def torch_pruning_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
    importance, gradients: Callable | None = None, what: str = "this criterion", unscored: str | None = None,
) -> dict[str, torch.Tensor]:
    """Score every group of ``components`` with the Torch-Pruning ``importance``.

    ``gradients(model, params, reference, context)``, when given, returns what the importance reads from
    each parameter's ``.grad`` (filled before the first group, restored afterwards). ``what`` names the
    criterion in errors; ``unscored`` (formatted with ``layer``) is the error for a group in which the
    importance finds nothing to score.
    """
    modules = dict(model.named_modules())
    example, _ = next(iter(reference.batches()))
    scores = {}
    with _left_as_found(model) as params:
        graph = _graph(model, example)
        if gradients is not None:
            for param, grad in zip(params, gradients(model, params, reference, context)):
                param.grad = grad
        with torch.no_grad():
            for group in components.groups:
                pruning_group = _pruning_group(graph, modules[group.name], group)
                score = importance(pruning_group)
                if score is None:
                    raise ConfigError((unscored or "layer '{layer}': its Torch-Pruning group has no layer that "
                                       f"{what} scores; choose another method.").format(layer=group.name))
                score = score.detach().reshape(-1).float().cpu()
                if score.numel() != group.size:
                    raise ConfigError(
                        f"layer '{group.name}': Torch-Pruning gave {score.numel()} scores for its {group.size} "
                        "channels (grouped or depthwise convolution?); choose another method."
                    )
                if not torch.isfinite(score).all():
                    raise ConfigError(
                        f"layer '{group.name}': {what} gave non-finite scores (a group of zeros divided by its "
                        "normalizer?); set normalizer=none where the method has one, or choose another method."
                    )
                scores[group.name] = score
    return scores


def _normalizer(value: str) -> str | None:
    return None if value == "none" else value


# --- one score function per registered method ----------------------------------------------------------

def l1_scores(model, components, reference, context, normalizer="mean", group_reduction="mean", bias=False):
    """Group L1 magnitude: ``I_l(c) = sum |w|`` over the channel's slice of each conv / Linear / BN weight
    of the group (Torch-Pruning's ``MagnitudeImportance(p=1)``). Data-free (the trace only)."""
    import torch_pruning as tp

    importance = tp.importance.MagnitudeImportance(p=1, group_reduction=group_reduction,
                                                   normalizer=_normalizer(normalizer), bias=bias)
    return torch_pruning_scores(model, components, reference, context, importance, what="l1")


def l2_scores(model, components, reference, context, normalizer="mean", group_reduction="mean", bias=False):
    """Group L2 magnitude: ``I_l(c) = sum w^2`` over the same slices (``MagnitudeImportance(p=2)``, no
    square root, as Torch-Pruning computes it). Data-free."""
    import torch_pruning as tp

    importance = tp.importance.MagnitudeImportance(p=2, group_reduction=group_reduction,
                                                   normalizer=_normalizer(normalizer), bias=bias)
    return torch_pruning_scores(model, components, reference, context, importance, what="l2")


def lamp_scores(model, components, reference, context, p=2, group_reduction="mean", bias=False):
    """LAMP (Lee et al., 2021): the group magnitude ``s`` (``sum |w|^p``), then within the group
    ``s(c) / sum_{c': s(c') >= s(c)} s(c')`` (``LAMPImportance``). Data-free."""
    import torch_pruning as tp

    importance = tp.importance.LAMPImportance(p=p, group_reduction=group_reduction, bias=bias)
    return torch_pruning_scores(model, components, reference, context, importance, what="lamp")


def bn_scale_scores(model, components, reference, context, normalizer="mean", group_reduction="mean"):
    """Network slimming (Liu et al., 2017): ``|gamma|`` of the BatchNorms in the group
    (``BNScaleImportance``). A layer without a BatchNorm in its group is refused (ConfigError). Data-free."""
    import torch_pruning as tp

    importance = tp.importance.BNScaleImportance(group_reduction=group_reduction, normalizer=_normalizer(normalizer))
    return torch_pruning_scores(
        model, components, reference, context, importance, what="bn_scale",
        unscored="layer '{layer}' has no BatchNorm after it, so bn_scale (network slimming) cannot score it; "
                 "choose a model with a BatchNorm after every conv, or another method (e.g. l1).")


def group_taylor_scores(model, components, reference, context, normalizer="mean", group_reduction="mean",
                        multivariable=False, bias=False):
    """Group Taylor (Molchanov et al., 2019): ``I_l(c) = sum |w * g|`` (``multivariable``: ``|sum w * g|``)
    over the channel's slice of each conv / Linear weight of the group, ``g`` the gradient of the mean
    cross-entropy over the reference set (``GroupTaylorImportance``; Torch-Pruning 1.6.1 leaves the
    group's BatchNorms out: its BN branch tests for GroupNorm's pruning function)."""
    import torch_pruning as tp

    importance = tp.importance.GroupTaylorImportance(group_reduction=group_reduction, normalizer=_normalizer(normalizer),
                                                     multivariable=multivariable, bias=bias)
    return torch_pruning_scores(model, components, reference, context, importance, gradients=_mean_gradient,
                                what="group_taylor")


def hessian_scores(model, components, reference, context, normalizer="mean", group_reduction="mean", bias=False):
    """Group OBD (LeCun et al., 1990): ``I_l(c) = sum w^2 * h`` over the channel's slice of each conv /
    Linear / BN weight of the group, ``h`` the mean squared per-sample gradient of the cross-entropy
    (``GroupHessianImportance``)."""
    import torch_pruning as tp

    importance = tp.importance.GroupHessianImportance(group_reduction=group_reduction, normalizer=_normalizer(normalizer),
                                                      bias=bias)
    return torch_pruning_scores(model, components, reference, context, importance, gradients=_mean_squared_gradient,
                                what="hessian")


def fpgm_scores(model, components, reference, context, p=2, normalizer="mean", group_reduction="mean"):
    """FPGM (He et al., 2019): per conv / Linear of the group, ``I_l(c) = sum_{c'} || |w_c|^p - |w_c'|^p ||_2``,
    the distance of the channel's slice to all others (a channel near the geometric median is redundant)
    (``FPGMImportance``). Data-free."""
    import torch_pruning as tp

    importance = tp.importance.FPGMImportance(p=p, group_reduction=group_reduction, normalizer=_normalizer(normalizer))
    return torch_pruning_scores(model, components, reference, context, importance, what="fpgm")
