"""Attributes of classes and modules changed inside a block and restored exactly on exit.

lxt patches classes and module globals for the whole process; pxp-bench confines every patch to the
block that needs it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

_MISSING = object()


@contextmanager
def restored_attributes(targets: list[tuple[object, str]]) -> Iterator[None]:
    """Whatever the block does to each ``(owner, name)``, its own value (or its absence) is back on exit."""
    saved = [(owner, name, vars(owner).get(name, _MISSING)) for owner, name in targets]
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            if value is _MISSING:
                if name in vars(owner):
                    delattr(owner, name)
            else:
                setattr(owner, name, value)


@contextmanager
def patched_attributes(changes: list[tuple[object, str, object]]) -> Iterator[None]:
    """Set each ``(owner, name, value)`` inside the block; restored on exit (`restored_attributes`)."""
    with restored_attributes([(owner, name) for owner, name, _ in changes]):
        for owner, name, value in changes:
            setattr(owner, name, value)
        yield
