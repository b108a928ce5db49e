"""Small helpers for messages: input shortened for quoting, and what a file system entry is."""

from __future__ import annotations

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
