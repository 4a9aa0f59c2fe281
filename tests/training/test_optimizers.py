"""The fused TensorFlow optimizers compute what Keras' own do."""

import re

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from glow_tf.tf import optimizers  # noqa: E402
from glow_tf.tf.schedules import LinearWarmup  # noqa: E402

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the fused update is TensorFlow's"
)


def _train(optimizer, steps=5, history=None):
    """A few steps of `optimizer` on fixed weights and gradients; the final values.

    `history`, a list, receives the weights after every step.
    """
    rng = np.random.default_rng(0)
    kernel = keras.Variable(rng.normal(size=(3, 4)).astype("float32"), name="kernel")
    bias = keras.Variable(rng.normal(size=(4,)).astype("float32"), name="bias")
    if optimizer.weight_decay:
        optimizer.exclude_from_weight_decay(var_list=[bias])
    optimizer.build([kernel, bias])
    grads = [[rng.normal(size=v.shape).astype("float32") for v in (kernel, bias)]
             for _ in range(steps)]

    @tf.function
    def step(g_kernel, g_bias):
        optimizer.apply([g_kernel, g_bias], [kernel, bias])

    for g_kernel, g_bias in grads:
        step(g_kernel, g_bias)
        if history is not None:
            history.append([kernel.numpy(), bias.numpy()])
    return [v.numpy() for v in (kernel, bias, *optimizer.variables[2:])], int(optimizer.iterations)


@pytest.mark.parametrize("name", ["adam", "adamax"])
@pytest.mark.parametrize("weight_decay", [None, 0.5])
def test_the_fused_update_equals_keras(name, weight_decay):
    def make(cls):
        return cls(learning_rate=LinearWarmup(1e-2, 3), weight_decay=weight_decay)

    keras_classes = {"adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}
    fused, fused_steps = _train(make(optimizers.OPTIMIZERS[name]))
    reference, reference_steps = _train(make(keras_classes[name]))
    assert fused_steps == reference_steps == 5
    assert len(fused) == len(reference)
    for a, b in zip(fused, reference):
        # The same formulas, associated differently: float rounding only.
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)
    # The weights moved, so the comparison compares something.
    assert not np.allclose(fused[0], _train(make(keras_classes[name]), steps=0)[0][0])


def test_the_fused_optimizers_keep_keras_names_and_config():
    for name, cls in optimizers.OPTIMIZERS.items():
        optimizer = cls(learning_rate=1e-3)
        assert re.fullmatch(rf"{name}(_\d+)?", optimizer.name), optimizer.name  # Keras' own name
        again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(again) is cls and again.get_config() == optimizer.get_config()


@pytest.mark.parametrize("name", ["adam", "adamax"])
def test_the_fused_update_keeps_keras_polyak_average(name):
    def make(cls):
        return cls(learning_rate=1e-2, weight_decay=0.5, use_ema=True, ema_momentum=0.8)

    history = []
    optimizer = make(optimizers.OPTIMIZERS[name])
    fused, _ = _train(optimizer, history=history)
    # Keras' average: the first step's weights, then m <- 0.8 m + 0.2 w.
    average = history[0]
    for weights in history[1:]:
        average = [0.8 * m + 0.2 * w for m, w in zip(average, weights)]
    kept = [v.numpy() for v in optimizer.variables if "average" in v.path]
    assert len(kept) == 2
    for a, b in zip(kept, average):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(average[0], history[-1][0])  # an average, not the last weights
    # And the same as Keras' own optimizer keeps.
    keras_class = keras.optimizers.Adam if name == "adam" else keras.optimizers.Adamax
    reference, _ = _train(make(keras_class))
    assert len(fused) == len(reference)
    for a, b in zip(fused, reference):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)
