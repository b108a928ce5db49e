"""``dense_reconstruct``: fully connected layers only, sinogram → image.

The fully connected part of :func:`~tomobench.models.cnn.cnn_reconstruct` without its
convolutions (by default three hidden layers of 1000 units, then one unit per pixel), so
that the two compare like with like: what the convolutions add.
"""

from __future__ import annotations

import keras
from keras import layers

from tomobench.models._blocks import (
    Activation,
    Count,
    Rate,
    check_rate,
    check_shapes,
    image_output,
    sinogram_input,
)

__all__ = ["dense_reconstruct"]


def dense_reconstruct(
    angles: int,
    detector: int,
    size: int,
    *,
    units: tuple[Count, ...] = (1000, 1000, 1000),
    dropout: Rate = 0.0,
    activation: Activation = "relu",
) -> keras.Model:
    """Flatten the sinogram, apply one fully connected layer per entry of ``units`` (each
    with ``activation``, then dropout at rate ``dropout`` when it is above 0), then a linear
    layer with ``size``² units, reshaped to the image."""
    check_shapes(angles, detector, size)
    check_rate("dropout", dropout)
    sinogram = sinogram_input(angles, detector)
    x = layers.Flatten(name="flatten")(sinogram)
    for index, width in enumerate(units, start=1):
        x = layers.Dense(width, activation=activation, name=f"dense{index}")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"dropout{index}")(x)
    x = layers.Dense(size * size, name="pixels")(x)
    return keras.Model(sinogram, image_output(x, size), name="dense_reconstruct")
