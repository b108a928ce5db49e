"""A matrix of hostile inputs through every command: each must end with exit code 2 and one
line on stderr that starts with ``error:`` (no traceback), in bounded time and memory, and
leave every file that was there as it was, creating nothing.

Each case makes its inputs in a folder of its own (from a tiny library built once), runs the
real ``tomobench`` command there, and compares the folder before and after. The cases run
two at a time."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import TINY

pytestmark = pytest.mark.usefixtures("cache")

Setup = Callable[[Path, Path], list[str]]
"""(case folder, complete library) → the command's arguments."""


def recipe_file(folder: Path, text: str, name: str = "r.yaml") -> str:
    (folder / name).write_text(text)
    return name


def tiny(**changes) -> str:
    return json.dumps({**TINY, **changes})  # JSON is YAML


def copy_library(folder: Path, library: Path, name: str = "lib.h5") -> str:
    shutil.copy(library, folder / name)
    return name


def submission(folder: Path, library: Path, values=None, name: str = "sub.npy") -> str:
    with h5py.File(library, "r") as file:
        truth = file["test/images"][...]
    np.save(folder / name, truth if values is None else values(truth))
    return name


def damaged_recipe_attr(folder: Path, library: Path) -> str:
    name = copy_library(folder, library)
    with h5py.File(folder / name, "r+") as file:
        file.attrs["recipe"] = "{not json"
    return name


