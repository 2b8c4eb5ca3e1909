"""Building language models: the embedded ``tiny-llama`` and any Hugging Face causal LM by name or folder.

``--model hf:ORG/NAME`` downloads into the Hugging Face cache on first use (``HF_HOME``); ``--model
hf:/path/to/folder`` reads a folder written by ``save_pretrained`` (config, weights and tokenizer) and
never touches the network. ``--weights none`` builds the architecture from its config with random
weights. Attention runs eagerly (the per-head products exist as tensors, and lxt patches them).

A Hub name is read from the cache alone with ``HF_HUB_OFFLINE=1``, or when one short request (no retries;
``HF_HUB_ETAG_TIMEOUT`` seconds, default 5) finds the Hub unreachable; a model that is neither cached nor
reachable is a one-line error at once, not half a minute of the library's retries. A folder, or a config,
that does not hold a decoder LM (no config.json, no ``model_type``, an encoder such as BERT, no tokenizer
files) is refused from its files, before any weights are read.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from pxp_bench.errors import CheckpointError, ConfigError
from pxp_bench.lm.data import TextEncoder
from pxp_bench.lm.model import CausalLM
from pxp_bench.plan import MIN_SEQUENCE_LENGTH
from pxp_bench.specs import LANGUAGE_MODELLING, LoadedModel

HF_PREFIX = "hf:"
DEFAULT_SEQUENCE_LENGTH = 128
"""Tokens per sequence of a Hugging Face model unless --seq-len says otherwise (capped by its context)."""
HUB_PROBE_TIMEOUT = 5.0
"""Seconds the one request that tells whether the Hub is reachable waits (``HF_HUB_ETAG_TIMEOUT`` overrides)."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model")
"""Files one of which a saved tokenizer holds (besides any other ``*.model`` sentencepiece file)."""


def _sequence_length(requested: int | None, context: int | None, name: str) -> int:
    """``--seq-len`` (default `DEFAULT_SEQUENCE_LENGTH`), at least 2 and at most the model's context."""
    if requested is None:
        return min(DEFAULT_SEQUENCE_LENGTH, context or DEFAULT_SEQUENCE_LENGTH)
    if requested < MIN_SEQUENCE_LENGTH:
        raise ConfigError(f"--seq-len must be at least {MIN_SEQUENCE_LENGTH} tokens (one to read, one to predict), "
                          f"got {requested}.")
    if context is not None and requested > context:
        raise ConfigError(f"--seq-len {requested} exceeds the context of '{name}' ({context} tokens); choose at most "
                          f"{context}.")
    return requested


