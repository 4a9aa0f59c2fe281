"""Training on several devices or machines, through the engines Keras already has.

On TensorFlow, `tf.distribute`: "mirrored" (the GPUs of one machine),
"multi_worker" (several machines; the cluster comes from the `TF_CONFIG`
environment variable) and "tpu". On JAX, `keras.distribution.DataParallel`
("data_parallel": every local accelerator). "none" is one device on either.

Each replica sees `per_replica_batch` images of every step (the paper's 64),
so `fit` gets `distribution.global_batch(per_replica_batch)`. Gradients are
averaged over the global batch: `Glow.compute_loss` goes through Keras' loss
reduction, which divides each replica's loss by the replica count.

TensorFlow is imported only for the TensorFlow strategies, so the module
imports on a JAX-only machine.

Example:
    >>> distribution = get_distribution("mirrored")
    >>> with distribution.scope():           # build, initialise, compile, fit
    ...     model = Glow(config)
    ...     model.initialize(images[:256])
    ...     model.compile(keras.optimizers.Adamax(1e-3))
    ...     model.fit(images, batch_size=distribution.global_batch(64))
"""

import contextlib
import json
import os

import keras

from glow_tf.config import JAX_STRATEGIES, STRATEGIES, TF_STRATEGIES


class DistributionError(ValueError):
    """A strategy that cannot run here: unknown, the other backend's, or no cluster."""


class Distribution:
    """A way of placing one model on devices: a scope and a replica count.

    Attributes:
        name: one of `STRATEGIES`.
        num_replicas: replicas that each take a share of the batch.
        engine: the `tf.distribute.Strategy` or `keras.distribution`
            object behind it (None for "none").
    """

    def __init__(self, name, num_replicas, engine=None):
        self.name = name
        self.num_replicas = num_replicas
        self.engine = engine

    def scope(self):
        """The context in which to build, compile and fit the model."""
        if self.engine is None:
            return contextlib.nullcontext()
        return self.engine.scope()

    def global_batch(self, per_replica_batch):
        """The batch size to give `fit`: `per_replica_batch` images per replica."""
        if not isinstance(per_replica_batch, int) or per_replica_batch < 1:
            raise ValueError(
                f"per_replica_batch={per_replica_batch!r}: expected an integer >= 1."
            )
        return per_replica_batch * self.num_replicas

    def check_global_batch(self, batch_size):
        """Raises DistributionError unless `batch_size` splits evenly over the replicas."""
        if batch_size % self.num_replicas:
            raise DistributionError(
                f"batch_size={batch_size} does not split evenly over the "
                f"{self.num_replicas} replicas of strategy={self.name!r}: expected a "
                f"multiple of {self.num_replicas} (the batch size is the global batch)."
            )

    def __repr__(self):
        return f"Distribution({self.name!r}, num_replicas={self.num_replicas})"


def get_distribution(name="none", tpu=None, devices=None):
    """The `Distribution` called `name`.

    Args:
        name: "none", "mirrored", "multi_worker" or "tpu" (TensorFlow
            backend), or "data_parallel" (JAX backend).
        tpu: for "tpu", the TPU's name or grpc:// address; None finds a TPU
            the way `TPUClusterResolver` does (Colab, Cloud TPU VM).
        devices: for "mirrored" and "data_parallel", the devices to use
            (e.g. ["/cpu:0", "/cpu:1"] or ["gpu:0", "gpu:1"]); None uses
            every accelerator found.

    Raises:
        DistributionError: an unknown name, a strategy of the other backend, or a
            cluster that cannot be found (no TF_CONFIG, no TPU).
    """
    if name not in STRATEGIES:
        raise DistributionError(f"strategy={name!r}: expected one of {', '.join(STRATEGIES)}.")
    backend = keras.backend.backend()
    if name == "none":
        return Distribution(name, 1)
    if name in TF_STRATEGIES and backend != "tensorflow":
        raise DistributionError(
            f"strategy={name!r} is tf.distribute and needs the TensorFlow backend "
            f"(KERAS_BACKEND=tensorflow; this process runs {backend!r}). On JAX, use "
            "strategy='data_parallel'."
        )
    if name in JAX_STRATEGIES and backend != "jax":
        raise DistributionError(
            f"strategy={name!r} is keras.distribution and needs the JAX backend "
            f"(KERAS_BACKEND=jax; this process runs {backend!r}). On TensorFlow, "
            "use strategy='mirrored' (one machine) or 'multi_worker'."
        )
    if name == "data_parallel":
        engine = keras.distribution.DataParallel(
            devices=devices or keras.distribution.list_devices()
        )
        return Distribution(name, engine.num_model_replicas, engine)
    strategy = {
        "mirrored": lambda: _mirrored(devices),
        "multi_worker": _multi_worker,
        "tpu": lambda: _tpu(tpu),
    }[name]()
    return Distribution(name, strategy.num_replicas_in_sync, strategy)


def _mirrored(devices):
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices)


def _multi_worker():
    """MultiWorkerMirroredStrategy over the cluster that TF_CONFIG describes.

    TensorFlow requires it to be created at the start of the program, before
    any other TensorFlow op runs.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise DistributionError(
            "strategy='multi_worker' reads the cluster from the TF_CONFIG "
            "environment variable, which is not set. Set it on every machine, e.g. "
            'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\' (index: this machine\'s '
            "place in the list)."
        )
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise DistributionError(f"TF_CONFIG={raw!r} is not valid JSON: {error}.") from None
    if not isinstance(tf_config, dict) or not {"cluster", "task"} <= set(tf_config):
        raise DistributionError(
            f"TF_CONFIG={raw!r}: expected a JSON object with 'cluster' and 'task' keys."
        )
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def _tpu(tpu):
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise DistributionError(
            f"strategy='tpu': no TPU found (tpu={tpu!r}): {error}. Give the TPU's "
            "name or grpc:// address, or run on a TPU VM."
        ) from None
    return tf.distribute.TPUStrategy(resolver)
