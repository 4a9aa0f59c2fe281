"""Arranging images for viewing (numpy), and writing them as PNG files (Pillow)."""

import math

import numpy as np


def grid(images, columns=None, padding=1):
    """(N, H, W, C) images -> one (rows*(H+p)-p, columns*(W+p)-p, C) image.

    Cells are filled row by row and separated by `padding` pixels of zeros;
    `columns` defaults to a near-square layout.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images has shape {images.shape}; expected (N, H, W, C) with N >= 1.")
    n, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    out = np.zeros(
        (rows * (height + padding) - padding, columns * (width + padding) - padding, channels),
        images.dtype,
    )
    for i, image in enumerate(images):
        top, left = (i // columns) * (height + padding), (i % columns) * (width + padding)
        out[top : top + height, left : left + width] = image
    return out


def write_png(path, image):
    """Writes a uint8 (H, W, C) image, C = 1 or 3, as a PNG, atomically.

    The file appears complete or not at all (glow_tf.runs.files.atomic_write); a grey
    image is written as 8-bit greyscale.
    """
    from PIL import Image

    from glow_tf.runs.files import atomic_write

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            f"image has shape {image.shape} and dtype {image.dtype}; expected uint8 "
            "(H, W, 1) or (H, W, 3)."
        )
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    atomic_write(path, lambda temp: picture.save(temp, format="PNG"))
