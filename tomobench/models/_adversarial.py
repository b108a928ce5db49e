"""What tomobench's two supervised GANs share: :class:`AdversarialModel`, a Keras model
holding a generator and a discriminator, trained by alternating updates with a content term.

:class:`~tomobench.models.srgan.SRGAN` and :class:`~tomobench.models.pix2pix.Pix2Pix`
subclass it. It gives them:

- the generator's face: calling the model (``predict``, ``predict_on_batch``) runs the
  generator, and ``inputs``, ``outputs``, ``input_shape``, ``output_shape`` and
  ``compute_output_shape`` are the generator's;
- ``compile``: the discriminator gets an optimiser of its own (``d_optimizer``), of the
  compiled one's class and configuration, and both optimisers are built at once, each on its
  network's trainable variables, so that a ``.keras`` checkpoint holds both states and loads
  them (``compile_from_config``);
- ``train_step``: one discriminator update on :meth:`~AdversarialModel.discriminator_loss`
  of its verdicts on real and generated images, then one generator update on
  ``content_weight`` × :meth:`~AdversarialModel.content_loss` + ``adversarial_weight`` × the
  cross-entropy of the discriminator's verdict on the generated images as if they were real;
  ``test_step`` computes the same terms without updating;
- the metrics: ``loss`` (the content loss, so that ``val_loss`` compares with other models'),
  ``d_loss`` and ``g_adversarial`` (the adversarial term, unweighted), each a mean over the
  samples.

A subclass builds its two networks, passes them to ``__init__``, and says how its generator
makes an image and a condition (:meth:`~AdversarialModel.generate`) and how its
discriminator judges an image (:meth:`~AdversarialModel.discriminate`); it may change the
content loss (the compiled loss by default), the discriminator's loss and the two weights.
The cross-entropies take logits. ``train_step`` is the TensorFlow backend's.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["AdversarialModel", "cross_entropy"]


def cross_entropy(real: bool, logits):
    """The mean binary cross-entropy of ``logits`` against all-real (1) or all-fake (0)
    labels."""
    target = ops.ones_like(logits) if real else ops.zeros_like(logits)
    return ops.mean(ops.binary_crossentropy(target, logits, from_logits=True))


class AdversarialModel(keras.Model):
    """A ``generator`` and a ``discriminator`` trained adversarially with a content term (see
    the module docstring); calling the model calls the generator. Not registered for saving
    itself: a subclass registers, and gives ``get_config`` its own options."""

    content_weight: float = 1.0
    """The content loss's weight in the generator's objective."""
    adversarial_weight: float = 1.0
    """The adversarial term's weight in the generator's objective."""

    def __init__(self, generator: keras.Model, discriminator: keras.Model, **kwargs) -> None:
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.adversarial_tracker = keras.metrics.Mean(name="g_adversarial")
        self.d_optimizer = None
        self.built = True  # the two networks are built

    # -- the generator's face ------------------------------------------------------------

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    @property
    def inputs(self):
        return self.generator.inputs

    @property
    def outputs(self):
        return self.generator.outputs

    @property
    def input_shape(self):
        return self.generator.input_shape

    @property
    def output_shape(self):
        return self.generator.output_shape

    def compute_output_shape(self, input_shape):
        return self.generator.compute_output_shape(input_shape)

    # -- compiling -----------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Compile as any model; the discriminator gets an optimiser of its own, of the same
        class and configuration as ``optimizer``. Both optimisers are built here, each on
        its network's trainable variables."""
        super().compile(optimizer=optimizer, loss=loss, **kwargs)
        config = self.optimizer.get_config()
        config["name"] = f"discriminator_{config.get('name') or 'optimizer'}"
        self.d_optimizer = self.optimizer.__class__.from_config(config)
        self.optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)

    @property
    def metrics(self):
        return [self.loss_tracker, self.d_loss_tracker, self.adversarial_tracker]

    # -- the hooks -----------------------------------------------------------------------

    def generate(self, x, training):
        """``(condition, generated)``: what the discriminator judges the generated images
        against (held fixed: no gradient flows through it), and the generator's images."""
        raise NotImplementedError

    def discriminate(self, condition, image, training):
        """The discriminator's logits for ``image`` given ``condition``."""
        raise NotImplementedError

    def content_loss(self, x, y, generated, sample_weight, training):
        """The generator's content term: the compiled loss by default."""
        return self.compute_loss(
            x=x, y=y, y_pred=generated, sample_weight=sample_weight, training=training
        )

    def discriminator_loss(self, real_logits, fake_logits):
        """The discriminator's objective: the cross-entropy of its verdicts on real images
        against 1 plus that on generated images against 0."""
        return cross_entropy(True, real_logits) + cross_entropy(False, fake_logits)

    # -- training ------------------------------------------------------------------------

    def _record(self, x, content, d_loss, adversarial):
        batch = ops.shape(keras.tree.flatten(x)[0])[0]
        self.loss_tracker.update_state(content, sample_weight=batch)
        self.d_loss_tracker.update_state(d_loss, sample_weight=batch)
        self.adversarial_tracker.update_state(adversarial, sample_weight=batch)
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        import tensorflow as tf  # train_step is the TensorFlow backend's

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y = ops.cast(y, "float32")
        with tf.GradientTape() as generator_tape:
            condition, generated = self.generate(x, training=True)
            with generator_tape.stop_recording():
                with tf.GradientTape() as discriminator_tape:
                    real = self.discriminate(condition, y, training=True)
                    fake = self.discriminate(
                        condition, ops.stop_gradient(generated), training=True
                    )
                    d_loss = self.discriminator_loss(real, fake)
                variables = self.discriminator.trainable_variables
                gradients = discriminator_tape.gradient(d_loss, variables)
                self.d_optimizer.apply_gradients(zip(gradients, variables))
            content = self.content_loss(x, y, generated, sample_weight, training=True)
            judged = self.discriminate(condition, generated, training=True)
            adversarial = cross_entropy(True, judged)
            g_loss = self.content_weight * content + self.adversarial_weight * adversarial
        variables = self.generator.trainable_variables
        gradients = generator_tape.gradient(g_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._record(x, content, d_loss, adversarial)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y = ops.cast(y, "float32")
        condition, generated = self.generate(x, training=False)
        content = self.content_loss(x, y, generated, sample_weight, training=False)
        real = self.discriminate(condition, y, training=False)
        fake = self.discriminate(condition, generated, training=False)
        d_loss = self.discriminator_loss(real, fake)
        return self._record(x, content, d_loss, cross_entropy(True, fake))

    # -- saving --------------------------------------------------------------------------

    def get_config(self) -> dict:
        """The name and trainable flag; a subclass adds its options."""
        return {"name": self.name, "trainable": self.trainable}
