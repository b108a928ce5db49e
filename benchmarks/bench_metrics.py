"""Time tomobench's batched PSNR + SSIM against a Python loop over skimage.

Usage::

    python benchmarks/bench_metrics.py [--n 2000] [--size 128] [--seed 0] [--repeat 3]

Both sides score the same N seeded random image pairs (smooth images in [0, 1]
and noisy, clipped versions of them, float64). The two sides are timed in
alternation, ``--repeat`` times each, and the best time of each is kept (the
least disturbed by other work on the machine). The script asserts that every
value agrees with skimage to 1e-6, then prints both times and the speed-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tomobench.metrics import psnr, ssim

TOLERANCE = 1e-6


def make_pairs(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return N smooth reference images in [0, 1] and noisy versions of them."""
    rng = np.random.default_rng(seed)
    smooth = gaussian_filter(rng.random((n, size, size)), (0, 3, 3))
    low = smooth.min(axis=(1, 2), keepdims=True)
    high = smooth.max(axis=(1, 2), keepdims=True)
    reference = (smooth - low) / (high - low)
    noise_level = rng.uniform(0.01, 0.2, size=(n, 1, 1))
    test = np.clip(reference + noise_level * rng.standard_normal(reference.shape), 0.0, 1.0)
    return reference, test


def score_batched(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return psnr(reference, test), ssim(reference, test)


def score_skimage_loop(
    reference: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = reference.shape[0]
    psnr_values = np.empty(n)
    ssim_values = np.empty(n)
    for i in range(n):
        psnr_values[i] = peak_signal_noise_ratio(reference[i], test[i], data_range=1)
        ssim_values[i] = structural_similarity(
            reference[i],
            test[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
        )
    return psnr_values, ssim_values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of image pairs")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--repeat", type=int, default=3, help="timings per side, best kept")
    args = parser.parse_args(argv)
    if args.n < 1 or args.size < 11 or args.repeat < 1:
        parser.error("need --n >= 1, --size >= 11 (the SSIM window) and --repeat >= 1")

    reference, test = make_pairs(args.n, args.size, args.seed)

    batched_seconds = loop_seconds = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        batched_psnr, batched_ssim = score_batched(reference, test)
        batched_seconds = min(batched_seconds, time.perf_counter() - start)

        start = time.perf_counter()
        loop_psnr, loop_ssim = score_skimage_loop(reference, test)
        loop_seconds = min(loop_seconds, time.perf_counter() - start)

    psnr_error = float(np.max(np.abs(batched_psnr - loop_psnr)))
    ssim_error = float(np.max(np.abs(batched_ssim - loop_ssim)))
    assert psnr_error <= TOLERANCE, f"psnr differs from skimage by {psnr_error:.3g}"
    assert ssim_error <= TOLERANCE, f"ssim differs from skimage by {ssim_error:.3g}"

    print(
        f"{args.n} pairs of {args.size}x{args.size} float64 images (seed {args.seed}), "
        f"best of {args.repeat}"
    )
    print(f"batched psnr+ssim (tomobench): {batched_seconds:8.3f} s")
    print(f"skimage loop psnr+ssim:        {loop_seconds:8.3f} s")
    print(f"speed-up:                      {loop_seconds / batched_seconds:8.2f}x")
    print(f"max |difference|: psnr {psnr_error:.2e} dB, ssim {ssim_error:.2e}")


if __name__ == "__main__":
    main()
