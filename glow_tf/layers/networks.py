"""The small convolutional networks inside couplings and priors.

These are ordinary layers, not bijectors: they compute the shift and scale
that the coupling and split bijectors apply. They live beside those
bijectors because they use one (ActNorm after each hidden convolution).
"""

import functools

import keras
import numpy as np
from keras import ops

from glow_tf.config import is_wide
from glow_tf.layers.actnorm import ActNorm
from glow_tf.layers.base import matmul_channels, on_jax_cpu
from glow_tf.layers.recompute import mark_hidden

# Images of at most this many pixels (4x4: the upper levels of a small
# Glow) are convolved as one matmul (`conv_same`), when that matmul's
# matrix has at most SMALL_MATRIX entries: its cost grows as pixels^2 x
# C_in x C_out, and the backward pass keeps it. On the 4x4 level of a
# 512-wide Glow (matrices of 3 and 6 million entries) the convolution
# kernels took a fifth of its time and memory (docs/performance.md).
SMALL_IMAGE_PIXELS = 16
SMALL_MATRIX = 2**20


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
        # (conv(x, K) + b) e^{3 s} = conv(x, K e^{3 s}) + b e^{3 s}: the scale
        # multiplies the kernel, not the output (see `scaled_kernel`).
        scale = ops.exp(self.log_scale * self.log_scale_factor)
        return add_bias(convolve(x, self.conv.kernel * scale), self.conv.bias * scale,
                        fused=is_wide(x.shape[-1]))

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
        # The 1x1 convolution as what it is, a matmul over the channels at
        # every pixel: on the few pixels of Glow's upper levels TensorFlow's
        # convolution kernels cost several times more, forward and backward.
        hidden_kernel = ops.reshape(self.conv_hidden.kernel,
                                    (self.hidden_channels, self.hidden_channels))
        if self.initializing:
            # Each ActNorm sets itself from the convolution's output, so it
            # must see that output.
            h, _ = self.actnorm_in(convolve(x, self.conv_in.kernel))
            h, _ = self.actnorm_hidden(matmul_channels(ops.relu(h), hidden_kernel))
            return self.conv_out(ops.relu(h))
        wide = is_wide(self.hidden_channels)
        kernel, bias = scaled_kernel(self.conv_in.kernel, self.actnorm_in)
        h = ops.relu(add_bias(convolve(x, kernel), bias, fused=wide))
        kernel, bias = scaled_kernel(hidden_kernel, self.actnorm_hidden)
        return self.conv_out(hidden_layer(h, kernel, bias, fused=wide))

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


def scaled_kernel(kernel, actnorm):
    """The kernel and bias of a bias-free convolution by `kernel` followed by `actnorm`.

    ActNorm is an affine map per output channel, so
    (conv(x, W) + b) e^{log s} = conv(x, W e^{log s}) + b e^{log s}.
    The product scales the kernel, thousands of numbers, instead of the
    convolution's output, millions at 512 channels: per ActNorm, one
    multiply of the output less in the forward pass, and a multiply and a
    multiply-and-sum over it less in the backward pass (the scale's gradient
    becomes a sum over the kernel's gradient).
    """
    scale = ops.exp(actnorm.log_s())
    return kernel * scale, actnorm.bias * scale


def add_bias(x, bias, fused):
    """x + bias, the bias a vector over x's channels; `fused` for a wide network's.

    Fused, `ops.add`: on TensorFlow a BiasAdd, which TensorFlow fuses into
    the convolution or matmul before it (and, with Grappler's remapper,
    which the tools run for wide networks, a ReLU after it), and whose
    gradient it fuses into the kernel's gradient. Otherwise `+`, a
    broadcasting add: in a narrow network's small ops the BiasAdd and its
    gradient cost more than they save (at the digits preset's width 16, a
    step took 7% longer with them; docs/performance.md). The same sum on
    JAX either way.
    """
    return ops.add(x, bias) if fused else x + bias


def hidden_layer(h, kernel, bias, fused):
    """ReLU(h kernel + bias) at every pixel: the coupling network's 1x1 convolution,
    with its ActNorm in kernel and bias (`scaled_kernel`).

    As in `matmul_channels`, one 2-D matmul between reshapes; the bias and
    the ReLU come before the reshape back, so that TensorFlow can fuse all
    three (`add_bias`). The pre-ReLU output is named, as what a recomputing
    loop may keep (glow_tf.layers.recompute).
    """
    y = ops.matmul(ops.reshape(h, (-1, h.shape[-1])), kernel)
    y = ops.relu(mark_hidden(add_bias(y, bias, fused)))
    return ops.reshape(y, (-1, *h.shape[1:-1], kernel.shape[-1]))


def _kernel_init(seed, offset):
    """N(0, 0.05) as in the original Glow code: smaller than Glorot for a 512-wide
    layer, so the data-dependent ActNorm init sees sane scales.

    One initialiser per kernel: Keras draws a seedless initialiser's seed once,
    so two kernels sharing one would start from the same numbers.
    """
    return keras.initializers.RandomNormal(
        stddev=0.05, seed=None if seed is None else seed + offset
    )


