"""Corruption of clean data: Beer–Lambert photon noise, counting noise and Gaussian noise.
Every function draws from the generator it is given."""

from __future__ import annotations

import numpy as np


def poisson(
    sinogram: np.ndarray,
    *,
    photons: float,
    attenuation: float,
    rng: np.random.Generator,
    min_counts: float = 0.1,
) -> np.ndarray:
    """Beer–Lambert photon noise on a sinogram of line integrals.

    Each detector pixel receives ``photons`` incident photons; the material between source
    and pixel lets ``photons · exp(-attenuation · p)`` through on average, where ``p`` is the
    line integral of the image (pixel values times path length in pixel widths). Counts are
    drawn from a Poisson law, zero counts are raised to ``min_counts`` so that the logarithm
    stays finite, and the noisy line integral ``-log(counts / photons) / attenuation`` is
    returned in the units of ``sinogram`` (float32).
    """
    # photons · exp(-attenuation · p), then -log(max(counts, min_counts) / photons) /
    # attenuation, computed in one float64 buffer (the same operations in the same order as
    # the plain expressions, so the same bits, without their temporaries)
    work = np.multiply(np.asarray(sinogram, dtype=np.float64), -attenuation)
    np.exp(work, out=work)
    work *= photons
    counts = rng.poisson(work)
    np.maximum(counts, min_counts, out=work)
    work /= photons
    np.log(work, out=work)
    np.negative(work, out=work)
    work /= attenuation
    return work.astype(np.float32)


def gaussian(
    sinogram: np.ndarray, *, sigma: float, rng: np.random.Generator, relative: bool = False
) -> np.ndarray:
    """Additive Gaussian noise of standard deviation ``sigma``, or, with ``relative``, of
    ``sigma`` times the sinogram's largest absolute value."""
    sinogram = np.asarray(sinogram, dtype=np.float64)
    scale = sigma * float(np.abs(sinogram).max()) if relative else sigma
    with np.errstate(over="ignore"):  # an overflow to inf is refused by the build
        return (sinogram + rng.normal(0.0, scale, size=sinogram.shape)).astype(np.float32)


def counting(signal: np.ndarray, *, counts: float, rng: np.random.Generator) -> np.ndarray:
    """Counting noise on a signal that is itself a number of detected photons: a value v
    becomes Poisson(v · counts) / counts (negative values count as zero), float64.

    Used for diffraction sinograms, and on images for the 2020 generator's image-domain
    noise (``counts`` = 2**8 there)."""
    signal = np.asarray(signal, dtype=np.float64)
    return rng.poisson(np.clip(signal, 0.0, None) * counts) / counts