def build_embedded_lm(name: str, weights: str | None = None, num_classes: int | None = None,
                      image_size: int | None = None) -> LoadedModel:
    """The embedded LM with its packaged (or a retrained) checkpoint, verified against its manifest."""
    from pxp_bench.lm.embedded import build_embedded, embedded_config
    from pxp_bench.lm.tokenizer import ByteTokenizer
    from pxp_bench.models.zoo import checkpoint_sha256, packaged_checkpoint

    length = _sequence_length(image_size, embedded_config().max_position_embeddings, name)
    if weights == "none":
        raise ConfigError(f"'{name}' is only useful trained: drop --weights for its packaged weights, or train one "
                          f"with `pxp-bench zoo train {name} --out DIR` and pass --weights DIR/{name}.safetensors.")
    packaged = weights in (None, "default")
    checkpoint = packaged_checkpoint(name) if packaged else Path(weights)
    identity = ("packaged:" if packaged else "file:") + checkpoint_sha256(name, checkpoint, packaged=packaged)
    model = CausalLM(build_embedded(checkpoint)).eval()
    tokenizer = ByteTokenizer()
    return LoadedModel(model, "lm", 1, (length,), identity,
                       transform=TextEncoder(tokenizer.encode, length, tokenizer.vocab_size),
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


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` with the message's lines joined, cut at a word after ``limit`` characters (transformers'
    messages run over several lines, and some list every architecture it knows)."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``), read now: the libraries read it once, on import."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or _true(os.environ.get("HF_HUB_OFFLINE")) or _true(
        os.environ.get("TRANSFORMERS_OFFLINE"))


def _probe_timeout() -> float:
    try:
        return float(os.environ["HF_HUB_ETAG_TIMEOUT"])
    except (KeyError, ValueError):
        return HUB_PROBE_TIMEOUT


def _cache_only(source: str) -> bool:
    """Whether the Hub model ``source`` is read from the local cache alone: with ``HF_HUB_OFFLINE`` set, or
    when one request (no retries) cannot reach the Hub, or the Hub does not know it, and it is cached. Neither
    cached nor reachable: a one-line error now (the library would retry for half a minute, logging each try)."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    try:
        cached = isinstance(try_to_load_from_cache(source, "config.json"), str)
    except (HFValidationError, ValueError) as exc:
        raise ConfigError(f"'{source}' is neither a folder nor a Hugging Face model name (hf:ORG/NAME): "
                          f"{_one_line(exc)}") from None
    where = f"the local Hugging Face cache ({constants.HF_HUB_CACHE})"
    if _offline():
        if cached:
            return True
        raise ConfigError(f"'{source}' is not in {where} and HF_HUB_OFFLINE is set, so it cannot be downloaded; "
                          "unset HF_HUB_OFFLINE to download it, or pass a saved folder: --model hf:/path/to/folder.")
    try:
        HfApi().model_info(source, timeout=_probe_timeout())
    except GatedRepoError:
        return False  # reachable; transformers says what access the model needs
    except RepositoryNotFoundError:
        if cached:
            return True
        raise ConfigError(f"'{source}' is not a model on the Hugging Face Hub, nor in {where}; check the name (a "
                          "private or gated model needs `hf auth login`).") from None
    except Exception as exc:  # noqa: BLE001 - no network, a proxy, a timeout, the Hub's own error
        if cached:
            warnings.warn(f"cannot reach the Hugging Face Hub ({type(exc).__name__}); using the cached '{source}' "
                          "(HF_HUB_OFFLINE=1 skips this check).", stacklevel=2)
            return True
        raise ConfigError(f"cannot reach the Hugging Face Hub to fetch '{source}' ({type(exc).__name__}) and it is not "
                          f"in {where}; download it where the Hub is reachable (HF_HUB_OFFLINE=1 then uses only the "
                          "cache), or pass a saved folder: --model hf:/path/to/folder.") from None
    return False


def _check_config_file(folder: Path, name: str) -> None:
    """A folder holds a config.json naming its architecture (``model_type``), as `save_pretrained` writes."""
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"{name} has no config.json; pass a folder written by save_pretrained "
                          "(model.save_pretrained(folder) and tokenizer.save_pretrained(folder)).")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} as a JSON config: {_one_line(exc)}.") from None
    if not isinstance(values, dict) or "model_type" not in values:
        raise ConfigError(f"{path} has no model_type key, so the architecture is unknown; save the model with "
                          "save_pretrained, or add the key (e.g. \"model_type\": \"llama\").")


def _check_tokenizer_files(folder: Path, name: str) -> None:
    if not any((folder / file).is_file() for file in TOKENIZER_FILES) and not any(folder.glob("*.model")):
        raise ConfigError(f"{name} has no tokenizer files (tokenizer.json, or tokenizer.model / vocab files); save "
                          "the tokenizer beside the model: tokenizer.save_pretrained(folder).")


def _causal_class(config, source: str):
    """The ``*ForCausalLM`` class of ``config``, refusing encoders (BERT, RoBERTa ...) and sequence-to-sequence
    models whose causal-LM class is only a decoder when ``is_decoder`` is set."""
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    kind = type(config).__name__
    try:
        model_class = AutoModelForCausalLM._model_mapping[type(config)]
    except KeyError:
        raise ConfigError(f"'{source}' is not a causal language model (its config is {kind}); pxp-bench prunes "
                          "decoder LMs such as Llama, Qwen2 and GPT-2.") from None
    model_type = getattr(config, "model_type", None)
    if not getattr(config, "is_decoder", False) and not getattr(config, "causal", False):
        what = ("an encoder (bidirectional attention)" if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else
                "an encoder-decoder" if model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES else None)
        if what is not None:
            raise ConfigError(f"'{source}' is not a causal language model: its config is {kind}, {what} without "
                              "is_decoder; pxp-bench prunes decoder LMs such as Llama, Qwen2 and GPT-2.")
    return model_class


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or Path(source).exists()


def build_huggingface(name: str, weights: str | None = None, num_classes: int | None = None,
                      image_size: int | None = None) -> LoadedModel:
    """``hf:ORG/NAME`` or ``hf:/folder``: a causal LM and its tokenizer; ``weights="none"``: random weights.
    Everything but the weights (config, causal class, tokenizer files, --seq-len) is checked before they load."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    source = name[len(HF_PREFIX):]
    if not source:
        raise ConfigError("--model hf: needs a model: hf:ORG/NAME (Hugging Face Hub) or hf:/path/to/folder.")
    if weights not in (None, "default", "none"):
        raise ConfigError(f"--weights {weights}: a Hugging Face model's weights are its name or folder; use "
                          "--model hf:/path/to/folder, or --weights none for random weights.")
    folder = Path(source).expanduser()
    local = folder.is_dir()
    if local:
        source = str(folder)
        _check_config_file(folder, name)
        cache_only = True
    elif _looks_like_path(source):
        raise ConfigError(f"cannot load the config of '{source}': there is no such folder. Pass a folder written by "
                          "save_pretrained (hf:/path/to/folder), or a Hub name (hf:ORG/NAME).")
    else:
        cache_only = _cache_only(source)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=cache_only)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, HTTP errors ...
        raise ConfigError(f"cannot load the config of '{source}': {_one_line(exc)}. Check the name (or that the "
                          "folder holds a save_pretrained model).") from None
    model_class = _causal_class(config, source)
    if local:
        _check_tokenizer_files(folder, name)
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    length = _sequence_length(image_size, context, name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=cache_only)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"the tokenizer of '{source}' cannot be loaded: {_one_line(exc)}. Save it beside the "
                          "model (tokenizer.save_pretrained(folder)).") from None
    try:
        if weights == "none":
            torch.manual_seed(0)
            lm = model_class._from_config(config, attn_implementation="eager", dtype=torch.float32)
            identity = "random:seed0"
        else:
            lm = model_class.from_pretrained(source, local_files_only=cache_only, attn_implementation="eager",
                                             dtype=torch.float32)
            identity = _weights_identity(source, config)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot load the weights of '{source}': {_one_line(exc)}.") from None
    encoder = TextEncoder(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"], length,
                          len(tokenizer))
    return LoadedModel(CausalLM(lm).eval(), "lm", 1, (length,), identity, transform=encoder, task=LANGUAGE_MODELLING)
