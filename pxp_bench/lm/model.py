"""A Hugging Face causal LM as pxp-bench sees a model: ``module(batch) -> logits`` in one call.

`CausalLM` wraps the Hugging Face model so that the pipeline's contract holds: token ids ``(batch,
tokens)`` in, logits ``(batch, tokens, vocabulary)`` out, no cache. Float inputs are token embeddings
(``inputs_embeds``): integrated gradients and SmoothGrad scale and perturb those, as token ids cannot be.
"""

from __future__ import annotations

import torch
from torch import nn


class CausalLM(nn.Module):
    """The causal LM ``lm`` (a Hugging Face ``*ForCausalLM``) called on token ids or on their embeddings."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.is_floating_point():
            return self.lm(inputs_embeds=inputs, use_cache=False).logits
        return self.lm(input_ids=inputs, use_cache=False).logits

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """The embeddings `forward` takes in place of ``token_ids``."""
        return self.lm.get_input_embeddings()(token_ids)


def is_causal_lm(model: nn.Module) -> bool:
    return isinstance(model, CausalLM)
