"""Activation normalisation (Glow, section 3.1)."""

import contextlib

import keras
import numpy as np
from keras import ops

from glow_tf.layers.base import Bijector, layers_within, num_pixels, per_example, weight_name


@keras.saving.register_keras_serializable(package="glow_tf")
class ActNorm(Bijector):
    """Per-channel affine transform with data-dependent initialisation.

    y = (x + b) * exp(log_s),   logdet = H * W * sum(log_s)

    Before training, `b` and `log_s` are set so that y has zero mean and unit
    variance per channel on an initial batch (`Glow.initialize` does this in
    one eager pass inside `data_initialization`). The
    `initialized` flag is a non-trainable variable, so a weights file records
    whether the initialisation happened.

    Args:
        epsilon: added to the batch standard deviation when initialising, so
            that a constant channel does not give an infinite scale.
        log_scale_factor: the variable holds log_s / factor and the layer
            uses factor * it, as the reference code does with 3: Adam(ax)
            steps are about lr in the variable, so log_s moves factor times
            faster. 1 learns log_s itself.

    Example:
        >>> layer = ActNorm()
        >>> y, logdet = layer(x)
        >>> x_again, minus_logdet = layer(y, inverse=True)
    """

    def __init__(self, epsilon=1e-6, log_scale_factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.log_scale_factor = float(log_scale_factor)
        # Set by `data_initialization` around an eager pass only: a Python
        # flag, so a compiled training step never contains the initialisation.
        self.data_init = False

    def build(self, input_shape):
        channels = input_shape[-1]
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")
        self.log_scale = self.add_weight(
            name="log_scale", shape=(channels,), initializer="zeros"
        )
        self.initialized = self.add_weight(
            name="initialized", shape=(), initializer="zeros", trainable=False
        )

    def initialize_from(self, x):
        axes = tuple(range(len(x.shape) - 1))
        x = ops.cast(x, self.variable_dtype)
        mean = ops.mean(x, axis=axes)
        std = ops.sqrt(ops.mean(ops.square(x - mean), axis=axes))
        self.bias.assign(-mean)
        self.log_scale.assign(-ops.log(std + self.epsilon) / self.log_scale_factor)
        self.initialized.assign(1.0)

    def log_s(self):
        if self.log_scale_factor == 1.0:
            return self.log_scale
        return self.log_scale * self.log_scale_factor

    def forward(self, x, labels=None):
        if self.data_init:
            self.initialize_from(x)
        log_s = self.log_s()
        y = (x + self.bias) * ops.exp(log_s)
        return y, per_example(num_pixels(x) * ops.sum(log_s), x)

    def inverse(self, y, labels=None):
        log_s = self.log_s()
        x = y * ops.exp(-log_s) - self.bias
        return x, per_example(-num_pixels(y) * ops.sum(log_s), y)

    def get_config(self):
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "log_scale_factor": self.log_scale_factor,
        }


@contextlib.contextmanager
def data_initialization(layer):
    """Within it, every ActNorm inside `layer` initialises itself from the batch it sees.

    Run one eager forward pass of `layer` inside it, on a few hundred
    training images; each ActNorm is set from its own input in that pass.
    """
    actnorms = actnorms_within(layer)
    for actnorm in actnorms:
        actnorm.data_init = True
    try:
        yield
    finally:
        for actnorm in actnorms:
            actnorm.data_init = False


def actnorms_within(layer):
    return [found for found in layers_within(layer) if isinstance(found, ActNorm)]


def all_initialized(layer):
    """Whether every ActNorm inside `layer` was initialised (as its weights record).

    Read from the weights named "initialized": a level's steps hold theirs
    stacked, one value per step.
    """
    return all(
        bool(np.all(ops.convert_to_numpy(variable) == 1.0))
        for variable in layer.weights if weight_name(variable) == "initialized"
    )
