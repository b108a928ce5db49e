"""Zarr (v3) libraries. Each chunk of samples is one Zarr chunk of every array, so build
tasks write their chunks in parallel, each from its own process, with no shared state."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from tomobench.store.format import BUILD_GROUP, ArraySpec

# zstd at level 1 (twice as fast to write as zarr's default level 3, for a third more disk:
# docs/benchmarks.md), with zstd's checksum of each chunk's content: a chunk damaged on disk
# (a flipped byte) fails to read instead of giving other values
_COMPRESSOR = ZstdCodec(level=1, checksum=True)


def settle() -> None:
    """Wait for the reads of zarr's event loop that are still running. zarr reads an array's
    chunks concurrently, and when one of them fails (a damaged chunk) the others go on; a
    process that then ends destroys them half-way, and asyncio prints a message for each
    on stderr ("Task was destroyed but it is pending!"), after the command's own error."""
    import asyncio

    try:
        from zarr.core.sync import loop, sync
    except ImportError:  # pragma: no cover - another zarr layout: nothing to wait for
        return
    if loop[0] is None or loop[0].is_closed():
        return

    async def rest() -> None:
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        await asyncio.gather(*others, return_exceptions=True)

    with suppress(Exception):  # only tidying up, before the real error is raised
        sync(rest(), timeout=10)


class ZarrStore:
    format = "zarr"
    parallel_writes = True

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self._group = zarr.open_group(str(path), mode=mode)

    @classmethod
    def create(cls, path: Path) -> ZarrStore:
        return cls(path, "w-")

    # -- reading ----------------------------------------------------------------------

    @property
    def attrs(self) -> dict:
        return dict(self._group.attrs)

    def splits(self) -> list[str]:
        return sorted(name for name, _ in self._group.groups() if name != BUILD_GROUP)

    def root(self, name: str) -> np.ndarray:
        return self._group[name][...]

    def array(self, split: str, name: str) -> zarr.Array:
        return self._group[f"{split}/{name}"]

    def arrays(self, split: str) -> dict[str, zarr.Array | zarr.Group]:
        """Every member of ``split``: its arrays (and any group in an array's place, which
        :meth:`tomobench.store.Library.arrays` refuses)."""
        return dict(self._group[split].members())

    def flags(self, split: str) -> np.ndarray | None:
        key = f"{BUILD_GROUP}/{split}"
        return self._group[key][...].astype(bool) if key in self._group else None

    def nbytes_on_disk(self) -> int:
        return sum(item.stat().st_size for item in self.path.rglob("*") if item.is_file())

    # -- writing ----------------------------------------------------------------------

    def set_attrs(self, attrs: dict) -> None:
        self._group.attrs.update(attrs)

    def write_root_array(self, name: str, values: np.ndarray) -> None:
        self._group.create_array(
            name, shape=values.shape, dtype=values.dtype, chunks=values.shape, overwrite=True
        )[...] = values

    def create_split(self, split: str, specs: list[ArraySpec], chunks: int) -> None:
        """The arrays of a new split, its chunk flags (all unwritten) first: a partial
        library never holds a split's arrays without its flags, which only finishing drops."""
        self._group.require_group(BUILD_GROUP).create_array(
            split, shape=(chunks,), dtype="u1", chunks=(1,), fill_value=0, overwrite=True
        )
        group = self._group.require_group(split)
        for spec in specs:
            group.create_array(
                spec.name,
                shape=spec.shape,
                dtype=spec.dtype,
                chunks=spec.chunks,
                # a chunk that goes missing (a copy cut short) then reads as NaN, which
                # Library.read refuses, not as zeros that look like data
                fill_value=np.nan if np.dtype(spec.dtype).kind == "f" else 0,
                compressors=_COMPRESSOR,
            )

    def space_needed(self, specs: list[ArraySpec]) -> int:
        """None at creation: chunks are compressed, and take their space as they are written."""
        return 0

    def write_chunk(self, split: str, index: int, start: int, arrays: dict) -> None:
        for name, values in arrays.items():
            self._group[f"{split}/{name}"][start : start + len(values)] = values
        self._group[f"{BUILD_GROUP}/{split}"][index] = 1

    def drop_flags(self) -> None:
        if BUILD_GROUP in self._group:
            del self._group[BUILD_GROUP]

    def close(self) -> None:
        pass
