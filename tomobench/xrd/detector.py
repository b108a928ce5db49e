"""2-D diffraction frames on a flat area detector, and their azimuthal integration back to a
1-D pattern — by the plain mean or by a trimmed mean that ignores "hot spots" (bright spots
from single large crystallites, which the plain mean turns into streaks in the sinograms).

The detector is flat, perpendicular to the beam, at ``distance_mm`` from the sample; the beam
meets it at ``center`` (row, col) in pixels. A pixel at r mm from the centre sees
2θ = atan(r / distance). Frames carry no polarisation, solid-angle or absorption factors, so
integration returns the 1-D pattern itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("mean", "trimmed")


@dataclass(frozen=True)
class Detector:
    """A flat detector of ``shape`` (rows, cols) pixels of ``pixel_size_mm``, at
    ``distance_mm`` from the sample; ``center`` (row, col) is where the direct beam meets it,
    in pixels (default: the middle of the detector)."""

    shape: tuple[int, int]
    pixel_size_mm: float
    distance_mm: float
    center: tuple[float, float] | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if self.center is None:
            object.__setattr__(self, "center", tuple((n - 1) / 2 for n in self.shape))
        object.__setattr__(self, "center", tuple(float(v) for v in self.center))
        if len(self.shape) != 2 or min(self.shape) < 1:
            msg = f"shape={self.shape!r}; need (rows, cols), both ≥ 1"
            raise ValueError(msg)
        if not (self.pixel_size_mm > 0 and self.distance_mm > 0):
            msg = (
                f"pixel_size_mm={self.pixel_size_mm!r}, distance_mm={self.distance_mm!r}; "
                "both must be positive"
            )
            raise ValueError(msg)

    def two_theta_deg(self) -> np.ndarray:
        """Scattering angle 2θ of each pixel's centre, (rows, cols) float64 in degrees."""
        rows, cols = np.ogrid[: self.shape[0], : self.shape[1]]
        radius = self.pixel_size_mm * np.hypot(rows - self.center[0], cols - self.center[1])
        return np.degrees(np.arctan2(radius, self.distance_mm))


def frame(
    pattern_1d,
    two_theta_deg,
    detector: Detector,
    *,
    hot_spots: int = 0,
    hot_spot_height: float = 20.0,
    hot_spot_sigma_px: float = 1.0,
    counts: float | None = None,
    rng: np.random.Generator,
) -> np.ndarray:
    """The detector image (rows, cols) float64 of Debye–Scherrer rings of ``pattern_1d``.

    Each pixel takes the pattern's value at its 2θ (linear interpolation; 0 outside the
    axis). ``hot_spots`` Gaussian spots (σ = ``hot_spot_sigma_px`` pixels, peak
    ``hot_spot_height`` × the pattern's maximum) are added on rings: each on a local maximum
    of the pattern of at least a tenth of its maximum that the detector sees, at a random
    azimuth, and cropped to the frame where it reaches past an edge. With ``counts``, Poisson
    noise: a pixel of value v becomes Poisson(v · counts) / counts.
    """
    pattern_1d = np.asarray(pattern_1d, dtype=np.float64)
    two_theta = np.asarray(two_theta_deg, dtype=np.float64)
    if pattern_1d.shape != two_theta.shape or two_theta.ndim != 1:
        msg = (
            f"pattern_1d has shape {pattern_1d.shape} and two_theta_deg {two_theta.shape}; "
            "both must be the same 1-D axis"
        )
        raise ValueError(msg)
    pixel_two_theta = detector.two_theta_deg()
    image = np.interp(pixel_two_theta, two_theta, pattern_1d, left=0.0, right=0.0)
    if hot_spots > 0:
        _add_hot_spots(
            image, pattern_1d, _bin_index(pixel_two_theta, two_theta), hot_spots,
            hot_spot_height * pattern_1d.max(), hot_spot_sigma_px, rng,
        )
    if counts is not None:
        image = rng.poisson(np.clip(image, 0.0, None) * counts) / counts
    return image


