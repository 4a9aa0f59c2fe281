"""Pictures of what a Glow has learnt: samples by temperature, interpolations, reconstructions.

Backend-agnostic (keras.ops and numpy). Every function returns floats in
[-0.5, 0.5] of shape (rows, columns, H, W, C), ready for
`quantization.to_uint8` and `images.grid`; `sample.py` is their front end.
"""

import numpy as np
from keras import ops

from glow_tf import quantization

# The rows of `temperature_rows`: 0 (the priors' means) up to 1 (the model itself).
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 1.0)


def temperature_rows(model, n, temperatures=TEMPERATURES, seed=None, labels=None):
    """One row of n samples per temperature, all from the same standard noise.

    Row T decodes T * eps for the same eps ~ N(0, I), so the rows show one
    set of samples as the temperature rises; at T = 0 every sample is the
    decoded mean of the priors, whatever the seed. `labels` as in
    `Glow.sample`.

    Returns:
        (len(temperatures), n, H, W, C) floats in [-0.5, 0.5].
    """
    for temperature in temperatures:
        if not temperature >= 0:  # also rejects NaN
            raise ValueError(f"temperature={temperature!r}: expected a value >= 0.")
    rows = [model.sample(n, temperature=t, seed=seed, labels=labels) for t in temperatures]
    return np.stack([ops.convert_to_numpy(row) for row in rows])


def bin_centres(images, n_bits):
    """uint8 images -> the x at the centre of each pixel's quantisation bin.

    The noise-free point each discrete image stands for: decoding its
    latents and rounding gives the image back exactly.
    """
    return quantization.quantize(images, n_bits) + 0.5 / 2**n_bits


def interpolate(model, images_a, images_b, steps=8, labels_a=None, labels_b=None):
    """Walks from images_a to images_b in latent space, through every level's latent.

    Each level's standardised latent moves linearly, eps(t) = (1 - t) eps_a +
    t eps_b for t = 0 .. 1 in `steps` steps, so the first and last columns
    are exactly the encoded images (and decode back to them). A conditional
    model encodes each end with its own label and decodes the path with
    labels_a up to the middle and labels_b after it.

    Args:
        images_a, images_b: uint8 (N, H, W, C), the two ends of N paths.
        steps: columns per path, the ends included (>= 2).

    Returns:
        (x, latents): x of shape (N, steps, H, W, C), and the latents of each
        column, `latents[j]` a list with one array per level.
    """
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps={steps!r}: expected an integer >= 2 (the two ends).")
    n_bits = model.config.n_bits
    zs_a, _ = model.encode(bin_centres(images_a, n_bits), labels_a)
    zs_b, _ = model.encode(bin_centres(images_b, n_bits), labels_b)
    zs_a = [ops.convert_to_numpy(z) for z in zs_a]
    zs_b = [ops.convert_to_numpy(z) for z in zs_b]
    columns, latents = [], []
    for t in np.linspace(0.0, 1.0, steps, dtype=np.float32):
        zs = [(1 - t) * a + t * b for a, b in zip(zs_a, zs_b)]
        labels = labels_a if t < 0.5 else labels_b
        columns.append(ops.convert_to_numpy(ops.clip(model.decode(zs, labels), -0.5, 0.5)))
        latents.append(zs)
    return np.stack(columns, axis=1), latents


def reconstruct(model, images, labels=None):
    """(x, decode(encode(x))) of each image's bin centre x, each (N, H, W, C).

    The two agree up to float error: the flow is exactly invertible.
    """
    x = bin_centres(images, model.config.n_bits)
    zs, _ = model.encode(x, labels)
    return ops.convert_to_numpy(x), ops.convert_to_numpy(model.decode(zs, labels))
