"""Split with a learned conditional prior (Glow, section 3 and appendix)."""

import keras
from keras import ops

from glow_tf.layers.base import Bijector, split_channels, sum_per_example
from glow_tf.layers.networks import ZeroConv2D


@keras.saving.register_keras_serializable(package="glow_tf")
class SplitPrior(Bijector):
    """Factors out half of the channels, standardised under its learned prior.

    The multi-scale architecture keeps z_a for the next level and factors
    out z_b, whose prior is N(mu, sigma^2) with (mu, log sigma) =
    ZeroConv(z_a). Written as a bijector from one tensor to two,

        x = concat(z_a, z_b)  ->  (z_a, eps),   eps = (z_b - mu(z_a)) * exp(-log sigma(z_a))
        logdet = -sum(log sigma)

    so that eps, the level's latent, is standard normal under the prior and
    log N(z_b; mu, sigma) = log N(eps; 0, I) + logdet. The inverse takes
    the pair (z_a, eps) back to x.
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

    def mean_and_log_scale(self, z_a):
        return split_channels(self.prior(z_a), self.channels_b)

    def forward(self, x, labels=None):
        z_a, z_b = split_channels(x, self.channels_a)
        mean, log_scale = self.mean_and_log_scale(z_a)
        eps = (z_b - mean) * ops.exp(-log_scale)
        return (z_a, eps), -sum_per_example(log_scale)

    def inverse(self, y, labels=None):
        z_a, eps = y
        mean, log_scale = self.mean_and_log_scale(z_a)
        z_b = mean + eps * ops.exp(log_scale)
        return ops.concatenate([z_a, z_b], axis=-1), sum_per_example(log_scale)

    def compute_output_shape(self, input_shape):
        *rest, channels = input_shape
        kept = channels // 2
        return (*rest, kept), (*rest, channels - kept)
