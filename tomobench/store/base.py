"""What a library's storage (HDF5, Zarr) does for the rest of tomobench: one tree, read
and written the same way whatever the format (:mod:`tomobench.store.format`)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from tomobench.store.format import ArraySpec


class Store(Protocol):
    format: str
    """``"hdf5"`` or ``"zarr"``."""
    path: Path
    parallel_writes: bool
    """Whether other processes may write chunks (each its own) while the build process has
    the store open: a parallel build's workers then write their chunks themselves; otherwise
    they hand them back to the build process."""

    # reading
    @property
    def attrs(self) -> dict: ...
    def splits(self) -> list[str]: ...
    def root(self, name: str) -> np.ndarray: ...
    def array(self, split: str, name: str): ...
    def arrays(self, split: str) -> dict: ...
    def flags(self, split: str) -> np.ndarray | None:
        """Which chunks of ``split`` are written, while a build runs (None once finished)."""
    def nbytes_on_disk(self) -> int: ...

    # writing
    def set_attrs(self, attrs: dict) -> None: ...
    def write_root_array(self, name: str, values: np.ndarray) -> None: ...
    def space_needed(self, specs: list[ArraySpec]) -> int:
        """Bytes of disk that creating the arrays of ``specs`` takes at once."""
    def create_split(self, split: str, specs: list[ArraySpec], chunks: int) -> None:
        """The arrays of a new split, after its chunk flags (all unwritten)."""
    def write_chunk(self, split: str, index: int, start: int, arrays: dict) -> None:
        """Samples ``start:…`` of every array of ``split``, then flag chunk ``index``."""
    def drop_flags(self) -> None: ...
    def close(self) -> None: ...
