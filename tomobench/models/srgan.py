"""``srgan``: SRGAN (Ledig, Theis, Huszár, Caballero, Cunningham, Acosta, Aitken, Tejani,
Totz, Wang & Shi, "Photo-realistic single image super-resolution using a generative
adversarial network", CVPR 2017, §2.2–2.3 and figure 4).

The generator is the paper's SRResNet: a 9 × 9 convolution of ``filters`` maps and a PReLU;
``res_blocks`` residual blocks (3 × 3 conv, batch norm, PReLU, 3 × 3 conv, batch norm, added
to the block's input); a 3 × 3 convolution and batch norm added to the first PReLU's output
(the long skip); per ×2 stage (one ×3 stage for ×3, two ×2 stages for ×4) a 3 × 3
convolution to ``filters · s²`` maps, a pixel shuffle and a PReLU; a 9 × 9 convolution to
the image. The discriminator is the paper's stack of eight 3 × 3 convolutions of
``discriminator_filters`` × 1, 1, 2, 2, 4, 4, 8, 8 maps with strides 1, 2, 1, 2, …, each
followed by batch norm (except the first) and LeakyReLU (α = 0.2), then a dense layer of
1024 units, LeakyReLU and one output. Training alternates one discriminator update (binary
cross-entropy of real targets against generated images) and one generator update (content
loss + ``adversarial_weight`` × the binary cross-entropy of the discriminator's verdict on
the generated images as if they were real; paper: 10⁻³). The defaults are the paper's: 16
blocks of 64 filters, a discriminator from 64 maps, adversarial weight 10⁻³.

Differences:

- one grey channel in and out, and a linear output (no tanh): tomobench standardises inputs
  and targets in its data pipeline;
- the PReLUs have one slope per channel (shared over the image), so any size is accepted;
- the discriminator averages its last feature maps over the image (global average pooling)
  before the dense layer, so it judges patches of any size; the paper flattens a fixed 96²
  patch. It outputs a logit (no sigmoid); the cross-entropies take logits;
- the content loss is either the loss the model is compiled with (``content="pixel"``: the
  paper's SRGAN-MSE when compiled with MSE) or the mean squared error between the feature
  maps of a user-supplied, frozen Keras network (``content="features"``, ``features`` the
  path of its ``.keras`` file, or ``registry:NAME`` for a ``.keras`` file of the dataset
  registry, fetched and hash-checked by :func:`tomobench.datasets.fetch`: the stand-in for
  the paper's VGG54 loss, since ImageNet VGG features do not suit single-channel tomograms);
- the paper pre-trains the generator alone (SRResNet) before the adversarial training; here
  both train from the start (pre-train an SRResNet by setting ``adversarial_weight`` 0).

The model returned is an :class:`SRGAN`, an
:class:`~tomobench.models._adversarial.AdversarialModel` as ``gan_reconstruct``'s is:
calling it (``predict``, ``predict_on_batch``) runs the generator, and its ``inputs``,
``outputs``, ``input_shape`` and ``output_shape`` are the generator's. Its ``fit`` trains
both networks, each with its own optimiser (the discriminator's is a copy of the compiled
one, of the same class and learning rate); its ``loss`` is the generator's content loss (so
that a validation ``val_loss`` compares with other models' for ``content="pixel"``), and it
reports ``d_loss`` (the discriminator's) and ``g_adversarial`` (the generator's adversarial
term, unweighted) beside. A ``.keras`` checkpoint holds both networks, the feature network
if any, and both optimisers' states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import keras
from keras import layers, ops

from tomobench.models._adversarial import AdversarialModel
from tomobench.models._blocks import Count
from tomobench.models._sr_blocks import (
    Weight,
    check_scale,
    low_resolution_input,
    upsampler,
)

__all__ = ["SRGAN", "srgan", "srgan_discriminator", "srresnet"]

CONTENTS = ("pixel", "features")


def srgan(
    scale: int,
    *,
    res_blocks: Count = 16,
    filters: Count = 64,
    discriminator_filters: Count = 64,
    adversarial_weight: Weight = 1e-3,
    content: Literal["pixel", "features"] = "pixel",
    features: str | None = None,
) -> keras.Model:
    """SRGAN for super-resolution by ``scale`` (2, 3 or 4): an :class:`SRGAN` whose
    generator maps ``(batch, h, w, 1)`` to ``(batch, h·scale, w·scale, 1)``, any ``h`` and
    ``w``.

    ``res_blocks`` and ``filters`` size the generator, ``discriminator_filters`` the first
    convolutions of the discriminator. ``content`` chooses the content loss: ``"pixel"``,
    the compiled loss; ``"features"``, the mean squared error between the feature maps that
    the network saved at ``features`` (a ``.keras`` file, or ``registry:NAME``: a file of
    the dataset registry, fetched and checked; it takes ``(h, w, 1)`` images and is not
    trained) gives for the generated and the target image.
    """
    return SRGAN(
        scale,
        res_blocks=res_blocks,
        filters=filters,
        discriminator_filters=discriminator_filters,
        adversarial_weight=adversarial_weight,
        content=content,
        features=features,
        name="srgan",
    )


def _prelu(name: str) -> layers.Layer:
    return layers.PReLU(shared_axes=[1, 2], name=name)


def srresnet(scale: int, *, res_blocks: int = 16, filters: int = 64) -> keras.Model:
    """SRGAN's generator (SRResNet) as a functional model (see the module docstring)."""
    check_scale(scale)
    image = low_resolution_input()
    head = layers.Conv2D(filters, 9, padding="same", name="head")(image)
    head = _prelu("head_prelu")(head)
    x = head
    for index in range(1, res_blocks + 1):
        name = f"block{index}"
        y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv1")(x)
        y = layers.BatchNormalization(name=f"{name}_bn1")(y)
        y = _prelu(f"{name}_prelu")(y)
        y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
        y = layers.BatchNormalization(name=f"{name}_bn2")(y)
        x = layers.Add(name=f"{name}_add")([x, y])
    x = layers.Conv2D(filters, 3, padding="same", name="body_conv")(x)
    x = layers.BatchNormalization(name="body_bn")(x)
    x = layers.Add(name="long_skip")([head, x])
    x = upsampler(x, filters, scale, activation=_prelu)
    x = layers.Conv2D(1, 9, padding="same", name="tail")(x)
    return keras.Model(image, x, name="generator")


