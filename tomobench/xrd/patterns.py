"""1-D powder diffraction patterns on a 2θ axis: Bragg positions, Scherrer widths, pseudo-Voigt
peaks. Angles are in degrees of 2θ, lengths in Å, crystallite sizes in nm, energies in keV.

The model of one reflection of d-spacing d and relative intensity I, for a pixel of
crystallite size L and strain ε:

- position: 2θ = 2·asin(λ / (2·d·(1 + ε))) (Bragg's law on the expanded lattice); a
  reflection with λ / (2·d·(1 + ε)) ≥ 1 does not diffract and is left out;
- width: Scherrer's β = K·λ / (L·cos θ) (K = 0.9, β in radians of 2θ, here in degrees)
  combined in quadrature with the instrument's width: FWHM = sqrt(β² + β_instrument²);
- shape: a pseudo-Voigt η·Lorentzian + (1 − η)·Gaussian of that FWHM, of unit area over 2θ
  in degrees, times I;
- intensity: the phase's card intensity, measured at its ``card_wavelength`` (Cu Kα unless
  given), carried to the wavelength λ by the powder Lorentz–polarisation factor:
  I = I_card · LP(θ) / LP(θ_card), LP(θ) = (1 + cos²2θ) / (sin²θ · cos θ), at the unstrained
  Bragg angles θ and θ_card of the two wavelengths (:func:`relative_intensities`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tomobench.xrd.phases import Phase

HC_KEV_ANGSTROM = 12.398419843320026  # h·c: λ[Å] = 12.398… / E[keV]
SCHERRER_K = 0.9  # Scherrer shape factor (spherical crystallites, FWHM convention)
MIN_PEAK_CHANNELS = 3  # the narrowest peak's FWHM spans at least this many channel steps
_GAUSS_CUT = 6.0  # the Gaussian part is below 2**-144 of its peak beyond 6 FWHM
_BLOCK = 256  # pixels computed together


def two_theta_axis(start_deg: float, stop_deg: float, channels: int) -> np.ndarray:
    """``channels`` evenly spaced 2θ values from ``start_deg`` to ``stop_deg`` inclusive
    (float64, degrees)."""
    if not 0 <= start_deg < stop_deg <= 180 or channels < 2:
        msg = (
            f"two_theta_axis({start_deg!r}, {stop_deg!r}, {channels!r}): need "
            "0 ≤ start < stop ≤ 180 degrees and at least 2 channels"
        )
        raise ValueError(msg)
    return np.linspace(start_deg, stop_deg, int(channels))


def wavelength_from_energy(energy_kev: float) -> float:
    """X-ray wavelength in Å of a photon of ``energy_kev`` keV (λ = h·c / E)."""
    if energy_kev <= 0:
        msg = f"energy_kev={energy_kev!r}; a photon energy must be positive"
        raise ValueError(msg)
    return HC_KEV_ANGSTROM / energy_kev


def bragg_two_theta(d, *, wavelength: float) -> np.ndarray:
    """2θ in degrees of reflections of d-spacing ``d`` (Å): 2·asin(λ / 2d); NaN where
    λ / 2d > 1 (no diffraction)."""
    ratio = wavelength / (2 * np.asarray(d, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        return np.degrees(2 * np.arcsin(np.where(ratio <= 1, ratio, np.nan)))


def scherrer_fwhm_deg(two_theta_deg, *, wavelength: float, crystallite_size_nm) -> np.ndarray:
    """Scherrer's size broadening K·λ / (L·cos θ) at 2θ, as a FWHM in degrees of 2θ."""
    theta = np.radians(np.asarray(two_theta_deg, dtype=np.float64)) / 2
    size_angstrom = 10 * np.asarray(crystallite_size_nm, dtype=np.float64)
    return np.degrees(SCHERRER_K * wavelength / (size_angstrom * np.cos(theta)))


def lorentz_polarisation(two_theta_deg) -> np.ndarray:
    """The powder Lorentz–polarisation factor (1 + cos²2θ) / (sin²θ · cos θ) at 2θ (degrees).

    It holds for a powder whose Debye–Scherrer rings are averaged over the azimuth (or cut by
    a receiving slit of fixed length), with an unpolarised beam, or a linearly polarised one
    averaged over the ring: the polarisation factor 1 − sin²2θ·cos²χ averages to
    (1 + cos²2θ) / 2 over the azimuth χ (Cullity & Stock, *Elements of X-ray Diffraction*,
    3rd ed., ch. 4, the intensities of powder pattern lines; docs/xrd.md has the derivation).
    """
    theta = np.radians(np.asarray(two_theta_deg, dtype=np.float64)) / 2
    return _lorentz_polarisation(theta)


