"""Hyperspectral XRD-CT phantoms: where each phase is (phase maps), and the diffraction cube
(H, W, C) that those phases make, with the per-pixel crystallite size and strain drawn within
given ranges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import ndtr
from skimage.draw import random_shapes

from tomobench.physics.geometry import circular_mask
from tomobench.xrd.patterns import patterns
from tomobench.xrd.phases import Phase

MAP_KINDS = ("shapes", "particles", "masks")
_LEVELS = 254  # random_shapes draws uint8 values below its background of 255


def phase_maps(
    kind: str,
    size: int,
    n_phases: int,
    rng: np.random.Generator,
    *,
    masks=None,
    min_shapes: int = 1,
    max_shapes: int = 4,
    min_shape_size: int | None = None,
    max_shape_size: int | None = None,
    fraction_range: tuple[float, float] = (0.3, 1.0),
    particle_count: tuple[int, int] = (2, 5),
    particle_radius: tuple[float, float] = (0.08, 0.22),
) -> np.ndarray:
    """Volume fractions of ``n_phases`` phases, (n_phases, size, size) float32 in [0, 1],
    summing to at most 1 in every pixel, zero outside the circle inscribed in the image.

    - ``shapes``: per phase, ``min_shapes``–``max_shapes`` random shapes
      (``skimage.draw.random_shapes``, sizes ``min_shape_size``–``max_shape_size`` pixels,
      default size/8–size/3), each filled with one fraction drawn in ``fraction_range``;
      where phases overlap to more than 1 the fractions are divided by their sum.
    - ``particles``: ``particle_count`` = (fewest, most) non-overlapping catalyst bodies, elliptic,
      of radius ``particle_radius`` × size. Phase 0 is the support; each body carries one of
      phases 1… as a core, an egg-shell, a core of one and shell of another (three phases or
      more), or spread uniformly, at a loading drawn in ``fraction_range`` (the support fills
      the rest of the body). Edges are anti-aliased over one pixel.
    - ``masks``: ``masks`` as given, (n_phases, size, size), bool or values in [0, 1].
    """
    if kind not in MAP_KINDS:
        msg = f"kind={kind!r}; allowed: {', '.join(MAP_KINDS)}"
        raise ValueError(msg)
    if size < 4 or n_phases < 1:
        msg = f"size={size!r}, n_phases={n_phases!r}: need size ≥ 4 and n_phases ≥ 1"
        raise ValueError(msg)
    low, high = fraction_range
    if not 0 < low <= high <= 1:
        msg = f"fraction_range={fraction_range!r}; need 0 < low ≤ high ≤ 1"
        raise ValueError(msg)
    if kind == "masks":
        return _given_masks(masks, size, n_phases)
    if kind == "shapes":
        maps = _shapes(
            size, n_phases, rng, min_shapes, max_shapes,
            min_shape_size or max(2, size // 8), max_shape_size or max(3, size // 3),
            fraction_range,
        )
    else:
        maps = _particles(size, n_phases, rng, particle_count, particle_radius, fraction_range)
    total = maps.sum(axis=0)
    maps /= np.maximum(total, 1.0)
    maps *= circular_mask(size)
    return np.clip(maps, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class CubeTruth:
    """What made a cube, per phase and pixel: the ground truth to store beside it.

    ``fractions``, ``crystallite_size_nm`` and ``strain`` are (n_phases, H, W) float32; size
    and strain are drawn in every pixel, and matter where the fraction is non-zero.
    ``background`` is (H, W) float32, the height of the amorphous hump in each pixel (in the
    cube's units). ``scale`` is what the cube was divided by (its maximum before scaling).
    """

    phase_names: tuple[str, ...]
    fractions: np.ndarray
    crystallite_size_nm: np.ndarray
    strain: np.ndarray
    background: np.ndarray
    scale: float

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name, for storage."""
        return {
            "fractions": self.fractions,
            "crystallite_size_nm": self.crystallite_size_nm,
            "strain": self.strain,
            "background": self.background,
        }


def cube(
    maps: np.ndarray,
    phases: Sequence[Phase],
    two_theta_deg,
    *,
    wavelength: float,
    size_range_nm=(5.0, 50.0),
    strain_range=(0.0, 0.0),
    background: float = 0.0,
    background_center_deg: float | None = None,
    background_fwhm_deg: float | None = None,
    correlation_px: float | None = None,
    eta: float = 0.5,
    instrument_fwhm_deg: float = 0.0,
    rng: np.random.Generator,
) -> tuple[np.ndarray, CubeTruth]:
    """The diffraction cube (H, W, C) float32 in [0, 1] of phase ``maps`` (n_phases, H, W),
    and the ground truth that made it.

    Per phase, the crystallite size and strain of each pixel are drawn uniformly in
    ``size_range_nm`` and ``strain_range`` — one (low, high) pair for all phases or one per
    phase — as smooth random fields: white noise smoothed by a Gaussian of ``correlation_px``
    pixels (default H/8; 0 draws every pixel independently), standardised and mapped through
    the normal CDF, so each value is uniform over the range and neighbours are alike.

    cube = Σ_phase fraction × pattern(size, strain) + background × hump × occupancy, where the
    hump is a unit-height Gaussian in 2θ (default: centred on the axis, FWHM a third of its
    span), ``background`` is its height as a fraction of the largest crystalline value, and
    the occupancy is the summed fraction (clipped to 1): no amorphous signal outside the
    sample, as after air-scatter subtraction. The cube is then divided by its maximum, so its
    largest value is exactly 1 (``CubeTruth.scale`` holds the divisor; an empty phantom gives
    an all-zero cube and a scale of 0).
    """
    maps = np.asarray(maps, dtype=np.float64)
    two_theta = np.asarray(two_theta_deg, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[0] != len(phases):
        msg = f"maps has shape {maps.shape}; expected (n_phases={len(phases)}, H, W)"
        raise ValueError(msg)
    if maps.min() < 0 or maps.max() > 1:
        msg = "maps must hold fractions in [0, 1]"
        raise ValueError(msg)
    n_phases, height, width = maps.shape
    size_ranges = _ranges(size_range_nm, n_phases, "size_range_nm")
    strain_ranges = _ranges(strain_range, n_phases, "strain_range")
    if size_ranges.min() <= 0 or strain_ranges.min() <= -1:
        msg = "size_range_nm must be positive and strain_range above -1"
        raise ValueError(msg)
    if background < 0:
        msg = f"background={background!r} must be ≥ 0"
        raise ValueError(msg)
    if correlation_px is None:
        correlation_px = height / 8
    sizes = np.empty(maps.shape)
    strains = np.empty(maps.shape)
    for k in range(n_phases):
        sizes[k] = _uniform_field((height, width), size_ranges[k], correlation_px, rng)
        strains[k] = _uniform_field((height, width), strain_ranges[k], correlation_px, rng)

    flat = np.zeros((height * width, two_theta.size))
    for k, phase in enumerate(phases):
        pixels = np.flatnonzero(maps[k] > 0)
        if pixels.size == 0:
            continue
        flat[pixels] += maps[k].ravel()[pixels, None] * patterns(
            phase,
            two_theta,
            wavelength=wavelength,
            crystallite_size_nm=sizes[k].ravel()[pixels],
            strain=strains[k].ravel()[pixels],
            eta=eta,
            instrument_fwhm_deg=instrument_fwhm_deg,
        )
    crystalline_peak = flat.max()
    occupancy = np.minimum(maps.sum(axis=0), 1.0)
    hump_height = background * crystalline_peak * occupancy
    if background > 0:
        center = (
            (two_theta[0] + two_theta[-1]) / 2
            if background_center_deg is None
            else background_center_deg
        )
        fwhm = (
            (two_theta[-1] - two_theta[0]) / 3
            if background_fwhm_deg is None
            else background_fwhm_deg
        )
        hump = np.exp(-4 * np.log(2) * ((two_theta - center) / fwhm) ** 2)
        flat += hump_height.reshape(-1, 1) * hump
    scale = float(flat.max())
    if scale > 0:
        flat /= scale
    truth = CubeTruth(
        phase_names=tuple(phase.name for phase in phases),
        fractions=maps.astype(np.float32),
        crystallite_size_nm=sizes.astype(np.float32),
        strain=strains.astype(np.float32),
        background=(hump_height / scale if scale > 0 else hump_height).astype(np.float32),
        scale=scale,
    )
    return flat.reshape(height, width, two_theta.size).astype(np.float32), truth


def _ranges(value, n_phases, name):
    ranges = np.asarray(value, dtype=np.float64)
    if ranges.shape == (2,):
        ranges = np.broadcast_to(ranges, (n_phases, 2))
    if ranges.shape != (n_phases, 2) or np.any(ranges[:, 0] > ranges[:, 1]):
        msg = f"{name}={value!r}; need (low, high) or one (low, high) per phase, low ≤ high"
        raise ValueError(msg)
    return ranges


def _uniform_field(shape, value_range, correlation_px, rng):
    """Values uniform over ``value_range``, spatially correlated over ``correlation_px``."""
    low, high = value_range
    if correlation_px > 0:
        field = gaussian_filter(rng.standard_normal(shape), correlation_px, mode="wrap")
        spread = field.std()
        uniform = ndtr((field - field.mean()) / spread) if spread > 0 else np.full(shape, 0.5)
    else:
        uniform = rng.random(shape)
    return low + (high - low) * uniform


def _given_masks(masks, size, n_phases):
    if masks is None:
        msg = "kind='masks' needs masks=(n_phases, size, size) array"
        raise ValueError(msg)
    maps = np.asarray(masks, dtype=np.float64)
    if maps.shape != (n_phases, size, size):
        msg = f"masks has shape {maps.shape}; expected {(n_phases, size, size)}"
        raise ValueError(msg)
    if not np.isfinite(maps).all() or maps.min() < 0 or maps.max() > 1:
        msg = "masks must hold values in [0, 1] (NaN and infinities are not)"
        raise ValueError(msg)
    return maps.astype(np.float32)


def _shapes(size, n_phases, rng, min_shapes, max_shapes, min_size, max_size, fraction_range):
    low, high = fraction_range
    maps = np.zeros((n_phases, size, size))
    for k in range(n_phases):
        drawn, _ = random_shapes(
            (size, size),
            max_shapes=max_shapes,
            min_shapes=min_shapes,
            min_size=min_size,
            max_size=max_size,
            intensity_range=(round(low * _LEVELS), round(high * _LEVELS)),
            channel_axis=None,
            rng=rng,
        )
        maps[k] = np.where(drawn == 255, 0.0, drawn / _LEVELS)
    return maps


def _particles(size, n_phases, rng, count_range, radius_range, fraction_range):
    maps = np.zeros((n_phases, size, size))
    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    middle = (size - 1) / 2
    placed = []  # (row, col, radius)
    for _ in range(rng.integers(count_range[0], count_range[1] + 1)):
        for _attempt in range(100):
            radius = size * rng.uniform(*radius_range)
            reach = size / 2 - radius - 1  # centre distance from the middle that stays inside
            if reach <= 0:
                continue
            distance, angle = reach * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            row, col = middle + distance * np.sin(angle), middle + distance * np.cos(angle)
            if all(np.hypot(row - r, col - c) > radius + q + 1 for r, c, q in placed):
                break
        else:
            continue  # no room left for another body
        placed.append((row, col, radius))
        # elliptic radius ρ (1 on the outline) of a body with semi-axes radius and radius·aspect
        aspect, tilt = rng.uniform(0.7, 1.0), rng.uniform(0, np.pi)
        along = (rows - row) * np.cos(tilt) + (cols - col) * np.sin(tilt)
        across = -(rows - row) * np.sin(tilt) + (cols - col) * np.cos(tilt)
        rho = np.hypot(along / radius, across / (radius * aspect))
        width = radius * np.sqrt(aspect)  # pixels per unit of ρ, for one-pixel soft edges
        body = np.clip((1 - rho) * width + 0.5, 0, 1)
        inner = rng.uniform(0.35, 0.75)
        core = np.clip((inner - rho) * width + 0.5, 0, 1)
        loading = rng.uniform(*fraction_range)
        layers = []  # (phase, fraction map)
        if n_phases > 1:
            styles = ["core", "shell", "uniform"] + (["core-shell"] if n_phases > 2 else [])
            style = styles[rng.integers(len(styles))]
            active = 1 + rng.permutation(n_phases - 1)
            if style in ("core", "core-shell"):
                layers.append((active[0], core * loading))
            if style == "shell":
                layers.append((active[0], (body - core) * loading))
            if style == "core-shell":
                layers.append((active[1], (body - core) * loading))
            if style == "uniform":
                layers.append((active[0], body * loading))
        taken = np.zeros((size, size))
        for phase, fraction in layers:
            maps[phase] += fraction
            taken += fraction
        maps[0] += np.clip(body - taken, 0, 1)
    return maps
