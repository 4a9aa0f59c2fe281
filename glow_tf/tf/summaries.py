"""TensorBoard summaries of what a Glow has learnt, every epoch.

Keras' TensorBoard callback already writes the training and test loss (the
bits/dim) and the learning rate; this adds what is particular to a flow.
The model runs on either Keras backend: the latents come from the epoch's
test pass (glow_tf.tf.test_pass), the samples and reconstructions from one
call of the model's compiled `decode`. TensorFlow writes the event files.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from glow_tf import quantization, sampling
from glow_tf.analysis import images as images_lib
from glow_tf.config import SAMPLE_TEMPERATURE


class GlowSummaries(keras.callbacks.Callback):
    """Writes latent statistics, samples and reconstructions each epoch.

    Tags, at step = epoch (0-based, as Keras' TensorBoard callback counts):

    - `z/level_<l>/mean`, `z/level_<l>/variance` for l = 1..L: the mean and
      variance of level l's standardised latent over the test split (its
      images as the epoch's test pass encoded them). They are 0 and 1 when
      the learned prior fits the data.
    - `samples/temperature_<T>`: a grid of samples at temperature T, from
      the same latents every epoch so the grids show the model changing.
    - `reconstructions`: test images (upper rows) above decode(encode(x))
      (lower rows), and `reconstructions/max_abs_error`, the largest
      |x - decode(encode(x))|, which only float error should make nonzero.
      x is the test pass's dequantised input, which rounds back to the image.

    The reconstructions and the samples are decoded in one call, so that
    the compiled decode sees one shape every epoch.

    Args:
        log_dir: folder of this TensorBoard run.
        test_pass: the run's `TestPass`, which runs before this callback.
        weights: the run's `glow_tf.tf.callbacks.HostWeights`.
        n_samples: samples in the grid.
        temperature: the sampling temperature.
        n_reconstructions: images in the reconstruction grid, from the
            first test batch.
        seed: fixes the sampling latents: those of `model.sample(n_samples,
            temperature, seed=seed)`.
    """

    def __init__(self, log_dir, test_pass, weights, n_samples=16,
                 temperature=SAMPLE_TEMPERATURE, n_reconstructions=8, seed=0):
        super().__init__()
        self.log_dir = log_dir
        self.test_pass = test_pass
        self.weights = weights
        self.n_samples = n_samples
        self.temperature = temperature
        self.n_reconstructions = n_reconstructions
        self.seed = seed
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)
        self._eps = [
            ops.convert_to_numpy(eps) for eps in sampling.draw_latents(
                self.model.latent_shapes, self.n_samples, self.temperature, self.seed)
        ]
        num_classes = self.model.config.num_classes
        self._sample_labels = (
            (np.arange(self.n_samples) % num_classes).astype(np.int32) if num_classes else None
        )

    def on_epoch_end(self, epoch, logs=None):
        # A diverged model has nothing to show, and decoding with a NaN 1x1
        # convolution fails (its inverse does not exist).
        if not self.weights.finite(self.model) or self.test_pass.first_batch is None:
            return
        n_bits = self.model.config.n_bits
        x, zs, labels = self.test_pass.first_batch
        n = min(self.n_reconstructions, len(x))
        decoded = self.model.decode(
            [np.concatenate([z[:n], e]) for z, e in zip(zs, self._eps)],
            None if labels is None else np.concatenate([labels[:n], self._sample_labels]),
        )
        decoded = ops.convert_to_numpy(decoded)
        originals, reconstructed = x[:n], decoded[:n]
        samples = np.clip(decoded[n:], -0.5, 0.5)
        with self._writer.as_default(step=epoch):
            for level, (count, total, squares) in enumerate(self.test_pass.moments, start=1):
                mean = total / count
                tf.summary.scalar(f"z/level_{level}/mean", mean)
                tf.summary.scalar(f"z/level_{level}/variance", squares / count - mean**2)
            tf.summary.image(
                f"samples/temperature_{self.temperature:g}", _grid_image(samples, n_bits)
            )
            error = np.abs(reconstructed - originals)
            tf.summary.scalar("reconstructions/max_abs_error", float(error.max()))
            tf.summary.image(
                "reconstructions",
                _grid_image(np.concatenate([originals, reconstructed]), n_bits, columns=n),
            )
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


def _grid_image(x, n_bits, columns=None):
    """Floats in [-0.5, 0.5] -> a (1, H', W', C) uint8 grid for tf.summary.image."""
    pixels = ops.convert_to_numpy(quantization.to_uint8(x, n_bits))
    return images_lib.grid(pixels, columns)[None]
