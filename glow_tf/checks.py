"""Checks of input values (NaN, inf, range) for the public API, on any Keras backend.

A value check needs the values, so it runs only where they exist: on NumPy
arrays and eager tensors. Inside a traced function (`tf.function`, `jax.jit`,
`jax.grad`, a functional model) the inputs are symbolic and the checks are
skipped; checking there would need a host round trip per step (or
`tf.debugging` ops the JAX backend lacks). `fit` traces its step, so training
is guarded by the loss instead (glow_tf.tf.callbacks.StopOnDivergence).
Dtypes exist at trace time, so the images' dtype is checked everywhere,
inside `fit` too.

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


def check_image_dtype(images, name, method):
    """ValueError unless images have an integer dtype; runs on symbolic tensors too.

    A dtype exists at trace time, so this guards the compiled training step
    as well: float images (scaled to [0, 1], or the flow's x in
    [-0.5, 0.5)) would be floored to a few levels, trained on silently, and
    give a loss that looks better than the real data's.
    """
    dtype = keras.backend.standardize_dtype(images.dtype)
    if "int" not in dtype:
        raise ValueError(
            f"{name} have dtype {dtype}; {method} expects uint8 images (whole numbers in "
            "0..255, as a dataset stores them). Pass the images before any scaling; for "
            "floats x in [-0.5, 0.5) use log_prob."
        )


def check_images(images, name, method):
    """ValueError unless images are integers in 0..255 (uint8 values).

    The dtype is checked always (`check_image_dtype`); the values, which
    exist only for concrete inputs, of integer types wider than uint8.
    """
    check_image_dtype(images, name, method)
    if is_symbolic(images) or keras.backend.standardize_dtype(images.dtype) == "uint8":
        return
    if not int(np.prod(images.shape)):
        return
    low, high = _to_int(ops.min(images)), _to_int(ops.max(images))
    if low < 0 or high > 255:
        raise ValueError(
            f"{name} holds values in [{low}, {high}], outside 0..255; {method} expects uint8 "
            "images (whole numbers in 0..255)."
        )


def check_image_shape(x, name, image_shape):
    """ValueError unless x is a batch (N, *image_shape), naming GlowConfig.image_shape."""
    if len(x.shape) != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; this model expects "
            f"(batch, {', '.join(map(str, image_shape))}) "
            "(GlowConfig.image_shape, height x width x channels)."
        )


def as_labels(labels):
    """Python ints and sequences as a NumPy array; arrays and tensors as they are."""
    return np.asarray(labels) if isinstance(labels, (int, list, tuple)) else labels


def check_labels(labels, x, num_classes):
    """Labels are required by, and only by, a class-conditional model; one per image, in range."""
    if not num_classes:
        if labels is not None:
            raise ValueError(
                "labels were given, but this model is unconditional "
                "(GlowConfig.num_classes=0)."
            )
        return
    if labels is None:
        raise ValueError(
            f"This model is class-conditional (num_classes={num_classes}): "
            f"pass labels, one integer in 0..{num_classes - 1} per image."
        )
    if tuple(labels.shape) != tuple(x.shape[:1]) and None not in labels.shape:
        raise ValueError(
            f"labels has shape {tuple(labels.shape)}; expected one label per "
            f"image, shape ({x.shape[0]},)."
        )
    if not is_symbolic(labels) and int(np.prod(labels.shape)):
        # Only concrete labels can be checked (NumPy arrays and eager
        # tensors alike); an out-of-range index would silently wrap or
        # clamp in the embedding lookup.
        values = np.asarray(ops.convert_to_numpy(labels))
        low, high = values.min(), values.max()
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(
                f"label {bad} is out of range: expected integers in "
                f"0..{num_classes - 1} (num_classes={num_classes})."
            )


def _is_float(x):
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return True
    return "float" in keras.backend.standardize_dtype(dtype)


def _to_int(x):
    return int(np.asarray(ops.convert_to_numpy(x)))
