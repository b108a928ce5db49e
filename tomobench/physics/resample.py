"""Resampling of ground truth: super-resolution pairs, and the area average of an image
rendered finer than its pixels."""

from __future__ import annotations

import numpy as np

from tomobench.errors import PhysicsError


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear downsampling of (H, W), (N, H, W) or (N, H, W, C) images by an integer factor.

    Pixel centres are mapped as in ``skimage.transform.resize(order=1)`` (and TensorFlow's
    ``resize(method="bilinear")``): output pixel *i* samples the input at ``factor · i +
    (factor − 1) / 2``. For an even factor that point lies halfway between the two middle
    pixels of each block, so the result is the mean of the block's central 2 × 2 pixels (all
    of it for a factor of 2); for an odd factor it is the block's central pixel. No
    anti-aliasing filter is applied. Computed by slicing, in float64, returned as float32.
    """
    images = np.asarray(images)
    spatial = (0, 1) if images.ndim == 2 else (1, 2)
    if images.ndim not in (2, 3, 4):
        msg = f"images must be (H, W), (N, H, W) or (N, H, W, C), got shape {images.shape}"
        raise PhysicsError(msg)
    if factor < 1 or any(images.shape[axis] % factor for axis in spatial):
        msg = f"downsample factor {factor} must divide the image shape {images.shape}"
        raise PhysicsError(msg)
    middle = (factor - 1) // 2
    offsets = (middle,) if factor % 2 else (middle, middle + 1)
    total = None
    for row in offsets:
        for col in offsets:
            index = [slice(None)] * images.ndim
            index[spatial[0]] = slice(row, None, factor)
            index[spatial[1]] = slice(col, None, factor)
            part = images[tuple(index)].astype(np.float64)
            total = part if total is None else total + part
    return (total / len(offsets) ** 2).astype(np.float32)


def area_average(image: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor`` × ``factor`` blocks of the last two axes of ``image``, float64:
    the ground truth of an image rendered ``factor`` times finer (``geometry.oversample``)."""
    if factor == 1:
        return np.asarray(image, dtype=np.float64)
    *lead, rows, cols = image.shape
    blocks = np.asarray(image, dtype=np.float64).reshape(
        *lead, rows // factor, factor, cols // factor, factor
    )
    return blocks.mean(axis=(-3, -1))
