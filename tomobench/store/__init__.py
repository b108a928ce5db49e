"""Libraries on disk: HDF5 or Zarr, one tree (see :mod:`tomobench.store.format`)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

import h5py
import numpy as np

from tomobench._text import file_kind
from tomobench._text import shorten_path as shorten
from tomobench.errors import StoreError
from tomobench.recipe import SPLITS, Recipe, parse_recipe
from tomobench.store.format import (
    FORMAT_VERSION,
    PARTIAL_SUFFIX,
    chunk_count,
    format_of,
    partial_path,
)
from tomobench.store.hdf5 import HDF5Store

_FORMATS = ("hdf5", "zarr")


def _store_class(format: str):
    if format == "hdf5":
        return HDF5Store
    from tomobench.store.zarr import ZarrStore  # zarr is slow to import: only when used

    return ZarrStore


def path_status(path: str | Path, *, error: type[Exception] = StoreError) -> os.stat_result | None:
    """``os.stat`` of ``path`` (links followed), or None if nothing is there; a path that
    cannot be looked at (a name too long, a folder without permission) raises ``error`` with
    one line naming it (shortened)."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as problem:  # ValueError: a NUL in the path
        if getattr(problem, "errno", None) == errno.ENOTDIR:
            return None
        reason = getattr(problem, "strerror", None) or str(problem)
        if getattr(problem, "errno", None) == errno.ENAMETOOLONG:
            reason = "file name too long"
        msg = f"{shorten(path)}: {reason}"
        raise error(msg) from None


def require_kind(
    path: str | Path,
    format: str,
    *,
    what: str | None = None,
    error: type[Exception] = StoreError,
    status: os.stat_result | None = None,
) -> None:
    """Raise ``error`` (saying ``path`` is not a readable ``what``, by default a
    ``format`` library) unless ``path`` is what ``format`` reads: a regular file (HDF5, NPY)
    or a folder (Zarr). Checked before anything opens it: a FIFO would block the reader
    forever, a device never end."""
    status = status if status is not None else path_status(path, error=error)
    if status is None:
        return
    want = stat.S_ISDIR if format == "zarr" else stat.S_ISREG
    if not want(status.st_mode):
        needed = "a folder" if format == "zarr" else "a regular file"
        msg = (
            f"{shorten(path)}: not a readable {what or f'{format} library'}: it is "
            f"{file_kind(status.st_mode)}, not {needed}"
        )
        raise error(msg)


def open_store(path: Path, mode: str = "r", *, format: str | None = None):
    """The HDF5 or Zarr store at ``path`` (format from the suffix unless given). Read
    modes refuse what the format cannot be: not a regular file (HDF5), not a folder
    (Zarr)."""
    format = format or format_of(path)
    if format not in _FORMATS:
        msg = f"{shorten(path)}: cannot tell the format (name it *.h5, *.hdf5 or *.zarr)"
        raise StoreError(msg)
    if mode == "r":
        require_kind(path, format)
    try:
        return _store_class(format)(path, mode)
    except (OSError, ValueError, KeyError) as error:
        if mode == "r" or path.exists():
            msg = f"{path}: not a readable {format} library ({error})"
        else:
            msg = f"cannot create {path}: {getattr(error, 'strerror', None) or error}"
        raise StoreError(msg) from None


