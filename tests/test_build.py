import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import suppress
from pathlib import Path

import astra
import h5py
import numpy as np
import pytest
import zarr

from tomobench import __version__
from tomobench.builder import build
from tomobench.chunk import make_chunk
from tomobench.errors import RecipeError, StoreError
from tomobench.physics.resample import downsample
from tomobench.store import open_library

from conftest import BIG, chunks_flagged, make_recipe, recipe_file

ARRAYS = ("images", "sinograms", "images_x2", "images_x4")


def read_all(path):
    """Every array of a library, read with plain h5py or zarr."""
    keys = [f"{split}/{name}" for split in ("train", "val", "test") for name in ARRAYS]
    if str(path).endswith(".zarr"):
        group = zarr.open_group(str(path), mode="r")
        return {key: group[key][...] for key in keys}
    with h5py.File(path, "r") as file:
        return {key: file[key][...] for key in keys}


def test_library_reads_with_plain_h5py(tiny_library, tiny_recipe):
    with h5py.File(tiny_library, "r") as file:
        attrs = dict(file.attrs)
        assert attrs["tomobench_format"] == 2
        assert json.loads(attrs["backend"]) == dict.fromkeys(("test", "train", "val"), "matrix")
        assert attrs["tomobench_version"] == __version__
        assert attrs["task"] == "super-resolution"
        assert attrs["recipe_sha256"] == tiny_recipe.sha256()
        assert json.loads(attrs["recipe"])["name"] == "tiny-test"
        assert bool(attrs["complete"])
        assert "_build" not in file
        np.testing.assert_allclose(file["angles"][...], np.arange(24) * np.pi / 24, rtol=1e-15)
        assert file["angles"].dtype == np.float64
        for split, count in (("train", 12), ("val", 5), ("test", 9)):
            group = file[split]
            assert group["images"].shape == (count, 32, 32)
            assert group["sinograms"].shape == (count, 24, 34)
            assert group["images_x2"].shape == (count, 16, 16)
            assert group["images_x4"].shape == (count, 8, 8)
            assert group["images"].chunks[0] == 4
            for name in ARRAYS:
                assert group[name].dtype == np.float32
            images = group["images"][...]
            assert images.min() >= 0 and images.max() <= 1 and images.max() > 0
            np.testing.assert_array_equal(group["images_x2"][...], downsample(images, 2))


def test_clean_sinograms_are_astras_projections(tmp_path):
    path = build(make_recipe(noise=[]), tmp_path / "clean.h5")
    with h5py.File(path, "r") as file:
        images, sinograms = file["test/images"][...], file["test/sinograms"][...]
        angles = file["angles"][...]
    volume = astra.create_vol_geom(32, 32)
    projector = astra.create_projector(
        "linear", astra.create_proj_geom("parallel", 1.0, 34, angles), volume
    )
    for image, sinogram in zip(images, sinograms):
        sino_id, reference = astra.create_sino(image, projector)
        astra.data2d.delete(sino_id)
        assert np.abs(sinogram - reference).max() <= 1e-5 * np.abs(reference).max()


def test_noisy_sinograms_scatter_around_the_clean_ones(tiny_library, tmp_path):
    clean = build(make_recipe(noise=[]), tmp_path / "clean.h5")
    with h5py.File(clean, "r") as a, h5py.File(tiny_library, "r") as b:
        assert np.array_equal(a["train/images"][...], b["train/images"][...])
        difference = b["train/sinograms"][...] - a["train/sinograms"][...]
    assert 0 < np.abs(difference).mean() < 0.5
    assert abs(difference.mean()) < 0.05


def test_bytes_do_not_depend_on_workers_chunking_or_format(tiny_library, tmp_path):
    reference = read_all(tiny_library)
    variants = [
        build(make_recipe(), tmp_path / "a.zarr", chunk=5),
        build(make_recipe(), tmp_path / "b.h5", chunk=3, workers=2),
        build(make_recipe(), tmp_path / "c.zarr", chunk=7, workers=2),
    ]
    for path in variants:
        arrays = read_all(path)
        for key, values in reference.items():
            assert arrays[key].dtype == values.dtype
            assert arrays[key].tobytes() == values.tobytes(), (path, key)


