"""Hyperspectral XRD-CT: crystalline phases, powder patterns, phantom cubes, and 2-D detector
frames with their azimuthal integration. Every random draw comes from the
``numpy.random.Generator`` passed in."""

from tomobench.xrd.detector import Detector, azimuthal_integration, frame
from tomobench.xrd.patterns import (
    bragg_two_theta,
    lorentz_polarisation,
    narrowest_fwhm_deg,
    pattern,
    patterns,
    pseudo_voigt,
    relative_intensities,
    scherrer_fwhm_deg,
    two_theta_axis,
    wavelength_from_energy,
)
from tomobench.xrd.phantoms import CubeTruth, cube, phase_maps
from tomobench.xrd.phases import CU_KALPHA_ANGSTROM, PHASES, Phase

__all__ = [
    "CU_KALPHA_ANGSTROM",
    "PHASES",
    "CubeTruth",
    "Detector",
    "Phase",
    "azimuthal_integration",
    "bragg_two_theta",
    "cube",
    "frame",
    "lorentz_polarisation",
    "narrowest_fwhm_deg",
    "pattern",
    "patterns",
    "phase_maps",
    "pseudo_voigt",
    "relative_intensities",
    "scherrer_fwhm_deg",
    "two_theta_axis",
    "wavelength_from_energy",
]
