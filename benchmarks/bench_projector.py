"""Forward projection on one CPU core: ASTRA per image, skimage radon, tomobench's matrix.

Usage::

    python benchmarks/bench_projector.py [--size 128] [--angles 180] [--model linear]
        [--batches 16,64,128,256] [--n-astra 256] [--n-radon 32] [--n-matrix 512]
        [--repeats 5] [--seed 0] [--no-pin]

Every method projects the same seeded random-shapes images (float32 in [0, 1]):

- ``astra-cpu``: tomobench's ``Projector(backend="astra-cpu")``, i.e. one
  ``astra.create_sino`` per image with a CPU projector of the chosen model;
- ``radon``: ``skimage.transform.radon(image, theta=degrees, circle=False)``, one image
  at a time (a different discretisation, with ceil(size·√2) detector bins);
- ``matrix``: ``Projector(backend="matrix")``: ASTRA's projection matrix as float32 CSR,
  applied to batches of B images. Only ``forward`` is timed; the one-off matrix build is
  timed and reported on its own line.

Methods are timed in ``--repeats`` interleaved rounds (each method once a round, so a
passing disturbance hits all alike); the table gives the median and the best rate in
sinograms per second, and CPU time / wall time (about 1.0 when one core does the work).
The script pins itself to one CPU (unless ``--no-pin``) and sets the BLAS/OpenMP thread
counts to 1 before numpy is imported; scipy's sparse × dense product is single-threaded
anyway. It asserts that the matrix backend agrees with astra-cpu to 1e-5 relative
(max |difference| / max |astra-cpu|) and asserts nothing about speed.
"""

from __future__ import annotations

import os

# One thread everywhere: must happen before numpy / scipy / astra are imported.
for _name in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_name] = "1"

import argparse
import statistics
import time

import numpy as np
from skimage.draw import random_shapes
from skimage.transform import radon

from tomobench.physics.geometry import parallel_beam
from tomobench.physics.projector import Projector

TOLERANCE = 1e-5


def make_images(n: int, size: int, seed: int) -> np.ndarray:
    """N random-shapes images (N, size, size), float32 in [0, 1], zero background."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size), dtype=np.float32)
    for index in range(n):
        drawn, _ = random_shapes(
            (size, size),
            max_shapes=10,
            min_shapes=3,
            min_size=max(2, size // 16),
            max_size=max(3, 3 * size // 8),
            intensity_range=(25, 254),
            channel_axis=None,
            allow_overlap=True,
            rng=rng,
        )
        images[index] = np.where(drawn == 255, 0.0, drawn / 254.0)
    return images


def timed(function, repeats: int) -> tuple[list[float], list[float], object]:
    """Wall and CPU seconds of each of ``repeats`` calls, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = function()
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    return walls, cpus, result


