"""Builds on a real dask cluster whose workers share nothing with the build but the output:
a ``dask scheduler`` and two ``dask worker`` processes on loopback, each worker with its own
HOME and TOMOBENCH_DATA_DIR and no registry, as nodes of a cluster would be."""

import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from contextlib import suppress
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import zarr

from tomobench.builder import build
from tomobench.errors import StoreError
from tomobench.recipe import parse_recipe

from conftest import BIG, TINY, chunks_flagged, make_recipe, recipe_file, run_cli

pytestmark = pytest.mark.usefixtures("cache")

DASK = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")


class Cluster:
    def __init__(self, folder: Path):
        self.folder = folder
        self.file = folder / "scheduler.json"
        self.workers: list[subprocess.Popen] = []
        self.address = ""


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two workers (single-threaded), each worker in a session of its own
    (so that killing it kills its nanny too, as losing a node would)."""
    if DASK is None:
        pytest.skip("the dask command is not installed")
    cluster = Cluster(tmp_path / "cluster")
    cluster.folder.mkdir()
    common = ["--scheduler-file", str(cluster.file)]
    scheduler = subprocess.Popen(
        [DASK, "scheduler", *common, "--host", "127.0.0.1", "--port", "0", "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    processes = [scheduler]
    try:
        for number in (1, 2):
            home = cluster.folder / f"worker{number}"
            (home / "data").mkdir(parents=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("TOMOBENCH_")}
            env.update(HOME=str(home), TOMOBENCH_DATA_DIR=str(home / "data"))
            worker = subprocess.Popen(
                [DASK, "worker", *common, "--nthreads", "1", "--nworkers", "1",
                 "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(home)],
                cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            processes.append(worker)
            cluster.workers.append(worker)
        deadline = time.monotonic() + 60
        while not cluster.file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        from distributed import Client

        with Client(scheduler_file=str(cluster.file), timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            cluster.address = client.scheduler.address
        yield cluster
    finally:
        for process in processes:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def arrays_of(path) -> dict[str, bytes]:
    """Every array of every split of a library, as bytes, read with plain h5py or zarr."""
    found = {}
    if str(path).endswith(".zarr"):
        group = zarr.open_group(str(path), mode="r")
        for split, members in group.groups():
            for name, array in members.arrays():
                found[f"{split}/{name}"] = np.asarray(array[...]).tobytes()
        return found
    with h5py.File(path, "r") as file:
        for split in file:
            if isinstance(file[split], h5py.Group):
                for name in file[split]:
                    found[f"{split}/{name}"] = file[f"{split}/{name}"][...].tobytes()
    return found


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_random_shapes_build_on_a_remote_cluster_as_locally(dask_cluster, tmp_path, suffix):
    recipe = recipe_file(tmp_path / "tiny.yaml", make_recipe())
    out = tmp_path / f"remote{suffix}"
    done = run_cli("build", recipe, "--out", out, "--scheduler", dask_cluster.address,
                   timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    local = build(make_recipe(), tmp_path / "local.h5")
    expected = arrays_of(local)
    assert arrays_of(out) == expected and len(expected) == 12


@pytest.fixture
def served_sources(loopback_http, tmp_path, monkeypatch):
    """A registry (of this process only) of a measured sinogram file and two DIV2K-like
    archives, served over loopback HTTP."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    from tomobench.physics.geometry import parallel_beam
    from tomobench.physics.projector import Projector

    rng = np.random.default_rng(3)
    files = {}
    phantom = resize(shepp_logan_phantom(), (40, 40), anti_aliasing=True)
    projector = Projector(parallel_beam(40, angles=60, detector=48), backend="matrix")
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as scan:
        for name, image in (("a", phantom), ("b", phantom.T), ("c", phantom[::-1])):
            scan[name] = projector.forward(image) * rng.uniform(0.9, 1.1, (60, 1)) + 0.3
    files["scan.h5"] = buffer.getvalue()
    for archive, folder, count in (("train.zip", "DIV2K_train_HR", 4), ("valid.zip", "v", 2)):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as packed:
            for number in range(count):
                image = rng.integers(0, 256, (36 + number, 44, 3), np.uint8)
                packed.writestr(f"{folder}/{number:04d}.png", iio.imwrite("<bytes>", image,
                                                                          extension=".png"))
        files[archive] = buffer.getvalue()
    lines = []
    for name, data in files.items():
        (loopback_http.folder / name).write_bytes(data)
        lines.append(
            f"{name} sha256:{hashlib.sha256(data).hexdigest()} {loopback_http.url(name)} "
            f"size={len(data)} licence=CC0-1.0 citation=test"
        )
    registry = tmp_path / "registry.txt"
    registry.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("TOMOBENCH_REGISTRY", str(registry))
    return loopback_http


