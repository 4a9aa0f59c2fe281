"""Between uint8 images and the flow's inputs x in [-0.5, 0.5).

An image with n_bits per channel has 2**n_bits levels; level k becomes
x = k / 2**n_bits - 0.5, and dequantisation adds uniform noise of one bin
width, so that the continuous density of x integrates, over the bin, to the
probability of the discrete image (Glow, section 2; Theis et al. 2016).
"""

import math

from keras import ops

from glow_tf import draws


def quantize(images, n_bits):
    """uint8 images (0..255) -> x in [-0.5, 0.5), on the 2**n_bits-level grid.

    The reduction keeps the top n_bits of each value, so applying it to
    images that were already reduced changes nothing.
    """
    levels = ops.floor(ops.cast(images, "float32") / 2 ** (8 - n_bits))
    return levels / 2**n_bits - 0.5


def dequantize(images, n_bits, seed=None):
    """quantize(images) plus U(0, 1/2**n_bits) noise: the training input.

    Args:
        seed: an int, a `keras.random.SeedGenerator`, or None.
    """
    x = quantize(images, n_bits)
    return x + draws.uniform(ops.shape(x), 0.0, 1.0 / 2**n_bits, seed)


def to_uint8(x, n_bits):
    """x in [-0.5, 0.5] (samples, reconstructions) -> uint8 images.

    Each x is floored to the level of the bin it falls in (x in
    [k / 2**n_bits - 0.5, (k + 1) / 2**n_bits - 0.5) gives level k, so a
    dequantised image gives its own levels back), and the 2**n_bits levels
    are spread over 0..255 for viewing.
    """
    levels = ops.clip(ops.floor((x + 0.5) * 2**n_bits), 0, 2**n_bits - 1)
    return ops.cast(levels * (255.0 / (2**n_bits - 1)), "uint8")


def bits_per_dim(log_prob, num_dims, n_bits):
    """Discrete NLL in bits/dim from the continuous log-density of x.

    bpd = (-log p(x) + D log 2**n_bits) / (D log 2): the bin term
    D log 2**n_bits turns the density at dequantised x into (a bound on) the
    probability of the quantised image.
    """
    return (-log_prob + num_dims * n_bits * math.log(2.0)) / (num_dims * math.log(2.0))
