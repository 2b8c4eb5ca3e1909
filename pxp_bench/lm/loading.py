"""Building language models: the embedded ``tiny-llama`` and any Hugging Face causal LM by name or folder.

``--model hf:ORG/NAME`` downloads into the Hugging Face cache on first use (``HF_HOME``); ``--model
hf:/path/to/folder`` reads a folder written by ``save_pretrained`` (config, weights and tokenizer) and
never touches the network. ``--weights none`` builds the architecture from its config with random
weights. Attention runs eagerly (the per-head products exist as tensors, and lxt patches them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pxp_bench.errors import CheckpointError, ConfigError, first_line
from pxp_bench.lm.data import TextEncoder
from pxp_bench.lm.model import CausalLM
from pxp_bench.specs import LANGUAGE_MODELLING, LoadedModel

HF_PREFIX = "hf:"
DEFAULT_SEQUENCE_LENGTH = 128
"""Tokens per sequence of a Hugging Face model unless --seq-len says otherwise (capped by its context)."""


def _sequence_length(requested: int | None, context: int | None, name: str) -> int:
    if requested is None:
        return min(DEFAULT_SEQUENCE_LENGTH, context or DEFAULT_SEQUENCE_LENGTH)
    if context is not None and requested > context:
        raise ConfigError(f"--seq-len {requested} exceeds the context of '{name}' ({context} tokens); choose at most "
                          f"{context}.")
    return requested


def build_embedded_lm(name: str, weights: str | None = None, num_classes: int | None = None,
                      image_size: int | None = None) -> LoadedModel:
    """The embedded LM with its packaged (or a retrained) checkpoint, verified against its manifest."""
    from pxp_bench.lm.embedded import SEQUENCE_LENGTH, build_embedded
    from pxp_bench.lm.tokenizer import ByteTokenizer
    from pxp_bench.models.zoo import checkpoint_sha256, packaged_checkpoint

    if image_size not in (None, SEQUENCE_LENGTH):
        raise ConfigError(f"'{name}' reads sequences of {SEQUENCE_LENGTH} tokens; drop --seq-len.")
    if weights == "none":
        raise ConfigError(f"'{name}' is only useful trained: drop --weights for its packaged weights, or train one "
                          f"with `pxp-bench zoo train {name} --out DIR` and pass --weights DIR/{name}.safetensors.")
    packaged = weights in (None, "default")
    checkpoint = packaged_checkpoint(name) if packaged else Path(weights)
    identity = ("packaged:" if packaged else "file:") + checkpoint_sha256(name, checkpoint, packaged=packaged)
    model = CausalLM(build_embedded(checkpoint)).eval()
    tokenizer = ByteTokenizer()
    return LoadedModel(model, "lm", 1, (SEQUENCE_LENGTH,), identity,
                       transform=TextEncoder(tokenizer.encode, SEQUENCE_LENGTH, tokenizer.vocab_size),
                       task=LANGUAGE_MODELLING)


def _weights_identity(source: str, config) -> str:
    """``file:<sha256>`` of a local folder's weight files, or ``hf:<name>@<commit>`` of a Hub model."""
    folder = Path(source)
    if folder.is_dir():
        digest = hashlib.sha256()
        files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
        for path in files:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        return f"file:{digest.hexdigest()}"
    return f"hf:{source}@{getattr(config, '_commit_hash', None) or 'unknown'}"


def build_huggingface(name: str, weights: str | None = None, num_classes: int | None = None,
                      image_size: int | None = None) -> LoadedModel:
    """``hf:ORG/NAME`` or ``hf:/folder``: a causal LM and its tokenizer; ``weights="none"``: random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = name[len(HF_PREFIX):]
    if not source:
        raise ConfigError("--model hf: needs a model: hf:ORG/NAME (Hugging Face Hub) or hf:/path/to/folder.")
    if weights not in (None, "default", "none"):
        raise ConfigError(f"--weights {weights}: a Hugging Face model's weights are its name or folder; use "
                          "--model hf:/path/to/folder, or --weights none for random weights.")
    local = Path(source).is_dir()
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, HTTP errors ...
        raise ConfigError(f"cannot load the config of '{source}': {first_line(exc)}. Check the name (or that the "
                          "folder holds a save_pretrained model).") from None
    try:
        model_class = AutoModelForCausalLM._model_mapping[type(config)]
    except KeyError:
        raise ConfigError(f"'{source}' is not a causal language model (its config is {type(config).__name__}); "
                          "pxp-bench prunes decoder LMs such as Llama, Qwen2 and GPT-2.") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"the tokenizer of '{source}' cannot be loaded: {first_line(exc)}. Save it beside the "
                          "model (tokenizer.save_pretrained(folder)).") from None
    try:
        if weights == "none":
            torch.manual_seed(0)
            lm = model_class._from_config(config, attn_implementation="eager", dtype=torch.float32)
            identity = "random:seed0"
        else:
            lm = model_class.from_pretrained(source, local_files_only=local, attn_implementation="eager",
                                             dtype=torch.float32)
            identity = _weights_identity(source, config)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot load the weights of '{source}': {first_line(exc)}.") from None
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    length = _sequence_length(image_size, context, name)
    encoder = TextEncoder(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"], length,
                          len(tokenizer))
    return LoadedModel(CausalLM(lm).eval(), "lm", 1, (length,), identity, transform=encoder, task=LANGUAGE_MODELLING)
