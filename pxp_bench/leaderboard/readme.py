"""Filling a README's leaderboard markers with the headline table, leaving the rest of the file alone."""

from __future__ import annotations

import re
from pathlib import Path

from pxp_bench.errors import ConfigError
from pxp_bench.results import atomic_write_text

README_START = "<!-- leaderboard:start -->"
README_END = "<!-- leaderboard:end -->"
_MARKED = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.DOTALL)


def read_marked(readme: Path) -> str:
    """The text of ``readme``, refused unless it has both markers (checked before anything is written)."""
    try:
        text = Path(readme).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {readme}: {getattr(exc, 'strerror', None) or exc}.") from None
    if not _MARKED.search(text):
        raise ConfigError(f"{readme} has no '{README_START}' ... '{README_END}' markers to fill.")
    return text


def update_readme(readme: Path, content: str) -> None:
    """Replace the text between the leaderboard markers of ``readme`` with ``content``."""
    replacement = f"{README_START}\n{content}{README_END}"
    try:
        atomic_write_text(Path(readme), _MARKED.sub(lambda _: replacement, read_marked(readme)))
    except OSError as exc:
        raise ConfigError(f"cannot write {readme} ({exc.strerror or exc}).") from None