def truncated(folder: Path, library: Path) -> str:
    data = library.read_bytes()
    (folder / "cut.h5").write_bytes(data[: len(data) // 2])
    return "cut.h5"


def partial_library(folder: Path, library: Path) -> str:
    shutil.copy(library, folder / "lib.h5.partial")
    with h5py.File(folder / "lib.h5.partial", "r+") as file:
        file.attrs["complete"] = False
    return "lib.h5"


def fifo(folder: Path, name: str) -> str:
    os.mkfifo(folder / name)
    return name


CASES: dict[str, Setup] = {
    # build: recipes and options
    "build/not-yaml": lambda f, lib: ["build", recipe_file(f, "name: [unclosed"), "--out", "o.h5"],
    "build/unknown-field": lambda f, lib: ["build", recipe_file(f, tiny(colour="red")),
                                         "--out", "o.h5"],
    "build/negative-split": lambda f, lib: ["build", recipe_file(f, tiny(splits={"test": -1})),
                                          "--out", "o.h5"],
    "build/laughs": lambda f, lib: ["build", recipe_file(f, "a: &a [" + ",".join(["x"] * 50)
                                  + "]\n" + "".join(f"{c}: &{c} [{','.join(['*' + p] * 50)}]\n"
                                  for p, c in zip("abcdefgh", "bcdefghi")) + "seed: *i\n"),
                                  "--out", "o.h5"],
    "build/deep": lambda f, lib: ["build", recipe_file(f, "seed: " + "[" * 5000 + "]" * 5000),
                                "--out", "o.h5"],
    "build/huge-int": lambda f, lib: ["build", recipe_file(f, "seed: " + "9" * 5000),
                                    "--out", "o.h5"],
    "build/duplicate-key": lambda f, lib: ["build", recipe_file(f, "seed: 1\nseed: 2\n"),
                                         "--out", "o.h5"],
    "build/recipe-is-folder": lambda f, lib: (f / "d.yaml").mkdir() or ["build", "d.yaml"],
    "build/recipe-is-fifo": lambda f, lib: ["build", fifo(f, "p.yaml"), "--out", "o.h5"],
    "build/unknown-recipe": lambda f, lib: ["build", "no-such-recipe", "--out", "o.h5"],
    "build/bad-suffix": lambda f, lib: ["build", recipe_file(f, tiny()), "--out", "o.tiff"],
    "build/name-too-long": lambda f, lib: ["build", recipe_file(f, tiny()),
                                         "--out", "x" * 300 + ".h5"],
    "build/workers-0": lambda f, lib: ["build", recipe_file(f, tiny()), "--workers", "0"],
    "build/chunk-0": lambda f, lib: ["build", recipe_file(f, tiny()), "--chunk", "0"],
    "build/unknown-split": lambda f, lib: ["build", recipe_file(f, tiny()), "--splits", "tset",
                                         "--out", "o.h5"],
    "build/format-clash": lambda f, lib: ["build", recipe_file(f, tiny()), "--out", "o.zarr",
                                        "--format", "hdf5"],
    "build/other-recipe-at-out": lambda f, lib: ["build", recipe_file(f, tiny(seed=99)),
                                               "--out", copy_library(f, lib)],
    "build/foreign-partial": lambda f, lib: (f / "o.h5.partial").write_text("notes")
    and ["build", recipe_file(f, tiny()), "--out", "o.h5"],
    # info, show, score, baseline: libraries
    "info/missing": lambda f, lib: ["info", "nothing.h5"],
    "info/text-as-h5": lambda f, lib: (f / "t.h5").write_text("text") and ["info", "t.h5"],
    "info/folder-as-h5": lambda f, lib: (f / "d.h5").mkdir() or ["info", "d.h5"],
    "info/fifo-as-h5": lambda f, lib: ["info", fifo(f, "p.h5")],
    "info/file-as-zarr": lambda f, lib: (f / "z.zarr").write_text("x") and ["info", "z.zarr"],
    "info/empty-zarr-folder": lambda f, lib: (f / "z.zarr").mkdir() or ["info", "z.zarr"],
    "info/not-a-library": lambda f, lib: h5py.File(f / "o.h5", "w").close() or ["info", "o.h5"],
    "info/damaged-recipe": lambda f, lib: ["info", damaged_recipe_attr(f, lib)],
    "info/truncated": lambda f, lib: ["info", truncated(f, lib)],
    "info/unknown-suffix": lambda f, lib: (f / "x.txt").write_text("x") and ["info", "x.txt"],
    "score/incomplete-library": lambda f, lib: ["score", submission(f, lib),
                                                partial_library(f, lib)],
    "score/nan": lambda f, lib: ["score", submission(f, lib, lambda t: t * np.nan),
                               copy_library(f, lib)],
    "score/wrong-shape": lambda f, lib: ["score", submission(f, lib, lambda t: t[:, :5]),
                                       copy_library(f, lib)],
    "score/complex": lambda f, lib: ["score", submission(f, lib, lambda t: t + 1j),
                                   copy_library(f, lib)],
    "score/pickled": lambda f, lib: np.save(f / "p.npy", np.array([{"a": 1}], dtype=object),
                                          allow_pickle=True)
    or ["score", "p.npy", copy_library(f, lib)],
    "score/text-as-npy": lambda f, lib: (f / "t.npy").write_text("x") and ["score", "t.npy",
                                                                         copy_library(f, lib)],
    "score/unknown-split": lambda f, lib: ["score", submission(f, lib), copy_library(f, lib),
                                         "--split", "nope"],
    "score/json-over-submission": lambda f, lib: ["score", submission(f, lib),
                                                  copy_library(f, lib), "--json", "sub.npy"],
    "score/fifo-submission": lambda f, lib: ["score", fifo(f, "p.npy"), copy_library(f, lib)],
    "show/wrong-shape": lambda f, lib: ["show", copy_library(f, lib),
                                      submission(f, lib, lambda t: t[:2]), "--out", "fig.png"],
    "baseline/unknown-method": lambda f, lib: ["baseline", "magic", copy_library(f, lib),
                                             "--out", "b.npy"],
    "baseline/over-a-library": lambda f, lib: ["baseline", "fbp", copy_library(f, lib),
                                             "--out", copy_library(f, lib, "other.h5")],
    "baseline/over-a-file": lambda f, lib: (f / "keep.npy").write_bytes(b"mine")
    and ["baseline", "fbp", copy_library(f, lib), "--out", "keep.npy"],
    "baseline/bad-filter": lambda f, lib: ["baseline", "fbp", copy_library(f, lib), "--out",
                                         "b.npy", "--filter", "nope"],
    # datasets and fetch
    "fetch/unknown": lambda f, lib: ["fetch", "no-such-dataset"],
    "datasets/bad-registry": lambda f, lib: (f / "reg.txt").write_text("name notahash url\n")
    and ["datasets", "--registry", "reg.txt"],
    "datasets/registry-line-too-long": lambda f, lib: (f / "reg.txt").write_text("x" * 10_000)
    and ["datasets", "--registry", "reg.txt"],
    # models and the leaderboard
    "train/missing-config": lambda f, lib: ["train", "nothing.yaml"],
    "train/config-huge-value": lambda f, lib: ["train", recipe_file(
        f, json.dumps({"model": "dense", "library": "lib.h5", "options": {"units": "x" * 10**6}}),
        "c.yaml")],
    "predict/missing-run": lambda f, lib: ["predict", "no-run", copy_library(f, lib), "--out",
                                         "p.npy"],
    "leaderboard/entry-not-json": lambda f, lib: (f / "lb" / "entries").mkdir(parents=True) or (
        f / "lb" / "entries" / "x.json").write_text("{") and ["leaderboard", "lb"],
    "cross/missing": lambda f, lib: ["cross", "nothing"],
}


def snapshot(folder: Path) -> dict[str, object]:
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink() or path.is_fifo():
            found[key] = "special"
        elif path.is_dir():
            found[key] = "folder"
        else:
            found[key] = path.read_bytes()
    return found


def run_case(name: str, folder: Path, library: Path) -> tuple[str, str | None]:
    """(case, None if it ended as promised, else what went wrong)."""
    folder.mkdir()
    args = CASES[name](folder, library)
    before = snapshot(folder)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tomobench.cli", *args], cwd=folder, capture_output=True,
            text=True, timeout=180, preexec_fn=limit, env=env,
        )
    except subprocess.TimeoutExpired:
        return name, "did not end in 180 s"
    lines = done.stderr.strip().splitlines()
    if done.returncode != 2:
        return name, f"exit {done.returncode}: {done.stderr[-1500:]}"
    if len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in done.stderr:
        return name, f"not one line: {done.stderr[-1500:]}"
    if len(lines[0]) > 1500:
        return name, f"a line of {len(lines[0])} characters"
    after = snapshot(folder)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return name, f"files changed: {changed}"
    return name, None


def test_every_hostile_case_ends_with_one_line_exit_2_and_nothing_changed(
    tiny_library, tmp_path
):
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                lambda name: run_case(name, tmp_path / name.replace("/", "--"), tiny_library),
                CASES,
            )
        )
    failures = {name: problem for name, problem in results if problem is not None}
    assert not failures, json.dumps(failures, indent=1)
    commands = {name.split("/")[0] for name in CASES}
    assert commands >= {"build", "info", "score", "show", "baseline", "fetch", "datasets",
                        "train", "predict", "leaderboard", "cross"}
    assert len(CASES) >= 50
