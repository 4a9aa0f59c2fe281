"""What tests/core/test_scale.py shares with the process it starts for multi-device runs.

`python -m tests.scale_helpers` trains one step of a tiny Glow on one device
and, from the same initial weights, on two CPU devices (MirroredStrategy on
TensorFlow, keras.distribution.DataParallel on JAX), and prints both results
as JSON. Devices are fixed when the backend starts, hence the separate
process; the caller sets XLA_FLAGS for JAX, and TensorFlow's two logical
CPUs are configured here before TensorFlow runs anything.
"""

import json
import os
import sys

import numpy as np

from glow_tf import GlowConfig
from tests.tiny import TINY_MODEL

TINY = GlowConfig(**TINY_MODEL)


def uint8_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *TINY.image_shape)).astype(np.uint8)


def dequantised(images, seed=1):
    from glow_tf import quantization
    from tests.bijector_checks import to_numpy

    return to_numpy(quantization.dequantize(images, TINY.n_bits, seed=seed))


def fixed_noise_glow_class():
    """A Glow trained on already-dequantised floats.

    `Glow.call` draws fresh dequantisation noise per replica, so one device
    and two devices would see different noise; with the noise drawn once
    beforehand the two runs must agree to float tolerance, and what is
    compared is purely how the engines split the batch and combine
    gradients. The loss is the same bits/dim `Glow.compute_loss` reduces.
    """
    import keras

    from glow_tf import Glow, quantization

    class FixedNoiseGlow(Glow):
        def call(self, x, training=False):
            return quantization.bits_per_dim(
                self.log_prob(x), self.config.num_dims, self.config.n_bits
            )

        def fit(self, *args, **kwargs):
            # Its inputs are the dequantised floats, which Glow.fit refuses.
            return keras.Model.fit(self, *args, **kwargs)

    return FixedNoiseGlow


def one_sgd_step(distribution, x, images, weights=None):
    """Builds, initialises and trains one SGD step inside `distribution`.

    `weights` (from another run) replace the initial ones: the coupling
    networks' hidden kernels do not follow GlowConfig.seed.
    SGD, not Adam: Adam's first step is about lr * sign(gradient), blind to
    a gradient that is off by the replica count.
    """
    import keras

    with distribution.scope():
        model = fixed_noise_glow_class()(TINY)
        model.initialize(images)
        if weights is not None:
            model.set_weights(weights)
        initial = [np.array(w) for w in model.get_weights()]
        model.compile(keras.optimizers.SGD(0.05))
        loss = model.fit(x, batch_size=len(x), epochs=1, shuffle=False, verbose=0).history["loss"][0]
    return loss, initial, [np.array(w) for w in model.get_weights()]


def main():
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        name, devices = "mirrored", ["/cpu:0", "/cpu:1"]
    else:
        name, devices = "data_parallel", None
    from glow_tf.tf import distribute

    images = uint8_images(16)
    x = dequantised(uint8_images(8, seed=2))
    one = one_sgd_step(distribute.get_distribution("none"), x, images)
    two_devices = distribute.get_distribution(name, devices=devices)
    two = one_sgd_step(two_devices, x, images, weights=one[1])
    json.dump(
        {
            "backend": backend,
            "strategy": name,
            "replicas": two_devices.num_replicas,
            "loss": [one[0], two[0]],
            "initial_weights_max_diff": max(float(np.abs(a - b).max()) for a, b in zip(one[1], two[1])),
            "weights_max_diff": max(float(np.abs(a - b).max()) for a, b in zip(one[2], two[2])),
            "weights_max_change": max(float(np.abs(a - b).max()) for a, b in zip(one[1], one[2])),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
