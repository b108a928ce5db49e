"""Random-shapes ground truth: rectangles, circles, triangles and ellipses.

Two generators draw this family of images. ``skimage`` is ``skimage.draw.random_shapes``
itself (what the 2020 project used; values quantised to 1/254). ``fast`` draws the same
family about three times faster, each shape filled straight into its bounding box:

- a shape's extent ``s`` is drawn uniformly in [min_shape_size, max_shape_size] pixels;
- rectangle: height and width drawn independently in that range; circle: diameter ``s``;
  ellipse: two diameters in that range, turned by an angle drawn in [0, π); triangle:
  equilateral with side ``s``, turned by an angle drawn in [0, 2π);
- its bounding box is placed uniformly where it fits in the image; its value is drawn
  uniformly in ``intensity`` (not quantised); later shapes cover earlier ones.
"""

from __future__ import annotations

import numpy as np
from skimage.draw import random_shapes

from tomobench.physics.geometry import circular_mask
from tomobench.physics.noise import counting
from tomobench.physics.resample import area_average

_LEVELS = 254  # random_shapes draws uint8 values below its background of 255


def sampler(source, split: str, oversample: int = 1):
    """Shapes do not depend on the split or the index: only on the sample's generator."""
    del split
    return lambda index, rng: draw(source, rng, oversample=oversample)


def draw(source, rng: np.random.Generator, *, oversample: int = 1) -> np.ndarray:
    """One image of the ``shapes`` source: float32, (size·oversample)², whose area average
    over blocks of oversample × oversample pixels is the ground truth, in [0, 1].

    Steps, each only if the source asks for it: shapes on the ``background`` (values drawn
    uniformly in ``intensity``; the ``skimage`` generator quantises them to 1/254), a
    circular mask, Poisson noise on the image, Gaussian smoothing, and division by the
    maximum, at the end (``normalize: true``) or after every step (``each-step``, as the
    2020 generator). Values are clipped to [0, 1] at the end, unless normalised.

    With ``oversample`` k > 1 the image is rendered k× finer: shape sizes, the mask and the
    smoothing scale by k, so edges fall between the pixels of the ground truth; image noise
    draws k² times fewer counts per fine pixel, so that the ground truth's pixel (the sum
    of k² Poisson draws) has the statistics of one pixel drawn at ``image_noise_counts``;
    maxima and the clip to [0, 1] are those of the ground truth (the area average), never of
    the fine image, so that the ground truth stays its area average.
    """
    k = oversample
    size = source.size * k
    if source.generator == "fast":
        image = _fast_shapes(source, rng, k)
    else:
        image = _skimage_shapes(source, rng, k)
    every_step = source.normalize == "each-step"
    if every_step:
        image = _normalised(image, k)
    if source.circular_mask:
        radius = source.size / 2 if source.mask_radius is None else source.mask_radius
        centre = (source.size - 1) / 2 if source.mask_center == "axis" else source.size // 2
        image = image * circular_mask(size, radius=radius * k, centre=(centre + 0.5) * k - 0.5)
        if every_step:
            image = _normalised(image, k)
    if source.image_noise_counts is not None:
        image = counting(image, counts=source.image_noise_counts / k**2, rng=rng)
        if every_step:
            image = _normalised(image, k)
    if source.smooth_sigma > 0:
        from scipy.ndimage import gaussian_filter  # slow to import; most recipes never smooth

        reach = int(4 * source.smooth_sigma + 0.5)  # scipy's kernel radius at one pixel a pixel
        image = gaussian_filter(image, source.smooth_sigma * k, radius=reach * k)
        if every_step:
            image = _normalised(image, k)
    image = np.maximum(image, 0.0)
    if source.normalize:
        image = _normalised(image, k)
    else:
        image = _clipped(image, k)
    return image.astype(np.float32)


