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


def apply(op, sinogram: np.ndarray, *, recipe, rng: np.random.Generator) -> np.ndarray:
    """One noise operation of a recipe (``op``, one of ``recipe.noise``) on one sample's
    sinogram, float32, drawing from the sample's generator."""
    if op.kind == "poisson":
        attenuation = op.attenuation or 1.0 / recipe.image_size
        return poisson(
            sinogram, photons=op.photons, attenuation=attenuation, min_counts=op.min_counts,
            rng=rng,
        )
    if op.kind == "gaussian":
        return gaussian(sinogram, sigma=op.sigma, relative=op.relative, rng=rng)
    if op.kind == "counting":
        return counting(sinogram, counts=op.counts, rng=rng)
    # air scatter: the same hump in 2θ at every angle and detector pixel, scaled to the peak
    return sinogram + op.level * float(sinogram.max()) * air_hump(recipe.source, op)


def air_hump(source, op) -> np.ndarray:
    """Unit-height Gaussian over a hyperspectral source's 2θ axis (C,), float32: centred at
    ``op.center_deg`` (default: a tenth into the range), ``op.fwhm_deg`` wide (default: half
    the range)."""
    low, high = source.two_theta
    centre = low + 0.1 * (high - low) if op.center_deg is None else op.center_deg
    width = 0.5 * (high - low) if op.fwhm_deg is None else op.fwhm_deg
    two_theta = np.linspace(low, high, source.channels)
    sigma = width / (2 * np.sqrt(2 * np.log(2)))
    return np.exp(-0.5 * ((two_theta - centre) / sigma) ** 2).astype(np.float32)
