"""HDF5 libraries (h5py).

Every array of a split is chunked along its samples, unfiltered, and its storage is allocated
when it is created: the file's layout is then fixed, and writing samples only puts bytes at
known places. A build therefore writes sample data straight into the file (``os.pwrite`` at
the offsets HDF5 reports for each storage chunk), from as many processes as it has workers,
while one process keeps the file open for its metadata (the chunk flags). A killed build
leaves a readable file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from tomobench.store.format import BUILD_GROUP, ArraySpec


class HDF5Store:
    format = "hdf5"

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self._file = h5py.File(path, mode)

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
                spec.name, shape=spec.shape, dtype=spec.dtype, chunks=spec.chunks, dcpl=dcpl
            )
        self._file.flush()

    def mark_written(self, split: str, chunks: int) -> None:
        """Flag every chunk of ``split`` written (a finished split that a build reopens)."""
        group = self._file.require_group(BUILD_GROUP)
        if split in group:
            del group[split]
        group.create_dataset(split, data=np.ones(chunks, dtype="u1"))
        self._file.flush()

    def write_chunk(self, split: str, index: int, start: int, arrays: dict) -> None:
        placed = self.placement(split, start, start + len(next(iter(arrays.values()))))
        if placed is not None and set(placed.names) == set(arrays):
            write_placed(self.path, placed, arrays)
        else:
            for name, values in arrays.items():
                self._file[f"{split}/{name}"][start : start + len(values)] = values
            self._file.flush()
        self.flag_written(split, index)

    def flag_written(self, split: str, index: int) -> None:
        """Flag chunk ``index`` of ``split`` written (once its data is in the file)."""
        self._file[f"{BUILD_GROUP}/{split}"][index] = 1
        self._file.flush()

    def placement(self, split: str, start: int, stop: int) -> Placement | None:
        """Where samples ``start:stop`` of every array of ``split`` lie in the file, or
        None if some array's storage is not plain allocated chunks (a filter, or a layout
        another program wrote), which only h5py may then write."""
        pieces = []
        for name, dataset in self._file[split].items():
            dcpl = dataset.id.get_create_plist()
            if (
                dataset.chunks is None
                or start % dataset.chunks[0] != 0
                or dcpl.get_nfilters() != 0
                or dcpl.get_alloc_time() != h5py.h5d.ALLOC_TIME_EARLY
                or dataset.dtype.kind not in "fiub"
            ):
                return None
            found = _chunk_pieces(name, dataset, start, stop)
            if found is None:
                return None
            pieces += found
        return Placement(start=start, pieces=tuple(pieces))

    def drop_flags(self) -> None:
        if BUILD_GROUP in self._file:
            del self._file[BUILD_GROUP]

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class Piece:
    """One storage chunk of one array: the (start, stop) it holds on each axis
    (``selection``; on the sample axis counted from the first sample written), its full
    shape, and its byte offset in the file."""

    name: str
    selection: tuple[tuple[int, int], ...]
    shape: tuple[int, ...]
    dtype: str
    offset: int


@dataclass(frozen=True)
class Placement:
    """Where the samples ``start:…`` of a split's arrays lie in an HDF5 file."""

    start: int
    pieces: tuple[Piece, ...]

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(piece.name for piece in self.pieces))


def _chunk_pieces(name: str, dataset: h5py.Dataset, start: int, stop: int) -> list[Piece] | None:
    """The storage chunks of samples ``start:stop`` (``start`` begins one), or None if one
    of them has no plain storage of its full size, or if this HDF5 cannot say where chunks
    lie."""
    chunk_info = getattr(dataset.id, "get_chunk_info_by_coord", None)  # HDF5 >= 1.10.5
    if chunk_info is None:
        return None
    chunks, shape = dataset.chunks, dataset.shape
    first, last = start // chunks[0], (stop - 1) // chunks[0]
    grids = [range(first, last + 1)] + [range(-(-n // c)) for n, c in zip(shape[1:], chunks[1:])]
    pieces = []
    for coords in np.ndindex(*(len(grid) for grid in grids)):
        corner = tuple(grid[k] * c for grid, k, c in zip(grids, coords, chunks))
        info = chunk_info(corner)
        if info.byte_offset is None or info.size != int(np.prod(chunks)) * dataset.dtype.itemsize:
            return None
        low = [corner[0] - start, *corner[1:]]
        high = [min(corner[0] + chunks[0], stop) - start] + [
            min(c0 + c, n) for c0, c, n in zip(corner[1:], chunks[1:], shape[1:])
        ]
        pieces.append(
            Piece(name, tuple(zip(low, high)), tuple(chunks), dataset.dtype.str, info.byte_offset)
        )
    return pieces


def write_placed(path: Path, placed: Placement, arrays: dict[str, np.ndarray]) -> None:
    """Put ``arrays`` (samples ``placed.start:…``) at their places in the HDF5 file at
    ``path``. A storage chunk that an array's extent cuts across another axis than the
    samples (the last range of channels) is written padded to its full shape, as HDF5 lays
    it out; the last chunk of a split takes only the samples there are, which come first in
    its layout. Raises OSError as the disk does (full disk, lost mount)."""
    descriptor = os.open(path, os.O_WRONLY)
    try:
        for piece in placed.pieces:
            values = arrays[piece.name]
            region = tuple(slice(low, high) for low, high in piece.selection)
            block = values[region]
            if block.shape[1:] != piece.shape[1:]:
                padded = np.zeros(piece.shape, dtype=piece.dtype)
                padded[tuple(slice(0, n) for n in block.shape)] = block
                block = padded
            data = memoryview(np.ascontiguousarray(block, dtype=piece.dtype)).cast("B")
            _write_all(descriptor, data, piece.offset)
    finally:
        os.close(descriptor)


def _write_all(descriptor: int, data: memoryview, offset: int) -> None:
    while len(data):
        written = os.pwrite(descriptor, data, offset)
        if written == 0:
            raise OSError(28, "No space left on device")  # errno.ENOSPC
        data, offset = data[written:], offset + written


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
