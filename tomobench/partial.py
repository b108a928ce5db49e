"""The life of a library while it is built: locked, partial, resumed, complete.

While a build runs, its library lives at ``PATH.partial`` and flags each chunk once written;
it is renamed to ``PATH`` when every chunk is there. Run the same build again after an
interruption (even ``kill -9``) and it writes only the missing chunks. Every step leaves a
state that the next build resumes:

- a new partial is made under a hidden name (``.NAME.partial.new``) and renamed to
  ``PATH.partial`` once it holds its attributes, so that whatever else sits at
  ``PATH.partial`` is not tomobench's, and is refused, never deleted;
- a split's chunk flags are made before its arrays, and dropped only once every chunk is
  written: a partial split without flags is complete;
- a finished library that gains splits is renamed back to ``PATH.partial`` first; its
  splits, without flags, are complete.

One build at a time holds ``PATH``: an exclusive lock (``fcntl.flock``, released by the
system whatever ends the process) on the file ``.NAME.lock`` beside it. A second build of the
same output is refused with one line while the first runs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from tomobench import sources
from tomobench._text import shorten
from tomobench.errors import RecipeError, StoreError
from tomobench.physics.geometry import from_recipe
from tomobench.recipe import SPLITS, Recipe
from tomobench.store import (
    Library,
    identity,
    is_library,
    open_library,
    open_store,
    path_status,
    split_backends,
)
from tomobench.store.base import Store
from tomobench.store.format import (
    FORMAT_VERSION,
    array_specs,
    chunk_count,
    format_of,
    partial_path,
)


def target(recipe: Recipe, out, *, format: str | None, chunk: int | None) -> tuple[Path, Recipe]:
    """The library's absolute path, and the recipe with ``format`` and ``chunk`` set."""
    if format is not None and format not in ("hdf5", "zarr"):
        msg = f"format must be hdf5 or zarr, got {format!r}"
        raise RecipeError(msg)
    if out is None:
        format = format or recipe.output.format
        path = Path(f"{recipe.name}{'.zarr' if format == 'zarr' else '.h5'}")
    else:
        path = Path(out)
        named = format_of(path)
        if named is None:
            msg = f"out {path}: name the library *.h5, *.hdf5 or *.zarr"
            raise RecipeError(msg)
        if format is not None and named != format:
            msg = f"out {path} names a {named} library but format is {format}"
            raise RecipeError(msg)
        format = named
    return path.absolute(), recipe.with_output(format=format, chunk=chunk)


