"""Removing attention heads: a head's q/k/v rows and the output projection's columns that read it.

Torch-Pruning prunes an attention module's embedding channels, not whole heads of given indices, and
torchvision's ``nn.MultiheadAttention`` cannot run with fewer heads than ``embed_dim / head_dim``
(its fused kernel derives the head size from both). So this module is hand-written on top of
Torch-Pruning's per-layer functions: a torchvision attention module becomes a `SlimSelfAttention`
(the same computation, heads of their own size), a timm ``Attention`` is slimmed in place (its
forward already reads ``attn_dim``). Only plain self-attention is converted; the caller checks the
converted model against the original before it relies on it.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pxp_bench.attention import is_timm_attention
from pxp_bench.lm.slim import is_lm_attention, remove_lm_heads


class SlimSelfAttention(nn.Module):
    """Self-attention with any number of heads of a fixed size, called like ``nn.MultiheadAttention``
    (batch first, ``need_weights=False``): the replacement of a torchvision attention module in a
    slimmed copy. ``qkv`` holds the q, k and v rows of each head present; ``out_proj`` reads the
    concatenated head outputs, so it stays the heads' site."""

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        self.num_heads = attention.num_heads
        self.head_dim = attention.head_dim
        self.qkv = nn.Linear(attention.embed_dim, 3 * attention.embed_dim, bias=attention.in_proj_bias is not None)
        self.out_proj = nn.Linear(attention.embed_dim, attention.embed_dim, bias=attention.out_proj.bias is not None)
        with torch.no_grad():
            self.qkv.weight.copy_(attention.in_proj_weight)
            self.out_proj.weight.copy_(attention.out_proj.weight)
            if attention.in_proj_bias is not None:
                self.qkv.bias.copy_(attention.in_proj_bias)
            if attention.out_proj.bias is not None:
                self.out_proj.bias.copy_(attention.out_proj.bias)
        self.to(attention.out_proj.weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask=None,
                need_weights: bool = True, attn_mask=None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, None]:
        if not (query is key is value) or key_padding_mask is not None or attn_mask is not None or is_causal:
            raise ValueError("a slimmed attention module computes plain self-attention only")
        batch, tokens, _ = query.shape
        q, k, v = self.qkv(query).view(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, -1)), None


def convertible(attention: nn.Module) -> bool:
    """Whether heads of this attention module can be removed (plain self-attention, no per-channel
    layer between the heads and the output projection)."""
    if is_lm_attention(attention):
        return True
    if isinstance(attention, nn.MultiheadAttention):
        return (attention.batch_first and attention._qkv_same_embed_dim and attention.bias_k is None
                and not attention.add_zero_attn)
    return (is_timm_attention(attention) and attention.gate is None and isinstance(attention.norm, nn.Identity)
            and attention.qkv.out_features == 3 * attention.attn_dim)


def slimmable(attention: nn.Module) -> nn.Module:
    """The module whose heads `remove_heads` can remove: a torchvision module converted, timm's as is."""
    return SlimSelfAttention(attention) if isinstance(attention, nn.MultiheadAttention) else attention


def remove_heads(attention: nn.Module, positions: Sequence[int], present: Sequence[int]) -> list[int]:
    """Remove the heads at ``positions`` (among those ``present``: their original indices) from a `slimmable`
    module; return the positions removed (a decoder LM's grouped-query attention may keep some,
    `pxp_bench.lm.slim`)."""
    import torch_pruning as tp

    if is_lm_attention(attention):
        return remove_lm_heads(attention, positions, present)
    present, size = attention.num_heads, attention.head_dim
    channels = [position * size + offset for position in positions for offset in range(size)]
    rows = [block * present * size + channel for block in range(3) for channel in channels]  # q, k and v
    projection = attention.out_proj if isinstance(attention, SlimSelfAttention) else attention.proj
    tp.prune_linear_out_channels(attention.qkv, rows)
    tp.prune_linear_in_channels(projection, channels)
    attention.num_heads = present - len(positions)
    if hasattr(attention, "attn_dim"):  # timm
        attention.attn_dim = attention.num_heads * size
    return list(positions)