def test_files_the_caller_holds_open_come_through_a_parallel_build(tiny_library, tmp_path):
    """HDF5 files that the calling process holds open, one being read and one being
    written, are left exactly as it has them by a parallel build and its workers."""
    import hashlib

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    held = tmp_path / "held.h5"
    library_bytes = digest(tiny_library)
    with h5py.File(tiny_library, "r") as reading, h5py.File(held, "w") as writing:
        writing["values"] = np.arange(1000.0)
        writing.flush()
        flushed = digest(held)
        writing.attrs["note"] = "not flushed yet"  # in the caller's metadata cache only
        built = build(make_recipe(), tmp_path / "parallel.h5", workers=2)
        assert digest(held) == flushed  # no worker flushed the caller's file
        assert reading["test/images"].shape[0] == 9
    assert digest(tiny_library) == library_bytes
    with h5py.File(held, "r") as file:
        assert file.attrs["note"] == "not flushed yet"
        assert np.array_equal(file["values"][...], np.arange(1000.0))
    assert read_all(built)["test/sinograms"].tobytes() == read_all(tiny_library)[
        "test/sinograms"
    ].tobytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_workers_hold_no_library_open_and_leave_ctrl_c_to_the_build(tmp_path, monkeypatch, suffix):
    """Seen from inside the workers of a parallel build, as they start and after dask has
    started them again: the partial library is not among their open files (an HDF5 library is
    written by the build process alone; a Zarr worker opens a chunk only to write it), and they
    ignore SIGINT."""
    from tomobench import cluster

    run = cluster.run
    seen = []

    def inside(client, store, *args, **kwargs):
        def state():
            import os
            import signal

            folder = "/proc/self/fd"
            files = []
            for name in os.listdir(folder):
                with suppress(OSError):
                    files.append(os.readlink(os.path.join(folder, name)))
            return files, signal.getsignal(signal.SIGINT) == signal.SIG_IGN

        seen.append((str(store.path), client.run(state)))
        client.restart()
        seen.append((str(store.path), client.run(state)))
        return run(client, store, *args, **kwargs)

    monkeypatch.setattr(cluster, "run", inside)
    build(make_recipe(), tmp_path / f"lib{suffix}", workers=2)
    assert len(seen) == 2
    for partial, workers in seen:
        assert partial.endswith(f"lib{suffix}.partial") and len(workers) == 2
        for files, ignores_ctrl_c in workers.values():
            assert not [name for name in files if name.startswith(partial)]
            assert ignores_ctrl_c


def test_workers_see_the_environment_of_the_build_process_as_it_is(tmp_path, monkeypatch):
    """The workers of a cluster a build starts get the build process's environment as it is
    when the cluster starts."""
    from tomobench import cluster

    build(make_recipe(), tmp_path / "first.h5", workers=2)
    monkeypatch.setenv("TOMOBENCH_TEST_PROBE", str(tmp_path))
    run = cluster.run
    seen = []

    def inside(client, *args, **kwargs):
        seen.append(client.run(lambda: os.environ.get("TOMOBENCH_TEST_PROBE")))
        return run(client, *args, **kwargs)

    monkeypatch.setattr(cluster, "run", inside)
    build(make_recipe(), tmp_path / "second.h5", workers=2)
    assert [list(found.values()) for found in seen] == [[str(tmp_path)] * 2]


def test_sample_i_is_made_from_its_own_seed(tiny_library, tiny_recipe):
    with h5py.File(tiny_library, "r") as file:
        stored = file["test/sinograms"][5]
    alone = make_chunk(tiny_recipe, "test", 5, 6, backend="matrix")["sinograms"][0]
    assert np.array_equal(alone, stored)
    other_split = make_chunk(tiny_recipe, "val", 5, 6, backend="matrix")["sinograms"][0]
    assert not np.array_equal(other_split, stored)


