"""Built-in language-model plugin: the embedded ``tiny-llama``, any Hugging Face causal LM (``hf:``), the
generated corpus, text files and Hugging Face text datasets (``hf:``)."""

from __future__ import annotations

from pxp_bench.hookspecs import hookimpl
from pxp_bench.specs import LANGUAGE_MODELLING, DatasetSpec, ModelSpec

EMBEDDED_LM = "tiny-llama"


@hookimpl
def register_models(register) -> None:
    register(ModelSpec(name=EMBEDDED_LM, build="pxp_bench.lm.loading:build_embedded_lm", family="lm",
                       summary="Llama (grouped-query attention, gated MLP, byte tokens), trained on the generated corpus",
                       default_dataset="lm-corpus", task=LANGUAGE_MODELLING))
    register(ModelSpec(name="hf:", build="pxp_bench.lm.loading:build_huggingface", family="lm",
                       summary="any Hugging Face causal LM: hf:ORG/NAME or hf:/path/to/folder (--weights none: random)",
                       task=LANGUAGE_MODELLING))


@hookimpl
def register_datasets(register) -> None:
    register(DatasetSpec(name="lm-corpus", load="pxp_bench.lm.data:load_corpus_splits",
                         summary="generated text with copy patterns, byte tokens, 64 per sequence (the embedded LM's)"))
    register(DatasetSpec(name="text", load="pxp_bench.lm.data:load_text_folder", needs_root=True,
                         summary="ROOT/train.txt and ROOT/val.txt (+ tune.txt), tokenized by the model"))
    register(DatasetSpec(name="hf:", load="pxp_bench.lm.hf_datasets:load_hf_text",
                         summary="a Hugging Face text dataset: hf:NAME[:CONFIG][#COLUMN] or hf:/path/to/folder "
                                 "(needs the datasets package)"))
