"""Every use of Keras' private API in glow_tf, each with why the public API does not serve.

The rest of glow_tf uses Keras' public API only. What is here reaches into
attributes or modules that a Keras release may rename without notice, so
`tests/core/test_keras_internals.py` checks each of them on the installed
Keras and names the one that changed. Keras only (TensorFlow is imported
by the callers that need it).
"""

import keras


def write_weights_file(model, file):
    """What `model.save_weights` writes, into an open binary file object (a BytesIO).

    Why private: `save_weights` takes a path only. Written by HDF5 straight
    to a full disk, a failed write leaves a file that Keras does not close,
    and the interpreter's exit then reports every failed flush (glow_tf.runs.files);
    in memory it cannot fail that way. Keras' own writer
    (`keras.src.saving.saving_lib`) takes a file object.
    """
    from keras.src.saving import saving_lib

    store = saving_lib.H5IOStore(file, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                               visited_saveables=set())
    finally:
        store.h5_file.close()


def averaged_weights(optimizer):
    """(weight, its moving average) for each weight an optimizer with `use_ema` averages.

    Why private: Keras keeps the averages in a private list in the order of
    the weights it was built on, and offers no public accessor (its own
    `keras.callbacks.SwapEMAWeights` reads the same lists).
    """
    return [(weight, average) for weight, average in zip(
        optimizer._trainable_variables, optimizer._model_variables_moving_average)
        if average is not None]


def set_initial_epoch(model, epoch):
    """Makes a `fit` that has started run from `epoch` (0-based).

    Why private: where a resumed run stands is known only once its backup
    is restored, in a callback's `on_train_begin`, after `fit` took its
    `initial_epoch` argument; `fit` reads this attribute after that hook,
    which is how Keras' own `BackupAndRestore` resumes.
    """
    model._initial_epoch = epoch


class FusedUpdate:
    """A mixin for a Keras optimizer that updates all weights in one call of its own.

    Why private: Keras' public hook, `update_step`, is called once per
    weight and must recompute the step's shared scalars (the learning rate,
    the bias corrections) every time; its slots (momenta) are private lists.
    The subclass defines `fused(self)` (whether to take over now),
    `fused_step(grads, variables, learning_rate)`, and optionally
    `fused_weight_decay(variables)`; `slot(name, variable)` gives it Keras'
    own slot variable, and `decays(variable)` whether weight decay applies.
    Where `fused()` is False, Keras updates the way it always does.
    """

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self.fused():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        return self.fused_step(grads, trainable_variables, learning_rate)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None or not self.fused():
            return super()._apply_weight_decay(variables)
        return self.fused_weight_decay(variables)

    def slot(self, name, variable):
        """Keras' slot variable `name` ("momentums", "velocities", "m", "u") of `variable`."""
        return getattr(self, f"_{name}")[self._get_variable_index(variable)]

    def decays(self, variable):
        return self._use_weight_decay(variable)


class TensorSeed(keras.random.SeedGenerator):
    """A seed given as a tensor (a served signature's input), drawn from like an int seed.

    Draw i uses the seed pair (seed, i), as `keras.random.SeedGenerator(seed)`
    does, so the same seed draws the same numbers; no state variable is
    made, so a traced function that uses it stays a pure function.

    Why private: Keras' random functions take an int or a SeedGenerator,
    and a SeedGenerator's `__init__` makes a state variable; so this
    subclass skips it and sets the attributes `next` reads.
    """

    def __init__(self, seed, dtype):
        self.seed = keras.ops.cast(seed, dtype)
        self.dtype = dtype
        self.draws = 0

    def next(self, ordered=True):
        pair = keras.ops.stack([self.seed, keras.ops.cast(self.draws, self.dtype)])
        self.draws += 1
        return pair
