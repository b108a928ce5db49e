"""Shared fixtures: a tiny recipe and a tiny library built from it."""

from __future__ import annotations

import copy
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import pytest

from tomobench.recipe import Recipe, parse_recipe

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "name": "tiny-test",
    "task": "super-resolution",
    "seed": 11,
    "source": {
        "kind": "shapes",
        "size": 32,
        "min_shapes": 2,
        "max_shapes": 5,
        "min_shape_size": 4,
        "max_shape_size": 12,
        "circular_mask": True,
    },
    "geometry": {"angles": 24, "projector": "linear", "backend": "matrix"},
    "noise": [{"kind": "poisson", "photons": 3000}],
    "downsample": [2, 4],
    "splits": {"train": 12, "val": 5, "test": 9},
    "output": {"format": "hdf5", "chunk": 4},
}


SMALL_XRDCT = {
    "name": "small-xrdct",
    "task": "hyperspectral",
    "seed": 7,
    "source": {"kind": "xrdct", "size": 16, "phases": ["gamma-Al2O3", "Ni", "CeO2"],
               "channels": 24, "two_theta": [2.0, 8.0], "instrument_fwhm_deg": 0.8},
    "geometry": {"angles": 24, "detector": 28, "backend": "matrix"},
    "noise": [{"kind": "air", "level": 0.1}],
    "splits": {"test": 3},
    "output": {"chunk": 3},
}  # fmt: skip
"""A hyperspectral recipe of 16² × 24 channels with air scatter and 6 pixels of air at each
side of the detector: builds in about a second."""


def make_recipe(**changes) -> Recipe:
    """The tiny recipe with top-level fields replaced (nested dicts are merged)."""
    data = copy.deepcopy(TINY)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_recipe(data, origin="test recipe")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Every test (and every command it runs) caches into a folder of its own session, never
    into the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOMOBENCH_DATA_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache of the test's own and no user registry (modules that download use it
    for every test: ``pytestmark = pytest.mark.usefixtures("cache")``)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("TOMOBENCH_DATA_DIR", str(folder))
    monkeypatch.delenv("TOMOBENCH_REGISTRY", raising=False)
    return folder


BIG = dict(
    source={"size": 64, "max_shape_size": 20},
    geometry={"angles": 64},
    splits={"train": 0, "val": 0, "test": 2400},
    output={"chunk": 40},
)
"""Changes to the tiny recipe for a build of 60 chunks: long enough to stop it mid-build."""


def recipe_file(path: Path, recipe: Recipe) -> Path:
    """``recipe`` written to ``path`` (as JSON, which is YAML), for the command line."""
    import json

    path.write_text(json.dumps(recipe.model_dump(mode="json")))
    return path


def chunks_flagged(partial: Path) -> int:
    """Chunks flagged in the test split of a build's partial library (HDF5 read past the
    writer's file lock); 0 while there is none to read."""
    import h5py
    import zarr

    with suppress(Exception):
        if partial.is_dir():
            return int(zarr.open_group(str(partial), mode="r")["_build/test"][...].sum())
        with h5py.File(partial, "r", locking=False) as file:
            return int(file["_build/test"][...].sum())
    return 0


def run_cli(*args, cwd=None, timeout=None, preexec_fn=None, env=None):
    """``python -m tomobench.cli ARGS`` in a process of its own, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tomobench.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        preexec_fn=preexec_fn,
        env=env,
    )


@pytest.fixture
def tiny_recipe() -> Recipe:
    return make_recipe()


@pytest.fixture(scope="session")
def tiny_library(tmp_path_factory) -> Path:
    """A complete HDF5 library of the tiny recipe (built once per session)."""
    from tomobench.builder import build

    return build(make_recipe(), tmp_path_factory.mktemp("lib") / "tiny.h5")


@pytest.fixture(scope="session")
def tiny_truth(tiny_library):
    """The ground truth of the tiny library's test split, read with plain h5py."""
    import h5py

    with h5py.File(tiny_library, "r") as file:
        return file["test/images"][...]


# --- a loopback HTTP server, for code that downloads (datasets) ---------------------------


class LoopbackServer:
    """Files of ``folder`` served at ``http://127.0.0.1:<port>/``; ``requests`` logs each GET
    path. ``/cut/NAME`` sends the first half of NAME while announcing its full length, then
    closes the connection (a download that breaks off)."""

    def __init__(self, folder: Path, port: int):
        self.folder = folder
        self.base = f"http://127.0.0.1:{port}"
        self.requests: list[str] = []

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


@pytest.fixture
def loopback_http(tmp_path, monkeypatch):
    """A :class:`LoopbackServer` on 127.0.0.1 (a free port), in a thread shut down after the
    test. Proxy variables are cleared so that requests goes straight to it."""
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    folder = tmp_path / "served"
    folder.mkdir()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self):
            served.requests.append(self.path)
            if not self.path.startswith("/cut/"):
                return super().do_GET()
            body = (folder / self.path.removeprefix("/cut/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return None

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served = LoopbackServer(folder, server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
