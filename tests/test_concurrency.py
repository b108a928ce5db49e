"""A library's output under pressure: two builds of one output, things that tomobench did not
make where its partial goes, every moment of adding splits, a damaged Zarr chunk, more
workers than CPUs, `info` during a build, and Ctrl-C while the workers start."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tomobench.builder import build
from tomobench.errors import StoreError
from tomobench.store import open_library

from conftest import BIG, chunks_flagged, make_recipe, recipe_file, run_cli


def write_recipe(path: Path, **changes) -> Path:
    return recipe_file(path, make_recipe(**changes))


def assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def start_build(recipe: Path, out: Path, *extra: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tomobench.cli", "build", str(recipe), "--out", str(out), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        **kwargs,
    )


def wait_for_chunks(partial: Path, process: subprocess.Popen, count: int = 2) -> None:
    deadline = time.monotonic() + 120
    while (
        chunks_flagged(partial) < count and time.monotonic() < deadline and process.poll() is None
    ):
        time.sleep(0.02)
    assert process.poll() is None, "the build ended before it could be looked at"


def read_test_split(path: Path) -> dict[str, bytes]:
    with open_library(path) as library:
        assert library.complete
        return {name: library.read(f"test/{name}").tobytes()
                for name in ("images", "sinograms", "images_x2", "images_x4")}


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_a_second_build_of_the_same_output_is_refused_while_the_first_runs(tmp_path, suffix):
    recipe = write_recipe(tmp_path / "big.yaml", **BIG)
    out = tmp_path / f"lib{suffix}"
    partial = tmp_path / f"lib{suffix}.partial"
    first = start_build(recipe, out)
    wait_for_chunks(partial, first)
    second = run_cli("build", recipe, "--out", out, timeout=120)
    assert_one_line_error(second, "another tomobench build is writing", str(out))
    assert "kept" not in second.stderr
    assert first.poll() is None and not out.exists()  # the first goes on, untouched
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert not partial.exists()
    reference = build(make_recipe(**BIG), tmp_path / f"whole{suffix}")
    assert read_test_split(out) == read_test_split(reference)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".lib", "lib"))) == [
        f"lib{suffix}"
    ]  # no lock file, no partial left behind


def test_the_lock_is_released_by_a_killed_build(tmp_path):
    recipe = write_recipe(tmp_path / "big.yaml", **BIG)
    out = tmp_path / "lib.h5"
    first = start_build(recipe, out)
    wait_for_chunks(tmp_path / "lib.h5.partial", first)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    resumed = run_cli("build", recipe, "--out", out, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert out.exists()


def foreign_things(partial: Path) -> list[tuple[str, callable]]:
    def text():
        partial.write_text("my notes\n")

    def folder():
        partial.mkdir()
        (partial / "notes.txt").write_text("my notes\n")

    def other_hdf5():
        with h5py.File(partial, "w") as file:
            file["data"] = np.arange(10)

    def link_to_folder():
        target = partial.parent / "elsewhere"
        target.mkdir()
        (target / "keep.txt").write_text("keep\n")
        partial.symlink_to(target, target_is_directory=True)

    return [("text", text), ("folder", folder), ("other-hdf5", other_hdf5),
            ("link-to-folder", link_to_folder)]


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
@pytest.mark.parametrize("kind", ["text", "folder", "other-hdf5", "link-to-folder"])
def test_what_tomobench_did_not_make_at_the_partial_path_is_refused_and_kept(
    tmp_path, suffix, kind
):
    out = tmp_path / f"lib{suffix}"
    partial = tmp_path / f"lib{suffix}.partial"
    dict(foreign_things(partial))[kind]()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(StoreError, match="which tomobench did not make") as error:
        build(make_recipe(), out)
    assert "\n" not in str(error.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not out.exists()


def test_a_creation_cut_short_is_made_again(tmp_path, tiny_library):
    """A build killed while it made a new partial leaves the hidden ``.NAME.partial.new``,
    never a partial: the next build removes it and starts again."""
    out = tmp_path / "lib.h5"
    staging = tmp_path / ".lib.h5.partial.new"
    staging.write_bytes(b"half an HDF5 file")
    build(make_recipe(), out)
    assert not staging.exists()
    assert read_test_split(out) == read_test_split(tiny_library)


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
@pytest.mark.parametrize("window", ["renamed", "flags made", "arrays made"])
def test_adding_splits_resumes_from_every_moment(tmp_path, tiny_library, suffix, window):
    """A library of the test split gains train and val; the build is stopped just after
    renaming it back to partial, after the new splits' flags, or after their arrays: running
    it again finishes the library, byte for byte the one built whole."""
    from tomobench import partial as life
    from tomobench.store import open_store

    out = tmp_path / f"lib{suffix}"
    build(make_recipe(), out, splits=["test"])
    real_create = type(open_store(out, "r")).create_split

    class Stop(Exception):
        pass

    def stop_after(store, split, specs, chunks):
        real_create(store, split, specs, chunks)
        if window == "flags made":  # as if stopped between the flags and the arrays
            group = store._file if suffix == ".h5" else store._group
            del group[split]
        raise Stop

    with pytest.MonkeyPatch.context() as patch:
        if window == "renamed":
            def stop(*args):
                raise Stop

            patch.setattr(life, "_add_splits", stop)
        else:
            patch.setattr(type(open_store(out, "r")), "create_split", stop_after)
        with pytest.raises(Stop):
            build(make_recipe(), out)
    assert not out.exists() and (tmp_path / f"lib{suffix}.partial").exists()
    with open_library(out) as library:  # found at the partial: incomplete
        assert not library.complete
    build(make_recipe(), out)
    whole = tiny_library
    with open_library(out) as library, open_library(whole) as expected:
        assert library.complete and library.splits == ["train", "val", "test"]
        for split in library.splits:
            for name in ("images", "sinograms"):
                key = f"{split}/{name}"
                assert library.read(key).tobytes() == expected.read(key).tobytes(), key


def test_a_library_and_a_partial_both_present_are_refused(tmp_path):
    out = tmp_path / "lib.h5"
    build(make_recipe(), out, splits=["test"])
    shutil.copy(out, tmp_path / "lib.h5.partial")
    with pytest.raises(StoreError, match="both .* exist"):
        build(make_recipe(), out)
    assert build(make_recipe(), out, splits=["test"]) == out  # what it has: left alone


def chunk_region(path: Path, key: str) -> tuple[Path, int, int]:
    """(file, offset, length) of the first stored chunk of array ``key``."""
    if path.suffix == ".zarr":
        chunk = sorted(p for p in (path / key / "c").rglob("*") if p.is_file())[0]
        return chunk, 0, chunk.stat().st_size
    with h5py.File(path, "r") as file:
        info = file[key].id.get_chunk_info(0)
    return path, info.byte_offset, info.size


def flip(file: Path, position: int, bit: int = 0x10) -> None:
    with open(file, "r+b") as handle:
        handle.seek(position)
        value = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([value ^ bit]))


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_a_flipped_byte_in_a_chunk_is_refused_in_one_line(tmp_path, suffix):
    path = build(make_recipe(), tmp_path / f"lib{suffix}")
    with open_library(path) as library:
        expected = library.read("test/sinograms")
    file, offset, length = chunk_region(path, "test/sinograms")
    for position in (offset + length // 3, offset + length // 2, offset + length - 12):
        flip(file, position)
        with open_library(path) as library, pytest.raises(StoreError, match="does not read"):
            library.read("test/sinograms")
        flip(file, position)  # back as it was
    with open_library(path) as library:
        assert library.read("test/sinograms").tobytes() == expected.tobytes()
    flip(file, offset + length // 2, 0x01)
    library_path = str(path)
    result = run_cli("info", library_path, timeout=120)
    assert result.returncode == 0  # info reads metadata only
    scored = run_cli("baseline", "fbp", library_path, "--out", tmp_path / "fbp.npy", timeout=120)
    assert_one_line_error(scored, "does not read")


def test_more_workers_than_cpus_are_capped_with_a_note(tmp_path):
    from tomobench.builder import WorkersCapped, usable_cpus

    recipe = write_recipe(tmp_path / "tiny.yaml")
    result = run_cli("build", recipe, "--out", tmp_path / "lib.h5", "--workers", "1000",
                     timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        f"warning: workers 1000 capped at {usable_cpus()}, the CPUs this process may use"
    )
    with pytest.warns(WorkersCapped):
        build(make_recipe(), tmp_path / "api.h5", workers=usable_cpus() + 1)


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_info_shows_the_progress_of_a_library_being_built(tmp_path, suffix):
    recipe = write_recipe(tmp_path / "big.yaml", **BIG)
    out = tmp_path / f"lib{suffix}"
    process = start_build(recipe, out)
    try:
        wait_for_chunks(tmp_path / f"lib{suffix}.partial", process)
        result = run_cli("info", out, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "INCOMPLETE" in result.stdout
        assert "/60" in result.stdout.replace(" ", "")  # chunks written of 60
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6, 1.0])
def test_ctrl_c_while_the_workers_start_is_never_a_traceback(tmp_path, delay):
    """Ctrl-C at moments after the build process starts its first worker process: the build
    ends with its one line and exit 130, or (a Ctrl-C while the workers start is not taken)
    goes on and is stopped by the next one; no worker is left, nothing else is printed."""
    import psutil

    recipe = write_recipe(tmp_path / "big.yaml", **BIG)
    out = tmp_path / "lib.h5"
    process = start_build(recipe, out, "--workers", "2",
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not psutil.Process(process.pid).children() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:  # the Ctrl-C came while SIGINT was not taken
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
    assert process.returncode in (130, 0), stderr
    if process.returncode == 130:
        assert stderr.strip() == "interrupted: run the same command again to resume"
    assert "Traceback" not in stderr
    from test_build import group_alive

    deadline = time.monotonic() + 10
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(process.pid)
