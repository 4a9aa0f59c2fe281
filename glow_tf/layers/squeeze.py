"""Squeeze: the 2x2 space-to-depth that starts every level (Glow, section 3)."""

import keras
from keras import ops

from glow_tf.layers.base import Bijector, per_example


@keras.saving.register_keras_serializable(package="glow_tf")
class Squeeze(Bijector):
    """(H, W, C) -> (H/2, W/2, 4C); a reshuffle of values, so logdet = 0.

    Output channel c * 4 + 2 * dy + dx holds input channel c at offset
    (dy, dx) of each 2x2 patch, so an input channel's patch stays together.
    """

    def build(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        if height % 2 or width % 2:
            raise ValueError(
                f"Squeeze needs even height and width, got {height}x{width}."
            )

    def forward(self, x, labels=None):
        _, height, width, channels = x.shape
        y = ops.reshape(x, (-1, height // 2, 2, width // 2, 2, channels))
        y = ops.transpose(y, (0, 1, 3, 5, 2, 4))
        y = ops.reshape(y, (-1, height // 2, width // 2, channels * 4))
        return y, per_example(0.0, x)

    def inverse(self, y, labels=None):
        _, height, width, channels = y.shape
        x = ops.reshape(y, (-1, height, width, channels // 4, 2, 2))
        x = ops.transpose(x, (0, 1, 4, 2, 5, 3))
        x = ops.reshape(x, (-1, height * 2, width * 2, channels // 4))
        return x, per_example(0.0, y)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height // 2, width // 2, channels * 4)
