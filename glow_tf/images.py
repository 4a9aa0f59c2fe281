"""Arranging images for viewing (numpy only)."""

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
