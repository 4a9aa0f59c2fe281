"""Drawing a Glow's latents at a temperature, and decoding many of them in batches.

`Glow.sample` is built from these; the TensorBoard summaries and the
SavedModel export draw their latents with `draw_latents` too, so that the
same seed gives the same latents everywhere. Backend-agnostic.
"""

import keras
import numpy as np
from keras import ops

from glow_tf import draws

# Images that `Glow.sample` decodes at once. The memory of one decode grows
# with its batch (the coupling networks' activations), so a large n is
# decoded in batches of this size.
SAMPLE_BATCH_SIZE = 1024


def draw_latents(latent_shapes, n, temperature, seed=None):
    """One latent per level, each of shape (n, *shape), drawn from N(0, temperature^2 I).

    The paper's reduced-temperature sampling in the standardised latent
    space; temperature 0 gives zeros, the priors' means.

    Args:
        latent_shapes: the model's `latent_shapes`.
        n: how many (an int, or a scalar tensor inside a traced function).
        seed: an int, a `keras.random.SeedGenerator` (which each level draws
            from in turn), or None.
    """
    if not isinstance(seed, keras.random.SeedGenerator):
        seed = keras.random.SeedGenerator(seed)
    return [temperature * draws.normal((n, *shape), seed) for shape in latent_shapes]


def pad_rows(rows, size):
    """`rows` with its last row repeated up to `size` rows: one batch shape for a compiled call.

    NumPy arrays stay NumPy arrays; backend tensors stay tensors.
    """
    missing = size - int(rows.shape[0])
    if missing <= 0:
        return rows
    if isinstance(rows, np.ndarray):
        return np.concatenate([rows, np.repeat(rows[-1:], missing, axis=0)])
    return ops.concatenate([rows, ops.repeat(rows[-1:], missing, axis=0)], axis=0)


def decode_in_batches(decode, latents, labels, batch_size):
    """decode(latents, labels) clipped to [-0.5, 0.5], `batch_size` rows at a time.

    Every batch is padded to `batch_size` rows, so a compiled decode sees one
    shape; the padding's images are dropped.
    """
    n = int(latents[0].shape[0])
    if n <= batch_size:
        return ops.clip(decode(latents, labels), -0.5, 0.5)
    batches = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        batch = [pad_rows(z[start:stop], batch_size) for z in latents]
        batch_labels = None if labels is None else pad_rows(labels[start:stop], batch_size)
        batches.append(ops.clip(decode(batch, batch_labels), -0.5, 0.5)[:stop - start])
    return ops.concatenate(batches, axis=0)
