"""``ganrec``: self-supervised reconstruction of one sinogram at a time by a generative
adversarial network and a differentiable forward projector (Yang, Kahnt, Brückner, Schropp,
Fam, Becher, Grunwaldt, Sheppard & Schroer, "Tomographic reconstruction with a generative
adversarial network", J. Synchrotron Rad. 27, 486–493, 2020; code: github.com/XYangXRay/ganrec).

No training set: for each measured sinogram y a generator G maps y to an image x = G(y), the
projector A maps x back to a sinogram, a discriminator D learns to tell y from A x, and the
generator minimises the adversarial loss plus ``l1_weight`` × mean |y − A x|. The image is the
generator's output after the last iteration. Both networks start from the same seeded
weights for every sinogram, so a sinogram's image does not depend on the others in a batch.

The networks and defaults follow GANrec's ``GANtomo`` (``make_generator``,
``make_discriminator`` and the ``GANtomo`` entry of its ``config.json``):

- generator: the flattened sinogram → ``dense_layers`` (3) fully connected layers of ``units``
  (128) → a fully connected layer of one unit per pixel, reshaped to the image (each with a
  leaky ReLU) → three convolutions and three transposed convolutions of ``filters`` (32) maps,
  kernels ``kernel_size`` + 2, + 2, + 0 (5, 5, 3), leaky ReLU → a 3 × 3 convolution to one map;
  kernels drawn from N(0, 0.05²). GANrec's config sets dropout 0.25 after the hidden dense
  layers, but its TensorFlow code calls the generator outside training mode, where Keras
  applies no dropout: ``dropout`` is 0 by default (with 0.25 acting, a 32² phantom fits four
  times worse in 300 iterations: relative residual 0.25 against 0.05);
- discriminator: four pairs of convolutions (16, 32, 64, 128 maps; 5 × 5, 5 × 5, 3 × 3, 3 × 3;
  the first of each pair with stride 2), each pair followed by a leaky ReLU and dropout 0.2,
  then fully connected layers of 256 and 128 units whose 128 outputs are logits;
- losses: sigmoid cross-entropy (the generator's adversarial term wants D(A x) = 1, the
  discriminator wants D(y) = 1, D(A x) = 0); ``l1_weight`` 100;
- Adam, learning rates 1e-3 (generator) and 1e-5 (discriminator).

Differences from GANrec, for a benchmark that scores absolute values: GANrec normalises the
generator's image and rescales the predicted sinogram (min–max) before comparing it with the
measured one, so its images have no absolute scale. Here nothing is rescaled but by constants:
the measured sinogram is divided by its largest absolute value s (the generator's input and
what the discriminator and the L1 term see), the predicted one by the same s, and the
generator's output is in units of s / r, r being the longest ray's length through the image
(the largest row sum of A): the fit is of A x = y itself, and the image is proportional to the
data's scale. The last convolution is linear (GANrec's has a leaky ReLU, before its
rescaling). The projector is the library's own (ASTRA's matrix as a sparse tensor), not
GANrec's Radon transform of rotated images. :data:`ITERATIONS` is GANrec's 1000: about a
minute for a 64² image on two CPU cores (docs/ganrec.md).

Cost: the generator's first dense layer has (angles · detector) × ``units`` weights and its
pixel layer ``units`` × size², and the discriminator's first dense layer (angles · detector /
256) × 128 × 256: 1.4 M + 1.1 M weights at 64² (64 angles × 92 detector pixels), 6.4 M +
5.1 M at 128² (180 × 182), 108 M + 76 M at 512² (800 × 724), each with two Adam moments. The
convolutions run at the image's full resolution: their time grows as size² × ``filters``².
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tomobench.errors import RecipeError
from tomobench.physics.geometry import circular_mask

__all__ = [
    "ITERATIONS",
    "SparseProjector",
    "ganrec",
    "ganrec_discriminator",
    "ganrec_generator",
]

ITERATIONS = 1000
"""Default iterations per sinogram: GANrec's ``iter_num``."""
_KERNEL_STDDEV = 0.05  # GANrec's tf.random_normal_initializer()


