"""lxt's efficient AttnLRP / CP-LRP rules on a Hugging Face causal LM, undone on exit.

lxt 2.1 ships patch maps per ``transformers`` modeling module (llama, qwen2, qwen3, gemma3, gpt2): the
MLP's and the norm's ``forward`` (identity rule on the activation and on the norm's variance, the uniform
rule on the gate's product), every attention function of the module (the uniform rule on q k^T and on
the attention-weighted sum of v, or CP-LRP's stop-gradient on q and k) and Dropout (off). lxt patches
classes and module globals for the whole process; `lxt_lm_rules` applies a map inside a block and
restores every attribute it changed, exactly.

lxt is BSD-3-Clause, but its authors state that LRP is patented and free only for personal and
scientific use.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from contextlib import contextmanager
from typing import Iterator

from torch import nn

from pxp_bench.errors import ConfigError
from pxp_bench.patching import restored_attributes

MODULE_GLOBALS = ("eager_attention_forward", "ALL_ATTENTION_FUNCTIONS")


def patch_map(model: nn.Module, attention: str) -> dict:
    """lxt's map for ``model``'s architecture: AttnLRP (``attention=attnlrp``) or CP-LRP (``cp``)."""
    import lxt
    from lxt.efficient.models import DEFAULT_MAP

    modeling = sys.modules[type(model).__module__]
    if modeling not in DEFAULT_MAP:
        supported = ", ".join(module.__name__.rpartition("_")[2] for module in DEFAULT_MAP if "modeling_" in module.__name__)
        raise ConfigError(
            f"lxt {getattr(lxt, '__version__', '')} has no efficient LRP rules for {type(model).__name__} (it has "
            f"them for {supported}); use --method taylor, ig, smoothgrad or magnitude for this model."
        )
    # lxt names its rule module after the transformers module: modeling_llama -> lxt.efficient.models.llama
    rules = importlib.import_module(f"lxt.efficient.models.{modeling.__name__.rpartition('modeling_')[2]}")
    return rules.cp_LRP if attention == "cp" else rules.attnLRP


@contextmanager
def lxt_lm_rules(model: nn.Module, attention: str) -> Iterator[None]:
    """lxt's rules for ``model`` (the Hugging Face model) inside the block; every patched attribute restored."""
    rules = patch_map(model, attention)
    touched = [(target, name) for target in rules
               for name in (MODULE_GLOBALS if isinstance(target, types.ModuleType) else ("forward",))]
    with restored_attributes(touched):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lxt warns about what it patched before; we restore it all
            for target, patch in rules.items():
                patch(target)
        yield
