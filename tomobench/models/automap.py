"""``automap``: AUTOMAP (Zhu, Liu, Cauley, Rosen & Rosen, "Image reconstruction by
domain-transform manifold learning", Nature 555, 487–492, 2018), scaled to a library.

The paper maps sensor data to an image of n × n pixels with two fully connected layers of
n² units (tanh), reshapes to n × n, then two convolutions of 64 filters 5 × 5 with stride 1
(ReLU, the second's activations under an L1 penalty, λ = 0.0001) and a 7 × 7 transposed
convolution to the image. Here the sensor data are a sinogram (angles × detector, real)
rather than complex k-space, and n is the library's image size.
"""

from __future__ import annotations

from typing import Annotated

import keras
from keras import layers, regularizers
from pydantic import Field

from tomobench.models._blocks import (
    Activation,
    Count,
    Kernel,
    as_channels,
    check_shapes,
    image_output,
    sinogram_input,
)

__all__ = ["automap"]

Penalty = Annotated[float, Field(ge=0.0)]


def automap(
    angles: int,
    detector: int,
    size: int,
    *,
    units: Count | None = None,
    activation: Activation = "tanh",
    filters: Count = 64,
    kernel_size: Kernel = 5,
    output_kernel_size: Kernel = 7,
    sparsity: Penalty = 1e-4,
) -> keras.Model:
    """AUTOMAP for sinograms of ``angles`` × ``detector`` pixels and images of ``size``².

    ``units`` is the width of the first fully connected layer (default ``size``², as the
    paper; the second has ``size``² units, one per pixel). Their weights grow as size⁴:
    2 × 16384² ≈ 5 × 10⁸ at 128², so keep ``size`` small or lower ``units``.
    ``sparsity`` is the L1 penalty on the second convolution's activations (0: none).
    """
    check_shapes(angles, detector, size)
    width = size * size if units is None else units
    sinogram = sinogram_input(angles, detector)
    x = layers.Flatten(name="flatten")(sinogram)
    x = layers.Dense(width, activation=activation, name="fc1")(x)
    x = layers.Dense(size * size, activation=activation, name="fc2")(x)
    x = as_channels(x, size, size, name="to_image")
    x = layers.Conv2D(filters, kernel_size, padding="same", activation="relu", name="conv1")(x)
    x = layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        activation="relu",
        activity_regularizer=regularizers.L1(sparsity) if sparsity > 0 else None,
        name="conv2",
    )(x)
    x = layers.Conv2DTranspose(1, output_kernel_size, padding="same", name="deconv")(x)
    return keras.Model(sinogram, image_output(x, size), name="automap")
