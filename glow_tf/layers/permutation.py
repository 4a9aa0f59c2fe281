"""Fixed channel permutations: the paper's baselines for the 1x1 conv."""

import keras
import numpy as np
from keras import ops

from glow_tf.layers.base import Bijector, per_example


@keras.saving.register_keras_serializable(package="glow_tf")
class Permute(Bijector):
    """Reorders channels by a fixed permutation; logdet = 0.

    Args:
        mode: "reverse" (RealNVP's reversal) or "shuffle" (a random
            permutation fixed at build time and stored in the weights).
        seed: seed of the shuffle.
    """

    MODES = ("reverse", "shuffle")

    def __init__(self, mode="reverse", seed=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode={mode!r}: expected one of {', '.join(self.MODES)}.")
        self.mode = mode
        self.seed = seed

    def build(self, input_shape):
        channels = input_shape[-1]
        if self.mode == "reverse":
            order = np.arange(channels)[::-1]
        else:
            order = np.random.default_rng(self.seed).permutation(channels)
        # A non-trainable weight, so that a reloaded model shuffles the same way.
        self.order = self.add_weight(
            name="order", shape=(channels,), dtype="int32", trainable=False,
            initializer=keras.initializers.Constant(order.astype(np.int32)),
        )

    def forward(self, x, labels=None):
        return ops.take(x, self.order, axis=-1), per_example(0.0, x)

    def inverse(self, y, labels=None):
        return ops.take(y, ops.argsort(self.order), axis=-1), per_example(0.0, y)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "seed": self.seed}
