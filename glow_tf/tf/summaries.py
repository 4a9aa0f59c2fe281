"""TensorBoard summaries of what a Glow has learnt, every epoch (TensorFlow only).

Keras' TensorBoard callback already writes the training and test loss (the
bits/dim) and the learning rate; this adds what is particular to a flow.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from glow_tf import quantization
from glow_tf.analysis import images as images_lib
from glow_tf.tf.callbacks import weights_are_finite


class GlowSummaries(keras.callbacks.Callback):
    """Writes latent statistics, samples and reconstructions each epoch.

    Tags, at step = epoch (0-based, as Keras' TensorBoard callback counts):

    - `z/level_<l>/mean`, `z/level_<l>/variance` for l = 1..L: the mean and
      variance of level l's standardised latent over the test images. They
      are 0 and 1 when the learned prior fits the data.
    - `samples/temperature_<T>`: a grid of samples at temperature T, from
      the same latents every epoch so the grids show the model changing.
    - `reconstructions`: test images (upper rows) above decode(encode(x))
      (lower rows), and `reconstructions/max_abs_error`, the largest
      |x - decode(encode(x))|, which only float error should make nonzero.

    Args:
        log_dir: folder of this TensorBoard run.
        test_images: uint8 (N, H, W, C) test images; the statistics use all
            of them, the reconstructions the first `n_reconstructions`.
        n_samples: samples in the grid.
        temperature: the sampling temperature (the paper shows 0.7).
        n_reconstructions: images in the reconstruction grid.
        seed: fixes the sampling latents and the dequantisation noise.
        test_labels: the test images' labels, for a class-conditional model
            (its samples cycle through the classes).
    """

    def __init__(self, log_dir, test_images, n_samples=16, temperature=0.7,
                 n_reconstructions=8, seed=0, test_labels=None):
        super().__init__()
        self.log_dir = log_dir
        self.test_images = np.asarray(test_images)
        self.n_samples = n_samples
        self.temperature = temperature
        self.n_reconstructions = min(n_reconstructions, len(self.test_images))
        self.seed = seed
        self.test_labels = None if test_labels is None else np.asarray(test_labels, np.int32)
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)
        n_bits = self.model.config.n_bits
        # Fixed inputs, so that the curves and grids follow the model alone.
        self._x = quantization.dequantize(self.test_images, n_bits, seed=self.seed)
        originals = self.test_images[: self.n_reconstructions]
        # Bin centres: the point each discrete image stands for.
        self._x_centres = quantization.quantize(originals, n_bits) + 0.5 / 2**n_bits
        rng = np.random.default_rng(self.seed)
        # The paper's reduced-temperature sampling, as Glow.sample does it.
        self._eps = [
            (self.temperature * rng.standard_normal((self.n_samples, *shape))).astype("float32")
            for shape in self.model.latent_shapes
        ]
        conditional = self.model.config.num_classes > 0
        self._labels = self.test_labels if conditional else None
        self._sample_labels = (
            (np.arange(self.n_samples) % self.model.config.num_classes).astype(np.int32)
            if conditional else None
        )
        # One graph for the three passes: run eagerly, a deep Glow spends
        # seconds per epoch on Python overhead.
        self._passes = tf.function(self._run_passes)

    def _run_passes(self, x, x_centres, eps):
        labels, sample_labels = self._labels, self._sample_labels
        zs, _ = self.model.encode(x, labels)
        first = None if labels is None else labels[: self.n_reconstructions]
        reconstructed = self.model.decode(self.model.encode(x_centres, first)[0], first)
        samples = ops.clip(self.model.decode(eps, sample_labels), -0.5, 0.5)
        return zs, reconstructed, samples

    def on_epoch_end(self, epoch, logs=None):
        # A diverged model has nothing to show, and decoding with a NaN 1x1
        # convolution fails (its inverse does not exist).
        if not weights_are_finite(self.model):
            return
        n_bits = self.model.config.n_bits
        zs, reconstructed, samples = self._passes(self._x, self._x_centres, self._eps)
        with self._writer.as_default(step=epoch):
            for level, z in enumerate(zs, start=1):
                z = ops.convert_to_numpy(z).astype(np.float64)
                tf.summary.scalar(f"z/level_{level}/mean", z.mean())
                tf.summary.scalar(f"z/level_{level}/variance", z.var())
            tf.summary.image(
                f"samples/temperature_{self.temperature:g}", _grid_image(samples, n_bits)
            )
            error = np.abs(ops.convert_to_numpy(reconstructed) - ops.convert_to_numpy(self._x_centres))
            tf.summary.scalar("reconstructions/max_abs_error", float(error.max()))
            tf.summary.image(
                "reconstructions",
                _grid_image(
                    ops.concatenate([self._x_centres, reconstructed], axis=0), n_bits,
                    columns=self.n_reconstructions,
                ),
            )
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


def _grid_image(x, n_bits, columns=None):
    """Floats in [-0.5, 0.5] -> a (1, H', W', C) uint8 grid for tf.summary.image."""
    pixels = ops.convert_to_numpy(quantization.to_uint8(x, n_bits))
    return images_lib.grid(pixels, columns)[None]