def srgan_discriminator(filters: int = 64) -> keras.Model:
    """SRGAN's discriminator, ``(batch, H, W, 1)`` → ``(batch, 1)`` logits, any ``H``, ``W``."""
    image = keras.Input(shape=(None, None, 1), name="image")
    x = image
    for index, (factor, stride) in enumerate(
        zip((1, 1, 2, 2, 4, 4, 8, 8), (1, 2, 1, 2, 1, 2, 1, 2)), start=1
    ):
        x = layers.Conv2D(
            filters * factor, 3, strides=stride, padding="same", name=f"conv{index}"
        )(x)
        if index > 1:
            x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.LeakyReLU(negative_slope=0.2, name=f"lrelu{index}")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(1024, name="dense1")(x)
    x = layers.LeakyReLU(negative_slope=0.2, name="dense1_lrelu")(x)
    x = layers.Dense(1, name="logit")(x)
    return keras.Model(image, x, name="discriminator")


REGISTRY_PREFIX = "registry:"
"""``features: registry:NAME`` names a ``.keras`` file of the dataset registry."""


def load_feature_network(path) -> keras.Model:
    """The frozen feature network saved at ``path`` (a ``.keras`` file taking (h, w, 1)
    images), or at ``registry:NAME``: dataset NAME of the registry (packaged, or a user's
    ``TOMOBENCH_REGISTRY`` file), fetched once and hash-checked."""
    if isinstance(path, str) and path.startswith(REGISTRY_PREFIX):
        from tomobench import datasets

        try:
            path = datasets.fetch(path.removeprefix(REGISTRY_PREFIX))
        except datasets.DatasetError as error:
            msg = f"features: {error}"
            raise ValueError(msg) from None
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        msg = f"features: no feature network file at {path!r} (give a saved .keras model)"
        raise ValueError(msg)
    try:
        network = keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError, KeyError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        msg = f"features: {path} is not a loadable .keras model ({reason})"
        raise ValueError(msg) from None
    return _frozen(network, path)


