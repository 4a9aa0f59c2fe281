"""The Keras backend and TensorFlow's CPU runtime of a command-line tool.

Keras reads KERAS_BACKEND once, when it is first imported. So the tools
import it only after their flags are read: `glow_tf` imports Keras only
when Glow or the layers are first asked for, the tools' modules import the
rest inside `main`, and a test keeps it so. `prepare` then sets the
variable, and the process starts Keras once, with the backend asked for.
(Starting the process again with the variable set would work too, but
would pay TensorFlow's import, seconds, twice.) `tune_tensorflow` then sets
how TensorFlow runs on a CPU, before its first op.
"""

import os
import sys

from absl import flags

from glow_tf.config import one_thread_per_op

BACKENDS = ("tensorflow", "jax")


def define_flags(flag_values):
    flags.DEFINE_enum(
        "backend", None, BACKENDS,
        "Keras backend to run on. Default: the KERAS_BACKEND environment variable, else "
        "Keras' own default (tensorflow). TensorFlow still reads the data either way.",
        flag_values=flag_values,
    )


def prepare(backend=None):
    """Sets KERAS_BACKEND for this process's first import of Keras.

    Args:
        backend: "tensorflow", "jax", or None for the environment's choice.

    Raises:
        ValueError: Keras already runs on another backend in this process
            (a tool's `main` called from Python after Keras was imported).
    """
    if backend is None:
        return
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise ValueError(
                f"--backend={backend}: Keras already runs on {current} in this "
                f"process; start a new one (or set KERAS_BACKEND={backend} before "
                "Python imports Keras)."
            )
    os.environ["KERAS_BACKEND"] = backend


def tune_tensorflow(threads_per_op="auto", hidden_channels=None):
    """Sets TensorFlow's CPU runtime for a model; starts Keras; nothing on JAX.

    - Threads per op (TrainingConfig.threads_per_op): TensorFlow splits every
      CPU op over all cores. The ops of a narrow Glow are too small for
      that: at the digits preset (width 16) one thread per op, with ops
      running side by side on TensorFlow's inter-op threads, made a
      training step 1.3x faster, and it took away the slowness of
      TensorFlow's oneDNN kernels there (docs/performance.md).
    - Grappler, TensorFlow's graph optimiser, is turned off when there is
      no GPU. On a CPU its rewrites did not speed up a training step of
      Glow (within 3% at the digits preset, none at 32x32x3 and width 128),
      but optimising the step's graph of some 20,000 nodes took 7 to 9 s,
      and each compiled encode and decode 1 to 2 s more: a third of the
      digits run's warm-up. With a GPU its layout and fusion rewrites
      matter, and it stays on.

    Both are process-wide settings of TensorFlow's: for the command-line
    tools and benchmarks, not the library. Threads can only be set before
    TensorFlow runs its first op; later, they stay as they are.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    if hidden_channels is not None and one_thread_per_op(threads_per_op, hidden_channels):
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow runs already (a tool's main called from Python)
    if not tf.config.list_physical_devices("GPU"):
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
