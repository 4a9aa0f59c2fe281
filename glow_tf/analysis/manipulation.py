"""Attribute manipulation in latent space (Glow, section 5.3 and figure 5).

For a binary attribute (smiling, blond hair, a digit being a 3), the
direction is the mean encoding of the images that have it minus the mean of
those that do not, at every level of the multi-scale latent. Moving an
image's latent along it, z + s * direction, and decoding changes the
attribute while keeping the rest; s = 0 gives the image back.

Images are encoded at the centre of their quantisation bins (no noise), so
the directions are a function of the images and the weights alone.
Backend-agnostic (keras.ops and NumPy).
"""

import numpy as np
from keras import ops

from glow_tf.analysis.pictures import bin_centres


def encode_in_batches(model, images, labels=None, batch_size=256):
    """The latents of uint8 images: one (N, *latent shape) NumPy array per level."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images has shape {images.shape}; expected (N, H, W, C) with N >= 1.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected an integer >= 1.")
    levels = None
    for start in range(0, len(images), batch_size):
        chunk = slice(start, start + batch_size)
        zs, _ = model.encode(
            bin_centres(images[chunk], model.config.n_bits),
            None if labels is None else np.asarray(labels)[chunk],
        )
        zs = [ops.convert_to_numpy(z) for z in zs]
        levels = [[z] for z in zs] if levels is None else [a + [z] for a, z in zip(levels, zs)]
    return [np.concatenate(level) for level in levels]


def attribute_directions(model, images, attributes, names=None, labels=None, batch_size=256):
    """{name: [direction per level]}: mean latent with the attribute minus without.

    Args:
        model: a trained Glow.
        images: uint8 (N, H, W, C), the labelled images (a training split).
        attributes: (N, A) of 0/1 (or booleans), one column per attribute;
            or (N,) for one attribute.
        names: the A attribute names (default "0", "1", ...).
        labels: class labels, for a class-conditional model.
        batch_size: images encoded at a time.

    Raises:
        ValueError: shapes that disagree, values other than 0/1, or an
            attribute that every image has, or none has (no direction).
    """
    attributes = np.asarray(attributes)
    if attributes.ndim == 1:
        attributes = attributes[:, None]
    if attributes.ndim != 2 or len(attributes) != len(images):
        raise ValueError(
            f"attributes has shape {attributes.shape}; expected ({len(images)}, A): one row "
            "of 0/1 values per image."
        )
    if not np.isin(attributes, (0, 1)).all():
        raise ValueError("attributes hold values other than 0 and 1; expected binary attributes.")
    names = [str(i) for i in range(attributes.shape[1])] if names is None else list(names)
    if len(names) != attributes.shape[1]:
        raise ValueError(f"Got {len(names)} names for {attributes.shape[1]} attribute columns.")
    latents = encode_in_batches(model, images, labels, batch_size)
    directions = {}
    for column, name in enumerate(names):
        has = attributes[:, column].astype(bool)
        if has.all() or not has.any():
            raise ValueError(
                f"attribute {name!r}: {int(has.sum())} of {len(has)} images have it; a "
                "direction needs images with and without it."
            )
        directions[name] = [
            (z[has].astype(np.float64).mean(0) - z[~has].astype(np.float64).mean(0)).astype(np.float32)
            for z in latents
        ]
    return directions


def manipulate(model, images, direction, scales, labels=None):
    """Decodes each image's latent moved along `direction` by each scale.

    Args:
        images: uint8 (N, H, W, C).
        direction: one array per level, as `attribute_directions` returns.
        scales: the multiples of the direction, e.g. (-1, -0.5, 0, 0.5, 1);
            0 reconstructs the image.

    Returns:
        (N, len(scales), H, W, C) floats in [-0.5, 0.5].
    """
    scales = [float(s) for s in scales]
    if not scales or not all(np.isfinite(scales)):
        raise ValueError(f"scales={scales!r}: expected one or more finite numbers.")
    zs = encode_in_batches(model, images, labels)
    if len(direction) != len(zs) or any(
        tuple(d.shape) != tuple(z.shape[1:]) for d, z in zip(direction, zs)
    ):
        raise ValueError(
            f"The direction has levels of shapes {[tuple(d.shape) for d in direction]}; "
            f"this model's latents are {list(model.latent_shapes)}."
        )
    columns = []
    for scale in scales:
        moved = [z + scale * d for z, d in zip(zs, direction)]
        columns.append(ops.convert_to_numpy(ops.clip(model.decode(moved, labels), -0.5, 0.5)))
    return np.stack(columns, axis=1)
