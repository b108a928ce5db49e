"""GANrec's speed on this machine's CPUs, against SIRT on the same sinogram.

Usage::

    python benchmarks/bench_ganrec.py [--shapes 64x64x92,128x180x182] [--iterations 50]
        [--repeats 1] [--seed 0]

For each shape SIZExANGLESxDETECTOR (image size², angles, detector pixels; defaults: 64² with
64 angles × 92 pixels, and shapes-128's 128² with 180 × 182) the script projects one seeded
random-shapes image with the matrix projector (linear model) and times, in the same process:

- ``ganrec`` (:func:`tomobench.models.ganrec.ganrec`, paper defaults) on that sinogram alone
  and on two copies of it, ``--iterations`` iterations each: the difference is one
  sinogram's fit, from which the iterations per second; what is left of the single call is
  the set-up (building the networks and the sparse matrix, tracing the training step);
- the reference, ``baselines.sirt`` with 100 iterations on the same sinogram (matrix backend).

It prints GANrec's iterations per second, its seconds per sinogram at its default
iterations (set-up + :data:`~tomobench.models.ganrec.ITERATIONS` / rate) and both as ratios
to SIRT-100 measured in the same run. Best of ``--repeats`` rounds. TensorFlow uses every CPU
it sees; nothing is pinned. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tomobench.models  # noqa: F401  (TensorFlow imported quietly)
from tomobench import baselines
from tomobench.models.ganrec import ITERATIONS, ganrec
from tomobench.physics.geometry import circular_mask, parallel_beam
from tomobench.physics.projector import get_projector


def phantom(size: int, seed: int) -> np.ndarray:
    """A random-shapes image in [0, 1] inside the inscribed circle, float32."""
    from skimage.draw import random_shapes

    drawn, _ = random_shapes(
        (size, size), max_shapes=8, min_shapes=3, min_size=size // 16, max_size=3 * size // 8,
        intensity_range=(25, 254), channel_axis=None, rng=np.random.default_rng(seed),
    )  # fmt: skip
    image = np.where(drawn == 255, 0.0, drawn / 254.0) * circular_mask(size)
    return image.astype(np.float32)


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def bench(size: int, angles: int, detector: int, *, iterations: int, repeats: int, seed: int):
    geometry = parallel_beam(size, angles=angles, detector=detector)
    projector = get_projector(geometry, backend="matrix")
    sinogram = projector.forward(phantom(size, seed))
    projector.matrix  # built (or loaded) before any timing  # noqa: B018
    sirt = best_time(lambda: baselines.sirt(sinogram, geometry, iterations=100), repeats)
    one = best_time(lambda: ganrec(sinogram, projector, iterations=iterations), repeats)
    two = best_time(lambda: ganrec([sinogram] * 2, projector, iterations=iterations), repeats)
    fit = max(two - one, 1e-9)
    rate = iterations / fit
    setup = max(one - fit, 0.0)
    per_sinogram = setup + ITERATIONS / rate
    print(
        f"{size}² ({angles} angles × {detector} pixels): GANrec {rate:.1f} iterations/s "
        f"({1000 / rate:.0f} ms each; set-up {setup:.1f} s); {per_sinogram:.0f} s a sinogram "
        f"at {ITERATIONS} iterations. SIRT-100 {sirt:.3f} s ({100 / sirt:.0f} iterations/s). "
        f"Ratios to SIRT: an iteration {fit / iterations / (sirt / 100):.0f}×, a sinogram "
        f"{per_sinogram / sirt:.0f}×"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="64x64x92,128x180x182")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; GANrec timed over {args.iterations} iterations")
    for shape in args.shapes.split(","):
        size, angles, detector = (int(part) for part in shape.split("x"))
        bench(size, angles, detector, iterations=args.iterations, repeats=args.repeats,
              seed=args.seed)  # fmt: skip


if __name__ == "__main__":
    main()
