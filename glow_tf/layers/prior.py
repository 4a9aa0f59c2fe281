"""The learned prior of the top latent."""

import keras
from keras import ops

from glow_tf.layers.base import Bijector, per_example, sum_per_example


@keras.saving.register_keras_serializable(package="glow_tf")
class LearnedPrior(Bijector):
    """Standardises the top latent under a learned diagonal Gaussian.

    eps = (z - mu) * exp(-log sigma),   logdet = -sum(log sigma)

    with mu and log sigma free parameters per position and channel,
    zero-initialised (the prior starts as N(0, I)). As for `SplitPrior`,
    eps is standard normal under the prior.
    """

    def build(self, input_shape):
        shape = tuple(input_shape[1:])
        self.mean = self.add_weight(name="mean", shape=shape, initializer="zeros")
        self.log_scale = self.add_weight(
            name="log_scale", shape=shape, initializer="zeros"
        )

    def forward(self, z):
        eps = (z - self.mean) * ops.exp(-self.log_scale)
        return eps, per_example(-ops.sum(self.log_scale), z)

    def inverse(self, eps):
        # The batch tensor goes first: Keras' TensorFlow `add` turns `a + b` into
        # bias_add(a, squeeze(b)) when b has one non-unit axis, which drops the
        # batch axis of b when a is the unbatched (1, 1, C) mean (keras#20386).
        z = eps * ops.exp(self.log_scale) + self.mean
        return z, per_example(ops.sum(self.log_scale), eps)
