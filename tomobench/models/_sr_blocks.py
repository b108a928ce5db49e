"""Building blocks shared by the super-resolution factories: the low-resolution input,
sub-pixel upsampling (:class:`PixelShuffle`, :func:`upsampler`), weight-normalised
convolutions (:class:`WeightNormConv2D`) and the types of their options.

Every super-resolution model maps a batch of low-resolution images ``(batch, h, w, 1)`` to
``(batch, h·scale, w·scale, 1)`` (float32, linear: no final activation) for ``scale`` 2, 3
or 4. The models are fully convolutional, so ``h`` and ``w`` are free (``None``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import keras
from keras import layers, ops
from pydantic import Field

__all__ = [
    "SCALES",
    "Fraction",
    "PixelShuffle",
    "Positive",
    "Scaling",
    "Weight",
    "WeightNormConv2D",
    "check_positive",
    "check_scale",
    "convolution",
    "edsr_body",
    "low_resolution_input",
    "residual_block",
    "upsampler",
]

SCALES = (2, 3, 4)
"""The super-resolution factors the models support."""

# Types of factory options (tomobench.models.registry validates configs with them).
Positive = Annotated[float, Field(gt=0.0, le=1e6)]
"""A positive float (a residual scaling, for instance)."""
Scaling = Positive
"""The factor a residual branch is multiplied by before it is added to its input."""
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
"""A float in (0, 1]."""
Weight = Annotated[float, Field(ge=0.0, le=1e6)]
"""A non-negative float (a loss weight)."""


def check_scale(scale: int) -> int:
    """``scale`` if it is a supported factor (int 2, 3 or 4); ValueError otherwise."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        msg = f"scale must be 2, 3 or 4, got {scale!r}"
        raise ValueError(msg)
    return scale


def check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not value > 0:
        msg = f"{name} must be positive, got {value!r}"
        raise ValueError(msg)


def low_resolution_input(name: str = "low_resolution") -> keras.KerasTensor:
    """A batch of single-channel images of any size, ``(batch, h, w, 1)``."""
    return keras.Input(shape=(None, None, 1), name=name)


