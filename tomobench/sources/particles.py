"""Catalyst-body ground truth: the ``particles`` phantom of the XRD-CT simulation in one
contrast.

Each image holds a few non-overlapping elliptic bodies of a support phase that carries the
other phases as a core, an egg-shell, a core and shell of two phases, or spread through it
(:func:`tomobench.xrd.phase_maps`). The image is ``Σ_p contrast_p × fraction_p``: what a
single XRD-CT channel (or an absorption image) of such a sample shows. Unlike random shapes,
every image is of the same kind — round bodies with layered insides inside a circular field
of view — the correlated training data of the 2020 report's XRD-CT library (§7.2).
"""

from __future__ import annotations

import numpy as np

from tomobench.xrd import phase_maps


def sampler(source, split: str, oversample: int = 1):
    """Bodies depend neither on the split nor on the index: only on the sample's generator."""
    del split
    return lambda index, rng: draw(source, rng, oversample=oversample)


def draw(source, rng: np.random.Generator, *, oversample: int = 1) -> np.ndarray:
    """One image of the ``particles`` source: float32, (size·oversample)², values in [0, 1].
    With ``oversample`` k > 1 the bodies are rendered k× finer (their edges soft over one
    fine pixel); the area average over k × k blocks is the ground truth."""
    contrasts = np.asarray(source.contrasts, dtype=np.float64)
    maps = phase_maps(
        "particles",
        source.size * oversample,
        len(contrasts),
        rng,
        particle_count=tuple(source.particles),
        particle_radius=tuple(source.radius),
        fraction_range=tuple(source.loading),
    )
    image = np.tensordot(contrasts, maps.astype(np.float64), axes=1)
    return np.clip(image, 0.0, 1.0).astype(np.float32)