def relative_intensities(phase: Phase, *, wavelength: float) -> tuple[np.ndarray, np.ndarray]:
    """(d in Å, intensity at ``wavelength``) of each reflection of ``phase``, float64 arrays.

    A card intensity I_card, measured at ``phase.card_wavelength``, becomes
    I_card · LP(θ) / LP(θ_card) (:func:`lorentz_polarisation`), θ and θ_card the Bragg angles
    of the unstrained reflection at ``wavelength`` and at the card's wavelength; at the card's
    wavelength the intensities are the card's. A reflection that does not diffract at
    ``wavelength`` (λ / 2d ≥ 1) gets 0.
    """
    d, card = phase.d_spacings()
    ratio = wavelength / (2 * d)
    diffracts = ratio < 1
    theta = np.arcsin(np.where(diffracts, ratio, 0.5))
    theta_card = np.arcsin(phase.card_wavelength / (2 * d))  # < 1: Phase checks it
    factor = _lorentz_polarisation(theta) / _lorentz_polarisation(theta_card)
    return d, np.where(diffracts, card * factor, 0.0)


def narrowest_fwhm_deg(
    phases: Sequence[Phase],
    two_theta_range: tuple[float, float],
    *,
    wavelength: float,
    crystallite_size_nm: float,
    instrument_fwhm_deg: float,
) -> float:
    """The smallest FWHM in degrees of 2θ of any reflection of ``phases`` whose (unstrained)
    peak lies in ``two_theta_range`` (ends included), for crystallites of
    ``crystallite_size_nm`` — the largest size a pattern will have, the narrowest peaks.

    The width is the one :func:`patterns` gives: Scherrer's, combined in quadrature with
    ``instrument_fwhm_deg``. It is smallest at the lowest angle. ``math.inf`` when no
    reflection of non-zero intensity lies in the range.
    """
    low, high = two_theta_range
    narrowest = math.inf
    for phase in phases:
        d, intensity = phase.d_spacings()
        ratio = wavelength / (2 * d)
        theta = np.arcsin(ratio[(ratio < 1) & (intensity > 0)])
        theta = theta[(np.degrees(2 * theta) >= low) & (np.degrees(2 * theta) <= high)]
        if theta.size:
            fwhm = _fwhm(theta, wavelength, crystallite_size_nm, instrument_fwhm_deg)
            narrowest = min(narrowest, float(fwhm.min()))
    return narrowest


def pseudo_voigt(x, *, center, fwhm, eta) -> np.ndarray:
    """η·Lorentzian + (1 − η)·Gaussian, both of full width at half maximum ``fwhm`` and unit
    area over ``x``; arguments broadcast together."""
    x, center, fwhm, eta = (np.asarray(v, dtype=np.float64) for v in (x, center, fwhm, eta))
    u2 = 4 * ((x - center) / fwhm) ** 2
    lorentzian = 2 / (np.pi * fwhm) / (1 + u2)
    gaussian = 2 / fwhm * np.sqrt(np.log(2) / np.pi) * np.exp(-np.log(2) * u2)
    return eta * lorentzian + (1 - eta) * gaussian


def pattern(
    phase: Phase,
    two_theta_deg,
    *,
    wavelength: float,
    crystallite_size_nm: float = 20.0,
    strain: float = 0.0,
    eta: float = 0.5,
    instrument_fwhm_deg: float = 0.0,
) -> np.ndarray:
    """The powder pattern (C,) float64 of one pixel of ``phase`` on the 2θ axis (degrees).

    Each reflection is a unit-area pseudo-Voigt times its intensity at ``wavelength``
    (:func:`relative_intensities`), so a peak's height is about intensity / FWHM; see the
    module docstring for the model.
    """
    return patterns(
        phase,
        two_theta_deg,
        wavelength=wavelength,
        crystallite_size_nm=[crystallite_size_nm],
        strain=[strain],
        eta=eta,
        instrument_fwhm_deg=instrument_fwhm_deg,
    )[0]


