"""Split with a learned conditional prior (Glow, section 3 and appendix)."""

import keras
from keras import ops

from glow_tf.layers.base import Bijector, split_channels, sum_per_example
from glow_tf.layers.networks import ZeroConv2D


@keras.saving.register_keras_serializable(package="glow_tf")
class SplitPrior(Bijector):
    """Standardises the half of the channels that a level factors out.

    The multi-scale architecture keeps z_a and factors out z_b, whose prior
    is N(mu, sigma^2) with (mu, log sigma) = ZeroConv(z_a). Written as a
    bijector,

        eps = (z_b - mu(z_a)) * exp(-log sigma(z_a)),   y = concat(z_a, eps)
        logdet = -sum(log sigma)

    so that eps is standard normal under the prior and
    log N(z_b; mu, sigma) = log N(eps; 0, I) + logdet. `split` then hands
    eps to the model as this level's latent and z_a to the next level.
    """

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels < 2:
            raise ValueError(f"SplitPrior needs at least 2 channels, got {channels}.")
        self.channels_a = channels // 2
        self.channels_b = channels - self.channels_a
        # Prior math stays in this layer's (float32) policy.
        self.prior = ZeroConv2D(2 * self.channels_b, dtype=self.dtype_policy, name="prior")
        self.prior.build((*input_shape[:-1], self.channels_a))

    def _mean_and_log_scale(self, z_a):
        return split_channels(self.prior(z_a), self.channels_b)

    def forward(self, x):
        z_a, z_b = self.split(x)
        mean, log_scale = self._mean_and_log_scale(z_a)
        eps = (z_b - mean) * ops.exp(-log_scale)
        return self.merge(z_a, eps), -sum_per_example(log_scale)

    def inverse(self, y):
        z_a, eps = self.split(y)
        mean, log_scale = self._mean_and_log_scale(z_a)
        z_b = mean + eps * ops.exp(log_scale)
        return self.merge(z_a, z_b), sum_per_example(log_scale)

    def split(self, y):
        """(kept half for the next level, factored-out half)."""
        return split_channels(y, self.channels_a)

    def merge(self, kept, factored):
        return ops.concatenate([kept, factored], axis=-1)
