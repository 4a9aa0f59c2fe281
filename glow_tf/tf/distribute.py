"""Training on several devices or machines, through the engines Keras already has.

On TensorFlow, `tf.distribute`: "mirrored" (the GPUs of one machine),
"multi_worker" (several machines; the cluster comes from the `TF_CONFIG`
environment variable) and "tpu". On JAX, `keras.distribution.DataParallel`
("data_parallel": every local accelerator). "none" is one device on either.

Each replica sees `per_replica_batch` images of every step (the paper's 64),
so `fit` gets `distribution.global_batch(per_replica_batch)`. Gradients are
averaged over the global batch: `Glow.compute_loss` goes through Keras' loss
reduction, which divides each replica's loss by the replica count.

With "multi_worker", every worker runs the same program. Keras' `fit`
needs two changes there (`Distribution.prepare_dataset`,
`Distribution.prepare_model`); the chief alone writes files
(`Distribution.is_chief`), and `Distribution.from_chief` hands its values
to the other workers.

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
import numpy as np

from glow_tf.config import JAX_STRATEGIES, STRATEGIES, TF_STRATEGIES


# Values per collective of `Distribution.from_chief`: 512 MiB of float64.
_BROADCAST_CHUNK = 1 << 26


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

    @property
    def worker(self):
        """(this process's index among the workers, the number of workers).

        (0, 1) but for "multi_worker", where TF_CONFIG's "chief" task (if
        any) comes first, then its workers in order.
        """
        if self.name != "multi_worker":
            return 0, 1
        resolver = self.engine.cluster_resolver
        spec = resolver.cluster_spec().as_dict()
        tasks = [(kind, index) for kind in ("chief", "worker")
                 for index in range(len(spec.get(kind, ())))]
        return tasks.index((resolver.task_type, resolver.task_id)), len(tasks)

    @property
    def multi_worker(self):
        """Whether several processes train together, each with its share of the batch."""
        return self.worker[1] > 1

    @property
    def is_chief(self):
        """Whether this process writes the run: the only process, or the cluster's chief.

        The chief is TF_CONFIG's "chief" task, or worker 0 when the cluster
        has none (TensorFlow's rule: `StrategyExtended.should_checkpoint`).
        """
        return not self.multi_worker or self.engine.extended.should_checkpoint

    def scope(self):
        """The context in which to build, compile and fit the model."""
        if self.engine is None:
            return contextlib.nullcontext()
        return self.engine.scope()

    def prepare_dataset(self, dataset):
        """A tf.data pipeline of training batches, made ready for `fit` here.

        Unchanged but for several workers, where every worker runs the same
        pipeline (same seed, same order) and tf.data's DATA sharding gives
        each its own part of every global batch, and the images become
        int32: under a strategy, Keras' `fit` first averages one batch over
        the replicas for a symbolic build of the model (which a Glow, built
        in its constructor, never needs), and the collective all-reduce
        between workers has no uint8 kernel. The model takes images of any
        integer dtype; the cast costs three more bytes per pixel on the way
        from tf.data to the device, and only here.
        """
        if not self.multi_worker:
            return dataset
        import tensorflow as tf

        from glow_tf.tf.maps import map_as_written

        def widen(batch):
            if isinstance(batch, dict):
                return {**batch, "images": tf.cast(batch["images"], tf.int32)}
            return tf.cast(batch, tf.int32)

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        return map_as_written(dataset, widen).with_options(options)

    def prepare_model(self, model):
        """Makes a compiled `model`'s `fit` run here; call it before `fit`.

        Several workers: Keras averages each step's logs over the workers
        along their first axis (`strategy.reduce(MEAN, axis=0)`), which a
        scalar has not; the step returns each log as shape (1,) instead, and
        the logs `fit` shows are scalars again, the mean over the replicas.
        """
        if not self.multi_worker:
            return
        from keras import ops

        train_step = model.train_step

        def step_with_reducible_logs(data):
            return keras.tree.map_structure(
                lambda value: ops.reshape(value, (1,)), train_step(data)
            )

        model.train_step = step_with_reducible_logs

    def from_chief(self, values):
        """The chief's NumPy `values` on every worker (a list of arrays).

        A collective: every worker calls it with arrays of the same shapes
        and dtypes, and gets the chief's back. One process: `values` as they
        are. The values travel as float64, exact for every float32, integer
        (up to 2**53) and boolean value, as a sum of the chief's values and
        zeros from every other replica.
        """
        if not self.multi_worker:
            return values
        import tensorflow as tf

        values = [np.asarray(v) for v in values]
        flat = np.concatenate([v.astype(np.float64).ravel() for v in values] or [np.zeros(0)])
        total = np.empty_like(flat)
        for start in range(0, max(len(flat), 1), _BROADCAST_CHUNK):
            chunk = tf.constant(flat[start:start + _BROADCAST_CHUNK])

            def contribution(chunk=chunk):
                # Replica 0 is the chief's first device (TensorFlow numbers
                # the chief's replicas first).
                first = tf.distribute.get_replica_context().replica_id_in_sync_group == 0
                return tf.where(first, chunk, tf.zeros_like(chunk))

            summed = self.engine.reduce("SUM", self.engine.run(contribution), axis=None)
            total[start:start + _BROADCAST_CHUNK] = summed.numpy()
        out, start = [], 0
        for value in values:
            out.append(total[start:start + value.size].reshape(value.shape).astype(value.dtype))
            start += value.size
        return out

    def share_chief_state(self, variables):
        """Assigns the chief's values to `variables` on every worker (see `from_chief`).

        After a resume, the chief has read the run's backup; the others
        take its weights and optimizer state from it instead of from a
        file they may not see (a run folder on the chief's disk).
        """
        if not self.multi_worker:
            return
        from keras import ops

        values = self.from_chief([ops.convert_to_numpy(v) for v in variables])
        for variable, value in zip(variables, values):
            variable.assign(value)

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
