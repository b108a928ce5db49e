"""``guided_sr``: super-resolution of an XRD-CT channel image guided by the absorption
(micro-CT) image of the same slice, a network of this project (no published reference).

Two inputs: ``low_resolution``, the XRD-CT channel image ``(batch, h, w, 1)``, and ``guide``,
the absorption image of the same slice at the target resolution ``(batch, h·scale, w·scale,
1)``. The design:

- an EDSR-like body on the low-resolution image (Lim et al. 2017): a 3 × 3 head convolution
  to ``filters`` maps, ``res_blocks`` residual blocks (conv–ReLU–conv, no batch norm,
  residual multiplied by ``residual_scaling``), a 3 × 3 convolution and a long skip from the
  head, then EDSR's sub-pixel upsampler: ``filters`` feature maps at the high resolution;
- a guide branch on the absorption image, at the high resolution: a 3 × 3 convolution to
  ``guide_filters`` maps and ``guide_blocks`` residual blocks of the same kind;
- fusion: the two sets of maps concatenated, two 3 × 3 convolutions of ``filters`` maps with
  ReLU, and a last 3 × 3 convolution to the image (linear).

The first fusing convolution is computed as the sum of a convolution of the body's maps
(``fuse1``, with the bias) and one of the guide's (``guide_fuse``, no bias), which is the
same function as one convolution of the concatenation; this way ``guide=False``, the
ablation the leaderboard compares, is exactly this network with the guide branch (every layer
whose name starts with ``guide``) removed: one input, and the body and fusion layers
unchanged in shape.
"""

from __future__ import annotations

import keras
from keras import layers

from tomobench.models._blocks import Count
from tomobench.models._sr_blocks import (
    Scaling,
    check_positive,
    check_scale,
    convolution,
    edsr_body,
    low_resolution_input,
    residual_block,
)

__all__ = ["guided_sr"]


def guided_sr(
    scale: int,
    *,
    guide: bool = True,
    res_blocks: Count = 8,
    filters: Count = 64,
    guide_filters: Count = 32,
    guide_blocks: Count = 2,
    residual_scaling: Scaling = 1.0,
) -> keras.Model:
    """The guided network for super-resolution by ``scale`` (2, 3 or 4).

    With ``guide`` its inputs are ``[low_resolution (batch, h, w, 1), guide (batch, h·scale,
    w·scale, 1)]``, without it ``low_resolution`` alone; the output is ``(batch, h·scale,
    w·scale, 1)``. ``res_blocks`` and ``filters`` size the low-resolution body,
    ``guide_blocks`` and ``guide_filters`` the guide branch.
    """
    check_scale(scale)
    check_positive("residual_scaling", residual_scaling)
    image = low_resolution_input()
    x = edsr_body(image, filters, res_blocks=res_blocks, scaling=residual_scaling, scale=scale)
    fused = convolution(x, filters, name="fuse1")
    inputs = [image]
    if guide:
        absorption = keras.Input(shape=(None, None, 1), name="guide")
        inputs.append(absorption)
        g = convolution(absorption, guide_filters, name="guide_head")
        for index in range(1, guide_blocks + 1):
            g = residual_block(
                g, guide_filters, scaling=residual_scaling, name=f"guide_block{index}"
            )
        g = convolution(g, filters, name="guide_fuse", use_bias=False)
        fused = layers.Add(name="guide_concat_fuse")([fused, g])
    x = layers.Activation("relu", name="fuse1_relu")(fused)
    x = convolution(x, filters, name="fuse2", activation="relu")
    x = convolution(x, 1, name="tail")
    return keras.Model(inputs if guide else image, x, name="guided_sr" if guide else "unguided_sr")
