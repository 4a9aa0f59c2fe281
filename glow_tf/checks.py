"""Checks of input values (NaN, inf, range) for the public API, on any Keras backend.

A value check needs the values, so it runs only where they exist: on NumPy
arrays and eager tensors. Inside a traced function (`tf.function`, `jax.jit`,
`jax.grad`, a functional model) the inputs are symbolic and the checks are
skipped; checking there would need a host round trip per step (or
`tf.debugging` ops the JAX backend lacks). `fit` traces its step, so training
is guarded by the loss instead (glow_tf.tf.callbacks.StopOnDivergence).

Each check costs a few reductions on the device and one small transfer to
the host, next to the whole flow the checked call runs.
"""

import keras
import numpy as np
from keras import ops


def is_symbolic(x):
    """Whether x is a traced or symbolic tensor, whose values do not exist yet."""
    if keras.utils.is_keras_tensor(x):
        return True
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # Eager tensors have .numpy(); graph tensors inside tf.function do not.
        return ops.is_tensor(x) and not hasattr(x, "numpy")
    if backend == "jax":
        import jax

        return isinstance(x, jax.core.Tracer)
    return False


def check_finite(x, name, method):
    """ValueError if concrete float x holds NaN or inf."""
    if is_symbolic(x) or not _is_float(x):
        return
    bad = _to_int(ops.sum(ops.cast(ops.logical_not(ops.isfinite(x)), "int32")))
    if bad:
        raise ValueError(
            f"{name} holds {bad} non-finite value(s) (NaN or inf); {method} needs "
            "finite inputs."
        )


def check_images(images, name, method):
    """ValueError unless concrete images hold whole numbers in 0..255 (uint8 values).

    uint8 arrays pass without a look. Other dtypes are accepted when their
    values are those of uint8 images; this catches the usual mix-up of
    passing the flow's float inputs x in [-0.5, 0.5) (or images scaled to
    [0, 1]) where images are expected.
    """
    if is_symbolic(images) or keras.backend.standardize_dtype(images.dtype) == "uint8":
        return
    values = ops.cast(images, "float32")
    finite = ops.isfinite(values)
    # NaN and inf are counted apart, so min and max see finite values only.
    safe = ops.where(finite, values, ops.zeros_like(values))
    stats = ops.convert_to_numpy(ops.stack([
        ops.sum(ops.cast(ops.logical_not(finite), "float32")),
        ops.min(safe),
        ops.max(safe),
        ops.sum(ops.cast(ops.not_equal(safe, ops.floor(safe)), "float32")),
    ]))
    non_finite, low, high, fractional = stats
    expected = (
        f"{method} expects uint8 images, whole numbers in 0..255 (for floats x in "
        "[-0.5, 0.5) use log_prob)"
    )
    if non_finite:
        raise ValueError(f"{name} holds {int(non_finite)} non-finite value(s) (NaN or inf); {expected}.")
    if low < 0 or high > 255:
        raise ValueError(f"{name} holds values in [{low:g}, {high:g}], outside 0..255; {expected}.")
    if fractional:
        raise ValueError(f"{name} holds {int(fractional)} value(s) that are not whole numbers; {expected}.")


def _is_float(x):
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return True
    return "float" in keras.backend.standardize_dtype(dtype)


def _to_int(x):
    return int(np.asarray(ops.convert_to_numpy(x)))
