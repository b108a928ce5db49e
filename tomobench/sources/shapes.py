"""Random-shapes ground truth (``skimage.draw.random_shapes``)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.draw import random_shapes

from tomobench.physics.noise import counting

_LEVELS = 254  # random_shapes draws uint8 values below its background of 255


def sampler(source, split: str):
    """Shapes do not depend on the split or the index: only on the sample's generator."""
    del split
    return lambda index, rng: draw(source, rng)


def draw(source, rng: np.random.Generator) -> np.ndarray:
    """One image of the ``shapes`` source: float32, size × size, values in [0, 1].

    Steps, each only if the source asks for it: shapes on a zero background (values drawn
    uniformly in ``intensity``, quantised to 1/254 as skimage draws uint8), a circular
    field-of-view mask, Poisson noise on the image, Gaussian smoothing, and division by
    the maximum. Values are clipped to [0, 1] at the end.
    """
    low, high = source.intensity
    drawn, labels = random_shapes(
        (source.size, source.size),
        max_shapes=source.max_shapes,
        min_shapes=source.min_shapes,
        min_size=source.min_shape_size,
        max_size=source.largest_shape,
        shape=source.shape,
        intensity_range=(round(low * _LEVELS), round(high * _LEVELS)),
        allow_overlap=source.allow_overlap,
        channel_axis=None,
        rng=rng,
    )
    del labels
    image = np.where(drawn == 255, 0.0, drawn / _LEVELS)
    if source.circular_mask:
        image = image * circular_mask(source.size)
    if source.image_noise_counts is not None:
        image = counting(image, counts=source.image_noise_counts, rng=rng)
    if source.smooth_sigma > 0:
        image = gaussian_filter(image, source.smooth_sigma)
    if source.normalize:
        peak = image.max()
        if peak > 0:
            image = image / peak
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def circular_mask(size: int) -> np.ndarray:
    """True inside the circle inscribed in a size × size image (centre at (size-1)/2)."""
    centre = (size - 1) / 2
    rows, cols = np.ogrid[:size, :size]
    return (rows - centre) ** 2 + (cols - centre) ** 2 <= (size / 2) ** 2
