"""Both stores write chunks that plain h5py and zarr read back. A refused Zarr read leaves no
read of zarr's running."""

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


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_chunks_written_in_any_order_read_back_with_plain_h5py_and_zarr(tmp_path, suffix):
    import zarr

    from tomobench.store import open_store

    rng = np.random.default_rng(0)
    path = tmp_path / f"a{suffix}"
    store = open_store(path, "w-")
    store.create_split("test", SPECS, 3)
    assert store.flags("test").tolist() == [False] * 3
    written = []
    for start, stop in [(4, 8), (0, 4), (8, 10)]:  # in any order
        chunk = arrays(rng, start, stop)
        store.write_chunk("test", start // 4, start, chunk)
        written.append((start, chunk))
        assert store.flags("test")[start // 4]
    store.close()
    if suffix == ".zarr":
        plain = zarr.open_group(str(path), mode="r")
    else:
        plain = h5py.File(path, "r")
    try:
        assert plain["_build/test"][...].tolist() == [1, 1, 1]
        for name in ("images", "sinograms", "phase"):
            expected = np.concatenate([c[name] for _, c in sorted(written, key=lambda w: w[0])])
            assert plain[f"test/{name}"].dtype == expected.dtype
            assert np.array_equal(plain[f"test/{name}"][...], expected)
    finally:
        if suffix == ".h5":
            plain.close()


def test_both_stores_have_every_method_of_the_store_protocol():
    import inspect

    from tomobench.store.base import Store
    from tomobench.store.zarr import ZarrStore

    wanted = {
        name for name, _ in inspect.getmembers(Store) if not name.startswith("_")
    } | (set(Store.__annotations__) - {"path"})
    assert {"write_chunk", "space_needed", "parallel_writes", "flags"} <= wanted
    for kind in (HDF5Store, ZarrStore):
        assert not [name for name in wanted if not hasattr(kind, name)], kind
    assert (HDF5Store.parallel_writes, ZarrStore.parallel_writes) == (False, True)


def test_a_refused_zarr_read_leaves_no_read_running(tmp_path):
    """zarr reads an array's chunks concurrently; when one is damaged, the others must have
    ended by the time the error is raised, or the process that then exits destroys them and
    asyncio prints a message for each after the command's one line."""
    import asyncio

    from zarr.core.sync import loop

    from tomobench.builder import build
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
