"""``cnn_reconstruct``: the mixed convolutional / fully connected network of the 2020
report (§6.2), the one its §7.2 results come from.

Sinogram → four 2-D convolutions with stride 2 → flatten → four fully connected layers
(three of ``dense_units``, the last with one unit per image pixel), each followed by
dropout → reshape to the image → three 2-D convolutions with stride 1 → image.
"""

from __future__ import annotations

import keras
from keras import layers

from tomobench.models._blocks import (
    Activation,
    Count,
    Kernel,
    Rate,
    as_channels,
    check_rate,
    check_shapes,
    image_output,
    sinogram_input,
)

__all__ = ["cnn_reconstruct"]


def cnn_reconstruct(
    angles: int,
    detector: int,
    size: int,
    *,
    filters: tuple[Count, Count, Count, Count] = (32, 64, 128, 256),
    dense_units: Count = 1000,
    dropout: Rate = 0.1,
    refine_filters: tuple[Count, Count] = (64, 64),
    kernel_size: Kernel = 3,
    activation: Activation = "relu",
) -> keras.Model:
    """The network of report §6.2 for sinograms of ``angles`` × ``detector`` pixels and
    images of ``size`` × ``size``.

    ``filters`` are the widths of the four stride-2 convolutions, ``refine_filters`` those
    of the first two stride-1 convolutions (the third has one filter: the image).
    ``dropout`` is the rate of the dropout layer after each fully connected layer (the
    report gives no rate). Hidden layers use ``activation``; the last fully connected layer
    and the last convolution are linear.
    """
    check_shapes(angles, detector, size)
    check_rate("dropout", dropout)
    if len(filters) != 4 or len(refine_filters) != 2:
        msg = (
            "cnn_reconstruct has four stride-2 and three stride-1 convolutions: give four "
            f"filters and two refine_filters, got {list(filters)} and {list(refine_filters)}"
        )
        raise ValueError(msg)
    sinogram = sinogram_input(angles, detector)
    x = as_channels(sinogram, angles, detector)
    for index, width in enumerate(filters, start=1):
        x = _convolution(x, width, kernel_size, 2, activation, f"down{index}")
    x = layers.Flatten(name="flatten")(x)
    widths = [dense_units, dense_units, dense_units, size * size]
    for index, units in enumerate(widths, start=1):
        last = index == len(widths)
        x = layers.Dense(units, activation=None if last else activation, name=f"dense{index}")(x)
        x = layers.Dropout(dropout, name=f"dropout{index}")(x)
    x = as_channels(x, size, size, name="to_image")
    for index, width in enumerate(refine_filters, start=1):
        x = _convolution(x, width, kernel_size, 1, activation, f"refine{index}")
    x = _convolution(x, 1, kernel_size, 1, None, "refine3")
    return keras.Model(sinogram, image_output(x, size), name="cnn_reconstruct")


def _convolution(x, filters: int, kernel_size: int, strides: int, activation, name: str):
    return layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", activation=activation, name=name
    )(x)
