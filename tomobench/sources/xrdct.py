"""Simulated XRD-CT slices: a diffraction pattern in every pixel (see :mod:`tomobench.xrd`).

A sample is a cube (H, W, C) over the recipe's 2θ axis, float32 in [0, 1] (each cube divided
by its own maximum, kept as ``scale``), with the ground truth that made it: the phase
fractions and the crystallite size and strain of every phase in every pixel, and the height
of the amorphous background. With ``absorption`` a sample also holds the absorption
(micro-CT) image of the same slice: Σ_phase fraction × μ_phase in cm⁻¹, from the same phase
maps, plus Gaussian noise drawn from a child of the sample's generator.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from tomobench import xrd
from tomobench.errors import RecipeError

ABSORPTION_UNIT = "cm^-1 (linear attenuation coefficient)"
"""The unit of the absorption image (root attribute ``absorption_unit``)."""


def axis(source) -> np.ndarray:
    """The 2θ axis in degrees, (C,) float64."""
    return xrd.two_theta_axis(*source.two_theta, source.channels)


def root_arrays(source) -> dict[str, np.ndarray]:
    return {"two_theta": axis(source)}


def root_attrs(source) -> dict:
    attrs = {
        "phases": json.dumps(list(source.phase_names)),
        "energy_kev": float(source.energy_kev),
        "wavelength_angstrom": float(xrd.wavelength_from_energy(source.energy_kev)),
        "spectral_axis": "two_theta (degrees)",
    }
    if source.absorption is not None:
        attrs["absorption_unit"] = ABSORPTION_UNIT
        given = source.absorption.coefficients
        attrs["absorption_coefficients"] = json.dumps({p: given[p] for p in source.phase_names})
        attrs["pixel_size_um"] = float(source.absorption.pixel_size_um)
    return attrs


def sample_shapes(source) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of each array the source adds beside ``images``."""
    size, phases = source.size, len(source.phases)
    shapes = {
        "phase_fractions": (phases, size, size),
        "crystallite_size_nm": (phases, size, size),
        "strain": (phases, size, size),
        "background": (size, size),
        "scale": (),
    }
    if source.absorption is not None:
        shapes["absorption"] = (size, size)
    return shapes


def absorption_image(
    fractions: np.ndarray, coefficients, noise: float, rng: np.random.Generator | None
) -> np.ndarray:
    """The absorption image (H, W) float32 of phase ``fractions`` (P, H, W): Σ_p μ_p ·
    fractions[p] in the units of the ``coefficients`` μ (one per phase), summed in float64,
    plus Gaussian noise of standard deviation ``noise`` × max(μ) drawn from ``rng`` (needed
    only when ``noise`` > 0). Noise is not clipped: like a reconstruction's, it may go below 0."""
    image = np.zeros(fractions.shape[1:], dtype=np.float64)
    for mu, fraction in zip(coefficients, fractions, strict=True):
        image += float(mu) * fraction.astype(np.float64)
    if noise > 0:
        image += rng.normal(0.0, noise * max(coefficients), size=image.shape)
    return image.astype(np.float32)


def prepare(source) -> None:
    """Read and check a masks file before any sample is drawn."""
    if source.masks is not None:
        _masks(source.masks, source.size, len(source.phases))


def inputs(source, split: str, start: int, stop: int) -> dict[int, tuple] | None:
    """Every sample draws from the masks file, if the source names one."""
    return None if source.masks is None else dict.fromkeys(range(start, stop), ("masks",))


def load_input(source, key: tuple) -> np.ndarray:
    return _masks(source.masks, source.size, len(source.phases))


def sampler(source, split: str, materials: dict | None = None):
    del split
    phases, two_theta, wavelength = _setting(source)
    masks = None
    if source.masks is not None and materials is None:
        masks = _masks(source.masks, source.size, len(phases))
    absorption = source.absorption
    if absorption is not None:
        coefficients = [absorption.coefficients[name] for name in source.phase_names]

    def draw(index: int, rng: np.random.Generator):
        drawn_from = masks if materials is None else materials[index]
        maps = xrd.phase_maps(source.phantom, source.size, len(phases), rng, masks=drawn_from)
        data, truth = xrd.cube(
            maps,
            phases,
            two_theta,
            wavelength=wavelength,
            size_range_nm=source.size_range_nm,
            strain_range=source.strain_range,
            background=source.background,
            correlation_px=source.correlation_px,
            instrument_fwhm_deg=source.instrument_fwhm_deg,
            rng=rng,
        )
        extras = {
            "phase_fractions": truth.fractions,
            "crystallite_size_nm": truth.crystallite_size_nm,
            "strain": truth.strain,
            "background": truth.background,
            "scale": np.float32(truth.scale),
        }
        if absorption is not None:
            # a child generator: the sample's own stream, hence its sinogram noise, is the
            # same with or without the absorption image
            child = rng.spawn(1)[0] if absorption.noise > 0 else None
            extras["absorption"] = absorption_image(
                truth.fractions, coefficients, absorption.noise, child
            )
        return data, extras

    return draw


@functools.cache
def _setting(source):
    phases = [xrd.PHASES[p] if isinstance(p, str) else p.to_phase() for p in source.phases]
    return phases, axis(source), xrd.wavelength_from_energy(source.energy_kev)


@functools.cache
def _masks(path: str, size: int, n_phases: int) -> np.ndarray:
    """The phase maps of a masks file, (n_phases, size, size) float32, checked."""
    try:
        masks = np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as error:
        msg = f"source.masks: cannot read {path} as a .npy array ({error})"
        raise RecipeError(msg) from None
    try:
        return xrd.phase_maps("masks", size, n_phases, None, masks=masks)
    except ValueError as error:
        msg = f"source.masks: {path}: {error}"
        raise RecipeError(msg) from None