def _frozen(network, origin) -> keras.Model:
    inputs = network.inputs if hasattr(network, "inputs") else None
    shape = tuple(network.input_shape) if inputs is not None and len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or shape[-1] != 1 or len(network.outputs) != 1:
        msg = (
            f"features: the network at {origin} must take one batch of (h, w, 1) images and "
            "give one output"
        )
        raise ValueError(msg)
    network.trainable = False
    return network


@keras.saving.register_keras_serializable(package="tomobench")
class SRGAN(AdversarialModel):
    """A generator and a discriminator trained adversarially (see the module docstring);
    calling the model calls the generator."""

    def __init__(
        self,
        scale: int,
        *,
        res_blocks: int = 16,
        filters: int = 64,
        discriminator_filters: int = 64,
        adversarial_weight: float = 1e-3,
        content: str = "pixel",
        features: str | None = None,
        feature_network: keras.Model | None = None,
        **kwargs,
    ) -> None:
        check_scale(scale)
        if content not in CONTENTS:
            msg = f"content must be 'pixel' or 'features', got {content!r}"
            raise ValueError(msg)
        if content == "features" and features is None and feature_network is None:
            msg = "content 'features' needs features: the path of a feature network (.keras)"
            raise ValueError(msg)
        if content == "pixel" and (features is not None or feature_network is not None):
            msg = (
                f"features ({features!r}) is only used with content 'features' (content is "
                "'pixel': the compiled loss); remove it or set content: features"
            )
            raise ValueError(msg)
        if isinstance(adversarial_weight, bool) or not adversarial_weight >= 0:
            msg = f"adversarial_weight must be >= 0, got {adversarial_weight!r}"
            raise ValueError(msg)
        super().__init__(
            srresnet(scale, res_blocks=int(res_blocks), filters=int(filters)),
            srgan_discriminator(int(discriminator_filters)),
            **kwargs,
        )
        self.scale = scale
        self.res_blocks = int(res_blocks)
        self.filters = int(filters)
        self.discriminator_filters = int(discriminator_filters)
        self.adversarial_weight = float(adversarial_weight)
        self.content = content
        self.features = None if features is None else str(features)
        if content == "features":
            self.feature_network = (
                load_feature_network(features)
                if feature_network is None
                else _frozen(feature_network, features)
            )
        else:
            self.feature_network = None

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """:meth:`AdversarialModel.compile`; with content ``"pixel"``, ``loss`` (the content
        loss) is required."""
        if self.content == "pixel" and loss is None:
            msg = "srgan with content 'pixel' takes its content loss from compile: give a loss"
            raise ValueError(msg)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    # -- the hooks of AdversarialModel ---------------------------------------------------

    def generate(self, x, training):
        """No condition: the discriminator judges the images alone."""
        return None, self.generator(x, training=training)

    def discriminate(self, condition, image, training):
        return self.discriminator(image, training=training)

    def content_loss(self, x, y, generated, sample_weight, training):
        """The compiled loss, or the mean squared error between the feature network's maps of
        the generated and the target images."""
        if self.feature_network is None:
            return super().content_loss(x, y, generated, sample_weight, training)
        wanted = self.feature_network(y, training=False)
        got = self.feature_network(generated, training=False)
        return ops.mean(ops.square(got - ops.cast(wanted, got.dtype)))

    # -- saving --------------------------------------------------------------------------

    def get_config(self) -> dict:
        network = self.feature_network
        return {
            **super().get_config(),
            "scale": self.scale,
            "res_blocks": self.res_blocks,
            "filters": self.filters,
            "discriminator_filters": self.discriminator_filters,
            "adversarial_weight": self.adversarial_weight,
            "content": self.content,
            "features": self.features,
            # the feature network travels with the model, so a checkpoint loads without its file
            "feature_network": (
                None if network is None else keras.saving.serialize_keras_object(network)
            ),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        network = config.pop("feature_network", None)
        if network is not None:
            network = keras.saving.deserialize_keras_object(network)
        return cls(**config, feature_network=network)
