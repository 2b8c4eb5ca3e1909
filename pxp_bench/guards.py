"""What a run checks of a plugin's output every time: scores, the model after scoring, a dataset's samples.

A plugin's mistake must stop the run with one line naming the plugin, never reach a result: scores of
another shape would be flattened and ranked as if they fitted, a hook left on the model would change
every rate's accuracy, an item of another shape fails deep inside torch after minutes of work. The
conformance kit (`pxp_bench.testing`) checks the same contract once, in a plugin's own tests, and more
thoroughly (it compares every tensor exactly); these checks are the ones cheap enough for every run and
every trial of a study, and the kit shares them rather than keeping a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from pxp_bench.components import Components
from pxp_bench.errors import ComponentError, DataError

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_state_dict_hooks", "_load_state_dict_pre_hooks")
"""The per-module hook registries a method could leave an entry in."""


# --- scores ---------------------------------------------------------------------------------------------

def check_scores(components: Components, scores: Any) -> None:
    """Refuse anything but exactly one finite floating score per component: ``{group: tensor (size,)}``.

    Stricter than "the right number of values": a (size, 1) or (2, size / 2) tensor would rank after
    flattening, silently pairing scores with the wrong channels, and integer scores tie in bulk.
    """
    if not isinstance(scores, Mapping):
        raise ComponentError(f"scores are a {type(scores).__name__}, not a mapping; return {{group name: 1-D tensor}}.")
    expected = {group.name: group.size for group in components.groups}
    missing = sorted(set(expected) - set(scores))
    extra = sorted(set(scores) - set(expected))
    if missing or extra:
        raise ComponentError(
            f"scores do not match the model's {components.kind}: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}."
        )
    for name, size in expected.items():
        score = scores[name]
        if not isinstance(score, torch.Tensor):
            raise ComponentError(f"scores for '{name}' are a {type(score).__name__}; expected a tensor of shape ({size},).")
        if tuple(score.shape) != (size,):
            raise ComponentError(f"scores for '{name}' have shape {tuple(score.shape)}; expected ({size},).")
        if not score.is_floating_point():
            raise ComponentError(f"scores for '{name}' have dtype {score.dtype}; expected a floating dtype.")
        if not torch.isfinite(score).all():
            raise ComponentError(f"scores for '{name}' are not all finite (NaN or inf).")


# --- the model after scoring ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelState:
    """What scoring must leave as it was, as `model_state` records it."""

    tensors: dict[str, Any]
    """Per weight and buffer: a summary (cheap) or a copy (exact)."""
    requires_grad: dict[str, bool]
    modes: dict[str, tuple[type, bool]]
    hooks: dict[str, tuple[tuple[int, ...], ...]]
    patched: dict[str, list[str]]
    grads: list[str]
    grad_mode: bool
    exact: bool


def _summary(tensor: torch.Tensor) -> tuple:
    total = tensor.detach().sum(dtype=torch.float64).item()
    return tuple(tensor.shape), tensor.dtype, tensor.device, "nan" if total != total else total


def model_state(model: nn.Module, *, exact: bool = False) -> ModelState:
    """The state of ``model`` that a method must not change: weights and buffers, ``requires_grad``, each
    module's class and train / eval mode, its hooks (by id: one removed and another added still differ),
    forwards patched on instances, ``.grad`` entries and torch's grad mode.

    Weights are summarised by shape, dtype, device and their sum in float64 (``exact``: copied, as the kit
    does). A copy of every tensor would double a ViT-B's memory for each trial of a study; version counters
    miss writes through ``.data`` and flag a change restored in place. The sums read each weight once (less
    than one forward pass of the scoring that precedes them) and compare values: a change undone exactly
    passes, any accidental one (a scaled layer, a zeroed channel, BatchNorm statistics updated in train mode)
    shows; only an edit that keeps every tensor's sum exactly slips through.
    """
    modules = dict(model.named_modules())
    return ModelState(
        tensors={key: value.detach().clone() if exact else _summary(value)
                 for key, value in model.state_dict(keep_vars=True).items()},
        requires_grad={name: p.requires_grad for name, p in model.named_parameters()},
        modes={name: (type(module), module.training) for name, module in modules.items()},
        hooks={name: tuple(tuple(getattr(module, attr, None) or ()) for attr in HOOK_DICTS)
               for name, module in modules.items()},
        patched={name: sorted(key for key in vars(module) if key in ("forward", "__call__"))
                 for name, module in modules.items()},
        grads=sorted(name for name, p in model.named_parameters() if p.grad is not None),
        grad_mode=torch.is_grad_enabled(),
        exact=exact,
    )


def _same_tensor(before: Any, after: Any) -> bool:
    if isinstance(before, torch.Tensor):
        return before.shape == after.shape and before.dtype == after.dtype and torch.equal(before, after)
    return before == after


def _named(names: Sequence[str]) -> str:
    return ", ".join(name or "(model)" for name in names[:3])


def state_changes(before: ModelState, model: nn.Module) -> list[str]:
    """What ``model`` no longer has of ``before`` (recorded the same way: cheap or exact), one phrase each."""
    after = model_state(model, exact=before.exact)
    problems = []
    changed = [key for key in before.tensors if key not in after.tensors
               or not _same_tensor(before.tensors[key], after.tensors[key])]
    if changed or set(after.tensors) != set(before.tensors):
        problems.append(f"changed the model's weights or buffers ({_named(changed) if changed else 'its keys'})")
    if after.requires_grad != before.requires_grad:
        problems.append("changed requires_grad of parameters")
    moded = [name for name, mode in after.modes.items() if mode != before.modes.get(name)]
    if moded or set(after.modes) != set(before.modes):
        problems.append(f"changed a module's class or train/eval mode ({_named(moded) if moded else 'its modules'})")
    hooked = [name for name, hooks in after.hooks.items() if hooks != before.hooks.get(name)]
    if hooked:
        problems.append(f"left hooks behind on {_named(hooked)}")
    patched = [name for name, keys in after.patched.items() if keys != before.patched.get(name)]
    if patched:
        problems.append(f"left a patched forward on {_named(patched)}")
    if after.grads != before.grads:
        problems.append(f"left gradients in the parameters' .grad ({', '.join(after.grads[:3])}); use "
                        "torch.autograd.grad, or set them back to None")
    if after.grad_mode != before.grad_mode:
        problems.append("changed torch's global grad mode; use `with torch.enable_grad():`")
    return problems


# --- a dataset's samples --------------------------------------------------------------------------------

def check_items(splits, owner: str) -> None:
    """Refuse a dataset whose first item of any split is not ``(tensor of input_shape, label)``: the run
    would otherwise fail inside the model's first forward pass, or after scoring for the evaluation split."""
    for name in ("train", "eval", "tune"):
        split: Dataset | None = getattr(splits, name)
        if split is None or len(split) == 0:
            continue
        item = split[0]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(f"{owner}: item 0 of split '{name}' is a {type(item).__name__}, not an (input, label) "
                            "pair. Fix the dataset's __getitem__.")
        inputs = item[0]
        if not isinstance(inputs, torch.Tensor):
            raise DataError(f"{owner}: item 0 of split '{name}' is a {type(inputs).__name__}, not a tensor. Convert "
                            "the inputs to tensors in the dataset.")
        if tuple(inputs.shape) != tuple(splits.input_shape):
            raise DataError(f"{owner}: item 0 of split '{name}' has shape {tuple(inputs.shape)}, but the dataset "
                            f"declares input_shape {tuple(splits.input_shape)}. Fix the items or the declared shape.")


def check_readable(dataset: Dataset, indices: Sequence[int]) -> None:
    """Read ahead the samples ``indices`` of ``dataset`` where it offers a cheap check
    (``dataset.check_readable(indices)``, e.g. image files: `pxp_bench.data.imagefolder.ImageFiles`), so that
    a broken file in a set read after scoring stops the run before scoring."""
    check = getattr(dataset, "check_readable", None)
    if check is not None:
        check(indices)