@keras.saving.register_keras_serializable(package="tomobench")
class PixelShuffle(layers.Layer):
    """Sub-pixel upsampling (Shi et al. 2016, "depth to space"): ``(batch, h, w, s²·c)`` →
    ``(batch, h·s, w·s, c)``; output pixel ``(h·s + i, w·s + j)``, channel ``k`` is input
    pixel ``(h, w)``, channel ``(i·s + j)·c + k`` (the order of ``tf.nn.depth_to_space``).
    Spatial sizes may be unknown until run time."""

    def __init__(self, scale: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            msg = f"PixelShuffle scale must be a positive integer, got {scale!r}"
            raise ValueError(msg)
        self.scale = scale

    def _channels(self, channels: int | None) -> int | None:
        if channels is None:
            return None
        if channels % (self.scale * self.scale):
            msg = (
                f"PixelShuffle({self.scale}) needs a multiple of {self.scale**2} channels, "
                f"got {channels}"
            )
            raise ValueError(msg)
        return channels // (self.scale * self.scale)

    def call(self, inputs):
        s = self.scale
        channels = self._channels(inputs.shape[-1])
        shape = ops.shape(inputs)
        height, width = shape[1], shape[2]
        x = ops.reshape(inputs, (-1, height, width, s, s, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # batch, h, i, w, j, channel
        return ops.reshape(x, (-1, height * s, width * s, channels))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        s = self.scale
        return (
            batch,
            None if height is None else height * s,
            None if width is None else width * s,
            self._channels(channels),
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="tomobench")
class WeightNormConv2D(layers.Layer):
    """A 2-D convolution with weight normalisation (Salimans & Kingma 2016): the kernel of
    output filter ``k`` is ``g[k] · v[..., k] / ‖v[..., k]‖``, with ``v`` (the direction) and
    ``g`` (the length) trained instead of the kernel. ``g`` starts as ``‖v‖``, so the first
    kernel is ``v`` as initialised (as ``torch.nn.utils.weight_norm`` does).

    Stride 1, ``padding`` "same" or "valid"; ``v`` and ``bias`` are initialised as a
    :class:`keras.layers.Conv2D`'s kernel and bias would be."""

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        *,
        padding: str = "same",
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = layers.InputSpec(ndim=4)

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        if channels is None:
            msg = "WeightNormConv2D needs a known number of input channels"
            raise ValueError(msg)
        k = self.kernel_size
        self.v = self.add_weight(
            shape=(k, k, channels, self.filters), initializer=self.kernel_initializer, name="v"
        )
        self.g = self.add_weight(
            shape=(self.filters,),
            initializer=lambda shape, dtype=None: ops.cast(self._norm(self.v), dtype),
            name="g",
        )
        self.bias = (
            self.add_weight(shape=(self.filters,), initializer=self.bias_initializer, name="bias")
            if self.use_bias
            else None
        )

    @staticmethod
    def _norm(v):
        return ops.sqrt(ops.maximum(ops.sum(ops.square(v), axis=(0, 1, 2)), 1e-24))

    @property
    def kernel(self):
        """The effective kernel ``g · v / ‖v‖``, ``(k, k, in, filters)``."""
        v = ops.convert_to_tensor(self.v)
        return v * (ops.convert_to_tensor(self.g) / self._norm(v))

    def call(self, inputs):
        x = ops.conv(inputs, self.kernel, strides=1, padding=self.padding)
        if self.bias is not None:
            x = x + self.bias
        return self.activation(x) if self.activation is not None else x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if self.padding == "valid":
            shrink = self.kernel_size - 1
            height = None if height is None else height - shrink
            width = None if width is None else width - shrink
        return (batch, height, width, self.filters)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "padding": self.padding,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


def convolution(
    x,
    filters: int,
    kernel_size: int = 3,
    *,
    name: str,
    activation=None,
    weight_norm: bool = False,
    use_bias: bool = True,
):
    """A stride-1, "same"-padded convolution of ``x`` (weight-normalised if asked)."""
    kind = WeightNormConv2D if weight_norm else layers.Conv2D
    return kind(
        filters,
        kernel_size,
        padding="same",
        activation=activation,
        use_bias=use_bias,
        name=name,
    )(x)


def residual_block(
    x, filters: int, *, scaling: float, name: str, weight_norm: bool = False
) -> keras.KerasTensor:
    """EDSR's residual block: ``x + scaling · conv(relu(conv(x)))`` (3 × 3, no batch norm)."""
    y = convolution(x, filters, name=f"{name}_conv1", activation="relu", weight_norm=weight_norm)
    y = convolution(y, filters, name=f"{name}_conv2", weight_norm=weight_norm)
    if scaling != 1.0:
        y = layers.Rescaling(scaling, name=f"{name}_scale")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def upsampler(
    x,
    filters: int,
    scale: int,
    *,
    name: str = "upsample",
    activation: Callable[[str], layers.Layer] | None = None,
    kernel_size: int = 3,
) -> keras.KerasTensor:
    """Sub-pixel upsampling of ``filters`` feature maps by ``scale``, as EDSR's upsampler:
    a convolution to ``filters · s²`` maps and a :class:`PixelShuffle` by ``s`` per stage,
    one stage of ``s = scale`` for ×2 and ×3, two of ``s = 2`` for ×4. ``activation``, if
    given, makes the layer applied after each shuffle from its name (SRGAN's PReLU)."""
    check_scale(scale)
    factors = (2, 2) if scale == 4 else (scale,)
    for index, factor in enumerate(factors, start=1):
        stage = f"{name}{index}" if len(factors) > 1 else name
        x = layers.Conv2D(
            filters * factor * factor, kernel_size, padding="same", name=f"{stage}_conv"
        )(x)
        x = PixelShuffle(factor, name=f"{stage}_shuffle")(x)
        if activation is not None:
            x = activation(f"{stage}_activation")(x)
    return x


def edsr_body(
    image: keras.KerasTensor, filters: int, *, res_blocks: int, scaling: float, scale: int
) -> keras.KerasTensor:
    """EDSR's body (Lim et al. 2017): a 3 × 3 head convolution, ``res_blocks`` residual
    blocks, a 3 × 3 convolution and a long skip from the head, then the sub-pixel upsampler:
    ``filters`` maps at ``scale`` × the input's size (layers ``head``, ``block1`` …,
    ``body_conv``, ``long_skip``, the upsampler's)."""
    head = convolution(image, filters, name="head")
    x = head
    for index in range(1, res_blocks + 1):
        x = residual_block(x, filters, scaling=scaling, name=f"block{index}")
    x = convolution(x, filters, name="body_conv")
    x = layers.Add(name="long_skip")([head, x])
    return upsampler(x, filters, scale)
