"""Removing heads and neurons of decoder LMs physically (PROTOCOL section 12's slimmed evaluation).

The Hugging Face modules infer their head and channel counts from their projections' shapes, so the
surgery cuts rows and columns (Torch-Pruning's per-layer functions for ``nn.Linear``; GPT-2's
``Conv1D`` is a transposed Linear Torch-Pruning does not know, cut here) and updates the few counts the
forward reads.

Grouped-query attention: every query head of a key/value group shares that group's key and value head,
and the forward repeats each key/value head for ``num_key_value_groups`` query heads: every group must
keep the same number of query heads. So a key/value head goes once all its query heads are pruned; of
the groups that keep some, each keeps as many query heads as the fullest one (``m``), pruned heads filling
the rest (still masked at the output projection, so the outputs equal masking exactly); the parameters and
FLOPs of the slimmed copy count them. Without grouping (``m`` = 1 per key/value head) every pruned head goes.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pxp_bench.lm.architecture import is_gated_mlp, is_gpt2_attention, is_gpt2_mlp, is_llama_attention


def _conv1d_keep_outputs(layer: nn.Module, keep: Sequence[int]) -> None:
    """transformers' Conv1D (weight ``(in, out)``): keep output channels ``keep``."""
    index = torch.as_tensor(list(keep), device=layer.weight.device)
    layer.weight = nn.Parameter(layer.weight.data.index_select(1, index).clone())
    layer.bias = nn.Parameter(layer.bias.data.index_select(0, index).clone())
    layer.nf = len(keep)


def _conv1d_keep_inputs(layer: nn.Module, keep: Sequence[int]) -> None:
    index = torch.as_tensor(list(keep), device=layer.weight.device)
    layer.weight = nn.Parameter(layer.weight.data.index_select(0, index).clone())


def _dropped(size: int, keep: Sequence[int]) -> list[int]:
    kept = set(keep)
    return [index for index in range(size) if index not in kept]


def _channels(heads: Sequence[int], width: int) -> list[int]:
    return [head * width + offset for head in heads for offset in range(width)]


def _llama_removable(attention: nn.Module, positions: Sequence[int], present: Sequence[int]) -> list[int]:
    """The positions among ``positions`` (pruned heads, indices into ``present``) that can leave while every
    key/value group keeps the same number of query heads (see the module's note)."""
    group_size = attention.__dict__.setdefault("pxp_original_groups", attention.num_key_value_groups)
    groups: dict[int, list[int]] = {}
    for position, head in enumerate(present):
        groups.setdefault(head // group_size, []).append(position)
    doomed = set(positions)
    kept = {group: [p for p in members if p not in doomed] for group, members in groups.items()}
    fullest = max(len(members) for members in kept.values())
    removable = []
    for group, members in groups.items():
        pruned = [p for p in members if p in doomed]
        removable += members if not kept[group] else pruned[:len(members) - fullest]
    return sorted(removable)


def remove_lm_heads(attention: nn.Module, positions: Sequence[int], present: Sequence[int]) -> list[int]:
    """Remove what it can of the heads at ``positions`` (among ``present``, their original indices); return
    the positions removed."""
    import torch_pruning as tp

    if is_gpt2_attention(attention):
        heads, width = attention.num_heads, attention.head_dim
        keep = [h for h in range(heads) if h not in set(positions)]
        channels = _channels(keep, width)
        _conv1d_keep_outputs(attention.c_attn, [block * heads * width + c for block in range(3) for c in channels])
        _conv1d_keep_inputs(attention.c_proj, channels)
        attention.num_heads = len(keep)
        attention.split_size = attention.embed_dim = len(keep) * width
        return list(positions)
    removable = _llama_removable(attention, positions, present)
    if not removable:
        return []
    width, group_size = attention.head_dim, attention.num_key_value_groups
    kv_heads = len(present) // group_size
    keep = [p for p in range(len(present)) if p not in set(removable)]
    kept_groups = sorted({p // group_size for p in keep})  # present groups are contiguous, in order
    tp.prune_linear_out_channels(attention.q_proj, _channels(removable, width))
    tp.prune_linear_in_channels(attention.o_proj, _channels(removable, width))
    gone = _dropped(kv_heads, kept_groups)
    if gone:
        tp.prune_linear_out_channels(attention.k_proj, _channels(gone, width))
        tp.prune_linear_out_channels(attention.v_proj, _channels(gone, width))
    attention.num_key_value_groups = len(keep) // len(kept_groups)
    return removable


def remove_lm_neurons(mlp: nn.Module, positions: Sequence[int]) -> None:
    """Remove the intermediate channels at ``positions`` (among those present) of an LM's MLP."""
    import torch_pruning as tp

    if is_gated_mlp(mlp):
        tp.prune_linear_out_channels(mlp.gate_proj, list(positions))
        tp.prune_linear_out_channels(mlp.up_proj, list(positions))
        tp.prune_linear_in_channels(mlp.down_proj, list(positions))
    elif is_gpt2_mlp(mlp):
        keep = _dropped(mlp.c_proj.weight.shape[0], positions)
        _conv1d_keep_outputs(mlp.c_fc, keep)
        _conv1d_keep_inputs(mlp.c_proj, keep)


def is_lm_attention(module: nn.Module) -> bool:
    return is_llama_attention(module) or is_gpt2_attention(module)
