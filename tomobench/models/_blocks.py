"""Building blocks shared by the model factories: the sinogram input and the image output.

Every model maps a batch of sinograms ``(batch, angles, detector)`` to a batch of images
``(batch, size, size)``, so models are interchangeable in :mod:`tomobench.models.train`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import keras
from keras import layers
from pydantic import Field


def check_shapes(angles: int, detector: int, size: int) -> None:
    for name, value in (("angles", angles), ("detector", detector), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{name} must be a positive integer, got {value!r}"
            raise ValueError(msg)


def sinogram_input(angles: int, detector: int) -> keras.KerasTensor:
    return keras.Input(shape=(angles, detector), name="sinogram")


def as_channels(
    x: keras.KerasTensor, height: int, width: int, *, name: str = "add_channel"
) -> keras.KerasTensor:
    """A (batch, H, W) or (batch, H·W) tensor as (batch, H, W, 1) for 2-D convolutions."""
    return layers.Reshape((height, width, 1), name=name)(x)


def image_output(x: keras.KerasTensor, size: int) -> keras.KerasTensor:
    """A (batch, size, size, 1) or (batch, size·size) tensor as the (batch, size, size) image."""
    return layers.Reshape((size, size), name="image")(x)


# Types of factory options: plain ints and floats to Python, constraints to the config
# validation (tomobench.models.registry builds a pydantic model from these annotations).
Count = Annotated[int, Field(ge=1, le=1_000_000)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
Kernel = Annotated[int, Field(ge=1, le=31)]
Activation = Literal["relu", "elu", "gelu", "selu", "swish", "tanh", "sigmoid", "linear"]


def check_rate(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        msg = f"{name} must be in [0, 1), got {value!r}"
        raise ValueError(msg)
