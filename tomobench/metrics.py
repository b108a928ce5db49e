"""Batched image-quality metrics with the benchmark's fixed conventions.

Conventions shared by every metric here:

* Images hold intensities in ``[0, 1]`` and ``data_range`` is fixed at ``1.0``
  by default. It is never estimated from an image, so scores are comparable
  across images, methods and data sets.
* Inputs are stacks ``(N, H, W)`` and the result is one score per image, shape
  ``(N,)``. A single image ``(H, W)`` gives a scalar.
* A hyperspectral stack ``(N, H, W, C)`` gives again one score per cube, ``(N,)``:
  PSNR from one mean squared error over the cube's ``H * W * C`` values, SSIM the mean
  of its channels' SSIMs weighted by each channel's energy in the reference
  (:func:`channel_weights`), so that the channels that hold signal decide it rather
  than the many near-empty ones. ``per_channel=True`` gives the channels' own scores,
  ``(N, C)``.
* ``reference`` and ``test`` must have the same shape. Integer and boolean
  inputs are converted to float64 as they are (not rescaled); complex input
  is refused. All arithmetic is done in float64.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["METRICS", "Metric", "channel_weights", "psnr", "ssim"]

# Wang et al. 2004 SSIM, as skimage's structural_similarity with
# gaussian_weights=True, sigma=1.5, use_sample_covariance=False.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # 3.5 sigma -> radius 5 -> the 11-tap window of the paper
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # radius as scipy.ndimage computes it
SSIM_WIN = 2 * SSIM_RADIUS + 1
# Both metrics work on blocks of whole images of about this many pixels (512 KiB per
# float64 temporary), so the temporaries stay in cache. Whole-stack arrays were
# measured slower than skimage's per-image loop: memory-bound and page-faulting.
_BLOCK_PIXELS = 2**16


@dataclass(frozen=True)
class Metric:
    """A scoring function and how to read its values.

    Attributes
    ----------
    name : str
        Short name, the key in :data:`METRICS`.
    function : Callable
        ``function(reference, test, *, data_range=1.0, per_channel=False)`` returning one
        score per image (per image and channel with ``per_channel=True``).
    higher_is_better : bool
        True when a larger score means a better reconstruction.
    unit : str
        Unit of the score, ``""`` when it has none.
    """

    name: str
    function: Callable[..., np.ndarray | float]
    higher_is_better: bool
    unit: str


def _prepare(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Check and convert a pair of inputs to float64 stacks ``(N, H, W)`` or ``(N, H, W, C)``.

    Returns the two stacks and whether the input was a single ``(H, W)`` image.
    """
    reference = np.asarray(reference)
    test = np.asarray(test)
    if reference.shape != test.shape:
        msg = (
            f"reference and test must have the same shape, "
            f"got reference {reference.shape} and test {test.shape}"
        )
        raise ValueError(msg)
    for label, array in (("reference", reference), ("test", test)):
        kind = array.dtype.kind
        if kind not in "biuf":  # bool, signed, unsigned, floating
            msg = f"{label} must be real-valued (integer or floating), got dtype {array.dtype}"
            raise ValueError(msg)
    if reference.ndim not in (2, 3, 4):
        msg = (
            f"expected an image (H, W), a stack (N, H, W) or a hyperspectral stack "
            f"(N, H, W, C), got shape {reference.shape}"
        )
        raise ValueError(msg)
    single = reference.ndim == 2
    if single:
        reference = reference[np.newaxis]
        test = test[np.newaxis]
    return reference.astype(np.float64, copy=False), test.astype(np.float64, copy=False), single


def _check_data_range(data_range: float) -> float:
    data_range = float(data_range)
    if not (np.isfinite(data_range) and data_range > 0):
        msg = f"data_range must be a positive finite number, got {data_range}"
        raise ValueError(msg)
    return data_range


