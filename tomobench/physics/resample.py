"""Resampling of ground truth for super-resolution pairs."""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from tomobench.errors import PhysicsError


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear downsampling of (H, W), (N, H, W) or (N, H, W, C) images by an integer factor.

    Pixel centres are mapped as in ``skimage.transform.resize(order=1)`` (and TensorFlow's
    ``resize(method="bilinear")``): an output pixel samples the input at the position of its
    centre, so a factor of 2 averages 2 × 2 blocks. No anti-aliasing filter is applied.
    """
    images = np.asarray(images)
    spatial = (0, 1) if images.ndim == 2 else (1, 2)
    if images.ndim not in (2, 3, 4):
        msg = f"images must be (H, W), (N, H, W) or (N, H, W, C), got shape {images.shape}"
        raise PhysicsError(msg)
    if factor < 1 or any(images.shape[axis] % factor for axis in spatial):
        msg = f"downsample factor {factor} must divide the image shape {images.shape}"
        raise PhysicsError(msg)
    shape = list(images.shape)
    for axis in spatial:
        shape[axis] //= factor
    out = resize(
        images.astype(np.float64, copy=False),
        shape,
        order=1,
        mode="edge",
        anti_aliasing=False,
        preserve_range=True,
    )
    return out.astype(np.float32)