def test_zarr_library_reads_with_plain_zarr(tmp_path, tiny_library):
    path = build(make_recipe(), tmp_path / "lib.zarr")
    group = zarr.open_group(str(path), mode="r")
    assert group.attrs["tomobench_format"] == 2 and group.attrs["complete"] is True
    with h5py.File(tiny_library, "r") as file:  # the same tree as the HDF5 library
        attrs = {key: value.item() if hasattr(value, "item") else value
                 for key, value in file.attrs.items()}
        stored = dict(group.attrs)
        recipes = [json.loads(found.pop("recipe")) for found in (stored, attrs)]
        assert stored == attrs
        assert recipes[0].pop("output")["format"] == "zarr"  # the one difference
        assert recipes[0] == {k: v for k, v in recipes[1].items() if k != "output"}
        assert group["angles"].dtype == np.float64
        assert np.array_equal(group["angles"][...], file["angles"][...])
    assert group["val/sinograms"].shape == (5, 24, 34)
    assert group["val/sinograms"].chunks == (4, 24, 34)
    assert [codec.to_dict() for codec in group["val/sinograms"].compressors] == [
        {"name": "zstd", "configuration": {"level": 1, "checksum": True}}
    ]
    assert "_build" not in group


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
@pytest.mark.parametrize("then", [["val", "train"], None], ids=["the-others", "all"])
def test_splits_can_be_built_one_at_a_time(tiny_library, tmp_path, suffix, then):
    path = tmp_path / f"some{suffix}"
    build(make_recipe(), path, splits=["test"])
    with open_library(path) as library:
        assert library.splits == ["test"] and library.complete
    build(make_recipe(), path, splits=then)  # None: every split, the finished one too
    with open_library(path) as library:
        assert library.splits == ["train", "val", "test"] and library.complete
        assert all(library.chunks_done(split) == (3, 3) for split in ("train", "test"))
    whole = read_all(tiny_library)
    assert set(read_all(path)) == set(whole)
    for key, values in read_all(path).items():
        assert np.array_equal(values, whole[key])


def test_a_complete_library_is_left_alone(tiny_library):
    before = tiny_library.stat().st_mtime_ns
    assert build(make_recipe(), tiny_library) == tiny_library
    assert tiny_library.stat().st_mtime_ns == before


def test_a_library_of_another_recipe_is_refused(tiny_library):
    with pytest.raises(StoreError, match="holds a library of another recipe"):
        build(make_recipe(seed=99), tiny_library)


def test_unknown_split_and_bad_suffix(tmp_path):
    with pytest.raises(RecipeError, match="split 'tst' is not in recipe"):
        build(make_recipe(), tmp_path / "x.h5", splits=["tst"])
    with pytest.raises(RecipeError, match=r"name the library \*.h5"):
        build(make_recipe(), tmp_path / "x.tiff")
    with pytest.raises(RecipeError, match="names a zarr library but format is hdf5"):
        build(make_recipe(), tmp_path / "x.zarr", format="hdf5")


def test_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create"):
        build(make_recipe(), blocker / "lib.h5")
    assert not (blocker / "lib.h5").exists()


def test_existing_file_that_is_no_library(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"this is not HDF5")
    with pytest.raises(StoreError, match="not a readable hdf5 library"):
        build(make_recipe(), path)


@pytest.mark.parametrize("name", ["remote.zarr", "remote.h5"])
def test_dask_scheduler_address(tmp_path, tiny_library, name):
    """On a cluster, Zarr workers write the store; HDF5 chunks come back to this process."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        path = build(make_recipe(), tmp_path / name, scheduler=cluster.scheduler_address)
    reference = read_all(tiny_library)
    assert read_all(path).keys() == reference.keys()
    for key, values in read_all(path).items():
        assert np.array_equal(values, reference[key])


# -- interruption ---------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import make_recipe
    from tomobench.builder import build
    if __name__ == "__main__":
        build(make_recipe(**{big!r}), {out!r}, workers={workers})
    """
)


