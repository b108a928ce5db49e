"""Super-resolution: the interpolation baselines, and the border crop of scoring.

A library of a recipe with ``downsample: [s, …]`` holds, beside each split's ``images``, their
low-resolution twins ``images_x{s}`` (:func:`tomobench.physics.resample.downsample`). A
super-resolution method maps ``images_x{s}`` back to the shape of ``images``; it is scored
against ``images`` with a border of ``crop_border`` pixels (``s`` by default, the BasicSR
convention) cut off every side of both images, since what lies at the edge of a
low-resolution image says little about the pixels beyond it.

The interpolation baselines are ``skimage.transform.resize`` of each image (each channel of a
hyperspectral cube on its own) to the high-resolution shape:

- ``nearest`` (order 0), ``bilinear`` (order 1), ``bicubic`` (order 3: cubic *spline*
  interpolation, prefiltered, as ``scipy.ndimage`` computes it; not the cubic convolution of
  MATLAB's ``imresize`` or Pillow);
- pixel centres map as in the twins' downsampling: output pixel *i* samples the input at
  ``(i + 0.5) / s - 0.5``;
- edges are handled by repeating the edge pixel (skimage's ``mode="edge"``);
- no anti-aliasing (it applies only when shrinking); values are not clipped here
  (``clip=False``: a bicubic overshoot is kept; scoring clips every image to [0, 1]).
"""

from __future__ import annotations

import numpy as np

from tomobench.errors import RecipeError, StoreError

METHODS = {"nearest": 0, "bilinear": 1, "bicubic": 3}
"""Interpolation baselines and their spline order."""


def upsample(images: np.ndarray, shape: tuple[int, int], method: str) -> np.ndarray:
    """``images`` (n, h, w) or (n, h, w, C) resized to ``shape`` (H, W) by ``method``,
    float32."""
    from skimage.transform import resize

    if method not in METHODS:
        msg = f"unknown interpolation {method!r} (allowed: {', '.join(METHODS)})"
        raise RecipeError(msg)
    images = np.asarray(images)
    out = np.empty((len(images), *shape, *images.shape[3:]), dtype=np.float32)
    for index, image in enumerate(images):
        out[index] = resize(
            image.astype(np.float64),
            (*shape, *image.shape[2:]),
            order=METHODS[method],
            mode="edge",
            anti_aliasing=False,
            preserve_range=True,
            clip=False,  # skimage would clip to the input's range: scoring clips to [0, 1]
        )
    return out


def crop(images: np.ndarray, border: int) -> np.ndarray:
    """``images`` (n, H, W[, C]) without ``border`` pixels on every side (a view)."""
    if border == 0:
        return images
    return images[:, border:-border, border:-border]


def check_scale(library, split: str, scale: int, crop_border: int | None) -> int:
    """The border to crop for super-resolution at ``scale`` on a split of ``library``;
    :class:`~tomobench.errors.StoreError` if the library holds no ``images_x{scale}``, and
    :class:`~tomobench.errors.RecipeError` for a border that leaves no pixel."""
    held = sorted(int(factor) for factor in library.recipe.downsample)
    if scale not in held:
        twins = ", ".join(f"×{factor}" for factor in held) or "none"
        msg = (
            f"{library.path}: no images_x{scale} to super-resolve (the library's "
            f"low-resolution twins: {twins})"
        )
        raise StoreError(msg)
    border = scale if crop_border is None else int(crop_border)
    size = int(library[f"{split}/images"].shape[1])
    if border < 0 or 2 * border >= size:
        most = (size - 1) // 2
        msg = f"crop_border must be between 0 and {most} for {size}² images, got {border}"
        raise RecipeError(msg)
    return border


def run(method: str, library, *, split: str = "test", scale: int) -> np.ndarray:
    """The interpolation baseline ``method`` of split ``split`` at ``scale``: its
    ``images_x{scale}`` upsampled to the shape of its ``images``."""
    if method not in METHODS:
        msg = f"unknown interpolation {method!r} (allowed: {', '.join(METHODS)})"
        raise RecipeError(msg)
    library.require_complete("upsampling from it", error=StoreError)
    check_scale(library, split, scale, None)
    shape = tuple(int(n) for n in library[f"{split}/images"].shape[1:3])
    return upsample(library.read(f"{split}/images_x{scale}"), shape, method)