class Library:
    """A library on disk, opened read-only. Arrays are h5py datasets or zarr arrays."""

    def __init__(self, path: Path, store) -> None:
        self.path = path
        self.store = store
        attrs = store.attrs
        if attrs.get("tomobench_format") is None:
            store.close()
            msg = f"{path}: not a tomobench library (no tomobench_format attribute)"
            raise StoreError(msg)
        try:
            version = int(attrs["tomobench_format"])
        except (TypeError, ValueError):
            store.close()
            msg = f"{path}: a damaged library: tomobench_format {attrs['tomobench_format']!r}"
            raise StoreError(msg) from None
        if version > FORMAT_VERSION:
            store.close()
            msg = (
                f"{path}: library format {version} is newer than this tomobench reads "
                f"({FORMAT_VERSION}); upgrade tomobench"
            )
            raise StoreError(msg)
        missing = [key for key in ("recipe", "recipe_sha256") if key not in attrs]
        if missing:
            store.close()
            msg = f"{path}: a damaged library: no {' or '.join(missing)} attribute"
            raise StoreError(msg)
        try:
            self._recipe = parse_recipe(json.loads(attrs["recipe"]), origin=f"{path} recipe")
        except (TypeError, ValueError) as error:  # RecipeError is a ValueError
            store.close()
            msg = f"{path}: a damaged library: its recipe attribute does not read ({error})"
            raise StoreError(msg) from None
        self.attrs = attrs

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"open_library({str(self.path)!r})"

    def close(self) -> None:
        self.store.close()

    @property
    def format(self) -> str:
        return self.store.format

    @property
    def recipe(self) -> Recipe:
        return self._recipe

    @property
    def recipe_sha256(self) -> str:
        return self.attrs["recipe_sha256"]

    def backend(self, split: str) -> str | None:
        """The projector backend that made the sinograms of ``split`` (format 2: the
        ``backend`` attribute maps each split to its own; format 1: one for every split)."""
        return split_backends(self.attrs.get("backend")).get(split)

    def identity(self, split: str) -> dict:
        """What makes the bytes of ``split``: the recipe's sha256, the projector backend that
        made its sinograms and the format version (which changes whenever what a recipe
        means changes), and ``sha256``, a digest of the three. Two splits of one identity
        hold the same bytes; scores are compared only within one identity."""
        return identity(
            self.recipe_sha256, self.backend(split), int(self.attrs["tomobench_format"])
        )

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete")) and not self.path.name.endswith(PARTIAL_SUFFIX)

    def require_complete(self, action: str, *, error: type[Exception] = StoreError) -> None:
        """Raise ``error`` (one line) unless the library is complete: a build in progress or
        interrupted has samples not yet written, which read as zeros. ``action`` says what
        needs it, as in "finish the build before {action}" ("scoring on it")."""
        if not self.complete:
            msg = (
                f"{self.path}: the library is incomplete (a build in progress or "
                f"interrupted); finish the build before {action}"
            )
            raise error(msg)

    @property
    def splits(self) -> list[str]:
        present = set(self.store.splits())
        return [name for name in SPLITS if name in present]

    @property
    def angles(self) -> np.ndarray:
        return np.asarray(self.store.root("angles"))

    def arrays(self, split: str) -> dict:
        if split not in self.splits:
            msg = f"{self.path}: no split {split!r} (has {', '.join(self.splits) or 'none'})"
            raise StoreError(msg)
        try:
            arrays = self.store.arrays(split)
        except (OSError, ValueError, KeyError, TypeError) as error:  # metadata lost or broken
            msg = f"{self.path}: a damaged library: split {split!r} does not read ({error})"
            raise StoreError(msg) from None
        for name, node in arrays.items():
            if not _is_array(node):
                msg = f"{self.path}: a damaged library: {split}/{name} is a group, not an array"
                raise StoreError(msg)
        return arrays

    def check_split(self, split: str) -> None:
        """Raise :class:`StoreError` (one line naming the library and the array) unless the
        arrays of ``split`` are what its recipe makes: ``images`` and ``sinograms`` present,
        real floating point, each array of the shape the recipe gives for the split's sample
        count. Reads metadata only. A library that fails is damaged (or its ``recipe``
        attribute is not the one that made it), whatever a submission holds."""
        from tomobench.store.format import array_specs

        arrays = self.arrays(split)
        missing = [name for name in ("images", "sinograms") if name not in arrays]
        if missing:
            msg = (
                f"{self.path}: a damaged library: split {split!r} has no array "
                f"{' or '.join(map(repr, missing))}"
            )
            raise StoreError(msg)
        count = int(arrays["images"].shape[0]) if arrays["images"].shape else 0
        try:
            specs = {spec.name: spec for spec in array_specs(self.recipe, count)}
        except (TypeError, ValueError, KeyError) as error:  # a recipe that makes no arrays
            msg = f"{self.path}: a damaged library: its recipe gives no array shapes ({error})"
            raise StoreError(msg) from None
        for name, array in arrays.items():
            spec = specs.get(name)
            if spec is None:
                continue
            shape = tuple(int(n) for n in array.shape)
            if shape != spec.shape:
                self._refuse_an_older_format()
                recipe = self.recipe
                made = f"size {recipe.image_size}, {recipe.geometry.angles} angles"
                if recipe.channels is not None:
                    made += f", {recipe.channels} channels"
                msg = (
                    f"{self.path}: a damaged library: {split}/{name} has shape {shape}, but "
                    f"its recipe ({recipe.name}: {made}) makes {spec.shape} for "
                    f"{count} samples"
                )
                raise StoreError(msg)
            if np.dtype(array.dtype).kind != np.dtype(spec.dtype).kind:
                msg = (
                    f"{self.path}: a damaged library: {split}/{name} has dtype "
                    f"{array.dtype}, not {spec.dtype}"
                )
                raise StoreError(msg)

    def _refuse_an_older_format(self) -> None:
        """A library of an older format whose shapes are not what its recipe makes now was
        made under other rules (format 1's default detector was the image size): it is not
        damaged, but this tomobench cannot read it as its recipe says."""
        version = int(self.attrs["tomobench_format"])
        if version < FORMAT_VERSION:
            msg = (
                f"{self.path}: a library of format {version}, made by an earlier tomobench "
                f"whose recipe rules differ from format {FORMAT_VERSION}'s (detectors, "
                "generators); build it again with this tomobench"
            )
            raise StoreError(msg)

    def __getitem__(self, key: str):
        split, _, name = key.partition("/")
        arrays = self.arrays(split)
        if name not in arrays:
            msg = f"{self.path}: split {split!r} has no array {name!r} (has {', '.join(arrays)})"
            raise StoreError(msg)
        return arrays[name]

    def read(self, key: str, index: int | None = None) -> np.ndarray:
        """The whole array ``split/name`` (or its sample ``index``), read into memory;
        :class:`StoreError` if it does not read (a corrupt chunk) or holds non-finite
        values, which tomobench never writes (a Zarr chunk that is missing reads as NaN)."""
        array = self[key]
        what = key if index is None else f"{key}[{index}]"
        try:
            values = np.asarray(array[...] if index is None else array[index])
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:  # zarr's codecs
            if self.store.format == "zarr":
                from tomobench.store.zarr import settle

                settle()
            msg = f"{self.path}: a damaged library: {what} does not read ({error})"
            raise StoreError(msg) from None
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = int(values.size - np.isfinite(values).sum())
            msg = (
                f"{self.path}: a damaged library: {what} holds {bad} non-finite values "
                "(a chunk lost in a copy?)"
            )
            raise StoreError(msg)
        return values

    def chunks_done(self, split: str) -> tuple[int, int]:
        """(chunks written, chunks in all) for one split. A split without chunk flags has
        every chunk written: a complete library's, or a partial's whose build was stopped
        while finishing (the flags are dropped only once every chunk is written)."""
        flags = self.store.flags(split)
        if flags is not None:
            return int(flags.sum()), len(flags)
        count = self[f"{split}/images"].shape[0]
        total = chunk_count(count, self.recipe.output.chunk) if count else 0
        return (total, total)

    def nbytes_on_disk(self) -> int:
        return self.store.nbytes_on_disk()


