"""The learned prior of the top latent, optionally class-conditional."""

import keras
from keras import ops

from glow_tf.layers.base import Bijector, sum_per_example


@keras.saving.register_keras_serializable(package="glow_tf")
class LearnedPrior(Bijector):
    """Standardises the top latent under a learned diagonal Gaussian.

    eps = (z - mu) * exp(-log sigma),   logdet = -sum(log sigma)

    mu and log sigma are free parameters per position and channel,
    zero-initialised (the prior starts as N(0, I)). As for `SplitPrior`,
    eps is standard normal under the prior.

    With `num_classes > 0` the prior is class-conditional, as in the paper's
    conditional CIFAR-10 model: each class adds a learned per-channel shift
    to mu and to log sigma (zero-initialised), and every call takes `labels`.

    Args:
        num_classes: 0 for an unconditional prior.
        log_scale_factor: the class embedding is learned divided by this
            factor and multiplied back, as ActNorm's log-scale (see there).

    Call arguments:
        z: the top latent (or eps, with `inverse=True`).
        inverse: generate instead of encode.
        labels: int class labels of shape (batch,): required by a
            conditional prior, refused by an unconditional one.
    """

    def __init__(self, num_classes=0, log_scale_factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.log_scale_factor = float(log_scale_factor)

    def build(self, input_shape):
        shape = tuple(input_shape[1:])
        self.mean = self.add_weight(name="mean", shape=shape, initializer="zeros")
        self.log_scale = self.add_weight(
            name="log_scale", shape=shape, initializer="zeros"
        )
        if self.num_classes:
            self.class_embedding = self.add_weight(
                name="class_embedding", shape=(self.num_classes, 2 * shape[-1]),
                initializer="zeros",
            )

    def forward(self, z, labels=None):
        mean, log_scale = self.mean_and_log_scale(z, labels)
        return (z - mean) * ops.exp(-log_scale), -sum_per_example(log_scale)

    def inverse(self, eps, labels=None):
        mean, log_scale = self.mean_and_log_scale(eps, labels)
        # The batched operand goes first: Keras' TensorFlow `add` turns
        # `a + b` into bias_add(a, squeeze(b)) when b has one non-unit axis,
        # which drops b's batch axis for one example with a 1x1 top latent.
        return eps * ops.exp(log_scale) + mean, sum_per_example(log_scale)

    def mean_and_log_scale(self, z, labels):
        if not self.num_classes:
            if labels is not None:
                raise ValueError(
                    "labels were given to an unconditional prior (num_classes=0)."
                )
            mean, log_scale = self.mean, self.log_scale
        else:
            if labels is None:
                raise ValueError(
                    f"This prior is class-conditional (num_classes={self.num_classes}): "
                    "pass labels, one integer class per example."
                )
            embedding = ops.take(self.class_embedding, ops.cast(labels, "int32"), axis=0)
            if self.log_scale_factor != 1.0:
                embedding = embedding * self.log_scale_factor
            embedding = ops.expand_dims(ops.expand_dims(embedding, 1), 1)
            channels = z.shape[-1]
            mean = embedding[..., :channels] + self.mean  # batched first, as above
            log_scale = embedding[..., channels:] + self.log_scale
        # Per example, so the log-det sums over the event, not the batch.
        return mean, ops.broadcast_to(log_scale, ops.shape(z))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "log_scale_factor": self.log_scale_factor,
        }
