"""The HDF5 store writes sample data straight into the file; plain h5py must read it back as
if h5py had written it. A refused Zarr read leaves no read of zarr's running."""

import shutil

import h5py
import numpy as np
import pytest

from tomobench.store.format import ArraySpec
from tomobench.store.hdf5 import HDF5Store

SPECS = [
    ArraySpec("images", (10, 6, 7), (4, 6, 7)),  # the last chunk holds 2 samples
    ArraySpec("sinograms", (10, 3, 5, 70), (1, 3, 5, 32)),  # channels cut 32 + 32 + 6
    ArraySpec("phase", (10, 4), (4, 4), dtype="uint8"),
]


def arrays(rng, start, stop):
    return {
        "images": rng.random((stop - start, 6, 7), dtype=np.float32),
        "sinograms": rng.random((stop - start, 3, 5, 70), dtype=np.float32),
        "phase": rng.integers(0, 255, (stop - start, 4), dtype=np.uint8),
    }


def test_placed_writes_read_back_with_plain_h5py(tmp_path):
    rng = np.random.default_rng(0)
    store = HDF5Store(tmp_path / "a.h5", "w-")
    store.create_split("test", SPECS, 3)
    written = []
    for start, stop in [(4, 8), (0, 4), (8, 10)]:  # in any order
        index = start // 4
        assert store.placement("test", start, stop) is not None
        chunk = arrays(rng, start, stop)
        store.write_chunk("test", index, start, chunk)
        written.append((start, chunk))
    store.close()
    with h5py.File(tmp_path / "a.h5", "r") as file:
        assert file["_build/test"][...].tolist() == [1, 1, 1]
        for name in ("images", "sinograms", "phase"):
            expected = np.concatenate([c[name] for _, c in sorted(written, key=lambda w: w[0])])
            assert file[f"test/{name}"].dtype == expected.dtype
            assert np.array_equal(file[f"test/{name}"][...], expected)


def test_what_only_h5py_may_write_goes_through_h5py(tmp_path):
    """A compressed array, or samples that do not begin a chunk, have no fixed place."""
    path = tmp_path / "b.h5"
    store = HDF5Store(path, "w-")
    store.create_split("test", SPECS[:1], 3)
    assert store.placement("test", 1, 3) is None
    store._file["test"].create_dataset(
        "extra", shape=(10, 2), dtype="f4", chunks=(4, 2), compression="gzip"
    )
    assert store.placement("test", 0, 4) is None
    values = {
        "images": np.arange(4 * 42, dtype=np.float32).reshape(4, 6, 7),
        "extra": np.ones((4, 2), dtype=np.float32),
    }
    store.write_chunk("test", 0, 0, values)
    store.close()
    with h5py.File(path, "r") as file:
        assert np.array_equal(file["test/images"][:4], values["images"])
        assert np.array_equal(file["test/extra"][:4], values["extra"])


def test_a_failed_placed_write_raises_oserror(tmp_path, monkeypatch):
    import os

    store = HDF5Store(tmp_path / "c.h5", "w-")
    store.create_split("test", SPECS[:1], 3)
    monkeypatch.setattr(os, "pwrite", lambda *args: 0)  # a disk that takes nothing
    with pytest.raises(OSError, match="No space"):
        store.write_chunk("test", 0, 0, {"images": np.zeros((4, 6, 7), np.float32)})
    store.close()
    with h5py.File(tmp_path / "c.h5", "r") as file:
        assert file["_build/test"][...].tolist() == [0, 0, 0]


def test_a_refused_zarr_read_leaves_no_read_running(tmp_path):
    """zarr reads an array's chunks concurrently; when one is damaged, the others must have
    ended by the time the error is raised, or the process that then exits destroys them and
    asyncio prints a message for each after the command's one line."""
    import asyncio

    from zarr.core.sync import loop

    from tomobench.build import build
    from tomobench.errors import StoreError, SubmissionError
    from tomobench.score import read_submission
    from tomobench.store import open_library

    from conftest import make_recipe

    library = build(make_recipe(output={"format": "zarr", "chunk": 1}), tmp_path / "lib.zarr")
    chunks = sorted(p for p in (library / "test" / "images" / "c").rglob("*") if p.is_file())
    assert len(chunks) >= 8
    chunks[0].write_bytes(b"junk")

    def running():
        return [task for task in asyncio.all_tasks(loop[0]) if not task.done()]

    for _ in range(5):  # without the wait, reads were left running 29 times in 30
        with open_library(library) as opened, pytest.raises(StoreError, match="does not read"):
            opened.read("test/images")
        assert running() == []
    submission = tmp_path / "sub.zarr"
    shutil.copytree(library / "test" / "images", submission / "reconstructions")
    (submission / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    for _ in range(5):
        with pytest.raises(SubmissionError, match="not a readable Zarr group"):
            read_submission(submission)
        assert running() == []