def azimuthal_integration(
    frame,
    two_theta_deg,
    detector: Detector,
    *,
    method: str = "mean",
    lower: float = 10.0,
    upper: float = 90.0,
    mask=None,
    return_counts: bool = False,
):
    """The 1-D pattern (C,) float64 of a detector ``frame`` on the 2θ axis ``two_theta_deg``.

    Pixels are binned by the 2θ of their centre into bins around each axis value (edges
    halfway between neighbours). Per bin, ``method='mean'`` averages all pixels;
    ``'trimmed'`` sorts them and averages only the ranks from ⌊n·lower/100⌋ to
    ⌈n·upper/100⌉ (exclusive), at least one. ``mask`` (rows, cols) bool: True marks a pixel
    to ignore (pyFAI's convention). A bin without pixels is NaN. With ``return_counts``, also
    the number of pixels per bin (C,) int64.
    """
    frame = np.asarray(frame, dtype=np.float64)
    two_theta = np.asarray(two_theta_deg, dtype=np.float64)
    if frame.shape != detector.shape:
        msg = f"frame has shape {frame.shape}; the detector has {detector.shape}"
        raise ValueError(msg)
    if method not in METHODS:
        msg = f"method={method!r}; allowed: {', '.join(METHODS)}"
        raise ValueError(msg)
    if not 0 <= lower < upper <= 100:
        msg = f"lower={lower!r}, upper={upper!r}; need 0 ≤ lower < upper ≤ 100 (percent)"
        raise ValueError(msg)
    channels = two_theta.size
    index = _bin_index(detector.two_theta_deg(), two_theta).ravel()
    values = frame.ravel()
    keep = (index >= 0) & np.isfinite(values)
    if mask is not None:
        keep &= ~np.asarray(mask, dtype=bool).ravel()
    index, values = index[keep], values[keep]
    counts = np.bincount(index, minlength=channels)
    if method == "trimmed":
        order = np.lexsort((values, index))  # by bin, then by value within a bin
        index, values = index[order], values[order]
        rank = np.arange(index.size) - (np.cumsum(counts) - counts)[index]
        first = np.floor(counts * lower / 100)
        last = np.maximum(np.ceil(counts * upper / 100), first + 1)
        inside = (rank >= first[index]) & (rank < last[index])
        index, values = index[inside], values[inside]
    used = np.bincount(index, minlength=channels)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.bincount(index, weights=values, minlength=channels) / used
    result[used == 0] = np.nan
    return (result, counts) if return_counts else result


def _bin_index(pixel_two_theta, two_theta):
    """Bin of each pixel on the axis (edges halfway between values, the end bins as wide as
    their inner half), -1 outside."""
    edges = np.concatenate(
        [
            [two_theta[0] - (two_theta[1] - two_theta[0]) / 2],
            (two_theta[1:] + two_theta[:-1]) / 2,
            [two_theta[-1] + (two_theta[-1] - two_theta[-2]) / 2],
        ]
    )
    index = np.searchsorted(edges, pixel_two_theta, side="right") - 1
    return np.where(index < two_theta.size, index, -1)


def _add_hot_spots(image, pattern_1d, pixel_bin, n_spots, height, sigma, rng):
    """Add ``n_spots`` Gaussian spots in place, each centred on a pixel of a strong ring and
    reaching ⌈4σ⌉ pixels from it; a spot near an edge is cropped to the frame."""
    interior = (pattern_1d[1:-1] >= pattern_1d[:-2]) & (pattern_1d[1:-1] > pattern_1d[2:])
    peaks = np.flatnonzero(interior & (pattern_1d[1:-1] >= 0.1 * pattern_1d.max())) + 1
    peaks = peaks[np.isin(peaks, pixel_bin)]
    if peaks.size == 0:
        msg = "no ring of the pattern falls on the detector to put hot spots on"
        raise ValueError(msg)
    reach = int(np.ceil(4 * sigma))
    n_rows, n_cols = image.shape
    for _ in range(n_spots):
        on_ring = np.flatnonzero(pixel_bin.ravel() == peaks[rng.integers(peaks.size)])
        row, col = np.unravel_index(on_ring[rng.integers(on_ring.size)], image.shape)
        # the spot's square of ±reach pixels, cropped to the frame at every edge
        rows = slice(max(row - reach, 0), min(row + reach + 1, n_rows))
        cols = slice(max(col - reach, 0), min(col + reach + 1, n_cols))
        r, c = np.ogrid[rows, cols]
        image[rows, cols] += height * np.exp(-((r - row) ** 2 + (c - col) ** 2) / (2 * sigma**2))
