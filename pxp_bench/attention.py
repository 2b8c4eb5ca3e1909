"""Explicit attention: per-head outputs that exist as a tensor, so heads can be scored and masked.

torchvision's ``nn.MultiheadAttention`` is fused: no per-head tensor exists and ``out_proj`` is never
called as a module. Inside `explicit_attention(model)` every attention module of the model computes
softmax(q k^T / sqrt(d)) v explicitly and calls its output projection as a module, whose *input* is
the concatenation of the per-head outputs: the heads' site (PROTOCOL section 2). timm's ``Attention``
gets the same treatment (it may use a fused kernel otherwise). Outputs and gradients match the fused
modules within float tolerance; the instances' own ``forward`` is restored on exit.

``rule`` selects LRP's treatment of the attention product inside the Gradient x Input framework:
``attnlrp`` (the uniform rule on the two bilinear products, as lxt applies it: gradients of q and k
divided by 4, of v by 2) or ``cp`` (CP-LRP: the attention weights held constant, no gradient through q
and k). None computes the ordinary gradient.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from pxp_bench.attribution.options import ATTENTION_RULES
from pxp_bench.errors import ComponentError


def _apply_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rule: str | None):
    if rule is None:
        return q, k, v
    from lxt.efficient.rules import divide_gradient, stop_gradient

    if rule == "attnlrp":
        return divide_gradient(q, 4), divide_gradient(k, 4), divide_gradient(v, 2)
    return stop_gradient(q), stop_gradient(k), v


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rule: str | None) -> torch.Tensor:
    """(batch, heads, tokens, dim) in, (batch, tokens, heads * dim) out: heads concatenated."""
    q, k, v = _apply_rule(q, k, v, rule)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    out = weights @ v
    return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)


def _unsupported(module: nn.Module, rule: str | None) -> None:
    if rule is not None:
        raise ComponentError(
            f"LRP's attention rules cannot be applied to this {type(module).__name__} (masks, gating, "
            "separate key/value inputs or extra biases); only plain self-attention is supported."
        )


def _torchvision_forward(module: nn.MultiheadAttention, rule: str | None):
    fused = type(module).forward

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        supported = (module.batch_first and query is key is value and key_padding_mask is None
                     and attn_mask is None and not need_weights and module._qkv_same_embed_dim
                     and module.bias_k is None and not module.add_zero_attn
                     and not (module.training and module.dropout > 0))
        if not supported:  # heads are then not discoverable: the probe sees out_proj never run
            _unsupported(module, rule)
            return fused(module, query, key, value, key_padding_mask, need_weights, attn_mask,
                         average_attn_weights, is_causal)
        batch, tokens, channels = query.shape
        heads = module.num_heads
        qkv = F.linear(query, module.in_proj_weight, module.in_proj_bias)
        q, k, v = qkv.view(batch, tokens, 3, heads, channels // heads).permute(2, 0, 3, 1, 4)
        return module.out_proj(_attend(q, k, v, rule)), None

    return forward


def _timm_forward(module: nn.Module, rule: str | None):
    original = type(module).forward

    def forward(x, attn_mask=None, is_causal=False):
        if module.gate is not None or attn_mask is not None or is_causal:
            # the original forward still calls proj on the (gated) head outputs: exact for gradients
            _unsupported(module, rule)
            return original(module, x, attn_mask=attn_mask, is_causal=is_causal)
        batch, tokens, channels = x.shape
        heads = module.num_heads
        qkv = module.qkv(x).reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = module.q_norm(q), module.k_norm(k)
        out = _attend(q, k, v, rule)
        out = module.norm(out)
        return module.proj_drop(module.proj(out))

    return forward


def is_timm_attention(module: nn.Module) -> bool:
    """timm's standard ``Attention`` only: its variants (relative positions, RoPE, EVA, differential
    attention) compute something else, and pxp-bench leaves them untouched (no heads discovered)."""
    return type(module).__name__ == "Attention" and type(module).__module__ == "timm.layers.attention"


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Attention modules whose heads pxp-bench can expose: torchvision MHA and timm ``Attention``."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.MultiheadAttention) or is_timm_attention(m)]


def output_projection(name: str, module: nn.Module) -> str:
    """Name of the module whose input holds the concatenated head outputs."""
    return f"{name}.out_proj" if isinstance(module, nn.MultiheadAttention) else f"{name}.proj"


@contextmanager
def explicit_attention(model: nn.Module, rule: str | None = None) -> Iterator[None]:
    """Every attention module of ``model`` computes attention explicitly inside the block."""
    if rule not in (None, *ATTENTION_RULES):
        raise ValueError(f"unknown attention rule {rule!r}")
    previous = []
    try:
        for _, module in attention_modules(model):
            previous.append((module, module.__dict__.get("forward")))
            make = _torchvision_forward if isinstance(module, nn.MultiheadAttention) else _timm_forward
            module.forward = make(module, rule)
            module.forward.explicit = True
        yield
    finally:
        for module, forward in reversed(previous):
            if forward is None:
                del module.forward
            else:
                module.forward = forward


@contextmanager
def explicit_attention_active(model: nn.Module) -> Iterator[None]:
    """`explicit_attention` unless it is already on (keeping an outer context's LRP rule)."""
    if all(getattr(module.__dict__.get("forward"), "explicit", False) for _, module in attention_modules(model)):
        yield
    else:
        with explicit_attention(model):
            yield