SOURCES = {
    "experimental": {
        "kind": "experimental", "size": 32, "dataset": "scan.h5", "axes": "AD",
        "slices": {"train": ["a", "b"], "test": ["c"]}, "background_edge": 4,
        "crop": 40, "augment": True,
    },
    "div2k": {
        "kind": "div2k", "size": 24, "train_dataset": "train.zip", "test_dataset": "valid.zip",
        "val_images": 1, "crop": 30, "crops_per_image": 3,
    },
}


@pytest.mark.parametrize("kind", sorted(SOURCES))
@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_registry_sources_build_on_workers_without_the_registry(
    dask_cluster, served_sources, tmp_path, kind, suffix
):
    """The workers have no registry and an empty cache of their own: what the samples draw
    from reaches them through the build, and the library is the local one, byte for byte."""
    splits = {"train": 5, "val": 0, "test": 3} if kind == "experimental" else {
        "train": 6, "val": 3, "test": 4}
    recipe = parse_recipe({**TINY, "source": SOURCES[kind], "splits": splits,
                           "task": "reconstruction", "downsample": [2],
                           "geometry": {"angles": 20, "projector": "linear",
                                        "backend": "matrix"}})
    served = recipe_file(tmp_path / "served.yaml", recipe)
    out = tmp_path / f"remote{suffix}"
    done = run_cli("build", served, "--out", out, "--scheduler", dask_cluster.address,
                   "--chunk", "2", timeout=300)
    assert done.returncode == 0, done.stderr
    local = build(recipe, tmp_path / "local.h5")
    expected = arrays_of(local)
    assert arrays_of(out) == expected
    assert {key.split("/")[0] for key in expected} == {s for s, n in splits.items() if n}
    for number in (1, 2):  # nothing was fetched by a worker
        data = dask_cluster.folder / f"worker{number}" / "data"
        assert not [p for p in data.rglob("*") if p.suffix in (".zip", ".h5", ".png")]
    assert len([r for r in served_sources.requests if not r.startswith("/cut/")]) == (
        1 if kind == "experimental" else 2
    )


def test_a_worker_killed_mid_build_loses_nothing(dask_cluster, tmp_path):
    """One worker (and its nanny) killed with SIGKILL while the build runs, as a node lost:
    the other worker finishes, and the library is the one a local build makes."""
    recipe = recipe_file(tmp_path / "big.yaml", make_recipe(**BIG))
    out = tmp_path / "lib.zarr"
    partial = tmp_path / "lib.zarr.partial"
    process = subprocess.Popen(
        [sys.executable, "-m", "tomobench.cli", "build", str(recipe), "--out", str(out),
         "--scheduler", dask_cluster.address],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )

    deadline = time.monotonic() + 120
    while chunks_flagged(partial) < 4 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(dask_cluster.workers[0].pid, signal.SIGKILL)
    assert chunks_flagged(partial) < 60, "the kill must land mid-build"
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    reference = build(make_recipe(**BIG), tmp_path / "local.h5")
    assert arrays_of(out) == arrays_of(reference)


def test_a_zarr_library_the_workers_cannot_see_is_refused(dask_cluster, tmp_path):
    from distributed import Client

    from tomobench.cluster import _check_workers_see

    with Client(dask_cluster.address) as client:
        _check_workers_see(client, tmp_path)  # seen: no error
        with pytest.raises(StoreError, match="cannot see .*storage that every worker shares"):
            _check_workers_see(client, tmp_path / "elsewhere.zarr.partial")


def test_a_scheduler_that_cannot_be_reached_is_one_line(tmp_path):
    import socket

    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recipe = recipe_file(tmp_path / "tiny.yaml", make_recipe())
    done = run_cli("build", recipe, "--out", tmp_path / "x.h5", "--scheduler",
                   f"tcp://127.0.0.1:{port}", timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: cannot reach the dask scheduler at tcp://")
    assert len(done.stderr.strip().splitlines()) == 1
