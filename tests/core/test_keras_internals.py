"""Each use of Keras' private API (glow_tf/keras_internals.py) still works on the installed Keras.

A failure names the private name that changed and the function that uses
it: a Keras release moved it, and that function needs updating.
"""

import io

import keras
import numpy as np
import pytest

from glow_tf import keras_internals

# Each backend reaches these internals its own way: all of them run on JAX too.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.both_backends]


def changed(what, where):
    return (f"Keras {keras.__version__} changed {what}, which "
            f"glow_tf.keras_internals.{where} relies on: update it.")


def tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_weights_written_to_a_file_object_load_like_save_weights(tmp_path):
    model = tiny_model()
    buffer = io.BytesIO()
    try:
        keras_internals.write_weights_file(model, buffer)
    except (AttributeError, TypeError) as error:
        pytest.fail(changed(f"keras.src.saving.saving_lib ({error})", "write_weights_file"))
    path = tmp_path / "m.weights.h5"
    path.write_bytes(buffer.getvalue())
    fresh = tiny_model()
    fresh.load_weights(str(path))
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_moving_averages_pair_with_their_weights():
    model = tiny_model()
    optimizer = keras.optimizers.Adam(use_ema=True)
    optimizer.build(model.trainable_variables)
    for name in ("_trainable_variables", "_model_variables_moving_average"):
        assert hasattr(optimizer, name), changed(f"Optimizer.{name}", "averaged_weights")
    pairs = keras_internals.averaged_weights(optimizer)
    assert [w.path for w, _ in pairs] == [v.path for v in model.trainable_variables]
    assert all(w.shape == a.shape for w, a in pairs)


def test_the_initial_epoch_set_when_fit_starts_is_where_fit_starts():
    seen = []

    class StartAtTwo(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            keras_internals.set_initial_epoch(self.model, 2)

        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    model = tiny_model()
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), epochs=4, verbose=0, callbacks=[StartAtTwo()])
    assert seen == [2, 3], changed("how fit reads Model._initial_epoch", "set_initial_epoch")


@pytest.mark.parametrize("optimizer_class, slots", [
    (keras.optimizers.Adam, ("momentums", "velocities")),
    (keras.optimizers.Adamax, ("m", "u")),
])
def test_the_fused_update_hooks_are_the_ones_keras_calls(optimizer_class, slots):
    class Recording(keras_internals.FusedUpdate, optimizer_class):
        calls = []

        def fused(self):
            return True

        def fused_step(self, grads, variables, learning_rate):
            self.calls.append(("step", len(variables)))

        def fused_weight_decay(self, variables):
            self.calls.append(("decay", len(variables)))

    model = tiny_model()
    optimizer = Recording(weight_decay=0.1)
    optimizer.build(model.trainable_variables)
    for variable in model.trainable_variables:
        for slot in slots:
            try:
                assert optimizer.slot(slot, variable).shape == variable.shape
            except AttributeError as error:
                pytest.fail(changed(f"the optimizer's slots ({error})", "FusedUpdate.slot"))
        assert optimizer.decays(variable) in (True, False)
    optimizer.apply([keras.ops.ones(v.shape) for v in model.trainable_variables],
                    model.trainable_variables)
    assert ("step", 2) in Recording.calls, changed(
        "Optimizer._backend_update_step", "FusedUpdate")
    assert ("decay", 2) in Recording.calls, changed(
        "Optimizer._apply_weight_decay", "FusedUpdate")


def test_a_tensor_seed_draws_what_an_int_seed_draws():
    dtype = keras.random.SeedGenerator(0).state.dtype
    tensor_seed = keras_internals.TensorSeed(keras.ops.convert_to_tensor(7), dtype)
    generator = keras.random.SeedGenerator(7)
    for _ in range(2):  # each draw moves on, as a generator's does
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(keras.random.normal((3,), seed=tensor_seed)),
            keras.ops.convert_to_numpy(keras.random.normal((3,), seed=generator)),
            err_msg=changed("how SeedGenerator draws seeds", "TensorSeed"),
        )
