"""The Keras backend and TensorFlow's CPU runtime of a command-line tool.

Keras reads KERAS_BACKEND once, when it is first imported. So the tools
import it only after their flags are read: `glow_tf` imports Keras only
when Glow or the layers are first asked for, the tools' modules import the
rest inside `main`, and a test keeps it so. `prepare` then sets the
variable, and the process starts Keras once, with the backend asked for.
(Starting the process again with the variable set would work too, but
would pay TensorFlow's import, seconds, twice.) `start_keras` imports it,
leaving out what Keras and TensorFlow import for parts no tool uses, and
`tune_tensorflow` then sets how TensorFlow runs on a CPU, before its first
op.
"""

import contextlib
import gc
import os
import sys

from absl import flags

from glow_tf.config import is_wide, one_thread_per_op

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


# Modules that Keras and TensorFlow import as they start, if they can, for
# parts that no tool uses: scikit-learn, for Keras' scikit-learn wrappers,
# and JAX, for TensorFlow Lite's converter of JAX functions. Both imports
# are optional there (an ImportError leaves that part out), and together
# they are about a second of a tool's start
# (docs/performance.md#starting-a-tool). JAX is held off only where
# KERAS_BACKEND names TensorFlow: unset, Keras may read another backend
# from its config file, and on JAX it needs JAX.
_NOT_FOR_THE_TOOLS = ("sklearn",)
_NOT_FOR_THE_TOOLS_ON_TENSORFLOW = ("sklearn", "jax")


# True once `start_keras` has imported Keras itself: the process is a tool's,
# and what it imports stays to its end (see `kept_imports`).
_started_here = False


def start_keras():
    """Imports Keras, on the backend `prepare` set, without the imports above; returns it.

    The modules are held off only while Keras is imported: anything that
    imports them later gets them.
    """
    global _started_here
    if "keras" in sys.modules:
        return sys.modules["keras"]
    on_tensorflow = os.environ.get("KERAS_BACKEND") == "tensorflow"
    _started_here = True
    with _held_off(_NOT_FOR_THE_TOOLS_ON_TENSORFLOW if on_tensorflow else _NOT_FOR_THE_TOOLS), \
            kept_imports():
        import keras
    return keras


@contextlib.contextmanager
def kept_imports():
    """Within it, a tool's imports: made with Python's cycle collector paused,
    then frozen out of its later passes.

    TensorFlow, Keras and JAX are some 3,000 modules, whose objects live
    as long as the process. While they were imported the collector ran
    some 700 times, and every full pass afterwards walked all their objects
    again: 0.39 CPU-s of the 3.6 of a one-epoch tiny digits run on
    TensorFlow, 0.7 of a JAX run (docs/performance.md#starting-a-tool).
    Paused, then frozen (`gc.freeze`: left out of every later pass), 0.02.
    Only in a process whose Keras `start_keras` imported: a tool's `main`
    called from Python leaves the caller's collector as it is.
    """
    if not _started_here:
        yield
        return
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
        gc.freeze()


@contextlib.contextmanager
def _held_off(names):
    """Within it, importing one of `names` not imported yet raises ImportError."""
    held = [name for name in names if name not in sys.modules]
    for name in held:
        sys.modules[name] = None  # what the import system reads as "cannot be imported"
    try:
        yield
    finally:
        for name in held:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


# Grappler's passes that `tune_tensorflow` leaves on without a GPU for a wide model:
# the remapper alone.
GRAPPLER_PASSES = ("layout_optimizer", "constant_folding", "shape_optimization", "remapping",
                   "arithmetic_optimization", "dependency_optimization", "loop_optimization",
                   "function_optimization", "debug_stripper", "scoped_allocator_optimization",
                   "pin_to_host_optimization", "implementation_selector",
                   "auto_mixed_precision")
GRAPPLER_ON_CPU = {**{name: name == "remapping" for name in GRAPPLER_PASSES},
                   "disable_meta_optimizer": False}


def tune_tensorflow(threads_per_op="auto", hidden_channels=None):
    """Sets TensorFlow's CPU runtime for a model; starts Keras; nothing on JAX.

    - Threads per op (TrainingConfig.threads_per_op): TensorFlow splits every
      CPU op over all cores. The ops of a narrow Glow are too small for
      that: at the digits preset (width 16) most of a step's 18,000 ops run
      for a few microseconds, and one thread per op, with ops running side
      by side on TensorFlow's inter-op threads, took less host CPU time per
      step than splitting each op (docs/performance.md).
    - Grappler, TensorFlow's graph optimiser, without a GPU: for coupling
      networks at least WIDE_WIDTH wide, its remapper alone, which fuses
      each convolution and matmul with the bias and ReLU after it into one
      oneDNN kernel: at the paper's size it took 6% off a step, for under
      a second more warm-up. For narrower ones, nothing: there it did not
      measurably change a step and lengthened the digits preset's warm-up
      by 7 s, and Grappler's other passes did not measurably speed up a
      step either and lengthened the warm-up of the unrolled steps'
      graph of some 23,000 nodes (docs/performance.md). With a GPU its
      layout and fusion rewrites matter, and all of it stays on.

    Both are process-wide settings of TensorFlow's: for the command-line
    tools and benchmarks, not the library. Threads can only be set before
    TensorFlow runs its first op; later, they stay as they are.
    """
    keras = start_keras()
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    if hidden_channels is not None and one_thread_per_op(threads_per_op, hidden_channels):
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow runs already (a tool's main called from Python)
    if not tf.config.list_physical_devices("GPU"):
        wide = hidden_channels is not None and is_wide(hidden_channels)
        tf.config.optimizer.set_experimental_options(
            GRAPPLER_ON_CPU if wide else {"disable_meta_optimizer": True})
