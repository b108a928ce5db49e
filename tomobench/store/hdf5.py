"""HDF5 libraries (h5py).

Every array of a split is chunked along its samples, each chunk with a Fletcher-32 checksum,
and its storage is allocated when it is created, so that a disk too small is found before any
sample is computed. Only the process that builds the library opens it: a parallel build's
workers hand their chunks back to it (``parallel_writes`` is false). A killed build leaves a
readable file.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from tomobench.store.format import BUILD_GROUP, ArraySpec


class HDF5Store:
    format = "hdf5"
    parallel_writes = False

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        try:
            self._file = h5py.File(path, mode)
        except OSError as error:
            if mode != "r":
                raise
            # the build that writes a partial library holds it open and locked: a reader
            # (`info`, for the build's progress) opens it without a lock of its own
            try:
                self._file = h5py.File(path, mode, locking=False)
            except OSError:
                raise error from None

    @classmethod
    def create(cls, path: Path) -> HDF5Store:
        return cls(path, "w-")

    # -- reading ----------------------------------------------------------------------

    @property
    def attrs(self) -> dict:
        return {key: _plain(value) for key, value in self._file.attrs.items()}

    def splits(self) -> list[str]:
        return [name for name in self._file if isinstance(self._file[name], h5py.Group)
                and name != BUILD_GROUP]

    def root(self, name: str) -> np.ndarray:
        return self._file[name][...]

    def array(self, split: str, name: str) -> h5py.Dataset:
        return self._file[f"{split}/{name}"]

    def arrays(self, split: str) -> dict[str, h5py.Dataset]:
        return dict(self._file[split].items())

    def flags(self, split: str) -> np.ndarray | None:
        key = f"{BUILD_GROUP}/{split}"
        return self._file[key][...].astype(bool) if key in self._file else None

    def nbytes_on_disk(self) -> int:
        return self.path.stat().st_size

    # -- writing ----------------------------------------------------------------------

    def set_attrs(self, attrs: dict) -> None:
        self._file.attrs.update(attrs)

    def write_root_array(self, name: str, values: np.ndarray) -> None:
        if name in self._file:
            del self._file[name]
        self._file.create_dataset(name, data=values)

    def create_split(self, split: str, specs: list[ArraySpec], chunks: int) -> None:
        """The arrays of a new split, its chunk flags (all unwritten) first: a partial
        library never holds a split's arrays without its flags, which only finishing drops."""
        flags = self._file.require_group(BUILD_GROUP)
        if split in flags:  # left by a build stopped before the split's arrays were made
            del flags[split]
        flags.create_dataset(split, shape=(chunks,), dtype="u1", fillvalue=0)
        self._file.flush()
        group = self._file.require_group(split)
        for spec in specs:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            group.create_dataset(
                spec.name, shape=spec.shape, dtype=spec.dtype, chunks=spec.chunks, dcpl=dcpl,
                fletcher32=True,  # a checksum of each chunk: damage on disk fails to read
            )
        self._file.flush()

    def space_needed(self, specs: list[ArraySpec]) -> int:
        """Bytes that the arrays of ``specs`` take when created: all their storage."""
        return sum(int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize for spec in specs)

    def write_chunk(self, split: str, index: int, start: int, arrays: dict) -> None:
        """Write samples ``start:…`` of every array of ``split``, then flag chunk ``index``."""
        for name, values in arrays.items():
            self._file[f"{split}/{name}"][start : start + len(values)] = values
        self._file.flush()
        self._file[f"{BUILD_GROUP}/{split}"][index] = 1
        self._file.flush()

    def drop_flags(self) -> None:
        if BUILD_GROUP in self._file:
            del self._file[BUILD_GROUP]

    def close(self) -> None:
        self._file.close()


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
