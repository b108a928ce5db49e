"""``edsr``: the EDSR baseline (Lim, Son, Kim, Nah & Lee, "Enhanced deep residual networks
for single image super-resolution", CVPR workshops 2017, §3.2).

As in the paper: a 3 × 3 head convolution; ``res_blocks`` residual blocks of two 3 × 3
convolutions of ``filters`` maps with a ReLU between them and no batch normalisation, the
residual multiplied by ``residual_scaling`` before it is added; a 3 × 3 convolution after the
blocks and a long skip from the head's output; a sub-pixel upsampler (a convolution to
``filters · s²`` maps and a pixel shuffle by ``s``: one stage for ×2 and ×3, two ×2 stages for
×4); a last 3 × 3 convolution to the image. The defaults are the paper's baseline: 16 blocks
of 64 filters and no residual scaling (1.0; the paper scales by 0.1 only in its large model,
32 blocks of 256 filters).

Differences: one grey channel in and out instead of RGB, and no MeanShift layers (the paper
subtracts the DIV2K mean colour): tomobench standardises inputs and targets in its data
pipeline.
"""

from __future__ import annotations

import keras

from tomobench.models._blocks import Count
from tomobench.models._sr_blocks import (
    Scaling,
    check_positive,
    check_scale,
    convolution,
    edsr_body,
    low_resolution_input,
)

__all__ = ["edsr"]


def edsr(
    scale: int,
    *,
    res_blocks: Count = 16,
    filters: Count = 64,
    residual_scaling: Scaling = 1.0,
) -> keras.Model:
    """EDSR for super-resolution by ``scale`` (2, 3 or 4): ``(batch, h, w, 1)`` →
    ``(batch, h·scale, w·scale, 1)``, any ``h`` and ``w``.

    ``res_blocks`` residual blocks of ``filters`` maps, each residual multiplied by
    ``residual_scaling`` (paper: 1.0 for the 16 × 64 baseline, 0.1 for 32 × 256).
    """
    check_scale(scale)
    check_positive("residual_scaling", residual_scaling)
    image = low_resolution_input()
    x = edsr_body(image, filters, res_blocks=res_blocks, scaling=residual_scaling, scale=scale)
    x = convolution(x, 1, name="tail")
    return keras.Model(image, x, name="edsr")