def wanted_splits(recipe: Recipe, splits: Iterable[str] | None) -> list[str]:
    available = [name for name in SPLITS if recipe.splits.get(name, 0) > 0]
    if splits is None:
        return available
    wanted = list(dict.fromkeys(splits))
    unknown = [name for name in wanted if name not in available]
    if unknown:
        msg = (
            f"split {unknown[0]!r} is not in recipe {recipe.name!r} "
            f"(it has {', '.join(available)})"
        )
        raise RecipeError(msg)
    return [name for name in SPLITS if name in wanted]


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the library at ``path`` (see the module's docstring), or
    raise :class:`StoreError` at once if another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks of this kind
        yield
        return
    lock = lock_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        msg = f"cannot create {shorten(str(path.parent))}: {error.strerror or error}"
        raise StoreError(msg) from None
    while True:
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            reason = "file name too long" if error.errno == errno.ENAMETOOLONG else (
                error.strerror or str(error)
            )
            msg = f"cannot build {shorten(str(path))}: cannot create its lock {lock.name}: "
            msg += reason
            raise StoreError(msg) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            msg = (
                f"another tomobench build is writing {path} (it holds {lock.name}); "
                "wait for it to end, then run this build again"
            )
            raise StoreError(msg) from None
        # the lock file may have been removed (and another made) between open and flock
        with suppress(OSError):
            if os.fstat(descriptor).st_ino == os.stat(lock).st_ino:
                break
        os.close(descriptor)
    try:
        yield
    finally:
        with suppress(OSError):
            lock.unlink()  # while still held: a build that opened it meanwhile sees it gone
        os.close(descriptor)


def open_for_build(
    path: Path, recipe: Recipe, backends: dict[str, str], wanted: list[str]
) -> tuple[Store | None, Recipe]:
    """The store to write to, at ``PATH.partial``, and the recipe it was started with;
    ``(None, recipe)`` when ``PATH`` is already a complete library with every wanted split.
    Call it holding :func:`locked`."""
    partial = partial_path(path)
    if path_status(path) is not None:
        with open_library(path) as library:
            _check_same(library, recipe, backends)
            if set(wanted) <= set(library.splits):
                return None, recipe
        if path_status(partial) is not None or os.path.islink(partial):
            msg = (
                f"both {path} and {partial.name} exist: tomobench never leaves both; "
                f"move {partial.name} away to add splits to {path.name}"
            )
            raise StoreError(msg)
        # add splits to a finished library: it becomes partial again; its splits have no
        # chunk flags, which says that every chunk of theirs is written
        os.replace(path, partial)
    _refuse_foreign(partial)
    if path_status(partial) is not None:
        with open_library(partial) as library:
            _check_same(library, recipe, backends)
            recipe = library.recipe  # its chunking, which its flags count in
        store = open_store(partial, "r+")
        with write_errors(store):
            _add_splits(store, recipe, backends, wanted)
        return store, recipe
    return _create(partial, recipe, backends, wanted), recipe


def _refuse_foreign(partial: Path) -> None:
    """:class:`StoreError` if something other than a partial tomobench library of this
    output sits at ``partial``: tomobench never deletes what it did not make."""
    try:
        partial.lstat()
    except FileNotFoundError:
        return
    except OSError as error:
        msg = f"{shorten(str(partial))}: {error.strerror or error}"
        raise StoreError(msg) from None
    if os.path.islink(partial):
        what = "a symbolic link"
    elif format_of(partial) == "zarr" and not os.path.isdir(partial):
        what = "not a folder"
    elif format_of(partial) == "hdf5" and not os.path.isfile(partial):
        what = "not a regular file"
    elif not is_library(partial):
        what = "not a tomobench library"
    else:
        return
    msg = (
        f"{partial} is {what}, which tomobench did not make: move it away or choose "
        "another out"
    )
    raise StoreError(msg)


def _create(partial: Path, recipe: Recipe, backends: dict[str, str], wanted: list[str]):
    """A new partial library: made at a hidden name, renamed to ``partial`` once it holds
    its attributes and its splits' flags."""
    staging = partial.with_name(f".{partial.name}.new")
    if staging.is_dir() and not staging.is_symlink():  # a creation of ours cut short
        shutil.rmtree(staging)
    elif staging.exists() or staging.is_symlink():
        staging.unlink()
    store = open_store(staging, "w-", format=recipe.output.format)
    try:
        needed = store.space_needed(
            [spec for split in wanted for spec in array_specs(recipe, recipe.splits[split])]
        )
        free = shutil.disk_usage(partial.parent).free
        if needed > free:
            msg = (
                f"not enough disk space for {partial.name.removesuffix('.partial')}: it needs "
                f"{needed / 1024**3:.2f} GiB, {partial.parent} has {free / 1024**3:.2f} GiB free"
            )
            raise StoreError(msg)
        _write_root(store, recipe)
        _add_splits(store, recipe, backends, wanted)
        store.close()
    except BaseException as error:
        with suppress(Exception):
            store.close()
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
        if isinstance(error, (OSError, RuntimeError, KeyError, ValueError)) and not isinstance(
            error, StoreError
        ):
            msg = f"cannot create {partial}: {_reason(error)}"
            raise StoreError(msg) from None
        raise
    os.replace(staging, partial)
    return open_store(partial, "r+")


def _write_root(store: Store, recipe: Recipe) -> None:
    from tomobench import __version__

    store.set_attrs(
        {
            "tomobench_format": FORMAT_VERSION,
            "tomobench_version": __version__,
            "recipe": recipe.canonical_json(),
            "recipe_sha256": recipe.sha256(),
            "task": recipe.task,
            "complete": False,
            **sources.root_attrs(recipe.source),
        }
    )
    store.write_root_array("angles", from_recipe(recipe).angle_values)
    for name, values in sources.root_arrays(recipe.source).items():
        store.write_root_array(name, values)


def _add_splits(store: Store, recipe: Recipe, backends: dict[str, str], wanted: list[str]):
    """The arrays of the wanted splits the store lacks, and the ``backend`` and ``identity``
    attributes: every split mapped to the backend that makes its sinograms and to its
    identity's digest (:meth:`Library.identity`)."""
    built = split_backends(store.attrs.get("backend"))
    built = {split: built[split] for split in store.splits() if split in built}
    backend = built | {split: backends[split] for split in wanted}
    identities = {
        split: identity(recipe.sha256(), name, FORMAT_VERSION)["sha256"]
        for split, name in backend.items()
    }
    store.set_attrs(
        {
            "complete": False,
            "backend": json.dumps(backend, sort_keys=True),
            "identity": json.dumps(identities, sort_keys=True),
        }
    )
    existing = set(store.splits())
    for split in wanted:
        if split not in existing:
            count = recipe.splits[split]
            store.create_split(
                split, array_specs(recipe, count), chunk_count(count, recipe.output.chunk)
            )


def written(store: Store, recipe: Recipe, split: str) -> np.ndarray:
    """Which chunks of ``split`` are written. A partial library holds a split's flags from
    its creation until every chunk is written; a partial without them was stopped while
    finishing (between dropping the flags and the rename), with every chunk there."""
    flags = store.flags(split)
    if flags is None:
        return np.ones(chunk_count(recipe.splits[split], recipe.output.chunk), dtype=bool)
    return flags


def finish(store: Store, path: Path, recipe: Recipe, wanted: list[str]) -> None:
    """Mark the partial library complete and rename it to ``path``."""
    missing = [split for split in wanted if not written(store, recipe, split).all()]
    if missing:  # a bug, never a user error: refuse to call the library complete
        msg = f"build of {path} ended with chunks of {missing} unwritten"
        raise RuntimeError(msg)
    with write_errors(store):
        store.drop_flags()
        store.set_attrs({"complete": True})
        store.close()
    os.replace(partial_path(path), path)


def _check_same(library: Library, recipe: Recipe, backends: dict[str, str]) -> None:
    if library.recipe_sha256 != recipe.sha256():
        msg = (
            f"{library.path} holds a library of another recipe "
            f"({library.recipe.name}, sha256 {library.recipe_sha256[:12]}…); "
            "choose another out or remove it"
        )
        raise StoreError(msg)
    if int(library.attrs.get("tomobench_format", 0)) != FORMAT_VERSION:
        msg = (
            f"{library.path} is a library of format {library.attrs.get('tomobench_format')}, "
            f"made by another tomobench; this one builds format {FORMAT_VERSION}: "
            "choose another out or remove it"
        )
        raise StoreError(msg)
    for split, backend in backends.items():
        started = library.backend(split) if split in library.splits else None
        if started is not None and started != backend:
            msg = (
                f"{library.path}: split {split} was started with projector backend {started} "
                f"but this machine resolves {recipe.geometry.backend!r} to {backend}; "
                "set geometry.backend in the recipe or remove the library"
            )
            raise StoreError(msg)


@contextmanager
def write_errors(store: Store | None, path: Path | None = None):
    """A failed write (full disk, lost mount) becomes one line naming the library; the
    partial library stays. The store (if given) is closed."""
    try:
        yield
    except StoreError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as error:  # h5py raises all four
        if store is not None:
            with suppress(Exception):
                store.close()
        raise StoreError(write_failure(path or store.path, error)) from None


def write_failure(path: Path, error: BaseException) -> str:
    """The one line that says a write to the library at ``path`` failed."""
    return (
        f"cannot write {path}: {_reason(error)}; the partial library is kept, "
        "run the same build again to resume"
    )


def _reason(error: BaseException) -> str:
    if getattr(error, "errno", None) == errno.ENOSPC:
        return "the disk is full"
    text = str(error).strip()
    return getattr(error, "strerror", None) or (
        shorten(text.splitlines()[0]) if text else type(error).__name__
    )