def convolve(x, kernel):
    """The stride-1 "same" convolution of x by kernel, in the form that runs fastest here.

    Small images: one matmul (`conv_same`). XLA on a CPU (JAX): matmuls over
    the channels (`conv_as_matmul`). Otherwise the backend's convolution.
    """
    if is_small(x, kernel):
        return conv_same(x, kernel)
    if on_jax_cpu():
        return conv_as_matmul(x, kernel)
    return ops.conv(x, kernel, padding="same")


def conv_same(x, kernel):
    """A stride-1 "same" convolution of a small image, as one matmul.

    On an image of P pixels, the convolution is a linear map from the P x C_in
    inputs to the P x C_out outputs: this builds its matrix from the kernel
    (a constant 0/1 tensor places each tap) and multiplies. The same sums
    as a convolution, in another order; TensorFlow runs it, forward and
    backward, in about two thirds of its convolution kernels' time on the 4x4
    and 2x2 images of Glow's upper levels, where those kernels cost mostly
    their set-up. The matrix grows as P^2, so only for small images.
    """
    _, height, width, channels_in = x.shape
    kernel_height, kernel_width, _, channels_out = kernel.shape
    pixels = height * width
    taps = _tap_positions(height, width, kernel_height, kernel_width)
    # matrix[(p, i), (q, o)] = sum over taps t of taps[p, q, t] kernel[t, i, o]
    kernel = ops.reshape(kernel, (kernel_height * kernel_width, channels_in * channels_out))
    matrix = ops.matmul(ops.cast(taps, kernel.dtype), kernel)
    matrix = ops.reshape(matrix, (pixels, pixels, channels_in, channels_out))
    matrix = ops.reshape(ops.transpose(matrix, (0, 2, 1, 3)),
                         (pixels * channels_in, pixels * channels_out))
    y = ops.matmul(ops.reshape(x, (-1, pixels * channels_in)), matrix)
    return ops.reshape(y, (-1, height, width, channels_out))


@functools.lru_cache(maxsize=None)
def _tap_positions(height, width, kernel_height, kernel_width):
    """(P * P, taps) 0/1: 1 at (p * P + q, t) where input pixel p feeds output pixel q
    through tap t."""
    positions = np.zeros((height * width, height * width, kernel_height * kernel_width),
                         np.float32)
    for y in range(height):
        for x in range(width):
            for dy in range(kernel_height):
                for dx in range(kernel_width):
                    source_y, source_x = y + dy - kernel_height // 2, x + dx - kernel_width // 2
                    if 0 <= source_y < height and 0 <= source_x < width:
                        positions[source_y * width + source_x, y * width + x,
                                  dy * kernel_width + dx] = 1.0
    return positions.reshape(-1, kernel_height * kernel_width)


def is_small(x, kernel):
    """Whether `conv_same` convolves x with kernel: a small image, and a small matrix."""
    pixels = x.shape[1] * x.shape[2]
    return pixels <= SMALL_IMAGE_PIXELS and \
        pixels * pixels * kernel.shape[-2] * kernel.shape[-1] <= SMALL_MATRIX


def conv_as_matmul(x, kernel):
    """A stride-1 "same" convolution as one matmul over the channels, and shifted slices.

    With few input channels (a coupling network's first convolution), the
    k x k shifted copies of x are stacked on the channel axis and multiplied
    by the kernel as a (k k C_in, C_out) matrix (im2col). With few output
    channels (its last), x is multiplied by all k x k taps at once, a
    (C_in, k k C_out) matrix, and the k x k shifted slices of the result
    are summed. Either way the matmul's narrow side is k x k x
    min(C_in, C_out) wide, and its gradients are matmuls too: inside a loop
    (`FlowSteps`), XLA's CPU backend runs a convolution's kernel gradient
    with a slow generic kernel, a matmul with its fast one.
    """
    _, height, width, channels_in = x.shape
    kernel_height, kernel_width, _, channels_out = kernel.shape
    pad_y, pad_x = kernel_height // 2, kernel_width // 2
    padding = [(0, 0), (pad_y, pad_y), (pad_x, pad_x), (0, 0)]
    offsets = [(dy, dx) for dy in range(kernel_height) for dx in range(kernel_width)]
    if channels_in <= channels_out:
        padded = ops.pad(x, padding)
        patches = ops.concatenate(
            [padded[:, dy:dy + height, dx:dx + width, :] for dy, dx in offsets], axis=-1)
        return matmul_channels(patches, ops.reshape(kernel, (-1, channels_out)))
    # per_tap[p, t * C_out + o]: what input pixel p gives output channel o through
    # tap t. Output pixel q takes tap t = (dy, dx) from input pixel q + (dy, dx) - pad,
    # which the padding moves to q + (dy, dx).
    taps = ops.reshape(ops.transpose(kernel, (2, 0, 1, 3)), (channels_in, -1))
    per_tap = ops.pad(matmul_channels(x, taps), padding)
    y = 0.0
    for t, (dy, dx) in enumerate(offsets):
        y = y + per_tap[:, dy:dy + height, dx:dx + width,
                        t * channels_out:(t + 1) * channels_out]
    return y
