"""``gan_reconstruct``: a supervised conditional GAN for reconstruction, after pix2pix (Isola,
Zhu, Zhou & Efros, "Image-to-image translation with conditional adversarial networks", CVPR
2017, §3 and appendix 6.1–6.2).

The generator maps a sinogram to a first image and refines it with pix2pix's U-Net:

- the first image is the sinogram's filtered backprojection (``input="fbp"``: the
  :class:`~tomobench.models.fbp_layer.FilteredBackprojection` layer, equal to tomobench's
  ram-lak FBP for ``projector`` and ``detector_spacing``; not trained), or the image that
  ``cnn_reconstruct``'s front end makes (``input="sinogram"``: four 3 × 3 convolutions with
  stride 2 of ``front_filters`` maps and ReLU, then fully connected layers of ``front_units``,
  ``front_units``, ``front_units`` (ReLU) and size² units (linear), each followed by dropout
  at ``front_dropout``, as :mod:`~tomobench.models.cnn` builds them; trained with the rest);
- the U-Net (the paper's): an encoder of ``depth`` 4 × 4 convolutions with stride 2 of
  ``filters`` × 1, 2, 4, 8, 8, … maps, each followed by batch norm (except the first) and
  LeakyReLU (slope 0.2); a decoder of ``depth`` − 1 transposed 4 × 4 convolutions with stride
  2, each followed by batch norm, dropout at ``dropout`` (the first three only) and ReLU, and
  concatenated with the encoder's maps of the same size (the skip connections); a last
  transposed 4 × 4 convolution with stride 2 to one map. Weights are drawn from
  N(0, 0.02²), as in the paper.

The discriminator is the paper's 70 × 70 PatchGAN: the generator's first image and a real
or generated image as two channels; ``discriminator_layers`` 4 × 4 convolutions with stride
2 of ``discriminator_filters`` × 1, 2, 4, … (at most × 8) maps, then one with stride 1 of
twice the last's (at most × 8), each followed by batch norm (except the first) and
LeakyReLU (0.2); a 4 × 4 convolution to one map of logits, one per patch (70 × 70 pixels
with three layers). Training alternates one discriminator update, on half the binary
cross-entropy of its verdicts on real (1) and generated (0) images, and one generator
update, on the cross-entropy of the discriminator's verdict on the generated images as if
they were real plus ``l1_weight`` × the compiled loss (the paper's L1 term with
``loss: mae``; whatever loss the config names is the content term). The defaults are the
paper's (64 filters, dropout 0.5, discriminator of 3 layers from 64 maps, λ = 100) but for
``depth``.

Differences:

- ``depth`` is 4 by default (FBPConvNet's U-Net depth, Jin et al. 2017, for the same task:
  removing FBP's artefacts), not the paper's 8, which takes a 256² image down to 1 × 1; it
  may be 1 to 8. A size that is not a multiple of 2^``depth`` is zero-padded to the next
  multiple before the U-Net (evenly, the odd pixel at the bottom and right) and cropped back
  after it, so any size works (150 at depth 4: padded to 160);
- one grey channel; the output is linear, not tanh: the images are scored in [0, 1] after
  clipping, and a linear output can reach both ends;
- the convolutions pad "same" (the paper's discriminator pads by 1 and loses a border),
  so the patch map is ⌈size / 2^``discriminator_layers``⌉ wide; the receptive field is
  the same 70 pixels;
- dropout acts in training only; the paper keeps it at test time as its noise source, so
  here predictions are deterministic;
- the discriminator sees the generator's first image (FBP, or the front end's image) as its
  condition, not the sinogram; the condition is held fixed (no gradient) in both updates, so
  that the front end learns from the content and adversarial terms through the U-Net only;
- the paper trains with Adam (learning rate 2·10⁻⁴, β₁ = 0.5) and batch 1; here both
  optimisers are the compiled one (the discriminator's a copy of it), as tomobench's
  trainer configures it;
- the FBP sees the sinograms the trainer gives the model, which are standardised
  (``(sinogram − mean) / std``, :class:`~tomobench.models.data.Normalisation`): its image is
  the FBP of the library's sinogram, minus mean × the FBP of a sinogram of ones, over std.

The model returned is a :class:`Pix2Pix`, an
:class:`~tomobench.models._adversarial.AdversarialModel` as ``srgan``'s is: calling it
(``predict``, ``predict_on_batch``) runs the generator, sinograms ``(batch, angles,
detector)`` → images ``(batch, size, size)``, and its ``inputs``, ``outputs``,
``input_shape`` and ``output_shape`` are the generator's. Its ``fit`` trains both networks,
each with its own optimiser (the discriminator's is of the compiled one's class and
configuration); its ``loss`` is the content loss (so a validation ``val_loss`` compares
with other models'), and it reports ``d_loss`` (the discriminator's, halved) and
``g_adversarial`` (the generator's adversarial term) beside. A ``.keras`` checkpoint holds
both networks and both optimisers' states, and the FBP layer's geometry but not its matrix.
With ``input="fbp"`` the model trains without XLA (no XLA kernel for the sparse
backprojection).

Size with the defaults: the U-Net has 6,168,897 weights and the discriminator 2,766,401,
whatever the image size; the sinogram front end adds 4,951,864 at 32² (24 × 34 sinograms)
and 55,655,224 at 128² (180 × 182), most of them in its first fully connected layer.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Annotated, Literal

import keras
from keras import layers, ops
from pydantic import Field

from tomobench.models._adversarial import AdversarialModel
from tomobench.models._blocks import (
    Count,
    Rate,
    as_channels,
    check_rate,
    check_shapes,
    sinogram_input,
)
from tomobench.models._sr_blocks import Positive, Weight
from tomobench.models.errors import ConfigError
from tomobench.models.fbp_layer import FilteredBackprojection
from tomobench.physics.projector import MODELS

__all__ = ["Pix2Pix", "gan_reconstruct", "patch_discriminator", "unet"]

INPUTS = ("fbp", "sinogram")
MAX_DEPTH = 8
"""pix2pix's U-Net: eight downsamplings, 256² to 1 × 1."""
Depth = Annotated[int, Field(ge=1, le=MAX_DEPTH)]