class SparseProjector:
    """A tomobench :class:`~tomobench.physics.projector.Projector` as a TensorFlow operation:
    its own system matrix (float32) as a ``tf.sparse.SparseTensor``, applied to a batch of
    images (batch, H, W) → sinograms (batch, angles, detector) by
    ``tf.sparse.sparse_dense_matmul``. Its gradient is the transpose of the matrix, the
    projector's ``backward``."""

    def __init__(self, projector) -> None:
        geometry = projector.geometry
        if geometry.oversample != 1:
            msg = "GANrec reconstructs on the image grid: use a geometry with oversample=1"
            raise RecipeError(msg)
        matrix = projector.matrix
        coordinates = matrix.tocoo()
        indices = np.stack([coordinates.row, coordinates.col], axis=1).astype(np.int64)
        values = coordinates.data.astype(np.float32)
        self.matrix = tf.sparse.reorder(tf.sparse.SparseTensor(indices, values, matrix.shape))
        self.image_shape = tuple(geometry.image_shape)
        self.sinogram_shape = tuple(geometry.sinogram_shape)
        self.longest_ray = float(matrix.sum(axis=1).max()) if matrix.nnz else 0.0
        """The largest row sum of the matrix: the projection of an image of ones at its
        brightest."""

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        pixels = self.image_shape[0] * self.image_shape[1]
        flat = tf.reshape(tf.convert_to_tensor(images, tf.float32), (-1, pixels))
        columns = tf.sparse.sparse_dense_matmul(self.matrix, flat, adjoint_b=True)
        return tf.reshape(tf.transpose(columns), (-1, *self.sinogram_shape))


class _Seeds:
    """Seeds for the layers of one network, one after the other, all drawn from ``seed``:
    the network's weights and dropout masks are the same in every process."""

    def __init__(self, seed: int) -> None:
        self.seed, self.count = seed, 0

    def next(self) -> int:
        self.count += 1
        return self.seed * 1000 + self.count

    def normal(self) -> keras.initializers.Initializer:
        """GANrec's initialiser of the generator's kernels, N(0, 0.05²)."""
        return keras.initializers.RandomNormal(stddev=_KERNEL_STDDEV, seed=self.next())

    def glorot(self) -> keras.initializers.Initializer:
        """Keras's default initialiser, which GANrec's discriminator keeps."""
        return keras.initializers.GlorotUniform(seed=self.next())


def ganrec_generator(
    angles: int,
    detector: int,
    size: int,
    *,
    units: int = 128,
    dense_layers: int = 3,
    filters: int = 32,
    kernel_size: int = 3,
    dropout: float = 0.0,
    seed: int = 0,
) -> keras.Model:
    """GANrec's generator: sinograms (batch, angles, detector) → images (batch, size, size).

    The flattened sinogram through ``dense_layers`` fully connected layers of ``units`` (each
    with dropout at ``dropout`` when above 0, then a leaky ReLU) and one of size² units (leaky
    ReLU), reshaped to the image; three convolutions and three transposed convolutions of
    ``filters`` maps with kernels ``kernel_size`` + 2, ``kernel_size`` + 2 and ``kernel_size``
    (no bias, leaky ReLU); a linear 3 × 3 convolution to the image. Weights drawn from
    ``seed``."""
    _check_counts(angles=angles, detector=detector, size=size, units=units, filters=filters,
                  kernel_size=kernel_size)  # fmt: skip
    _check_counts(dense_layers=dense_layers, minimum=0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        msg = f"dropout must be in [0, 1), got {dropout!r}"
        raise RecipeError(msg)
    seeds = _Seeds(seed)
    sinogram = keras.Input(shape=(angles, detector), name="sinogram")
    x = layers.Flatten(name="flatten")(sinogram)
    for number in range(1, dense_layers + 1):
        x = layers.Dense(units, kernel_initializer=seeds.normal(), name=f"dense{number}")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, seed=seeds.next(), name=f"dropout{number}")(x)
        x = layers.LeakyReLU(name=f"dense{number}_leaky")(x)
    x = layers.Dense(size * size, kernel_initializer=seeds.normal(), name="pixels")(x)
    x = layers.LeakyReLU(name="pixels_leaky")(x)
    x = layers.Reshape((size, size, 1), name="add_channel")(x)
    kernels = (kernel_size + 2, kernel_size + 2, kernel_size)
    for kind, layer_class in (("conv", layers.Conv2D), ("deconv", layers.Conv2DTranspose)):
        for number, kernel in enumerate(kernels, start=1):
            x = layer_class(filters, kernel, padding="same", use_bias=False,
                            kernel_initializer=seeds.normal(),
                            name=f"{kind}{number}")(x)  # fmt: skip
            x = layers.LeakyReLU(name=f"{kind}{number}_leaky")(x)
    x = layers.Conv2D(1, 3, padding="same", kernel_initializer=seeds.normal(), name="last")(x)
    image = layers.Reshape((size, size), name="image")(x)
    return keras.Model(sinogram, image, name="ganrec_generator")


