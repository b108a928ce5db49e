"""Small helpers for messages: input shortened for quoting, and what a file system entry is."""

from __future__ import annotations

import reprlib
import stat
from pathlib import Path

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFREG: "a regular file",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO (a named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def shorten(text: str, limit: int = 200) -> str:
    """``text``, cut to ``limit`` characters with "…" where it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten_path(path: str | Path, limit: int = 120) -> str:
    """``path`` as text of at most ``limit`` characters: its start and its end, with "…"
    between where it was longer (the end names the file)."""
    text = str(path)
    if len(text) <= limit:
        return text
    tail = limit // 3
    return f"{text[: limit - tail - 1]}…{text[-tail:]}"


def file_kind(mode: int) -> str:
    """What a ``st_mode`` (or a file-type constant such as ``stat.S_IFIFO``) names: "a
    folder", "a FIFO (a named pipe)", …"""
    return _KINDS.get(stat.S_IFMT(mode), "not a file")


QUOTE_LIMIT = 200
"""Most characters of a user's input quoted in an error message."""


class _BoundedRepr(reprlib.Repr):
    """``repr`` in bounded time and length: a few levels and items of a collection (shared or
    cyclic ones too), the start of a long string, and an integer too long for Python to
    write in digits said by its size."""

    def __init__(self):
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdict = 8
        self.maxother = QUOTE_LIMIT

    def repr_str(self, value, level):
        return shorten(repr(value[: QUOTE_LIMIT + 1]), QUOTE_LIMIT)

    repr_bytes = repr_str  # YAML's !!binary

    def repr_int(self, value, level):
        try:
            return shorten(repr(value), QUOTE_LIMIT)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            return f"<an integer of {value.bit_length()} bits>"


def quote(value: object) -> str:
    """``repr(value)`` in at most ``QUOTE_LIMIT`` characters, ending in "…" if cut."""
    return shorten(_BoundedRepr().repr(value), QUOTE_LIMIT)