_FRONT_DEFAULTS = {
    "front_filters": (32, 64, 128, 256),
    "front_units": 1000,
    "front_dropout": 0.1,
}
_FBP_DEFAULTS = {"projector": "linear", "detector_spacing": 1.0}


def gan_reconstruct(
    angles: int,
    detector: int,
    size: int,
    *,
    input: Literal["fbp", "sinogram"] = "fbp",
    projector: Literal["linear", "strip", "line"] = "linear",
    detector_spacing: Positive = 1.0,
    filters: Count = 64,
    depth: Depth = 4,
    dropout: Rate = 0.5,
    discriminator_filters: Count = 64,
    discriminator_layers: Depth = 3,
    l1_weight: Weight = 100.0,
    front_filters: tuple[Count, Count, Count, Count] = (32, 64, 128, 256),
    front_units: Count = 1000,
    front_dropout: Rate = 0.1,
) -> keras.Model:
    """A pix2pix conditional GAN (see the module docstring) for sinograms of ``angles`` ×
    ``detector`` pixels and images of ``size`` × ``size``: a :class:`Pix2Pix`.

    ``input`` chooses the generator's first image: ``"fbp"``, the ram-lak FBP for projection
    model ``projector`` and detector pixels of width ``detector_spacing`` (give the values of
    the library's recipe); ``"sinogram"``, ``cnn_reconstruct``'s front end (``front_filters``,
    ``front_units``, ``front_dropout``). ``filters``, ``depth`` and ``dropout`` shape the
    U-Net, ``discriminator_filters`` and ``discriminator_layers`` the PatchGAN;
    ``l1_weight`` weighs the content (compiled) loss against the adversarial term.
    Options of the other input than the one chosen must keep their defaults.
    """
    return Pix2Pix(
        angles,
        detector,
        size,
        input=input,
        projector=projector,
        detector_spacing=detector_spacing,
        filters=filters,
        depth=depth,
        dropout=dropout,
        discriminator_filters=discriminator_filters,
        discriminator_layers=discriminator_layers,
        l1_weight=l1_weight,
        front_filters=front_filters,
        front_units=front_units,
        front_dropout=front_dropout,
        name="gan_reconstruct",
    )


# -- the networks ---------------------------------------------------------------------------


def _weights() -> keras.initializers.Initializer:
    """pix2pix's initialiser, N(0, 0.02²); a new one per layer, so each draws its own."""
    return keras.initializers.RandomNormal(stddev=0.02)


