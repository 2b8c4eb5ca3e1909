"""Language-modelling datasets: token sequences of fixed length, from the generated corpus or text files.

Items are ``(token ids, token ids)`` of one sequence (the labels are the sequence itself: the task reads
the next tokens from it). A text dataset holds raw text until the model's `TextEncoder` is given to it
(`pxp_bench.specs.DatasetSplits.use_transform`, as image folders get a classifier's preprocessing): it
then tokenizes each split once and cuts the token stream into non-overlapping sequences of the model's
length, dropping the incomplete tail.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.errors import ConfigError, DataError, first_line
from pxp_bench.specs import LANGUAGE_MODELLING, DatasetSplits

TEXT_FILES = {"train": "train.txt", "eval": "val.txt", "tune": "tune.txt"}
"""A text dataset's files in its root; ``tune.txt`` is optional (tuning sequences then come from train)."""
DEFAULT_ENCODING = "utf-8"
"""How a text dataset's files are decoded unless ``--encoding`` says otherwise."""


class TokenSequences(LabelledTensors):
    """Sequences ``(N, L)`` of token ids; item i is ``(sequence i, sequence i)``, every target 0 (one stratum)."""

    def __init__(self, sequences: torch.Tensor) -> None:
        super().__init__(sequences.long(), [0] * len(sequences))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.inputs[index]


@dataclass(frozen=True)
class TextEncoder:
    """A language model's tokenizer and sequence length: what a text dataset needs from the model."""

    encode: Callable[[str], list[int]]
    length: int
    vocab_size: int

    def sequences(self, text: str, source: str) -> torch.Tensor:
        ids = self.encode(text)
        count = len(ids) // self.length
        if count == 0:
            raise DataError(f"{source} has {len(ids)} tokens, fewer than one sequence of {self.length}. Give it more "
                            "text, or choose a shorter --seq-len.")
        return torch.tensor(ids[:count * self.length], dtype=torch.long).view(count, self.length)


class TextSplit(TokenSequences):
    """One split of text: empty until `transform` (a `TextEncoder`) is set, then the sequences of
    ``read()``'s text. ``source`` names the text in errors (a file, a Hugging Face dataset's split)."""

    def __init__(self, read: Callable[[], str], source: str) -> None:
        super().__init__(torch.zeros((0, 0), dtype=torch.long))
        self.read = read
        self.source = source
        self._encoder: TextEncoder | None = None

    @property
    def transform(self) -> TextEncoder | None:
        return self._encoder

    @transform.setter
    def transform(self, encoder: TextEncoder) -> None:
        if not isinstance(encoder, TextEncoder):
            raise DataError(f"the text dataset needs a language model's tokenizer, and the model gave "
                            f"{type(encoder).__name__}. Choose a language model (--model tiny-llama or hf:NAME).")
        self._encoder = encoder
        self.inputs = encoder.sequences(self.read(), self.source)
        self.targets = [0] * len(self.inputs)


def check_encoding(encoding: str) -> str:
    """``encoding`` itself when Python has a text codec of that name (``utf-8``, ``latin-1``, ``cp1252``...),
    else a one-line error naming ``--encoding``."""
    try:
        if not isinstance(encoding, str) or not getattr(codecs.lookup(encoding), "_is_text_encoding", True):
            raise LookupError(encoding)  # base64, rot13 ...: codecs, but not bytes to text
    except (LookupError, TypeError):
        raise ConfigError(f"--encoding {encoding!r} is not a text encoding Python knows; name one such as utf-8, "
                          "latin-1, cp1252 or utf-16 (or leave it out for utf-8).") from None
    return encoding


def _file_text(path: Path, encoding: str) -> Callable[[], str]:
    """The text of ``path``, decoded strictly: an undecodable byte, or a NUL (binary data), is an error
    naming the file and --encoding, never a replacement character."""
    def read() -> str:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}.") from None
        try:
            text = data.decode(check_encoding(encoding))
        except UnicodeDecodeError as exc:
            raise DataError(f"cannot read {path} as {encoding} text: {first_line(exc)}. If it is text in another "
                            "encoding, pass --encoding NAME (e.g. --encoding latin-1); a binary file is not "
                            "text.") from None
        nul = text.find("\x00")
        if nul >= 0:
            raise DataError(f"cannot read {path} as {encoding} text: it holds NUL characters (the first at character "
                            f"{nul}), as binary files do. Pass a text file, or --encoding NAME if it is text in "
                            "another encoding (e.g. --encoding utf-16).")
        return text
    return read


def _file_split(path: Path, encoding: str) -> TextSplit:
    return TextSplit(_file_text(path, encoding), str(path))


def load_text_folder(name: str, root: Path | None, encoding: str = DEFAULT_ENCODING) -> DatasetSplits:
    """ROOT/train.txt and ROOT/val.txt (and ROOT/tune.txt when present), text in ``encoding`` (``--encoding``,
    default UTF-8, decoded strictly), tokenized by the model."""
    check_encoding(encoding)
    root = Path(root)
    missing = [TEXT_FILES[split] for split in ("train", "eval") if not (root / TEXT_FILES[split]).is_file()]
    if missing:
        raise DataError(f"text dataset root {root} has no {' or '.join(missing)}; it needs train.txt and val.txt "
                        f"(and optionally tune.txt), {encoding} text.")
    tune = root / TEXT_FILES["tune"]
    train, evaluation = (_file_split(root / TEXT_FILES[split], encoding) for split in ("train", "eval"))
    return DatasetSplits(train, evaluation, 1, ["text"], (), task=LANGUAGE_MODELLING,
                         tune=_file_split(tune, encoding) if tune.is_file() else None)


def load_corpus_splits(name: str, root: Path | None = None) -> DatasetSplits:
    """The embedded generated corpus (`pxp_bench.lm.corpus`), byte tokens, the embedded LM's length; its probe
    is copy accuracy (`COPY_PROBE`)."""
    from pxp_bench.lm.corpus import COPY_PROBE, corpus_splits
    from pxp_bench.lm.embedded import SEQUENCE_LENGTH

    train, tune, evaluation = corpus_splits(0, length=SEQUENCE_LENGTH)
    return DatasetSplits(TokenSequences(train), TokenSequences(evaluation), 1, ["text"], (SEQUENCE_LENGTH,),
                         tune=TokenSequences(tune), task=LANGUAGE_MODELLING, probe=COPY_PROBE)
