"""The small convolutional networks inside couplings and priors.

These are ordinary layers, not bijectors: they compute the shift and scale
that the coupling and split bijectors apply. They live beside those
bijectors because they use one (ActNorm after each hidden convolution).
"""

import keras
from keras import ops

from glow_tf.layers.actnorm import ActNorm


@keras.saving.register_keras_serializable(package="glow_tf")
class ZeroConv2D(keras.layers.Layer):
    """A 3x3 convolution that outputs zeros at initialisation.

    out = (conv(x) + b) * exp(3 * log_scale), with kernel, b and log_scale
    zero-initialised, so every coupling starts as a fixed map and every
    learned prior as N(0, I). The factor 3 lets the output scale move faster
    than plain SGD on log_scale would (as in the original Glow code).

    Args:
        filters: output channels.
        log_scale_factor: the factor 3 above.
    """

    def __init__(self, filters, log_scale_factor=3.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.log_scale_factor = log_scale_factor
        self.conv = keras.layers.Conv2D(
            filters, 3, padding="same", kernel_initializer="zeros",
            bias_initializer="zeros", dtype=self.dtype_policy, name="conv",
        )

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.log_scale = self.add_weight(
            name="log_scale", shape=(self.filters,), initializer="zeros"
        )

    def call(self, x):
        return self.conv(x) * ops.exp(self.log_scale * self.log_scale_factor)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "log_scale_factor": self.log_scale_factor,
        }


@keras.saving.register_keras_serializable(package="glow_tf")
class CouplingNetwork(keras.layers.Layer):
    """NN() of the coupling layer (Glow, section 3.3 and appendix):

    conv3x3 -> ActNorm -> ReLU -> conv1x1 -> ActNorm -> ReLU -> ZeroConv3x3

    The convolutions have no bias since ActNorm follows them. This is the
    only part of Glow that may run in reduced precision: it takes the layer's
    (global) dtype policy, while the bijectors around it stay float32.

    Args:
        hidden_channels: width of the two hidden layers.
        out_channels: channels of the output.
        seed: seed of the two random kernels, which draw from streams of
            their own (seed and seed + 1); None for random ones.
        log_scale_factor: of the two ActNorms (see ActNorm).
    """

    def __init__(self, hidden_channels, out_channels, seed=None, log_scale_factor=1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.seed = seed
        self.log_scale_factor = log_scale_factor
        policy = self.dtype_policy
        self.conv_in = keras.layers.Conv2D(
            hidden_channels, 3, padding="same", use_bias=False,
            kernel_initializer=_kernel_init(seed, 0), dtype=policy, name="conv_in",
        )
        self.actnorm_in = ActNorm(log_scale_factor=log_scale_factor, dtype=policy,
                                  name="actnorm_in")
        self.conv_hidden = keras.layers.Conv2D(
            hidden_channels, 1, use_bias=False, kernel_initializer=_kernel_init(seed, 1),
            dtype=policy, name="conv_hidden",
        )
        self.actnorm_hidden = ActNorm(log_scale_factor=log_scale_factor, dtype=policy,
                                      name="actnorm_hidden")
        self.conv_out = ZeroConv2D(out_channels, dtype=policy, name="conv_out")

    def build(self, input_shape):
        hidden_shape = (*input_shape[:-1], self.hidden_channels)
        self.conv_in.build(input_shape)
        self.actnorm_in.build(hidden_shape)
        self.conv_hidden.build(hidden_shape)
        self.actnorm_hidden.build(hidden_shape)
        self.conv_out.build(hidden_shape)

    @property
    def initializing(self):
        """Whether `Glow.initialize` is running its data-dependent pass."""
        return self.actnorm_in.data_init or self.actnorm_hidden.data_init

    def call(self, x):
        h, _ = self.actnorm_in(self.conv_in(x))
        h = ops.relu(h)
        h, _ = self.actnorm_hidden(self.conv_hidden(h))
        h = ops.relu(h)
        return self.conv_out(h)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.out_channels)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_channels": self.hidden_channels,
            "out_channels": self.out_channels,
            "seed": self.seed,
            "log_scale_factor": self.log_scale_factor,
        }


def _kernel_init(seed, offset):
    """N(0, 0.05) as in the original Glow code: smaller than Glorot for a 512-wide
    layer, so the data-dependent ActNorm init sees sane scales.

    One initialiser per kernel: Keras draws a seedless initialiser's seed once,
    so two kernels sharing one would start from the same numbers.
    """
    return keras.initializers.RandomNormal(
        stddev=0.05, seed=None if seed is None else seed + offset
    )
