"""Attribute directions kept in a run folder, so that they are computed once per weights file.

    <run_dir>/directions/<dataset>.npz

holds, for each attribute, its direction at every level
(glow_tf.analysis.manipulation), and the SHA-256 of the weights file they
were computed from: weights that changed (a run trained on, the best
weights instead of the newest) make them stale, and they are computed again.
"""

import hashlib
import os

import numpy as np

from glow_tf.runs.files import atomic_write

DIRECTIONS = "directions"


def file_digest(path):
    """SHA-256 of a file (the weights, an attribute CSV), in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directions_file(run_dir, dataset):
    return os.path.join(run_dir, DIRECTIONS, f"{dataset}.npz")


def read_directions(path, digest):
    """{name: [direction per level]} stored at `path` for weights `digest`; None if absent or stale."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as stored:
            if str(stored["weights_sha256"]) != digest:
                return None
            names, levels = list(stored["names"]), int(stored["levels"])
            return {
                str(name): [stored[f"direction_{i}_{level}"] for level in range(levels)]
                for i, name in enumerate(names)
            }
    except (OSError, ValueError, KeyError):
        return None  # unreadable: computed again and written over


def write_directions(path, directions, digest):
    """Stores {name: [direction per level]} for weights `digest`, atomically."""
    names = list(directions)
    levels = len(next(iter(directions.values())))
    arrays = {
        f"direction_{i}_{level}": np.asarray(directions[name][level], np.float32)
        for i, name in enumerate(names) for level in range(levels)
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, lambda temp: np.savez(
        temp, names=np.asarray(names), levels=levels, weights_sha256=digest, **arrays
    ))
