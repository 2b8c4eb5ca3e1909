"""Text datasets by Hugging Face name or local folder, read with the optional `datasets` package.

``--dataset hf:NAME[:CONFIG][#COLUMN]`` loads a hub dataset into the Hugging Face cache (e.g.
``hf:Salesforce/wikitext:wikitext-2-raw-v1``); ``hf:/path/to/folder`` loads a folder written by
``DatasetDict.save_to_disk``, or a folder of data files ``datasets.load_dataset`` reads (``.txt``, ``.json``,
``.parquet``...). ``HF_DATASETS_OFFLINE=1`` keeps it to the cache.

Splits (the honesty rule of PROTOCOL section 7: tuned on one split, reported on another): reference sequences
come from ``train``; the evaluation split is ``test`` where the dataset has one, else ``validation``; tuning
sequences come from ``validation`` when evaluation is ``test``, else from ``train`` (apart from the reference).

The text column is ``#COLUMN``, else ``text``, else the dataset's only string column. A split's rows are
joined with blank lines (as perplexity evaluations of WikiText do), tokenized by the model and cut into
sequences (`pxp_bench.lm.data.TextEncoder`); at most `MAX_CHARACTERS` of a split are tokenized, with a
warning, so that a large corpus is not tokenized whole for the few reference sequences a run draws (without
streaming, `datasets` still downloads and converts every split once, into its cache).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from pxp_bench.errors import ConfigError, DataError, first_line
from pxp_bench.lm.data import TextSplit
from pxp_bench.specs import LANGUAGE_MODELLING, DatasetSplits

PREFIX = "hf:"
MAX_CHARACTERS = 16_000_000
"""Characters read from one split at most (about 4 M tokens of English)."""
ROW_SEPARATOR = "\n\n"
SAVED_MARKERS = ("dataset_dict.json", "state.json")
"""Files `save_to_disk` writes (a DatasetDict, a single Dataset): such a folder is loaded with `load_from_disk`."""


class DatasetName(NamedTuple):
    source: str
    """A hub name (``ORG/NAME``) or a local folder."""
    config: str | None
    column: str | None
    local: bool


def parse_name(name: str) -> DatasetName:
    """``hf:NAME[:CONFIG][#COLUMN]``, or ``hf:PATH[#COLUMN]`` where PATH starts with ``/``, ``.`` or ``~``."""
    body, _, column = name.removeprefix(PREFIX).partition("#")
    local = body.startswith(("/", ".", "~"))
    source, _, config = (body, "", "") if local else body.partition(":")
    if not source:
        raise ConfigError(f"dataset '{name}' names no dataset; write hf:NAME[:CONFIG] (e.g. "
                          "hf:Salesforce/wikitext:wikitext-2-raw-v1) or hf:/path/to/folder.")
    return DatasetName(source, config or None, column or None, local)


def _datasets_package():
    try:
        import datasets
    except ImportError:
        raise ConfigError("hf: datasets need the Hugging Face `datasets` package; install it with "
                          "pip install 'pxp-bench[hf]' (or pip install datasets).") from None
    return datasets


def _load(parsed: DatasetName) -> Any:
    datasets = _datasets_package()
    described = f"the Hugging Face dataset '{parsed.source}'" + (f" (config {parsed.config})" if parsed.config else "")
    try:
        if parsed.local:
            folder = Path(parsed.source).expanduser()
            if not folder.exists():
                raise DataError(f"dataset folder {folder} does not exist; pass a folder written by save_to_disk, "
                                "or one holding data files.")
            if any((folder / marker).is_file() for marker in SAVED_MARKERS):
                return datasets.load_from_disk(str(folder))
            return datasets.load_dataset(str(folder), parsed.config)
        return datasets.load_dataset(parsed.source, parsed.config)
    # not found, offline, a config missing or unknown (ValueError), unreadable files (DatasetsError), a dataset
    # that needs a loading script (RuntimeError: datasets no longer runs them)
    except (OSError, ValueError, RuntimeError, datasets.exceptions.DatasetsError) as exc:
        raise DataError(f"cannot load {described}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """What went wrong in one line: a generation error's cause (its own message says nothing), and the
    available configs where a config is missing (the second line of datasets' message)."""
    if isinstance(exc.__cause__, Exception) and "generating the dataset" in str(exc):
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and "available configs" in lines[1]:
        return f"{lines[0]} {lines[1]} Name one: hf:NAME:CONFIG."
    return first_line(exc)


def _splits(loaded: Any, name: str) -> tuple[Any, Any, Any | None, str]:
    """(train, evaluation, tuning or None, evaluation split's name) of a `DatasetDict`."""
    if not hasattr(loaded, "keys"):
        raise DataError(f"dataset '{name}' is a single split; a benchmark needs train and test (or validation) "
                        "splits: save a DatasetDict.")
    present = set(loaded.keys())
    evaluation = "test" if "test" in present else "validation" if "validation" in present else None
    if "train" not in present or evaluation is None:
        raise DataError(f"dataset '{name}' has the splits {', '.join(sorted(present)) or 'none'}; it needs train "
                        "and test (or validation).")
    tune = loaded["validation"] if evaluation == "test" and "validation" in present else None
    return loaded["train"], loaded[evaluation], tune, evaluation


def _text_column(split: Any, parsed: DatasetName, name: str) -> str:
    strings = [column for column, feature in split.features.items()
               if getattr(feature, "dtype", None) in ("string", "large_string")]
    if parsed.column is not None:
        if parsed.column not in strings:
            raise DataError(f"dataset '{name}' has no text column '{parsed.column}'; its text columns are "
                            f"{', '.join(strings) or 'none'}.")
        return parsed.column
    if "text" in strings:
        return "text"
    if len(strings) == 1:
        return strings[0]
    base = name.partition("#")[0]
    raise DataError(f"dataset '{name}' has the text columns {', '.join(strings) or 'none'} and none is named "
                    f"'text'; name one: {base}#COLUMN." if strings else
                    f"dataset '{name}' has no text column (its columns: {', '.join(split.column_names)}).")


def _texts(split: Any, column: str) -> Iterator[str]:
    for batch in split.select_columns([column]).iter(batch_size=1024):
        yield from (text for text in batch[column] if text is not None)


def _rows_text(split: Any, column: str, source: str) -> Callable[[], str]:
    def read() -> str:
        pieces: list[str] = []
        joined = -len(ROW_SEPARATOR)  # the length of the pieces joined
        for text in _texts(split, column):
            pieces.append(text)
            joined += len(ROW_SEPARATOR) + len(text)
            if joined > MAX_CHARACTERS:
                warnings.warn(f"{source}: read the first {MAX_CHARACTERS:,} characters only.", stacklevel=2)
                return ROW_SEPARATOR.join(pieces)[:MAX_CHARACTERS]
        return ROW_SEPARATOR.join(pieces)
    return read


def load_hf_text(name: str, root: Path | None = None) -> DatasetSplits:
    """A Hugging Face text dataset's splits as token sequences of the model's length (see the module)."""
    parsed = parse_name(name)
    train, evaluation, tune, evaluation_name = _splits(_load(parsed), name)
    column = _text_column(train, parsed, name)

    def split(rows: Any, split_name: str) -> TextSplit:
        _text_column(rows, parsed._replace(column=column), name)  # every split has the column
        source = f"{name} [{split_name}]"
        return TextSplit(_rows_text(rows, column, source), source)

    return DatasetSplits(split(train, "train"), split(evaluation, evaluation_name), 1, ["text"], (),
                         tune=split(tune, "validation") if tune is not None else None, task=LANGUAGE_MODELLING)
