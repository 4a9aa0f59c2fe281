"""Affine and additive coupling (Glow, section 3.3)."""

import keras
from keras import ops

from glow_tf.layers.base import Bijector, per_example, split_channels, sum_per_example
from glow_tf.layers.networks import CouplingNetwork


@keras.saving.register_keras_serializable(package="glow_tf")
class Coupling(Bijector):
    """Transforms half the channels conditioned on the other half.

    x_a, x_b = split(x)
    (shift, h) = NN(x_a)
    s = sigmoid(h + 2)                     (affine; s = 1 when additive)
    y_b = (x_b + shift) * s,  y = concat(x_a, y_b)
    logdet = sum(log s)

    The +2 starts s near sigmoid(2) = 0.88, and the zero-initialised last
    layer of NN makes shift = 0 and h = 0 at initialisation.

    Args:
        hidden_channels: width of NN.
        affine: affine coupling if True, additive if False.
        network_dtype: dtype policy of NN (None: the global policy); the
            coupling's own math stays in its float32 policy.
        remat: recompute NN in the backward pass instead of keeping its
            activations (gradient checkpointing, `keras.remat`). The same
            function, gradients and weights; less memory, about one more
            forward pass of NN per step.
        seed: seed of NN's random kernels; None for random ones.
        log_scale_factor: of NN's ActNorms (see ActNorm).
    """

    def __init__(
        self, hidden_channels=512, affine=True, network_dtype=None, remat=False, seed=None,
        log_scale_factor=1.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.hidden_channels = hidden_channels
        self.affine = affine
        self.network_dtype = network_dtype
        self.remat = remat
        self.seed = seed
        self.log_scale_factor = log_scale_factor

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels < 2:
            raise ValueError(
                f"Coupling needs at least 2 channels, got {channels}."
            )
        self.channels_a = channels // 2
        self.channels_b = channels - self.channels_a
        self.network = CouplingNetwork(
            self.hidden_channels,
            2 * self.channels_b if self.affine else self.channels_b,
            seed=self.seed, log_scale_factor=self.log_scale_factor,
            dtype=self.network_dtype, name="network",
        )
        self.network.build((*input_shape[:-1], self.channels_a))

    def shift_and_log_scale(self, x_a):
        # NN's two hidden layers are `hidden_channels` wide, against the few
        # channels of x: nearly all the activation memory of a step of flow.
        # Not while initialising: that pass assigns the network's ActNorm
        # variables, which a traced (jax.checkpoint) function must not do.
        remat = self.remat and not self.network.initializing
        network = self.network
        if remat:
            # A new function each call, not the layer itself: jax.checkpoint
            # caches its trace per function, and a cached trace of the layer
            # holds the variable values of the transformation it was traced
            # in, so a jax.grad of the model after fit would meet a leaked
            # tracer.
            network = keras.remat(lambda h: self.network(h))
        h = ops.cast(network(x_a), "float32")
        if not self.affine:
            return h, None
        shift, pre_scale = split_channels(h, self.channels_b)
        return shift, ops.log_sigmoid(pre_scale + 2.0)

    def forward(self, x, labels=None):
        x_a, x_b = split_channels(x, self.channels_a)
        shift, log_scale = self.shift_and_log_scale(x_a)
        if log_scale is None:
            return ops.concatenate([x_a, x_b + shift], axis=-1), per_example(0.0, x)
        y_b = (x_b + shift) * ops.exp(log_scale)
        return ops.concatenate([x_a, y_b], axis=-1), sum_per_example(log_scale)

    def inverse(self, y, labels=None):
        y_a, y_b = split_channels(y, self.channels_a)
        shift, log_scale = self.shift_and_log_scale(y_a)
        if log_scale is None:
            return ops.concatenate([y_a, y_b - shift], axis=-1), per_example(0.0, y)
        x_b = y_b * ops.exp(-log_scale) - shift
        return ops.concatenate([y_a, x_b], axis=-1), -sum_per_example(log_scale)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_channels": self.hidden_channels,
            "affine": self.affine,
            "network_dtype": self.network_dtype,
            "remat": self.remat,
            "seed": self.seed,
            "log_scale_factor": self.log_scale_factor,
        }
