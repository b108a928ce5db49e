"""Time ``tomobench build`` as a user runs it: start-up of a parallel build, samples/s on 1
and 2 local workers, and what each dask setting of the build's cluster is worth.

Usage::

    python benchmarks/bench_cluster.py [--recipe shapes-128] [--n 1024] [--chunk 32]
        [--repeats 3] [--format hdf5] [--tmpdir DIR] [--no-settings]

Each build runs in a fresh process (the ``tomobench build`` command), so that imports and
the cluster's start-up count as a user sees them. Parts:

1. start-up: a build of one chunk (``--chunk`` samples) with ``--workers 1`` and with
   ``--workers 2``; the difference is what starting (and stopping) the cluster costs;
2. throughput: the recipe with one ``test`` split of ``--n`` samples, built with
   ``--workers 1`` and ``--workers 2``; samples/s over the whole command;
3. (unless ``--no-settings``) the 2-worker throughput again with the cluster's settings
   (``tomobench.cluster.KEPT_HEAP``, ``QUIET_HOUSEKEEPING``) taken away: dask's defaults,
   then the kept heap alone. Runs of the variants alternate, so that a slow phase of the
   host falls on all of them.

Each figure is the median of ``--repeats`` runs; the libraries of 1 and 2 workers are checked
to be byte-identical. Ratios are printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import zarr

from tomobench.recipe import load_recipe


def recipe_file(folder: Path, recipe: str, n: int, chunk: int, name: str) -> Path:
    data = load_recipe(recipe).model_dump(mode="json")
    data["name"] = name
    data["splits"] = {"test": n}
    data["output"] = {**data["output"], "chunk": chunk}
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


LAUNCHER = """
import sys
variant = sys.argv.pop(1)
if variant != "as-shipped":
    from tomobench import cluster
    cluster.QUIET_HOUSEKEEPING.clear()
    if variant == "dask-defaults":
        cluster.KEPT_HEAP.clear()
from tomobench.cli import main
sys.exit(main())
"""
VARIANTS = ("as-shipped", "heap-only", "dask-defaults")


def timed_build(recipe: Path, out: Path, workers: int, variant: str = "as-shipped") -> float:
    for stale in (out, out.with_name(out.name + ".partial")):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    command = [sys.executable, "-c", LAUNCHER, variant, "build", str(recipe), "--out",
               str(out), "--workers", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"build failed: {done.stderr.strip()}")
    return elapsed


def read(path: Path) -> bytes:
    if path.suffix == ".zarr":
        group = zarr.open_group(str(path), mode="r")
        arrays = [np.asarray(group[f"test/{k}"][...]) for k in ("images", "sinograms")]
        return b"".join(array.tobytes() for array in arrays)
    with h5py.File(path, "r") as file:
        return b"".join(file[f"test/{k}"][...].tobytes() for k in ("images", "sinograms"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="shapes-128")
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--format", default="hdf5", choices=("hdf5", "zarr"))
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--no-settings", action="store_true", help="skip part 3")
    args = parser.parse_args(argv)
    suffix = ".zarr" if args.format == "zarr" else ".h5"
    folder = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=args.tmpdir))
    try:
        small = recipe_file(folder, args.recipe, args.chunk, args.chunk, "startup")
        large = recipe_file(folder, args.recipe, args.n, args.chunk, "throughput")
        figures = {}
        for label, recipe, workers in (
            ("start-up build, 1 worker", small, 1),
            ("start-up build, 2 workers", small, 2),
            ("throughput, 1 worker", large, 1),
            ("throughput, 2 workers", large, 2),
        ):
            out = folder / f"{recipe.stem}-{workers}{suffix}"
            figures[label] = statistics.median(
                timed_build(recipe, out, workers) for _ in range(args.repeats)
            )
        variants = {}
        if not args.no_settings:
            runs = {variant: [] for variant in VARIANTS}
            for _ in range(args.repeats):
                for variant in VARIANTS:
                    out = folder / f"variant{suffix}"
                    runs[variant].append(timed_build(large, out, 2, variant))
            variants = {variant: statistics.median(times) for variant, times in runs.items()}
        same = read(folder / f"throughput-1{suffix}") == read(folder / f"throughput-2{suffix}")
        import tomobench

        print(f"tomobench {tomobench.__file__}")
        print(f"recipe {args.recipe}, chunk {args.chunk}, {args.format}, "
              f"median of {args.repeats} fresh processes")
        one, two = figures["start-up build, 1 worker"], figures["start-up build, 2 workers"]
        print(f"one chunk ({args.chunk} samples): 1 worker {one:.2f} s, 2 workers {two:.2f} s "
              f"(cluster start-up and shut-down: {two - one:+.2f} s)")
        rate1 = args.n / figures["throughput, 1 worker"]
        rate2 = args.n / figures["throughput, 2 workers"]
        print(f"{args.n} samples: 1 worker {rate1:.1f} samples/s, 2 workers {rate2:.1f} "
              f"samples/s (ratio {rate2 / rate1:.2f}); byte-identical: {same}")
        if variants:
            shipped = args.n / variants["as-shipped"]
            for variant, seconds in variants.items():
                rate = args.n / seconds
                print(f"  2 workers, {variant}: {rate:.1f} samples/s "
                      f"(as shipped / this: {shipped / rate:.2f})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
