"""Byte-level tokenization: a token is a UTF-8 byte, so there is no vocabulary file to download, ever."""

from __future__ import annotations

from collections.abc import Iterable


class ByteTokenizer:
    """Text to UTF-8 byte ids and back; ids outside 0..255 are not bytes and raise on decode."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