def patterns(
    phase: Phase,
    two_theta_deg,
    *,
    wavelength: float,
    crystallite_size_nm,
    strain=0.0,
    eta=0.5,
    instrument_fwhm_deg: float = 0.0,
) -> np.ndarray:
    """Powder patterns (P, C) float64 of P pixels of ``phase`` at once.

    ``crystallite_size_nm``, ``strain`` and ``eta`` are scalars or (P,) arrays, one value per
    pixel. The loop runs over reflections; each is computed for all pixels together.
    """
    two_theta = np.asarray(two_theta_deg, dtype=np.float64)
    per_pixel = (crystallite_size_nm, strain, eta)
    size, strain, eta = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in per_pixel)
    )
    _check(two_theta, wavelength, size, strain, eta, instrument_fwhm_deg)
    d, intensity = relative_intensities(phase, wavelength=wavelength)
    out = np.empty((size.size, two_theta.size))
    for start in range(0, size.size, _BLOCK):
        block = slice(start, start + _BLOCK)
        out[block] = _block_patterns(
            d, intensity, two_theta, wavelength, size[block], strain[block], eta[block],
            instrument_fwhm_deg,
        )
    return out


def _block_patterns(d, intensity, two_theta, wavelength, size, strain, eta, instrument_fwhm):
    """``patterns`` for a block of pixels small enough for its temporaries to stay in cache."""
    out = np.zeros((size.size, two_theta.size))
    work = np.empty_like(out)
    lorentz_weight = eta * 2 / np.pi
    gauss_weight = (1 - eta) * 2 * np.sqrt(np.log(2) / np.pi)
    for d_reflection, i_reflection in zip(d, intensity):
        sin_theta = wavelength / (2 * d_reflection * (1 + strain))
        diffracts = sin_theta < 1
        if not diffracts.any():
            continue
        theta = np.arcsin(np.where(diffracts, sin_theta, 0.5))
        center = np.degrees(2 * theta)
        fwhm = _fwhm(theta, wavelength, size, instrument_fwhm)
        scale = np.where(diffracts, i_reflection, 0.0) / fwhm
        # work = (2 (2θ - centre) / FWHM)², the squared distance in half widths
        np.subtract(two_theta, center[:, None], out=work)
        work *= (2 / fwhm)[:, None]
        np.square(work, out=work)
        # the Gaussian part only where it is not negligible: columns within 6 FWHM of a centre
        lo, hi = np.searchsorted(
            two_theta,
            [(center - _GAUSS_CUT * fwhm).min(), (center + _GAUSS_CUT * fwhm).max()],
        )
        if hi > lo:
            out[:, lo:hi] += (scale * gauss_weight)[:, None] * np.exp(-np.log(2) * work[:, lo:hi])
        work += 1
        np.divide((scale * lorentz_weight)[:, None], work, out=work)
        out += work
    return out


def _fwhm(theta, wavelength, size_nm, instrument_fwhm_deg):
    """FWHM in degrees of 2θ of a peak at Bragg angle θ (radians): Scherrer's width for
    crystallites of ``size_nm``, in quadrature with the instrument's."""
    beta = np.degrees(SCHERRER_K * wavelength / (10 * size_nm * np.cos(theta)))
    return np.hypot(beta, instrument_fwhm_deg)


def _lorentz_polarisation(theta):
    """(1 + cos²2θ) / (sin²θ · cos θ) at the Bragg angle θ in radians."""
    return (1 + np.cos(2 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))


def _check(two_theta, wavelength, size, strain, eta, instrument_fwhm_deg):
    problems = []
    if two_theta.ndim != 1 or np.any(np.diff(two_theta) <= 0):
        problems.append("two_theta_deg must be a 1-D increasing axis")
    if not wavelength > 0:
        problems.append(f"wavelength={wavelength!r} must be positive (Å)")
    if size.ndim != 1 or not np.all(size > 0):
        problems.append("crystallite_size_nm must be positive, one value per pixel")
    if not np.all(strain > -1):
        problems.append("strain must be > -1 (d → d·(1 + strain))")
    if not np.all((eta >= 0) & (eta <= 1)):
        problems.append("eta must lie in [0, 1]")
    if not instrument_fwhm_deg >= 0:
        problems.append(f"instrument_fwhm_deg={instrument_fwhm_deg!r} must be ≥ 0")
    if problems:
        raise ValueError("; ".join(problems))