def _is_array(node) -> bool:
    """Whether ``node`` (a member of a split) is an array, not a group."""
    if isinstance(node, h5py.Dataset):
        return True
    if isinstance(node, h5py.Group):
        return False
    import zarr

    return isinstance(node, zarr.Array)


def split_backends(attribute) -> dict[str, str]:
    """The ``backend`` attribute of a library as a mapping split → backend: JSON text of
    that mapping (format 2), or one backend's name for every split (format 1)."""
    if not isinstance(attribute, str):
        return {}
    if attribute.startswith("{"):
        try:
            mapping = json.loads(attribute)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in mapping.items()} if isinstance(mapping, dict) else {}
    return dict.fromkeys(SPLITS, attribute)


def identity(recipe_sha256: str, backend: str | None, tomobench_format: int) -> dict:
    """The identity of a split (see :meth:`Library.identity`)."""
    parts = {
        "recipe_sha256": recipe_sha256,
        "backend": backend,
        "tomobench_format": tomobench_format,
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return {**parts, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def is_library(path: str | Path) -> bool:
    """Whether ``path`` holds a tomobench library (an HDF5 file or a Zarr folder whose root
    has a ``tomobench_format`` attribute), complete or not. Reads only the root's metadata."""
    path = Path(path)
    try:
        if path.is_dir():
            meta = json.loads((path / "zarr.json").read_text())
            return "tomobench_format" in (meta.get("attributes") or {})
        if path.is_file() and h5py.is_hdf5(path):
            with h5py.File(path, "r") as file:
                return "tomobench_format" in file.attrs
    except (OSError, ValueError, AttributeError):
        return False
    return False


def refuse_library_as_output(path: str | Path) -> None:
    """:class:`StoreError` if the output ``path`` would replace a library (say, the one a
    command reads, given again as its output)."""
    if is_library(path):
        msg = f"{path} is a tomobench library: write the output under another name"
        raise StoreError(msg)


def open_library(path: str | Path) -> Library:
    """Open a library read-only; a build in progress is found at ``PATH.partial``. What
    is not a regular file (HDF5) or a folder (Zarr) is refused before it is opened."""
    path = Path(path)
    if path_status(path) is None:
        partial = partial_path(path)
        if path_status(partial) is None:
            msg = f"no library at {shorten(path)}"
            raise StoreError(msg)
        path = partial
    return Library(path, open_store(path, "r"))
