"""Invertible 1x1 convolution (Glow, section 3.2)."""

import contextlib

import keras
import numpy as np
import scipy.linalg
from keras import ops

from glow_tf.layers.base import Bijector, layers_within, matmul_channels, num_pixels, per_example


@keras.saving.register_keras_serializable(package="glow_tf")
class Invertible1x1Conv(Bijector):
    """A learned mixing of channels: y = W x at every pixel.

    logdet = H * W * log|det W|. With `lu_decomposed=True` (the default) the
    kernel is parameterised as

        W = P L (U + diag(sign_s * exp(log_s)))

    with P a fixed permutation, L unit lower triangular and U strictly upper
    triangular, so log|det W| = sum(log_s) costs O(C) instead of the O(C^3)
    decomposition that the plain form (`lu_decomposed=False`) needs. Both start
    from a random rotation, so log|det W| = 0 at initialisation.

    Args:
        lu_decomposed: use the LU parameterisation.
        seed: seed of the random rotation; None uses Keras' global seed.
    """

    def __init__(self, lu_decomposed=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.lu_decomposed = lu_decomposed
        self.seed = seed
        # (W^-1, log|det W|) while `constant_decompositions` holds them.
        self._constants = None

    def build(self, input_shape):
        channels = input_shape[-1]
        rotation = ops.convert_to_numpy(
            keras.initializers.Orthogonal(seed=self.seed)((channels, channels))
        ).astype(np.float64)
        if not self.lu_decomposed:
            self.kernel = self.add_weight(
                name="kernel", shape=(channels, channels),
                initializer=_constant(rotation),
            )
            return
        p, lower, upper = scipy.linalg.lu(rotation)
        s = np.diag(upper)
        # P and the signs of s are fixed: they are weights only so that a
        # weights file restores exactly the same W.
        self.p = self.add_weight(
            name="p", shape=(channels, channels), initializer=_constant(p),
            trainable=False,
        )
        self.sign_s = self.add_weight(
            name="sign_s", shape=(channels,), initializer=_constant(np.sign(s)),
            trainable=False,
        )
        self.lower = self.add_weight(
            name="lower", shape=(channels, channels), initializer=_constant(lower)
        )
        self.upper = self.add_weight(
            name="upper", shape=(channels, channels),
            initializer=_constant(np.triu(upper, 1)),
        )
        self.log_s = self.add_weight(
            name="log_s", shape=(channels,), initializer=_constant(np.log(np.abs(s)))
        )
        self.lower_mask = np.tril(np.ones((channels, channels), np.float32), -1)
        self.upper_mask = self.lower_mask.T
        self.eye = np.eye(channels, dtype=np.float32)

    def weight(self):
        """The (C_out, C_in) kernel W."""
        if not self.lu_decomposed:
            return self.kernel
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.upper_mask + ops.diag(self.sign_s * ops.exp(self.log_s))
        return ops.matmul(self.p, ops.matmul(lower, upper))

    def log_abs_det_weight(self):
        if self._constants is not None:
            return self._constants[1]
        if self.lu_decomposed:
            return ops.sum(self.log_s)
        # |det W| = prod |diag R| for W = QR. Not slogdet: TensorFlow has no
        # XLA kernel for it, so a jit_compile=True training step would fail.
        _, r = ops.linalg.qr(self.kernel)
        return ops.sum(ops.log(ops.abs(ops.diagonal(r))))

    def forward(self, x, labels=None):
        y = matmul_channels(x, ops.transpose(self.weight()))
        return y, per_example(num_pixels(x) * self.log_abs_det_weight(), x)

    def inverse(self, y, labels=None):
        x = matmul_channels(y, ops.transpose(self.inverse_weight()))
        return x, per_example(-num_pixels(y) * self.log_abs_det_weight(), y)

    def inverse_weight(self):
        if self._constants is not None:
            return self._constants[0]
        return ops.inv(self.weight())

    @property
    def holds_constants(self):
        """Whether W^-1 and log|det W| are constants (within `constant_decompositions`)."""
        return self._constants is not None

    @contextlib.contextmanager
    def constant_decompositions(self):
        """Within it, W^-1 and log|det W| are constants computed on entry.

        For functions traced to serve fixed weights (glow_tf.tf.export): on
        JAX's CPU a matrix inverse and a QR decomposition are LAPACK calls,
        which a JAX function converted to TensorFlow cannot run.
        """
        with self.holding(self.decompositions()):
            yield

    def decompositions(self):
        """(W^-1, log|det W|) of the current weights, as NumPy values."""
        return (ops.convert_to_numpy(self.inverse_weight()),
                ops.convert_to_numpy(self.log_abs_det_weight()))

    @contextlib.contextmanager
    def holding(self, constants):
        """Within it, W^-1 and log|det W| are `constants` ((W^-1, log|det W|))."""
        self._constants = constants
        try:
            yield
        finally:
            self._constants = None

    def get_config(self):
        return {
            **super().get_config(),
            "lu_decomposed": self.lu_decomposed,
            "seed": self.seed,
        }


@contextlib.contextmanager
def constant_decompositions_within(layer):
    """`constant_decompositions` of every invertible 1x1 convolution inside `layer`.

    A level's steps (FlowSteps) hold those of each of their steps.
    """
    with contextlib.ExitStack() as stack:
        for found in layers_within(layer, templates=False):
            if hasattr(found, "constant_decompositions"):
                stack.enter_context(found.constant_decompositions())
        yield


def _constant(value):
    return keras.initializers.Constant(np.asarray(value, np.float32))
