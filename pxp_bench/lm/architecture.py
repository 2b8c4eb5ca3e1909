"""The components of decoder LMs (PROTOCOL section 12): query heads and MLP neurons, found by structure.

- heads: the query heads of every self-attention module of the Llama family (``q_proj`` / ``k_proj`` /
  ``v_proj`` / ``o_proj``: Llama, Qwen2, Qwen3, Gemma3, Mistral) and of GPT-2 (``c_attn`` / ``c_proj``). The
  site is the output projection's input, the concatenated per-head outputs, as for vision transformers.
  With grouped-query attention a key/value head serves several query heads; it is not a component of its
  own, and slimming removes it once every query head of its group is gone (`pxp_bench.lm.slim`).
- neurons: the intermediate channels of every MLP: a gated MLP's ``gate_proj`` / ``up_proj`` rows and
  ``down_proj`` columns together, GPT-2's ``c_fc`` columns and ``c_proj`` rows. The site is the down
  projection's input.
Both sites are exact to mask: a zero there removes the unit's whole contribution.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn

from pxp_bench.errors import ComponentError


def _is_linear(module: object) -> bool:
    return isinstance(module, nn.Linear)


def is_llama_attention(module: nn.Module) -> bool:
    return all(_is_linear(getattr(module, n, None)) for n in ("q_proj", "k_proj", "v_proj", "o_proj")) \
        and hasattr(module, "head_dim") and hasattr(module, "num_key_value_groups")


def is_gpt2_attention(module: nn.Module) -> bool:
    return type(module).__name__ == "GPT2Attention" and not getattr(module, "is_cross_attention", False)


def is_gated_mlp(module: nn.Module) -> bool:
    return all(_is_linear(getattr(module, n, None)) for n in ("gate_proj", "up_proj", "down_proj"))


def is_gpt2_mlp(module: nn.Module) -> bool:
    return type(module).__name__ == "GPT2MLP"


def attention_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    return ((name, m) for name, m in model.named_modules() if is_llama_attention(m) or is_gpt2_attention(m))


def mlp_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    return ((name, m) for name, m in model.named_modules() if is_gated_mlp(m) or is_gpt2_mlp(m))


def query_heads(attention: nn.Module) -> int:
    """The query heads of an attention module; refuses a layout whose heads masking cannot express."""
    if is_gpt2_attention(attention):
        return attention.num_heads
    heads, rest = divmod(attention.q_proj.out_features, attention.head_dim)
    kv_heads = attention.k_proj.out_features // attention.head_dim
    if rest or attention.o_proj.in_features != heads * attention.head_dim or kv_heads * attention.num_key_value_groups != heads:
        raise ComponentError(
            f"the attention module {type(attention).__name__} has a head layout pxp-bench cannot mask (q_proj "
            f"{attention.q_proj.out_features} outputs, o_proj {attention.o_proj.in_features} inputs, head_dim "
            f"{attention.head_dim}, {kv_heads} key/value heads for groups of {attention.num_key_value_groups}); "
            "prune --components neurons instead."
        )
    return heads


def output_projection(name: str, attention: nn.Module) -> str:
    return f"{name}.c_proj" if is_gpt2_attention(attention) else f"{name}.o_proj"


def down_projection(name: str, mlp: nn.Module) -> str:
    return f"{name}.c_proj" if is_gpt2_mlp(mlp) else f"{name}.down_proj"


def intermediate_size(mlp: nn.Module) -> int:
    return mlp.c_proj.weight.shape[0] if is_gpt2_mlp(mlp) else mlp.down_proj.in_features


def lm_sites(model: nn.Module, kind: str, ran: set[str]) -> list[tuple[str, str, int, int]]:
    """``(module, site, size, channels per component)`` of the ``heads`` or ``neurons`` of a causal LM whose
    sites ran (``ran``: module names called); each site carries its components in its input's last axis."""
    if kind == "heads":
        return [(name, output_projection(name, m), query_heads(m), m.head_dim)
                for name, m in attention_layers(model) if output_projection(name, m) in ran]
    if kind == "neurons":
        return [(name, down_projection(name, m), intermediate_size(m), 1)
                for name, m in mlp_layers(model) if down_projection(name, m) in ran]
    return []


def producing_weights(module: nn.Module,
                      of: Callable[[torch.Tensor], torch.Tensor] = torch.Tensor.detach) -> torch.Tensor | None:
    """(components, ...) weights of an LM attention or MLP module (magnitude scores), else None; ``of`` maps
    each weight to the tensor regrouped (default: the weight itself, detached), e.g. its gradient.

    A head: its query rows and its output projection columns (its key / value rows are shared by its group);
    a neuron: its gate and up rows and its down column (GPT-2: its ``c_fc`` column and ``c_proj`` row).
    """
    if is_llama_attention(module):
        size = query_heads(module)
        q = of(module.q_proj.weight).reshape(size, -1)
        o = of(module.o_proj.weight).t().reshape(size, -1)
        return torch.cat([q, o], dim=1)
    if is_gpt2_attention(module):
        width = module.split_size
        q = of(module.c_attn.weight)[:, :width].t().reshape(module.num_heads, -1)  # Conv1D: (in, out)
        o = of(module.c_proj.weight).reshape(module.num_heads, -1)
        return torch.cat([q, o], dim=1)
    if is_gated_mlp(module):
        return torch.cat([of(module.gate_proj.weight), of(module.up_proj.weight),
                          of(module.down_proj.weight).t()], dim=1)
    if is_gpt2_mlp(module):
        return torch.cat([of(module.c_fc.weight).t(), of(module.c_proj.weight)], dim=1)
    return None


def decoder_blocks(model: nn.Module) -> list[str]:
    """The decoder layers (parents of the attention modules), in the model's order: LRP's depth groups."""
    return [name.rpartition(".")[0] for name, _ in attention_layers(model)]
