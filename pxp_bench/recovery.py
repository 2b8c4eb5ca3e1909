"""Recovery after pruning (``--recover``, `pxp_bench.conditions`), on a copy of the model per pruned set,
with the pruned components held removed (masked, or replaced by their means) throughout:

- ``bn``: every BatchNorm's running statistics re-estimated from scratch as a cumulative average over
  `BN_BATCHES` training batches (no weight changes): EagleEye's adaptive BatchNorm (Li et al. 2020);
- ``finetune``: ``steps`` steps of SGD (`FINETUNE_LR`, momentum `FINETUNE_MOMENTUM`, no weight decay, batches
  of `RECOVERY_BATCH`, no augmentation, cross-entropy over the run's classes), the model in training mode
  (dropout seeded with the run's seed),
  as ShrinkBench fixes one fine-tuning recipe for every criterion (Blalock et al. 2020).

Both read the *recovery samples*: training samples of the run's classes that are neither reference nor
tuning samples (the evaluation samples come from another split), in an order drawn from the run's seed
(`recovery_indices`); their count and hash are recorded. The same batches serve every rate and method.
"""

from __future__ import annotations

import copy
import math
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from pxp_bench.components import Components
from pxp_bench.data.loading import loader
from pxp_bench.data.protocol import ProtocolSets, seed_streams
from pxp_bench.errors import ConfigError
from pxp_bench.specs import CLASSIFICATION
from pxp_bench.masking import masked
from pxp_bench.tasks.base import Task

RECOVERY_BATCH = 64
"""Samples per recovery batch (BatchNorm re-estimation and fine-tuning)."""
BN_BATCHES = 16
"""Training batches BatchNorm statistics are re-estimated from (fewer where the recovery samples run out)."""
FINETUNE_LR = 0.01
FINETUNE_MOMENTUM = 0.9


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(model: nn.Module) -> bool:
    return bool(_batchnorms(model))


def recovery_indices(targets: Sequence[int], sets: ProtocolSets, seed: int) -> list[int]:
    """Training indices of the run's classes that are not reference (nor tuning, where tuning samples come
    from train), in an order drawn from the run's ``recovery`` stream."""
    excluded = set(sets.reference) | (set(sets.tuning) if sets.tuning_split == "train" else set())
    wanted = set(sets.classes)
    pool = [index for index, target in enumerate(targets) if target in wanted and index not in excluded]
    return [int(i) for i in seed_streams(seed)["recovery"].permutation(np.asarray(pool, dtype=np.int64))]


def needed_samples(recover: str, steps: int | None) -> int:
    """How many recovery samples a recovery reads (at most; fewer are cycled through for fine-tuning)."""
    return RECOVERY_BATCH * (BN_BATCHES if recover == "bn" else steps or 0)


def check_recovery(recover: str, model: nn.Module, task: str, available: int) -> None:
    """Whether ``model`` (of ``task``) can be recovered so, with ``available`` recovery samples (at least one
    full batch); a one-line refusal naming what to change."""
    if recover == "none":
        return
    if task != CLASSIFICATION:
        raise ConfigError(f"--recover {recover} is for image classifiers (CNNs and ViTs); recovering a {task.replace('_', ' ')} "
                          "model is out of scope for now. Drop --recover.")
    if recover == "bn" and not has_batchnorm(model):
        raise ConfigError("--recover bn re-estimates BatchNorm statistics, and this model has no BatchNorm layer (a ViT "
                          "normalises with LayerNorm). Use --recover finetune, or drop --recover.")
    if available < RECOVERY_BATCH:
        raise ConfigError(f"--recover {recover} needs at least {RECOVERY_BATCH} training samples of the run's classes "
                          f"besides the reference and tuning samples; this run has {available}. Lower "
                          "--ref-per-class or --tune-per-class, or use more --classes.")


def recalibrate_batchnorm(model: nn.Module, components: Components, masks: Mapping[str, torch.Tensor],
                          fills: Mapping[str, torch.Tensor] | None, batches: Iterable, device: torch.device) -> None:
    """Re-estimate every BatchNorm's running statistics on ``batches`` (cumulative average), in place."""
    norms = _batchnorms(model)
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over exactly these batches
        norm.train()
    try:
        with torch.no_grad(), masked(model, components, masks, fills):
            for inputs, _ in batches:
                model(inputs.to(device))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
            norm.eval()


def finetune(model: nn.Module, components: Components, masks: Mapping[str, torch.Tensor],
             fills: Mapping[str, torch.Tensor] | None, batches: Iterable, device: torch.device,
             task: Task, class_ids: Sequence[int], seed: int) -> None:
    """One SGD step per batch of ``batches``, the pruned components held removed; in place. Dropout's draws
    come from torch's generator seeded with the run's ``seed`` (restored afterwards), so a rerun reproduces
    the fine-tuned model."""
    ids = torch.as_tensor(list(class_ids), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=FINETUNE_LR, momentum=FINETUNE_MOMENTUM)
    model.train()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), masked(model, components, masks, fills):
            torch.manual_seed(seed)
            for inputs, targets in batches:
                optimizer.zero_grad(set_to_none=True)
                loss = -task.log_likelihood(model(inputs.to(device)), targets.to(device), ids).mean()
                loss.backward()
                optimizer.step()
    finally:
        model.eval()


def cycled(dataset, count: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of `RECOVERY_BATCH` from ``dataset`` in its order, from its start again when it
    runs out (the last batch of a pass may be smaller)."""
    given = 0
    while given < count:
        for batch in loader(dataset, RECOVERY_BATCH, device):
            yield batch
            given += 1
            if given == count:
                return


def recovered_copy(model: nn.Module, components: Components, masks: Mapping[str, torch.Tensor],
                   fills: Mapping[str, torch.Tensor] | None, *, recover: str, steps: int | None, samples,
                   device: torch.device, task: Task, class_ids: Sequence[int], seed: int) -> nn.Module:
    """A copy of ``model`` recovered after pruning ``masks`` on the recovery ``samples`` (a dataset); the
    original is never changed."""
    recovered = copy.deepcopy(model)
    if recover == "bn":
        batches = min(BN_BATCHES, math.ceil(len(samples) / RECOVERY_BATCH))
        recalibrate_batchnorm(recovered, components, masks, fills, cycled(samples, batches, device), device)
    else:
        finetune(recovered, components, masks, fills, cycled(samples, steps, device), device, task, class_ids, seed)
    return recovered.eval()
