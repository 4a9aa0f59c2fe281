"""The one check every bijector goes through, and the autodiff Jacobian it uses.

Works on the TensorFlow and the JAX backend, so the same tests cover both.
"""

import keras
import numpy as np
from keras import ops


def jacobian(fn, v):
    """d fn(v) / d v for fn: R^D -> R^D, by the current backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        v = tf.constant(v)
        # One gradient per output: pfor (the default) vectorises the whole traced
        # function, the flow's loops included, which on these tiny sizes takes tens of
        # times longer for the same Jacobian.
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(v)
            out = fn(v)
        return tape.jacobian(out, v, experimental_use_pfor=False).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.jacfwd(fn)(jax.numpy.asarray(v)))
    raise NotImplementedError(f"No Jacobian for the {backend!r} backend.")


def log_abs_det_jacobian(fn, example):
    """log|det J| of fn at one example, from the autodiff Jacobian, in float64."""
    flat = np.asarray(example, np.float32).reshape(-1)
    jac = jacobian(fn, flat).astype(np.float64)
    assert jac.shape == (flat.size, flat.size), f"Jacobian is not square: {jac.shape}"
    sign, log_abs_det = np.linalg.slogdet(jac)
    assert sign != 0, "Jacobian is singular"
    return log_abs_det


def randomize_weights(layer, seed=0, stddev=0.2):
    """Moves every trainable weight off its initial value.

    Zero-initialised convolutions and unit scales would otherwise make many
    bijectors (near-)identities, and the checks below would prove little.
    """
    rng = np.random.default_rng(seed)
    for variable in layer.trainable_variables:
        value = ops.convert_to_numpy(variable)
        variable.assign(value + rng.normal(0.0, stddev, value.shape).astype(value.dtype))


def to_numpy(t):
    """A tensor as a NumPy array; a tuple or list of them as a list of arrays."""
    if isinstance(t, (tuple, list)):
        return [to_numpy(part) for part in t]
    return np.asarray(ops.convert_to_numpy(t))


def flatten(y):
    """(batch, D): a tensor, or the parts of a split, each flattened and concatenated."""
    parts = y if isinstance(y, (tuple, list)) else [y]
    return ops.concatenate([ops.reshape(part, (ops.shape(part)[0], -1)) for part in parts], axis=1)


def output_shapes(layer, input_shape):
    """The shape of each output of `layer` (one, or one per part of a split)."""
    shape = layer.compute_output_shape(input_shape)
    parts = shape if isinstance(shape[0], (tuple, list)) else [shape]
    return [tuple(part)[1:] for part in parts]


def check_bijector(layer, x, atol=1e-4, logdet_atol=2e-3, randomize=True, labels=None):
    """Asserts the bijector protocol for `layer` on the batch `x`.

    - y = f(x) has the shape compute_output_shape promises (y may be a tuple
      or list of tensors: a split, the multi-scale flow's latents); y and
      logdet are finite and logdet is float32 of shape (batch,);
    - the inverse recovers x and its logdet is the negative of the forward;
    - logdet equals log|det| of the autodiff Jacobian, example by example;
    - get_config() rebuilds an identical layer, also through Keras'
      serialisation registry.

    `labels`, one per example, are passed to every call of a conditional layer.
    """
    x = np.asarray(x, np.float32)
    if not layer.built:
        layer.build(x.shape)
    if randomize:
        randomize_weights(layer)

    def kwargs(rows=slice(None)):
        return {} if labels is None else {"labels": np.asarray(labels)[rows]}

    y, logdet = layer(x, **kwargs())
    y, logdet = to_numpy(y), to_numpy(logdet)
    parts = y if isinstance(y, list) else [y]
    assert [part.shape[1:] for part in parts] == output_shapes(layer, x.shape)
    assert logdet.shape == (x.shape[0],), f"logdet shape {logdet.shape}"
    assert logdet.dtype == np.float32, f"logdet dtype {logdet.dtype}"
    assert all(np.all(np.isfinite(part)) for part in parts) and np.all(np.isfinite(logdet))

    x_again, inverse_logdet = layer(y, inverse=True, **kwargs())
    np.testing.assert_allclose(to_numpy(x_again), x, atol=atol)
    np.testing.assert_allclose(logdet + to_numpy(inverse_logdet), 0.0, atol=atol)

    for i, example in enumerate(x):

        def forward_flat(v):
            y = layer(ops.reshape(v, (1, *x.shape[1:])), **kwargs(slice(i, i + 1)))[0]
            return ops.reshape(flatten(y), (-1,))

        expected = log_abs_det_jacobian(forward_flat, example)
        np.testing.assert_allclose(logdet[i], expected, atol=logdet_atol, rtol=1e-4)

    clone = type(layer).from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(flatten(clone(x, **kwargs())[0])),
                               to_numpy(flatten(layer(x, **kwargs())[0])), atol=1e-6)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
    return y, logdet
