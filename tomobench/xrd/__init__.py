"""Hyperspectral XRD-CT: crystalline phases, powder patterns, phantom cubes, and 2-D detector
frames with their azimuthal integration. Every random draw comes from the
``numpy.random.Generator`` passed in."""

from tomobench.xrd.detector import Detector, azimuthal_integration, frame
from tomobench.xrd.patterns import (
    bragg_two_theta,
    pattern,
    patterns,
    pseudo_voigt,
    scherrer_fwhm_deg,
    two_theta_axis,
    wavelength_from_energy,
)
from tomobench.xrd.phantoms import CubeTruth, cube, phase_maps
from tomobench.xrd.phases import PHASES, Phase

__all__ = [
    "PHASES",
    "CubeTruth",
    "Detector",
    "Phase",
    "azimuthal_integration",
    "bragg_two_theta",
    "cube",
    "frame",
    "pattern",
    "patterns",
    "phase_maps",
    "pseudo_voigt",
    "scherrer_fwhm_deg",
    "two_theta_axis",
    "wavelength_from_energy",
]
