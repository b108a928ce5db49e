"""Files written whole or not at all: through a temporary name beside them, then renamed.

The outputs tomobench writes outside a library (submissions, reports, leaderboard entries,
figures, caches, unpacked datasets, a run folder's files) go through :func:`atomic_path`, so
an interrupted write never leaves a file that looks complete, and no output replaces a
tomobench library. (Libraries have their own protocol: ``PATH.partial``, renamed once
complete; downloads, pooch's.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tomobench.errors import TomobenchError

__all__ = ["atomic_path", "write_text_atomically"]


def _temporary(path: Path) -> Path:
    """The hidden temporary name of ``path`` in this process: ``.NAME.PID.tmp.SUFFIX``, beside
    it (same file system, so the rename is atomic) and ending in its suffix, for writers that
    choose a format by it (``np.savez``, matplotlib, Keras)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, error: type[Exception] = TomobenchError) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; on leaving the block it replaces
    ``path`` (a file, or a whole folder by a folder: a Zarr group).

    Before anything, an output that would replace a tomobench library is refused
    (:func:`tomobench.store.refuse_library_as_output`). On any failure the temporary is
    removed and ``path`` left as it was; an :class:`OSError` (a full disk, a missing folder)
    becomes ``error`` with one line naming ``path``. A folder is never replaced by a file.
    """
    from tomobench.store import refuse_library_as_output

    path = Path(path)
    refuse_library_as_output(path)
    temporary = _temporary(path)
    try:
        _remove(temporary)  # left by an earlier process of the same id
        yield temporary
        _replace(temporary, path)
    except TomobenchError:
        raise
    except OSError as caught:
        msg = f"cannot write {path}: {caught.strerror or caught}"
        raise error(msg) from None
    finally:
        with contextlib.suppress(OSError):
            _remove(temporary)


def write_text_atomically(
    path: str | Path, text: str, *, error: type[Exception] = TomobenchError
) -> Path:
    """``text`` written to ``path`` as :func:`atomic_path` writes; return the path."""
    with atomic_path(path, error=error) as temporary:
        temporary.write_text(text)
    return Path(path)


def _replace(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``; a folder replaces a folder whole (the old one is moved
    aside, then removed)."""
    if source.is_dir() and target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        _remove(old)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