def _check_depth(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DEPTH:
        msg = f"{name} must be an integer from 1 to {MAX_DEPTH}, got {value!r}"
        raise ValueError(msg)


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a positive integer, got {value!r}"
        raise ValueError(msg)


def unet(size: int, *, filters: int = 64, depth: int = 4, dropout: float = 0.5) -> keras.Model:
    """pix2pix's U-Net (see the module docstring) as a functional model, images ``(batch,
    size, size)`` → images ``(batch, size, size)``, any ``size`` (padded to a multiple of
    2^``depth`` inside)."""
    check_shapes(1, 1, size)
    _check_count("filters", filters)
    _check_depth("depth", depth)
    check_rate("dropout", dropout)
    first = keras.Input(shape=(size, size), name="first_image")
    x = as_channels(first, size, size)
    step = 2**depth
    pad = math.ceil(size / step) * step - size
    margins = ((pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2))
    if pad:
        x = layers.ZeroPadding2D(margins, name="pad")(x)
    skips = []
    for level in range(1, depth + 1):
        name = f"down{level}"
        x = layers.Conv2D(
            filters * min(2 ** (level - 1), 8), 4, strides=2, padding="same",
            use_bias=level == 1, kernel_initializer=_weights(), name=name,
        )(x)  # fmt: skip
        if level > 1:
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.LeakyReLU(negative_slope=0.2, name=f"{name}_lrelu")(x)
        skips.append(x)
    for index, level in enumerate(range(depth - 1, 0, -1)):
        name = f"up{level}"
        x = layers.Conv2DTranspose(
            filters * min(2 ** (level - 1), 8), 4, strides=2, padding="same",
            use_bias=False, kernel_initializer=_weights(), name=name,
        )(x)  # fmt: skip
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        if index < 3 and dropout > 0:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = layers.ReLU(name=f"{name}_relu")(x)
        x = layers.Concatenate(name=f"{name}_skip")([x, skips[level - 1]])
    x = layers.Conv2DTranspose(
        1, 4, strides=2, padding="same", kernel_initializer=_weights(), name="to_image"
    )(x)
    if pad:
        x = layers.Cropping2D(margins, name="crop")(x)
    return keras.Model(first, layers.Reshape((size, size), name="image")(x), name="unet")


def patch_discriminator(size: int, *, filters: int = 64, layers_count: int = 3) -> keras.Model:
    """pix2pix's PatchGAN (see the module docstring): a condition image and an image, each
    ``(batch, size, size)``, → ``(batch, h, w, 1)`` logits, h = w = ⌈size / 2^layers_count⌉."""
    check_shapes(1, 1, size)
    _check_count("discriminator_filters", filters)
    _check_depth("discriminator_layers", layers_count)
    condition = keras.Input(shape=(size, size), name="condition")
    image = keras.Input(shape=(size, size), name="image")
    x = layers.Concatenate(name="pair")(
        [
            as_channels(condition, size, size, name="condition_channel"),
            as_channels(image, size, size, name="image_channel"),
        ]
    )
    strides = [2] * layers_count + [1]
    for index, stride in enumerate(strides):
        name = f"conv{index + 1}"
        x = layers.Conv2D(
            filters * min(2**index, 8), 4, strides=stride, padding="same",
            use_bias=index == 0, kernel_initializer=_weights(), name=name,
        )(x)  # fmt: skip
        if index > 0:
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.LeakyReLU(negative_slope=0.2, name=f"{name}_lrelu")(x)
    x = layers.Conv2D(1, 4, padding="same", kernel_initializer=_weights(), name="patch_logits")(x)
    return keras.Model([condition, image], x, name="discriminator")


def _front(angles: int, detector: int, size: int, options: dict) -> keras.Model:
    """The generator's first stage, sinograms → first images ``(batch, size, size)``."""
    sinogram = sinogram_input(angles, detector)
    if options["input"] == "fbp":
        image = FilteredBackprojection(
            angles, detector, size, model=options["projector"],
            spacing=options["detector_spacing"], name="fbp",
        )(sinogram)  # fmt: skip
        return keras.Model(sinogram, image, name="front")
    x = as_channels(sinogram, angles, detector)
    for index, width in enumerate(options["front_filters"], start=1):
        x = layers.Conv2D(
            width, 3, strides=2, padding="same", activation="relu", name=f"front_down{index}"
        )(x)
    x = layers.Flatten(name="front_flatten")(x)
    units = [options["front_units"]] * 3 + [size * size]
    for index, count in enumerate(units, start=1):
        last = index == len(units)
        x = layers.Dense(count, activation=None if last else "relu", name=f"front_dense{index}")(x)
        x = layers.Dropout(options["front_dropout"], name=f"front_dropout{index}")(x)
    image = layers.Reshape((size, size), name="first_image")(x)
    return keras.Model(sinogram, image, name="front")


def _check_options(options: dict) -> None:
    """Raises ValueError for an option out of range or one of the input not chosen."""
    if options["input"] not in INPUTS:
        msg = f"input must be 'fbp' or 'sinogram', got {options['input']!r}"
        raise ValueError(msg)
    if options["projector"] not in MODELS:
        msg = f"projector must be one of {', '.join(MODELS)}, got {options['projector']!r}"
        raise ValueError(msg)
    spacing = options["detector_spacing"]
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float)) or not spacing > 0:
        msg = f"detector_spacing must be a positive number, got {spacing!r}"
        raise ValueError(msg)
    for name in ("filters", "discriminator_filters", "front_units"):
        _check_count(name, options[name])
    _check_depth("depth", options["depth"])
    _check_depth("discriminator_layers", options["discriminator_layers"])
    check_rate("dropout", options["dropout"])
    check_rate("front_dropout", options["front_dropout"])
    front = options["front_filters"]
    if len(front) != 4:
        msg = f"front_filters: give four widths (one per stride-2 convolution), got {list(front)}"
        raise ValueError(msg)
    for width in front:
        _check_count("front_filters", width)
    weight = options["l1_weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < 1e308:
        msg = f"l1_weight must be a finite number >= 0, got {weight!r}"
        raise ValueError(msg)
    unused = _FBP_DEFAULTS if options["input"] == "sinogram" else _FRONT_DEFAULTS
    for name, default in unused.items():
        if options[name] != default:
            other = "fbp" if options["input"] == "sinogram" else "sinogram"
            msg = (
                f"{name} ({options[name]!r}) is only used with input {other!r} (input is "
                f"{options['input']!r}); remove it or set input: {other}"
            )
            raise ValueError(msg)


@keras.saving.register_keras_serializable(package="tomobench")
class Pix2Pix(AdversarialModel):
    """A generator (first stage + U-Net) and a PatchGAN discriminator trained adversarially
    with a content term (see the module docstring); calling the model calls the
    generator."""

    def __init__(
        self,
        angles: int,
        detector: int,
        size: int,
        *,
        input: str = "fbp",
        projector: str = "linear",
        detector_spacing: float = 1.0,
        filters: int = 64,
        depth: int = 4,
        dropout: float = 0.5,
        discriminator_filters: int = 64,
        discriminator_layers: int = 3,
        l1_weight: float = 100.0,
        front_filters: tuple[int, int, int, int] = (32, 64, 128, 256),
        front_units: int = 1000,
        front_dropout: float = 0.1,
        **kwargs,
    ) -> None:
        check_shapes(angles, detector, size)
        options = {
            "input": input,
            "projector": projector,
            "detector_spacing": detector_spacing,
            "filters": filters,
            "depth": depth,
            "dropout": dropout,
            "discriminator_filters": discriminator_filters,
            "discriminator_layers": discriminator_layers,
            "l1_weight": l1_weight,
            "front_filters": tuple(front_filters),
            "front_units": front_units,
            "front_dropout": front_dropout,
        }
        try:
            _check_options(options)
        except ValueError as error:  # a ConfigError: one line for the user, not a traceback
            raise ConfigError(f"model gan_reconstruct: {error}") from None
        sinogram = sinogram_input(angles, detector)
        front = _front(angles, detector, size, options)
        refine = unet(size, filters=filters, depth=depth, dropout=dropout)
        super().__init__(
            keras.Model(sinogram, refine(front(sinogram)), name="generator"),
            patch_discriminator(
                size, filters=discriminator_filters, layers_count=discriminator_layers
            ),
            **kwargs,
        )
        self.angles, self.detector, self.size = angles, detector, size
        self.options = MappingProxyType(options)  # read-only, and not tracked by Keras

    @property
    def l1_weight(self) -> float:
        return float(self.options["l1_weight"])

    @property
    def content_weight(self) -> float:
        """The generator's objective is adversarial + ``l1_weight`` × content."""
        return self.l1_weight

    @property
    def front(self) -> keras.Model:
        """The generator's first stage: sinograms → first images (the condition)."""
        return self.generator.get_layer("front")

    @property
    def refiner(self) -> keras.Model:
        """The generator's U-Net: first images → images."""
        return self.generator.get_layer("unet")

    # -- compiling -----------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """:meth:`AdversarialModel.compile`; ``loss`` (required) is the content term.
        ``jit_compile=True`` (XLA) is refused with input ``"fbp"``; ``"auto"`` leaves XLA
        out for it."""
        if loss is None:
            msg = "gan_reconstruct takes its content loss from compile: give a loss"
            raise ValueError(msg)
        if kwargs.get("jit_compile") is True and self.options["input"] == "fbp":
            msg = (
                "gan_reconstruct with input 'fbp' cannot be compiled with XLA (TensorFlow has "
                "no XLA kernel for its sparse backprojection): give jit_compile 'auto' or False"
            )
            raise ValueError(msg)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    # -- the hooks of AdversarialModel ---------------------------------------------------

    def generate(self, x, training):
        """The condition is the first image (without its gradient, so that the front end
        learns through the U-Net only); the U-Net refines it."""
        first = self.front(x, training=training)
        return ops.stop_gradient(first), self.refiner(first, training=training)

    def discriminate(self, condition, image, training):
        return self.discriminator([condition, image], training=training)

    def discriminator_loss(self, real_logits, fake_logits):
        """pix2pix's discriminator objective, halved."""
        return 0.5 * super().discriminator_loss(real_logits, fake_logits)

    # -- saving --------------------------------------------------------------------------

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "angles": self.angles,
            "detector": self.detector,
            "size": self.size,
            **{key: list(value) if isinstance(value, tuple) else value
               for key, value in self.options.items()},
        }  # fmt: skip
