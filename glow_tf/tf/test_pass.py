"""The test split scored after every epoch, in one compiled pass that the summaries share.

Keras' `fit(validation_data=...)` would trace a test step of its own, and
the TensorBoard summaries another function for the same encode of the
test images. `TestPass` scores the test split with the model's compiled
`encode` (glow_tf.compiled), the one that `bits_per_dim`, sampling and
evaluation use too, and keeps what the summaries show: the latents'
statistics and the first batch's latents. Backend-agnostic but for the
data, a tf.data pipeline.
"""

import math
import os

import keras
import numpy as np
from keras import ops

from glow_tf.sampling import pad_rows

# A test hook: a file to which every pass appends "test pass <step>" as it
# begins, so that a test can interrupt a run there (tests/faults/test_interrupt.py);
# a pass leaves no other trace until its end.
PHASE_LOG = "GLOW_TF_TEST_PHASE_LOG"


class TestPass(keras.callbacks.Callback):
    """Scores the test split after every epoch; `val_loss` in the logs is its bits/dim.

    Every batch is padded to `batch_size` images (repeating its last one,
    whose scores are then dropped), so that the compiled encode sees one
    shape: JAX traces once per shape. The dequantisation noise is drawn
    from `seed` anew in every pass, so every epoch is scored on the same
    noise and the epochs compare on equal terms. A class-conditional model
    is scored as p(x | y) at the test labels (bits/dim only, without the
    classifier's term of the training loss).

    Args:
        test: a tf.data dataset of uint8 image batches, or of
            {"images", "labels"} batches.
        batch_size: the size of its batches (all but the last).
        weights: the run's `glow_tf.tf.callbacks.HostWeights`.
        seed: seed of the dequantisation noise.

    Attributes (of the latest pass):
        bits_per_dim: the mean test bits/dim; None before the first pass.
        step: the optimizer step count it scored.
        moments: per level, (count, sum, sum of squares) of the latents.
        first_batch: (x, [latent per level], labels or None) of the first
            test batch, x the dequantised images the latents encode.
    """

    def __init__(self, test, batch_size, weights, seed=0):
        super().__init__()
        self.test = test
        self.batch_size = batch_size
        self.weights = weights
        self.seed = seed
        self.bits_per_dim = self.step = self.moments = self.first_batch = None

    def run(self, model):
        """Scores the test split with `model`'s current weights; returns the mean bits/dim."""
        optimizer = getattr(model, "optimizer", None)  # none on a model that was never compiled
        step = int(ops.convert_to_numpy(optimizer.iterations)) if optimizer is not None else None
        if os.environ.get(PHASE_LOG):
            with open(os.environ[PHASE_LOG], "a") as log:
                log.write(f"test pass {step}\n")
        generator = keras.random.SeedGenerator(self.seed)
        scores, moments, first = [], None, None
        for batch in self.test.as_numpy_iterator():
            images, labels = (batch["images"], batch["labels"]) if isinstance(batch, dict) \
                else (batch, None)
            n = len(images)
            x, zs, bpd = model.encode_images(
                pad_rows(images, self.batch_size),
                None if labels is None else pad_rows(labels, self.batch_size), seed=generator,
            )
            zs = [ops.convert_to_numpy(z)[:n].astype(np.float64) for z in zs]
            scores.append(ops.convert_to_numpy(bpd)[:n])
            if first is None:
                first = (ops.convert_to_numpy(x)[:n], [z.astype(np.float32) for z in zs], labels)
                moments = [[0, 0.0, 0.0] for _ in zs]
            for level, z in zip(moments, zs):
                level[0] += z.size
                level[1] += z.sum()
                level[2] += np.square(z).sum()
        if not scores:
            raise ValueError("The test split is empty; expected at least one image.")
        self.bits_per_dim = float(np.concatenate(scores).astype(np.float64).mean())
        self.step = step
        self.moments = [tuple(level) for level in moments]
        self.first_batch = first
        return self.bits_per_dim

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        # A diverged model has nothing to score; StopOnDivergence stops it.
        logs["val_loss"] = self.run(self.model) if self.weights.finite(self.model) else math.nan