def row(name: str, count: int, walls: list[float], cpus: list[float]) -> dict:
    return {
        "name": name,
        "count": count,
        "median": count / statistics.median(walls),
        "best": count / min(walls),
        "cpu": sum(cpus) / sum(walls),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--angles", type=int, default=180, help="projection angles over [0, pi)")
    parser.add_argument(
        "--model", default="linear", choices=("line", "strip", "linear"),
        help="ASTRA projection model (astra-cpu and matrix)",
    )
    parser.add_argument(
        "--batches", default="16,64,128,256", help="comma-separated matrix batch sizes"
    )
    parser.add_argument("--n-astra", type=int, default=256, help="images for astra-cpu")
    parser.add_argument("--n-radon", type=int, default=32, help="images for skimage radon")
    parser.add_argument(
        "--n-matrix", type=int, default=512,
        help="images per repeat for each matrix batch size (rounded up to whole batches)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed rounds (each method once a round)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the test images")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the process to a single CPU"
    )
    args = parser.parse_args(argv)
    batches = [int(value) for value in args.batches.split(",") if value]

    pinned = "no"
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        pinned = f"cpu {cpu}"

    geometry = parallel_beam(args.size, angles=args.angles)
    pool = max(args.n_astra, args.n_radon, max(batches))
    images = make_images(pool, args.size, args.seed)
    degrees = np.degrees(geometry.angle_values)
    print(
        f"{args.size}x{args.size} images, {args.angles} angles, model {args.model!r}, "
        f"{pool} distinct images (seed {args.seed}), {args.repeats} repeats, pinned: {pinned}"
    )

    # The methods, each a function of no argument; they are timed in interleaved rounds
    # (every method once per round) so that a passing disturbance hits all of them alike.
    astra_cpu = Projector(geometry, model=args.model, backend="astra-cpu")
    astra_cpu.forward(images[0])  # creates the ASTRA projector
    subset = images[: args.n_astra]
    subset_radon = images[: args.n_radon]
    radon(subset_radon[0], theta=degrees, circle=False)

    matrix_backend = Projector(geometry, model=args.model, backend="matrix")
    start = time.perf_counter()
    matrix = matrix_backend.matrix
    build_seconds = time.perf_counter() - start
    nbytes = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes

    reference = astra_cpu.forward(subset)
    mine = matrix_backend.forward(subset)
    error = float(np.abs(mine - reference).max() / np.abs(reference).max())
    assert error <= TOLERANCE, f"matrix differs from astra-cpu by {error:.3g} (relative)"

    methods = [
        ("astra-cpu (create_sino per image)", len(subset), lambda: astra_cpu.forward(subset)),
        (
            "skimage radon (circle=False)",
            len(subset_radon),
            lambda: [radon(image, theta=degrees, circle=False) for image in subset_radon],
        ),
    ]
    for batch in batches:
        batch_images = images[:batch]
        calls = -(-args.n_matrix // batch)
        matrix_backend.forward(batch_images)  # warm-up

        def run(batch_images=batch_images, calls=calls):
            for _ in range(calls):
                matrix_backend.forward(batch_images)

        methods.append((f"matrix, batch {batch}", calls * batch, run))

    walls = {name: [] for name, _, _ in methods}
    cpus = {name: [] for name, _, _ in methods}
    for _ in range(args.repeats):
        for name, _, function in methods:
            wall, cpu, _ = timed(function, 1)
            walls[name] += wall
            cpus[name] += cpu
    rows = [row(name, count, walls[name], cpus[name]) for name, count, _ in methods]
    astra_rate = rows[0]["median"]
    matrix_rows = rows[2:]

    print()
    print(f"{'method':36s} {'images':>7s} {'median/s':>10s} {'best/s':>10s} {'cpu/wall':>9s}")
    for item in rows:
        print(
            f"{item['name']:36s} {item['count']:7d} {item['median']:10.1f} "
            f"{item['best']:10.1f} {item['cpu']:9.2f}"
        )
    print()
    print(
        f"matrix build (one-off): {build_seconds:.2f} s, shape {matrix.shape}, "
        f"{matrix.nnz} non-zeros, {nbytes / 2**20:.1f} MiB"
    )
    print(
        f"matrix vs astra-cpu: max|diff|/max|astra| = {error:.2e} "
        f"(tolerance {TOLERANCE:.0e}) over {len(subset)} images"
    )
    print()
    print("ratios to astra-cpu (target for matrix: >= 20x), of median and of best rates:")
    astra_best = rows[0]["best"]
    print(
        f"  {'skimage radon':20s} {rows[1]['median'] / astra_rate:6.2f}x median, "
        f"{rows[1]['best'] / astra_best:6.2f}x best"
    )
    for item in matrix_rows:
        ratio, best_ratio = item["median"] / astra_rate, item["best"] / astra_best
        print(
            f"  {item['name']:20s} {ratio:6.2f}x median, {best_ratio:6.2f}x best  "
            f"({'met' if ratio >= 20 else 'not met'} on medians, "
            f"{'met' if best_ratio >= 20 else 'not met'} on best)"
        )
    fastest = max(matrix_rows, key=lambda item: item["median"])
    images_per_build = fastest["count"]
    with_build = images_per_build / (images_per_build / fastest["median"] + build_seconds)
    print(
        f"  {fastest['name']}, counting the one-off matrix build against "
        f"{images_per_build} images: {with_build / astra_rate:.2f}x median"
    )

if __name__ == "__main__":
    main()
