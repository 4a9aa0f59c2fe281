"""A model method as one compiled function, on whichever backend Keras runs.

Called op by op, a 64-step Glow runs thousands of small eager ops per
batch (0.3 to 0.7 s for 16 samples of the digits model); compiled, the
same batch is one call. `Compiled` wraps a function of arrays that reads
the model's weights:

- TensorFlow: a `tf.function` with an input signature whose batch axis is
  None, so batches of every size share one trace. The variables are read
  where they live, so the function always sees the current weights.
- JAX: `jax.jit` of the function with the model's variables as arguments,
  read through a `keras.StatelessScope`, so that it too sees the current
  weights. JAX traces once per input shape.
- other backends: the function itself, run eagerly.

The function must not assign variables or draw random numbers (noise is
an input), so that it is the same pure function of the weights and its
inputs on every backend. TensorFlow and JAX are imported only when they
are the backend.
"""

import keras

from glow_tf import phases


class Compiled:
    """`function(*arrays)` compiled once for `model`; count its traces in `traces`.

    A call that compiles (the first; on JAX, the first of each input shape)
    is reported as it starts (glow_tf.phases): for a deep Glow it takes
    seconds to minutes.

    Args:
        model: the Keras model whose variables the function reads.
        function: takes and returns (nests of) arrays.
        specs: one (shape, dtype) per argument, or a list of them for an
            argument that is a list of arrays; None in a shape matches any
            size (TensorFlow's input signature).
        name: what the function is, for the report ("encode").
    """

    def __init__(self, model, function, specs, name="function"):
        self.traces = 0
        self.name = name
        self._function = function
        self._compiled_for = set()
        backend = keras.backend.backend()
        self._per_shape = backend == "jax"
        if backend == "tensorflow":
            import tensorflow as tf

            signature = [_tensor_specs(spec, tf) for spec in specs]
            self._call = tf.function(self._traced, input_signature=signature, autograph=False)
        elif backend == "jax":
            self._call = _jit_with_state(model, self._traced)
        else:
            self._call = function
            self._compiled_for = None  # nothing to compile

    def _traced(self, *args):
        # Python runs this body once per trace, and not at all after it.
        self.traces += 1
        return self._function(*args)

    def __call__(self, *args):
        if self._compiled_for is not None:
            key = tuple(tuple(a.shape) for a in keras.tree.flatten(args)) \
                if self._per_shape else ()
            if key not in self._compiled_for:
                self._compiled_for.add(key)
                phases.report(f"Compiling the model's {self.name} (its first call "
                              "includes it) ...")
        return self._call(*args)


def _tensor_specs(spec, tf):
    if isinstance(spec, list):
        return [_tensor_specs(s, tf) for s in spec]
    shape, dtype = spec
    return tf.TensorSpec(shape, dtype)


def _jit_with_state(model, function):
    import jax

    def pure(trainable, non_trainable, *args):
        mapping = [*zip(model.trainable_variables, trainable),
                   *zip(model.non_trainable_variables, non_trainable)]
        with keras.StatelessScope(state_mapping=mapping):
            return function(*args)

    jitted = jax.jit(pure)

    def call(*args):
        return jitted([v.value for v in model.trainable_variables],
                      [v.value for v in model.non_trainable_variables], *args)

    return call