def _blockwise(
    score: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Apply ``score`` to blocks of whole images; return its ``(N,)`` or ``(N, C)`` results."""
    step = max(1, _BLOCK_PIXELS // int(np.prod(x.shape[1:])))
    scores = np.empty(x.shape[:1] + x.shape[3:])

    def one_block(start: int) -> None:
        stop = start + step
        scores[start:stop] = score(x[start:stop], y[start:stop])

    starts = range(0, x.shape[0], step)
    if len(starts) == 1:
        one_block(0)
    else:  # numpy and scipy.ndimage release the GIL: blocks run on every core
        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            list(pool.map(one_block, starts))
    return scores


def _finish(scores: np.ndarray, single: bool) -> np.ndarray | float:
    """Unwrap the score of a single image."""
    return np.float64(scores[0]) if single else scores


def _check_per_channel(per_channel: bool, reference: np.ndarray) -> None:
    if per_channel and reference.ndim != 4:
        msg = f"per_channel needs a hyperspectral stack (N, H, W, C), got shape {reference.shape}"
        raise ValueError(msg)


def channel_weights(reference: np.ndarray) -> np.ndarray:
    """The weight of each channel of each cube in its SSIM: its energy in the reference.

    For a hyperspectral stack ``(N, H, W, C)``, ``E[n, c] = sum over (h, w) of
    reference[n, h, w, c]**2`` divided by ``sum over c of E[n, c]`` (float64, ``(N, C)``,
    each row summing to 1). A cube whose reference is all zero has no energy to weigh
    by: its channels weigh ``1 / C`` each.
    """
    reference = np.asarray(reference)
    if reference.ndim != 4:
        msg = f"channel_weights needs a stack (N, H, W, C), got shape {reference.shape}"
        raise ValueError(msg)
    values = reference.astype(np.float64, copy=False)
    energy = np.einsum("nhwc,nhwc->nc", values, values)
    total = energy.sum(axis=1, keepdims=True)
    equal = np.full_like(energy, 1.0 / max(energy.shape[1], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, energy / np.where(total > 0, total, 1.0), equal)


def psnr(
    reference: np.ndarray, test: np.ndarray, *, data_range: float = 1.0, per_channel: bool = False
) -> np.ndarray | float:
    """Peak signal-to-noise ratio in dB, one value per image.

    ``PSNR = 10 * log10(data_range**2 / MSE)`` with the mean squared error taken
    over the pixels of each image in float64 (vectorised over blocks of images,
    as in :func:`ssim`); this is skimage's
    ``peak_signal_noise_ratio(reference, test, data_range=1)`` applied to each
    image of the stack. Identical images (MSE 0) score ``inf``.

    Parameters
    ----------
    reference, test : ndarray
        Same shape: ``(H, W)``, ``(N, H, W)`` or ``(N, H, W, C)``, values in ``[0, 1]``.
        For ``(N, H, W, C)`` the mean squared error is taken over the whole cube
        (its ``H * W * C`` values): one PSNR per cube, which a channel that is
        almost empty cannot inflate as a mean of per-channel dB values would.
    data_range : float, keyword-only
        Peak-to-peak range of the intensities, fixed at 1.0 by the benchmark;
        never estimated from the images.
    per_channel : bool, keyword-only
        For ``(N, H, W, C)`` only: the PSNR of each channel on its own, ``(N, C)``.

    Returns
    -------
    ndarray or float
        Shape ``(N,)`` for a stack (``(N, C)`` with ``per_channel``), a scalar for a
        single ``(H, W)`` image.

    Raises
    ------
    ValueError
        If the shapes differ, the dimensionality is not 2, 3 or 4, the input is
        complex or not numeric, ``data_range`` is not positive, or ``per_channel``
        is asked of a stack without channels.
    """
    data_range = _check_data_range(data_range)
    reference, test, single = _prepare(reference, test)
    _check_per_channel(per_channel, reference)
    mse = _blockwise(_mse_block, reference, test)  # (N,) or (N, C)
    if mse.ndim == 2 and not per_channel:  # channels hold H * W values each: the cube's MSE
        mse = mse.mean(axis=1)
    with np.errstate(divide="ignore"):
        scores = 10.0 * np.log10(data_range**2 / mse)
    return _finish(scores, single)


def _mse_block(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean squared error of each image of a float64 block, per channel if any."""
    difference = x - y
    return np.mean(difference * difference, axis=(1, 2))


def ssim(
    reference: np.ndarray, test: np.ndarray, *, data_range: float = 1.0, per_channel: bool = False
) -> np.ndarray | float:
    """Mean structural similarity (Wang et al. 2004), one value per image.

    Computes exactly what skimage's ``structural_similarity(reference, test,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``
    gives for each image, but vectorised: images are processed in blocks of
    about 2**16 pixels (several images, or one large image), each block
    filtered in a single call:

    * local means, variances and covariance are weighted by a Gaussian window
      of sigma 1.5 truncated at 3.5 sigma (11 taps), applied with
      ``scipy.ndimage.gaussian_filter`` in ``'reflect'`` mode along the two
      image axes only;
    * population (not sample) covariance, ``K1 = 0.01``, ``K2 = 0.03``,
      ``C1 = (K1 * data_range)**2``, ``C2 = (K2 * data_range)**2``;
    * the SSIM map is averaged after cropping a border of 5 pixels (the window
      radius) on each side of the image;
    * all arithmetic is in float64, whatever the input dtype. ``x*x + y*y`` is
      filtered as one array (SSIM only uses ``vx + vy``), which changes the
      value from skimage's by rounding only (about 1e-15).

    Parameters
    ----------
    reference, test : ndarray
        Same shape: ``(H, W)``, ``(N, H, W)`` or ``(N, H, W, C)`` with
        ``H, W >= 11``, values in ``[0, 1]``. For ``(N, H, W, C)`` each channel
        is scored on its own and the ``C`` values of a cube are averaged with the
        weights of :func:`channel_weights` (each channel's energy in the reference).
    data_range : float, keyword-only
        Peak-to-peak range of the intensities, fixed at 1.0 by the benchmark;
        never estimated from the images.
    per_channel : bool, keyword-only
        For ``(N, H, W, C)`` only: the SSIM of each channel on its own, ``(N, C)``.

    Returns
    -------
    ndarray or float
        Shape ``(N,)`` for a stack (``(N, C)`` with ``per_channel``), a scalar for a
        single ``(H, W)`` image.

    Raises
    ------
    ValueError
        If the shapes differ, the dimensionality is not 2, 3 or 4, an image is
        smaller than 11 x 11, the input is complex or not numeric, ``data_range``
        is not positive, or ``per_channel`` is asked of a stack without channels.
    """
    data_range = _check_data_range(data_range)
    x, y, single = _prepare(reference, test)
    _check_per_channel(per_channel, x)
    height, width = x.shape[1:3]
    if height < SSIM_WIN or width < SSIM_WIN:
        msg = f"ssim needs images of at least {SSIM_WIN}x{SSIM_WIN} pixels, got {height}x{width}"
        raise ValueError(msg)

    scores = _blockwise(lambda bx, by: _ssim_block(bx, by, data_range), x, y)
    if scores.ndim == 2 and not per_channel:
        scores = np.einsum("nc,nc->n", channel_weights(x), scores)
    return _finish(scores, single)


def _ssim_block(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """Mean SSIM of each image of a float64 block ``(n, H, W)`` or ``(n, H, W, C)``."""
    # Smooth along H and W only: never across images or channels.
    sigma = (0.0, SSIM_SIGMA, SSIM_SIGMA) + (0.0,) * (x.ndim - 3)

    def smooth(image: np.ndarray) -> np.ndarray:
        return gaussian_filter(image, sigma, mode="reflect", truncate=SSIM_TRUNCATE)

    ux = smooth(x)
    uy = smooth(y)
    # SSIM only needs vx + vy, so x*x + y*y is filtered once instead of x*x and y*y
    # apart: four filters instead of skimage's five, the same value up to rounding.
    mean_sq = ux * ux + uy * uy
    mean_xy = ux * uy
    var_sum = smooth(x * x + y * y) - mean_sq  # vx + vy, population variances
    cov = smooth(x * y) - mean_xy  # vxy, population covariance

    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mean_xy + c1) * (2 * cov + c2)) / ((mean_sq + c1) * (var_sum + c2))

    r = SSIM_RADIUS
    return ssim_map[:, r:-r, r:-r].mean(axis=(1, 2))  # (n,) or (n, C)


METRICS: dict[str, Metric] = {
    "psnr": Metric("psnr", psnr, True, "dB"),
    "ssim": Metric("ssim", ssim, True, ""),
}