def start_build(out, tmp_path, workers=1):
    code = WORKER.format(tests=os.path.dirname(__file__), big=BIG, out=str(out), workers=workers)
    script = tmp_path / "run_build.py"  # a file: local dask workers re-import the main module
    script.write_text(code)
    return subprocess.Popen([sys.executable, str(script)], start_new_session=True)


@pytest.mark.parametrize(("suffix", "workers"), [(".h5", 1), (".zarr", 1), (".h5", 2)])
def test_a_killed_build_resumes_to_the_same_library(tmp_path, suffix, workers):
    """kill -9 of the build and all its processes (workers included), mid-build."""
    out = tmp_path / f"lib{suffix}"
    partial = tmp_path / f"lib{suffix}.partial"
    process = start_build(out, tmp_path, workers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and chunks_flagged(partial) < 3:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert partial.exists() and not out.exists(), "the kill must land mid-build"

    with open_library(out) as library:  # finds the partial library
        assert not library.complete
        done, total = library.chunks_done("test")
        assert total == 60 and done < total

    build(make_recipe(**BIG), out)
    assert out.exists() and not partial.exists()
    reference = build(make_recipe(**BIG), tmp_path / f"whole{suffix}")
    for name in ("images", "sinograms", "images_x2", "images_x4"):
        with open_library(out) as a, open_library(reference) as b:
            assert a.complete
            assert np.array_equal(a[f"test/{name}"][...], b[f"test/{name}"][...]), name


def test_a_parallel_build_says_nothing_when_the_dashboard_port_is_taken(tmp_path):
    """A dask dashboard (or another build) on port 8787: the cluster a build starts must not
    warn about it; a parallel CLI build writes nothing to stderr."""
    recipe_path = tmp_path / "tiny.yaml"
    recipe_file(recipe_path, make_recipe())
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        except OSError:  # already taken by someone else: as good, if someone listens there
            socket.create_connection(("127.0.0.1", 8787), timeout=5).close()
        done = subprocess.run(
            [sys.executable, "-m", "tomobench.cli", "build", str(recipe_path),
             "--out", str(tmp_path / "lib.h5"), "--workers", "2"],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (tmp_path / "lib.h5").exists()


def test_ctrl_c_stops_a_parallel_build_with_one_line(tmp_path):
    """Ctrl-C reaches the whole process group: the build process says one line and exits
    130, its workers print nothing and are gone, and the same command resumes."""
    recipe_path = tmp_path / "big.yaml"
    recipe_file(recipe_path, make_recipe(**BIG))
    out = tmp_path / "lib.h5"
    partial = tmp_path / "lib.h5.partial"
    command = [sys.executable, "-m", "tomobench.cli", "build", str(recipe_path),
               "--out", str(out), "--workers", "2"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and chunks_flagged(partial) < 3:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip() == "interrupted: run the same command again to resume"
    deadline = time.monotonic() + 5  # no worker left running (a few ms to exit are allowed)
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(process.pid), "a worker of the interrupted build is still running"
    assert partial.exists() and not out.exists(), "the interrupt must land mid-build"

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    reference = build(make_recipe(**BIG), tmp_path / "whole.h5")
    with open_library(out) as a, open_library(reference) as b:
        assert a.complete
        for name in ("images", "sinograms", "images_x2", "images_x4"):
            assert np.array_equal(a[f"test/{name}"][...], b[f"test/{name}"][...]), name


def group_alive(group: int) -> list[int]:
    """The processes of process group ``group`` that still run. Python's resource tracker
    ends just after the build process, as a child of init; where init does not reap it (a
    container's), it stays as a zombie: ended."""
    import psutil

    alive = []
    for proc in psutil.process_iter(["status"]):
        with suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == group and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
    return alive


def test_too_little_disk_space_is_said_before_writing(tmp_path):
    huge = make_recipe(source={"size": 2048, "max_shape_size": 100}, splits={"test": 10**6})
    with pytest.raises(StoreError, match=r"not enough disk space for huge.h5: it needs \d"):
        build(huge, tmp_path / "huge.h5")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_place_where_no_file_can_be_made_is_not_said_to_lack_space():
    """/proc has no free space and takes no new file: the path is named as one that
    cannot be created, not as short of space."""
    with pytest.raises(StoreError, match=r"^cannot build /proc/tomobench-x\.h5: cannot create"):
        build(make_recipe(), "/proc/tomobench-x.h5")


class Interrupted(Exception):
    """Stands for whatever stops a build (not KeyboardInterrupt, which would stop pytest)."""


def test_a_resumed_build_computes_only_the_missing_chunks_in_its_first_chunking(
    tiny_library, tmp_path, monkeypatch
):
    """Interrupted after 5 of its 9 chunks of 3 samples, then run again without --chunk:
    the 4 missing chunks of 3, and nothing else, are computed; the library is the one an
    uninterrupted build makes. A partial library says it is not complete, and one of another
    recipe or backend is not resumed."""
    from tomobench import builder as build_module

    real, calls = build_module.make_chunk, []

    def interrupted_after(count):
        def make(recipe, split, start, stop, *, backend):
            if len(calls) == count:
                raise Interrupted
            calls.append((split, start, stop))
            return real(recipe, split, start, stop, backend=backend)
        return make

    out, partial = tmp_path / "lib.h5", tmp_path / "lib.h5.partial"
    monkeypatch.setattr(build_module, "make_chunk", interrupted_after(5))
    with pytest.raises(Interrupted):
        build(make_recipe(), out, chunk=3)
    first = list(calls)
    assert len(first) == 5 and not out.exists()
    with h5py.File(partial, "r") as file:
        assert file.attrs["complete"] == False  # noqa: E712 (numpy bool)
        flagged = {split: file[f"_build/{split}"][...].tolist() for split in file["_build"]}
    assert sum(map(sum, flagged.values())) == 5 and len(flagged["train"]) == 4

    with pytest.raises(StoreError, match="another recipe"):
        build(make_recipe(seed=12), out)
    with h5py.File(partial, "r+") as file:
        file.attrs["backend"] = "astra-cpu"
    with pytest.raises(StoreError, match="started with projector backend astra-cpu"):
        build(make_recipe(), out)
    with h5py.File(partial, "r+") as file:
        file.attrs["backend"] = "matrix"

    calls.clear()
    monkeypatch.setattr(build_module, "make_chunk", interrupted_after(100))
    build(make_recipe(), out)  # the first build's chunking, 3, though the recipe says 4
    assert len(calls) == 4 and not set(calls) & set(first)
    assert all(start % 3 == 0 and stop - start <= 3 for _, start, stop in calls)
    reference = read_all(tiny_library)
    for key, values in read_all(out).items():
        assert values.tobytes() == reference[key].tobytes(), key


@pytest.mark.parametrize(
    "noise",
    [
        {"kind": "poisson", "photons": 5.0, "attenuation": 0.05, "min_counts": 0.5},
        {"kind": "poisson", "photons": 2000.0},  # attenuation 1/size, min_counts 0.1
        {"kind": "gaussian", "sigma": 0.3},
        {"kind": "gaussian", "sigma": 0.02, "relative": True},
    ],
    ids=["poisson", "poisson-defaults", "gaussian", "gaussian-relative"],
)
def test_sample_i_of_split_s_draws_from_seedsequence_seed_s_i(tmp_path, noise):
    """DESIGN: sample i of split s (train 0, val 1, test 2) draws from
    SeedSequence([seed, s, i]): first its image, then its noise, computed here by hand from
    the clean library's sinogram and each noise parameter of the recipe."""
    from tomobench.sources import shapes

    recipe = make_recipe(noise=[noise])
    noisy = build(recipe, tmp_path / "noisy.h5")
    clean = build(make_recipe(noise=[]), tmp_path / "clean.h5")
    with h5py.File(noisy, "r") as a, h5py.File(clean, "r") as b:
        for split, split_id, index in (("train", 0, 7), ("val", 1, 0), ("test", 2, 5)):
            rng = np.random.default_rng(np.random.SeedSequence([11, split_id, index]))
            image = shapes.draw(recipe.source, rng)
            assert np.array_equal(a[f"{split}/images"][index], image)
            line = b[f"{split}/sinograms"][index].astype(np.float64)
            if noise["kind"] == "poisson":
                photons = noise["photons"]
                attenuation = noise.get("attenuation", 1 / 32)
                floor = noise.get("min_counts", 0.1)
                counts = rng.poisson(photons * np.exp(-attenuation * line))
                expected = -np.log(np.maximum(counts, floor) / photons) / attenuation
                if photons < 10:
                    assert (counts == 0).any()  # the floor is used
            else:
                sigma = noise["sigma"] * (np.abs(line).max() if noise.get("relative") else 1)
                expected = line + rng.normal(0.0, sigma, size=line.shape)
            stored = a[f"{split}/sinograms"][index]
            assert np.array_equal(stored, expected.astype(np.float32)), (split, index)


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
@pytest.mark.parametrize("window", ["flags dropped", "marked complete"])
def test_a_build_stopped_while_finishing_resumes(tmp_path, suffix, window):
    """Every chunk written, the build stopped after dropping the chunk flags (before or after
    marking the library complete) but before the rename: running it again finishes it,
    byte for byte, and info counts every chunk written meanwhile."""
    from tomobench.store import open_library, open_store

    recipe = make_recipe(noise=[])
    reference = build(recipe, tmp_path / f"reference{suffix}")
    out = tmp_path / f"lib{suffix}"
    partial = tmp_path / f"lib{suffix}.partial"
    if suffix == ".zarr":
        shutil.copytree(reference, partial)
    else:
        shutil.copy(reference, partial)
    store = open_store(partial, "r+")
    store.set_attrs({"complete": window == "marked complete"})
    store.close()
    with open_library(out) as library:  # found at the partial
        assert not library.complete
        assert library.chunks_done("test") == (3, 3)
    assert build(recipe, out) == out.absolute()
    assert not partial.exists()
    with open_library(out) as library, open_library(reference) as expected:
        assert library.complete
        for split in ("train", "val", "test"):
            for name in ("images", "sinograms", "images_x2"):
                key = f"{split}/{name}"
                assert library.read(key).tobytes() == expected.read(key).tobytes(), key


def test_a_split_whose_flags_exist_but_not_its_arrays_is_made_again(tmp_path):
    """A build stopped between a split's flags and its arrays (flags come first) resumes:
    the split is made and built, never taken as written."""
    from tomobench.store import open_store
    from tomobench.store.format import array_specs, chunk_count

    recipe = make_recipe(noise=[], splits={"train": 0, "val": 0, "test": 9})
    out = tmp_path / "lib.h5"
    partial = tmp_path / "lib.h5.partial"
    reference = build(recipe, tmp_path / "reference.h5")
    store = open_store(reference, "r")
    attrs = store.attrs
    store.close()
    store = open_store(partial, "w-")
    store.set_attrs({**attrs, "complete": False})
    store.write_root_array("angles", np.arange(24) * np.pi / 24)
    store.create_split("test", array_specs(recipe, 9), chunk_count(9, 4))
    store.close()
    with h5py.File(partial, "r+") as file:  # as if stopped before the arrays were made
        del file["test"]
    build(recipe, out)
    with h5py.File(out, "r") as file, h5py.File(reference, "r") as expected:
        assert file["test/sinograms"][...].tobytes() == expected["test/sinograms"][...].tobytes()
