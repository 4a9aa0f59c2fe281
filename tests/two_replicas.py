"""The tiny run of tests/training/test_multi_worker.py, and its one-process reference.

`python -m tests.two_replicas RUN_DIR EPOCHS` trains it in one process on
two replicas: MirroredStrategy over two logical CPUs, which splits every
global batch in two as two workers do, and draws the dequantisation noise
per replica as they do. (One replica draws it for the whole batch: other
noise, so other figures by about 0.005 bits/dim after two digits epochs.)
Logical devices are fixed when TensorFlow starts, hence a process of its own.
"""

import sys

from tests.tiny import TINY_DIGITS

TINY = {"dataset": "digits", **TINY_DIGITS, "backup_every": 3}


def flags(**changes):
    """main.py's flags for the tiny run."""
    return [f"--{name}={value}" for name, value in {**TINY, **changes}.items()]


def main(run_dir, epochs):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from glow_tf.cli.settings import configs_for
    from glow_tf.tf import distribute, training

    settings = {name: value for name, value in TINY.items() if name != "dataset"}
    configs = configs_for(TINY["dataset"], **settings, epochs=epochs, strategy="mirrored")
    two = distribute.get_distribution("mirrored", devices=["/cpu:0", "/cpu:1"])
    training.train_and_evaluate(*configs, run_dir, verbose=0, distribution=two)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