def _clipped(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` (non-negative) scaled down in each block whose area average exceeds 1, to
    an average of 1: the ground truth clipped to [0, 1], still the area average of the
    rendered image (at factor 1, ``np.clip(image, 0, 1)``)."""
    if factor == 1:
        return np.minimum(image, 1.0)
    average = area_average(image, factor)
    if average.max() <= 1.0:
        return image
    scale = np.where(average > 1.0, 1.0 / np.maximum(average, 1.0), 1.0)
    return image * np.repeat(np.repeat(scale, factor, axis=0), factor, axis=1)


def _normalised(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` divided by the maximum of its area average (left as it is if that is 0)."""
    peak = area_average(image, factor).max()
    return image / peak if peak > 0 else image


def _skimage_shapes(source, rng: np.random.Generator, k: int = 1) -> np.ndarray:
    low, high = source.intensity
    drawn, _ = random_shapes(
        (source.size * k, source.size * k),
        max_shapes=source.max_shapes,
        min_shapes=source.min_shapes,
        min_size=source.min_shape_size * k,
        max_size=source.largest_shape * k,
        shape=source.shape,
        intensity_range=(round(low * _LEVELS), round(high * _LEVELS)),
        allow_overlap=source.allow_overlap,
        channel_axis=None,
        rng=rng,
    )
    return np.where(drawn == 255, source.background, drawn / _LEVELS)


_FAMILIES = ("rectangle", "circle", "triangle", "ellipse")


def _fast_shapes(source, rng: np.random.Generator, k: int = 1) -> np.ndarray:
    size = source.size * k
    low_size, high_size = source.min_shape_size * k, source.largest_shape * k
    image = np.full((size, size), source.background)
    count = int(rng.integers(source.min_shapes, source.max_shapes + 1))
    for _ in range(count):
        family = source.shape or _FAMILIES[int(rng.integers(4))]
        value = rng.uniform(*source.intensity)
        extent = int(rng.integers(low_size, high_size + 1))
        if family == "rectangle":
            height, width = extent, int(rng.integers(low_size, high_size + 1))
            top = int(rng.integers(0, size - height + 1))
            left = int(rng.integers(0, size - width + 1))
            image[top : top + height, left : left + width] = value
            continue
        if family == "circle":
            radii, angle = (extent / 2, extent / 2), 0.0
        elif family == "ellipse":
            radii = (extent / 2, int(rng.integers(low_size, high_size + 1)) / 2)
            angle = rng.uniform(0, np.pi)
        else:
            radii, angle = (extent / np.sqrt(3), 0.0), rng.uniform(0, 2 * np.pi)
        _fill(image, family, radii, angle, value, rng)
    return image


def _fill(image, family, radii, angle, value, rng) -> None:
    """Fill a circle, ellipse or triangle (``radii[0]``: its circumradius) placed at random
    where its bounding box fits."""
    size = image.shape[0]
    cos, sin = np.cos(angle), np.sin(angle)
    if family == "triangle":
        turns = angle + np.arange(3) * 2 * np.pi / 3
        corners = radii[0] * np.stack([np.cos(turns), np.sin(turns)], axis=1)  # (row, col)
        half = np.abs(corners).max(axis=0)
    else:
        a, b = radii
        half = np.array([np.hypot(a * sin, b * cos), np.hypot(a * cos, b * sin)])  # (row, col)
    box = np.minimum(np.ceil(2 * half).astype(int), size)
    top = int(rng.integers(0, size - box[0] + 1))
    left = int(rng.integers(0, size - box[1] + 1))
    rows = np.arange(box[0])[:, None] + 0.5 - box[0] / 2
    cols = np.arange(box[1])[None, :] + 0.5 - box[1] / 2
    if family == "triangle":  # inside: on the same side of all three edges
        sides = [
            (c1 - c0) * (rows - r0) - (r1 - r0) * (cols - c0)
            for (r0, c0), (r1, c1) in zip(corners, np.roll(corners, -1, axis=0))
        ]
        inside = (np.minimum.reduce(sides) >= 0) | (np.maximum.reduce(sides) <= 0)
    else:
        u = (rows * sin + cols * cos) / radii[0]
        v = (rows * cos - cols * sin) / radii[1]
        inside = u * u + v * v <= 1
    image[top : top + box[0], left : left + box[1]][inside] = value
