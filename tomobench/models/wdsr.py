"""``wdsr_b``: WDSR-B (Yu, Fan, Yang, Xu, Wang, Wang & Huang, "Wide activation for efficient
and accurate image super-resolution", arXiv:1808.08718, 2018).

As in the paper: weight-normalised convolutions (Salimans & Kingma 2016) throughout and no
batch normalisation. The body is a 3 × 3 head convolution to ``filters`` maps, then
``res_blocks`` wide-activation residual blocks: a 1 × 1 convolution expanding to
``filters · expansion`` maps, ReLU, a 1 × 1 "low-rank" convolution to
``int(filters · low_rank)`` maps, and a 3 × 3 convolution back to ``filters``, the residual
multiplied by ``residual_scaling``; then a 3 × 3 convolution to ``scale²`` maps and a pixel
shuffle by ``scale``. A skip branch (a 5 × 5 convolution of the input to ``scale²`` maps and a
pixel shuffle) is added to the body's output. There is no long skip inside the body and no
convolution after the shuffle. The defaults are the paper's WDSR-B: 16 blocks of 32 filters,
expansion 6, low-rank ratio 0.8, no residual scaling.

Differences: one grey channel in and out instead of RGB, and no mean subtraction
(tomobench standardises inputs and targets in its data pipeline).
"""

from __future__ import annotations

import keras
from keras import layers

from tomobench.models._blocks import Count
from tomobench.models._sr_blocks import (
    Fraction,
    PixelShuffle,
    Scaling,
    check_positive,
    check_scale,
    convolution,
    low_resolution_input,
)

__all__ = ["wdsr_b"]


def wdsr_b(
    scale: int,
    *,
    res_blocks: Count = 16,
    filters: Count = 32,
    expansion: Count = 6,
    low_rank: Fraction = 0.8,
    residual_scaling: Scaling = 1.0,
    weight_norm: bool = True,
) -> keras.Model:
    """WDSR-B for super-resolution by ``scale`` (2, 3 or 4): ``(batch, h, w, 1)`` →
    ``(batch, h·scale, w·scale, 1)``, any ``h`` and ``w``.

    Each block widens ``filters`` maps to ``filters · expansion`` before its ReLU and narrows
    them to ``int(filters · low_rank)`` (at least 1) before its 3 × 3 convolution.
    ``weight_norm`` false uses plain convolutions (an ablation; the paper normalises).
    """
    check_scale(scale)
    check_positive("residual_scaling", residual_scaling)
    if not 0.0 < low_rank <= 1.0:
        msg = f"low_rank must be in (0, 1], got {low_rank!r}"
        raise ValueError(msg)
    wide, narrow = filters * expansion, max(1, int(filters * low_rank))
    image = low_resolution_input()
    x = convolution(image, filters, name="head", weight_norm=weight_norm)
    for index in range(1, res_blocks + 1):
        name = f"block{index}"
        y = convolution(
            x, wide, 1, name=f"{name}_expand", activation="relu", weight_norm=weight_norm
        )
        y = convolution(y, narrow, 1, name=f"{name}_low_rank", weight_norm=weight_norm)
        y = convolution(y, filters, 3, name=f"{name}_conv", weight_norm=weight_norm)
        if residual_scaling != 1.0:
            y = layers.Rescaling(residual_scaling, name=f"{name}_scale")(y)
        x = layers.Add(name=f"{name}_add")([x, y])
    x = convolution(x, scale * scale, name="tail", weight_norm=weight_norm)
    x = PixelShuffle(scale, name="tail_shuffle")(x)
    skip = convolution(image, scale * scale, 5, name="skip", weight_norm=weight_norm)
    skip = PixelShuffle(scale, name="skip_shuffle")(skip)
    return keras.Model(image, layers.Add(name="output")([x, skip]), name="wdsr_b")