def ganrec_discriminator(angles: int, detector: int, *, seed: int = 0) -> keras.Model:
    """GANrec's discriminator: sinograms (batch, angles, detector) → 128 logits each.

    Four pairs of convolutions (16, 32, 64 and 128 maps; kernels 5, 5, 3, 3; the first of each
    pair with stride 2), each pair followed by a leaky ReLU and dropout 0.2; then fully
    connected layers of 256 and 128 units. Weights drawn from ``seed``."""
    _check_counts(angles=angles, detector=detector)
    seeds = _Seeds(seed)
    sinogram = keras.Input(shape=(angles, detector), name="sinogram")
    x = layers.Reshape((angles, detector, 1), name="add_channel")(sinogram)
    for stage, (maps, kernel) in enumerate(((16, 5), (32, 5), (64, 3), (128, 3)), start=1):
        for part, stride in (("a", 2), ("b", 1)):
            x = layers.Conv2D(maps, kernel, strides=stride, padding="same",
                              kernel_initializer=seeds.glorot(),
                              name=f"conv{stage}{part}")(x)  # fmt: skip
        x = layers.LeakyReLU(name=f"conv{stage}_leaky")(x)
        x = layers.Dropout(0.2, seed=seeds.next(), name=f"dropout{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    for units in (256, 128):
        x = layers.Dense(units, kernel_initializer=seeds.glorot(), name=f"dense{units}")(x)
    return keras.Model(sinogram, x, name="ganrec_discriminator")


def _check_counts(minimum: int = 1, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
            msg = f"{name} must be {what}, got {value!r}"
            raise RecipeError(msg)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            msg = f"{name} must be a positive number, got {value!r}"
            raise RecipeError(msg)


def ganrec(
    sinograms: np.ndarray,
    projector,
    *,
    iterations: int = ITERATIONS,
    seed: int = 0,
    l1_weight: float = 100.0,
    generator_learning_rate: float = 1e-3,
    discriminator_learning_rate: float = 1e-5,
    units: int = 128,
    dense_layers: int = 3,
    filters: int = 32,
    kernel_size: int = 3,
    dropout: float = 0.0,
    mask: bool = False,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Reconstruct each sinogram (A, D) of ``sinograms`` ((A, D) or (n, A, D)) on its own with
    GANrec and the projector's own system matrix: images (H, W) or (n, H, W), float32.

    Each sinogram starts from the same networks (weights drawn from ``seed``) and fresh Adam
    states, and runs ``iterations`` steps, each updating the generator and the discriminator
    once; its image is the generator's output after the last step, in inference mode (no
    dropout). ``mask`` restricts the image to the circle inscribed in it while fitting.
    ``progress``, if given, is called with 1 after each sinogram. A sinogram of zeros gives an
    image of zeros."""
    _check_counts(iterations=iterations, units=units, filters=filters, kernel_size=kernel_size)
    _check_counts(dense_layers=dense_layers, minimum=0)
    _check_counts(seed=seed, minimum=0)
    _check_positive(l1_weight=l1_weight, generator_learning_rate=generator_learning_rate,
                    discriminator_learning_rate=discriminator_learning_rate)  # fmt: skip
    sinograms = np.asarray(sinograms, dtype=np.float32)
    single = sinograms.ndim == 2
    batch = sinograms[None] if single else sinograms
    project = SparseProjector(projector)
    if batch.ndim != 3 or batch.shape[1:] != project.sinogram_shape:
        msg = (
            f"sinograms must have shape {project.sinogram_shape} or "
            f"(n, *{project.sinogram_shape}), got {sinograms.shape}"
        )
        raise RecipeError(msg)
    angles, detector = project.sinogram_shape
    size = project.image_shape[0]
    images = np.zeros((len(batch), size, size), dtype=np.float32)
    if len(batch) == 0:
        return images[0] if single else images
    fit = _Fit(
        project,
        generator=ganrec_generator(angles, detector, size, units=units, dense_layers=dense_layers,
                                   filters=filters, kernel_size=kernel_size, dropout=dropout,
                                   seed=seed),
        discriminator=ganrec_discriminator(angles, detector, seed=seed),
        l1_weight=l1_weight,
        learning_rates=(generator_learning_rate, discriminator_learning_rate),
        support=circular_mask(size).astype(np.float32) if mask else None,
    )  # fmt: skip
    for index, sinogram in enumerate(batch):
        images[index] = fit(sinogram, iterations)
        if progress is not None:
            progress(1)
    return images[0] if single else images


class _Fit:
    """The two networks, their optimisers and the compiled training step, built once and
    returned to their first state before each sinogram (so that every sinogram starts from the
    same weights, optimiser state and dropout seeds, whatever came before it)."""

    def __init__(self, project, *, generator, discriminator, l1_weight, learning_rates, support):
        self.project = project
        self.generator = generator
        self.discriminator = discriminator
        self.optimisers = [keras.optimizers.Adam(rate) for rate in learning_rates]
        self.optimisers[0].build(generator.trainable_variables)
        self.optimisers[1].build(discriminator.trainable_variables)
        self.state = [
            *generator.variables,
            *discriminator.variables,
            *self.optimisers[0].variables,
            *self.optimisers[1].variables,
        ]
        self.first = [np.array(variable.numpy()) for variable in self.state]
        self.l1_weight = tf.constant(l1_weight, tf.float32)
        self.ray = tf.constant(max(project.longest_ray, 1e-12), tf.float32)
        self.support = None if support is None else tf.constant(support[None])
        self.run = tf.function(self._run)

    def __call__(self, sinogram: np.ndarray, iterations: int) -> np.ndarray:
        if not np.isfinite(sinogram).all():
            msg = "GANrec: a sinogram holds NaN or infinite values"
            raise RecipeError(msg)
        scale = float(np.max(np.abs(sinogram)))
        if scale == 0:
            return np.zeros(self.project.image_shape, dtype=np.float32)
        for variable, value in zip(self.state, self.first):
            variable.assign(value)
        measured = tf.constant((sinogram / scale)[None], tf.float32)
        image = self.run(measured, tf.constant(iterations, tf.int64)).numpy()[0]
        return (image * (scale / float(self.ray))).astype(np.float32)

    def _run(self, measured, iterations):
        """``iterations`` training steps, then the generator's image in inference mode."""
        for _ in tf.range(iterations):
            self._step(measured)
        return self._image(measured)

    def _image(self, measured, training=False):
        image = self.generator(measured, training=training)
        return image if self.support is None else image * self.support

    def _step(self, measured):
        with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
            image = self._image(measured, training=True)
            predicted = self.project(image) / self.ray
            real = self.discriminator(measured, training=True)
            fake = self.discriminator(predicted, training=True)
            adversarial = _cross_entropy(fake, 1.0)
            residual = tf.reduce_mean(tf.abs(measured - predicted))
            generator_loss = adversarial + self.l1_weight * residual
            discriminator_loss = _cross_entropy(real, 1.0) + _cross_entropy(fake, 0.0)
        for tape, loss, model, optimiser in (
            (generator_tape, generator_loss, self.generator, self.optimisers[0]),
            (discriminator_tape, discriminator_loss, self.discriminator, self.optimisers[1]),
        ):
            gradients = tape.gradient(loss, model.trainable_variables)
            optimiser.apply_gradients(zip(gradients, model.trainable_variables))


def _cross_entropy(logits, label: float):
    labels = tf.fill(tf.shape(logits), label)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
