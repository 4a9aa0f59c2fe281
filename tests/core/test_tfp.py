"""glow_tf.tf.tfp: a Glow as a TFP bijector and distribution (TensorFlow backend only).

TFP caches each bijector's input/output pairs by tensor identity, so
`inverse(forward(eps))` would hand back `eps` from memory. Every round trip
and log-det comparison here passes fresh tensors (`fresh`) to make the model
compute both directions.
"""

import math
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

if keras.backend.backend() != "tensorflow":
    # This module is TensorFlow-only by design; its refusal on other backends
    # is tested below from the TensorFlow run.
    pytest.skip("glow_tf.tf.tfp runs on the TensorFlow backend only", allow_module_level=True)

import tensorflow as tf
import tensorflow_probability as tfp

from glow_tf import Glow, GlowConfig, quantization
from glow_tf.tf.tfp import GlowBijector, as_distribution
from tests.bijector_checks import log_abs_det_jacobian, randomize_weights
from tests.processes import HANG, ROOT

tfd = tfp.distributions
tfb = tfp.bijectors

# Digits-like: three levels, so the flat base event concatenates three latents.
CONFIG = GlowConfig(image_shape=(8, 8, 1), k_glow=2, l_glow=3, hidden_channels=8, n_bits=4, seed=0)
IMAGE_SHAPE = CONFIG.image_shape
D = 8 * 8 * 1


@pytest.fixture(scope="module")
def model():
    """A tiny Glow, initialised on data, then randomised a little so that no part is an identity."""
    model = Glow(CONFIG)
    model.initialize(uint8_images(64))
    randomize_weights(model, stddev=0.02)
    return model


def uint8_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *IMAGE_SHAPE)).astype(np.uint8)


def images_x(n, seed=1):
    """Dequantised images: the points the model's density is meant for."""
    return quantization.dequantize(uint8_images(n, seed), CONFIG.n_bits, seed=seed).numpy()


def base_eps(shape, seed=2, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal((*shape, D))).astype(np.float32)


def fresh(t):
    """A new tensor with t's values: a miss in TFP's bijector cache."""
    return tf.constant(np.asarray(t))


def flat_latents(model, x):
    zs, logdet = model.encode(x)
    return np.concatenate([z.numpy().reshape(len(x), -1) for z in zs], axis=1), logdet.numpy()


# ---- the distribution ----


@pytest.mark.slow
def test_log_prob_equals_the_models(model):
    glow = as_distribution(model)
    rng = np.random.default_rng(3)
    # Dequantised images and arbitrary real points (the density lives on R^D).
    for x in (images_x(6), rng.uniform(-0.7, 0.7, (6, *IMAGE_SHAPE)).astype(np.float32)):
        expected = model.log_prob(x).numpy()
        np.testing.assert_allclose(glow.log_prob(x).numpy(), expected, rtol=1e-5, atol=1e-4)
        # Extra leading dimensions are batch dimensions.
        batched = glow.log_prob(x.reshape(2, 3, *IMAGE_SHAPE)).numpy()
        np.testing.assert_allclose(batched, expected.reshape(2, 3), rtol=1e-5, atol=1e-4)
    assert glow.event_shape == IMAGE_SHAPE and glow.batch_shape == []
    assert glow.dtype == tf.float32


@pytest.mark.parametrize("sample_shape", [(), 5, (2, 3), (1, 4, 1)])
def test_sample_shapes(model, sample_shape):
    glow = as_distribution(model)
    x = glow.sample(sample_shape, seed=0).numpy()
    leading = (sample_shape,) if isinstance(sample_shape, int) else sample_shape
    assert x.shape == (*leading, *IMAGE_SHAPE) and x.dtype == np.float32
    assert np.all(np.isfinite(x))
    log_prob = glow.log_prob(x).numpy()
    assert log_prob.shape == leading and np.all(np.isfinite(log_prob))
    # A sample is the decoded base draw: TFP's sample and the model agree.
    flat = x.reshape(-1, *IMAGE_SHAPE)
    np.testing.assert_allclose(log_prob.reshape(-1), model.log_prob(flat).numpy(), rtol=1e-5, atol=1e-4)


def test_temperature_scales_the_base(model):
    temperature = 0.6
    cold, warm = as_distribution(model, temperature), as_distribution(model)

    # log p_T(x) = log N(eps; 0, T^2 I) + log|det d eps/dx|, by hand from the model.
    x = images_x(5)
    eps, logdet = flat_latents(model, x)
    gaussian = (
        -0.5 * (eps.astype(np.float64) ** 2).sum(axis=1) / temperature**2
        - D * math.log(temperature) - 0.5 * D * math.log(2 * math.pi)
    )
    np.testing.assert_allclose(cold.log_prob(x).numpy(), gaussian + logdet, rtol=1e-5, atol=1e-3)

    # With one (stateless) seed, the cold sample's noise is the warm one's times T.
    bijector = cold.bijector
    eps_cold = bijector.inverse(fresh(cold.sample(4, seed=(0, 7)))).numpy()
    eps_warm = bijector.inverse(fresh(warm.sample(4, seed=(0, 7)))).numpy()
    np.testing.assert_allclose(eps_cold, temperature * eps_warm, rtol=1e-3, atol=1e-4)

    # And the noise behind many cold samples has standard deviation T
    # (12,800 values: the estimate's standard error is about 0.6% of T).
    eps_many = bijector.inverse(fresh(cold.sample(200, seed=8))).numpy()
    assert abs(eps_many.std() / temperature - 1) < 0.03, eps_many.std()
    assert abs(eps_many.mean()) < 0.03


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, float("nan"), float("inf"), "0.7", None, True])
def test_bad_temperature_is_named(model, temperature):
    with pytest.raises(ValueError, match=re.escape(f"temperature={temperature!r}: expected")):
        as_distribution(model, temperature=temperature)


# ---- the bijector ----


def test_base_event_is_the_models_latents_flattened_level_by_level(model):
    bijector = GlowBijector(model)
    assert bijector.num_dims == D
    assert bijector.forward_min_event_ndims == 1 and bijector.inverse_min_event_ndims == 3
    x = images_x(3)
    eps, _ = flat_latents(model, x)
    np.testing.assert_allclose(bijector.inverse(x).numpy(), eps, atol=1e-6)
    assert bijector.forward_event_shape([D]) == IMAGE_SHAPE
    assert bijector.inverse_event_shape([4, *IMAGE_SHAPE]) == [4, D]
    assert bijector.forward_event_shape_tensor([2, D]).numpy().tolist() == [2, *IMAGE_SHAPE]
    assert bijector.inverse_event_shape_tensor(IMAGE_SHAPE).numpy().tolist() == [D]
    assert bijector.experimental_batch_shape() == []
    assert bijector.name == "glow" and bijector.parameters["model"] is model
    assert type(bijector.copy()) is GlowBijector


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_round_trip(model, batch):
    bijector = GlowBijector(model)
    eps = base_eps(batch)
    x = bijector.forward(eps).numpy()
    assert x.shape == (*batch, *IMAGE_SHAPE)
    np.testing.assert_allclose(bijector.inverse(fresh(x)).numpy(), eps, atol=1e-4)
    images = images_x(math.prod(batch)).reshape(*batch, *IMAGE_SHAPE)
    eps_images = bijector.inverse(images).numpy()
    assert eps_images.shape == (*batch, D)
    np.testing.assert_allclose(bijector.forward(fresh(eps_images)).numpy(), images, atol=1e-4)


@pytest.mark.slow
def test_log_dets_agree_with_each_other_the_model_and_autodiff(model):
    bijector = GlowBijector(model)
    eps = base_eps((4,))
    x = bijector.forward(eps).numpy()
    fldj = bijector.forward_log_det_jacobian(fresh(eps)).numpy()
    ildj = bijector.inverse_log_det_jacobian(fresh(x)).numpy()
    assert fldj.shape == ildj.shape == (4,)
    np.testing.assert_allclose(fldj, -ildj, rtol=1e-5, atol=1e-3)

    # The model's own log-dets: decode's for forward, encode's for inverse.
    zs, encode_logdet = model.encode(x)
    np.testing.assert_allclose(fldj, model.decode_with_logdet(zs)[1].numpy(), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(ildj, encode_logdet.numpy(), rtol=1e-5, atol=1e-3)

    # log|det| of the autodiff Jacobian of eps -> x (TFP's get_fldj_theoretical
    # does this; the wheel does not ship it, the project's helper does).
    def forward_flat(v):
        return tf.reshape(bijector.forward(v), [-1])

    for i in range(2):  # a 64x64 autodiff Jacobian each: two examples suffice
        expected = log_abs_det_jacobian(forward_flat, eps[i])
        np.testing.assert_allclose(fldj[i], expected, rtol=1e-4, atol=2e-3)

    # TFP sums log-dets over event dimensions beyond the minimum.
    batched = base_eps((2, 3))
    per_event = bijector.forward_log_det_jacobian(fresh(batched)).numpy()
    summed = bijector.forward_log_det_jacobian(fresh(batched), event_ndims=2).numpy()
    assert per_event.shape == (2, 3) and summed.shape == (2,)
    np.testing.assert_allclose(summed, per_event.sum(axis=1), rtol=1e-5)


class _EagerSession:
    """`sess.run` for a TF1-style check, on eager tensors."""

    @staticmethod
    def run(tensors):
        return [np.asarray(t) for t in tensors]


class _Uncached:
    """Passes fresh tensors to the bijector so its cache never answers a round trip."""

    def __init__(self, bijector):
        self.bijector = bijector

    def forward(self, x):
        return self.bijector.forward(fresh(x))

    def inverse(self, y):
        return self.bijector.inverse(fresh(y))

    def forward_log_det_jacobian(self, x, event_ndims):
        return self.bijector.forward_log_det_jacobian(fresh(x), event_ndims=event_ndims)

    def inverse_log_det_jacobian(self, y, event_ndims):
        return self.bijector.inverse_log_det_jacobian(fresh(y), event_ndims=event_ndims)


def test_tfp_assert_bijective_and_finite(model):
    """The upstream check, on far-tail noise and on points beyond the image range.

    TFP 0.25's wheel leaves out `bijector_test_util`; TensorFlow still ships
    its TF1 ancestor, whose `assert_bijective_and_finite` is the same check
    with one `event_ndims` for both sides and a TF1 `sess` to evaluate
    tensors. So the Glow gets a reshape to a flat image (log-det 0), making
    it R^D -> R^D with event_ndims 1 on both sides, and `sess` an eager
    stand-in.
    (`assert_scalar_congruency` is for scalar bijectors of the real line and
    does not apply.)
    """
    from tensorflow.python.ops.distributions import bijector_test_util

    flatten = tfb.Reshape(event_shape_out=[D], event_shape_in=IMAGE_SHAPE)
    flat_glow = tfb.Chain([flatten, GlowBijector(model)])
    rng = np.random.default_rng(4)
    eps = base_eps((8,), scale=3.0)                                   # 3-sigma noise
    x = rng.uniform(-0.75, 0.75, (8, D)).astype(np.float32)           # wider than [-0.5, 0.5)
    bijector_test_util.assert_bijective_and_finite(
        _Uncached(flat_glow), eps, x, event_ndims=1, atol=2e-3, rtol=1e-3, sess=_EagerSession
    )


def test_wrong_shapes_and_models_are_named(model):
    bijector = GlowBijector(model)
    base_message = r"base event \(forward input\) has shape \(3, 63\); expected \(\.\.\., 64\)"
    with pytest.raises(ValueError, match=base_message):
        bijector.forward(np.zeros((3, 63), np.float32))
    image_message = r"image \(inverse input\) has shape \(2, 8, 8, 3\); expected \(\.\.\., 8, 8, 1\)"
    with pytest.raises(ValueError, match=image_message):
        bijector.inverse(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"has shape \(8, 1\)"):
        bijector.inverse_event_shape([8, 1])
    with pytest.raises(TypeError, match="model='weights.h5': expected a glow_tf.Glow"):
        GlowBijector("weights.h5")


def test_validate_args_rejects_non_finite_input(model):
    bijector = GlowBijector(model, validate_args=True)
    eps = base_eps((2,))
    eps[1, 5] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite base event"):
        bijector.forward(eps)


# ---- TensorFlow, tf_keras and Keras 3 in one process ----


@pytest.mark.slow
def test_runs_in_tf_function_and_xla_beside_tf_keras(model):
    # TFP runs on tf_keras; the model is Keras 3: both live in this process.
    assert "tf_keras" in sys.modules and keras.__version__.startswith("3.")
    glow = as_distribution(model)
    x = images_x(6).reshape(2, 3, *IMAGE_SHAPE)
    eager = glow.log_prob(x).numpy()
    unknown_batch = tf.function(glow.log_prob, input_signature=[tf.TensorSpec([None, None, *IMAGE_SHAPE])])
    np.testing.assert_allclose(unknown_batch(x).numpy(), eager, rtol=1e-5, atol=1e-4)
    xla = tf.function(glow.log_prob, jit_compile=True)
    np.testing.assert_allclose(xla(x).numpy(), eager, rtol=1e-5, atol=1e-3)
    sample = tf.function(lambda: glow.sample([2, 5], seed=(1, 2)))()
    assert sample.shape == (2, 5, *IMAGE_SHAPE)


@pytest.mark.slow
def test_trainable_variables_are_the_models_and_a_tfp_objective_trains_them():
    model = Glow(CONFIG)
    model.initialize(uint8_images(64))
    glow = as_distribution(model)
    model_variables = {id(v.value) for v in model.trainable_variables}
    assert {id(v) for v in glow.trainable_variables} == model_variables
    assert len(glow.trainable_variables) == len(model.trainable_variables)

    x = images_x(32, seed=5)
    before = float(tf.reduce_mean(model.log_prob(x)))
    optimizer = keras.optimizers.Adam(1e-2)
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(glow.log_prob(x))
        gradients = tape.gradient(loss, glow.trainable_variables)
        assert all(g is not None for g in gradients)
        optimizer.apply_gradients(zip(gradients, glow.trainable_variables))
    assert float(tf.reduce_mean(model.log_prob(x))) > before + 1.0


# ---- composition ----


def test_in_a_mixture(model):
    weights = np.array([0.3, 0.7], np.float32)
    glow = as_distribution(model)
    blur = tfd.Independent(tfd.Normal(loc=tf.zeros(IMAGE_SHAPE), scale=0.2), reinterpreted_batch_ndims=3)
    mixture = tfd.Mixture(cat=tfd.Categorical(probs=weights), components=[glow, blur])

    x = np.concatenate([images_x(3), mixture.sample(3, seed=1).numpy()])
    by_hand = np.logaddexp(
        math.log(0.3) + model.log_prob(x).numpy().astype(np.float64),
        math.log(0.7) + blur.log_prob(x).numpy().astype(np.float64),
    )
    log_prob = mixture.log_prob(x).numpy()
    assert np.all(np.isfinite(log_prob))
    np.testing.assert_allclose(log_prob, by_hand, rtol=1e-5, atol=1e-3)


def test_as_the_prior_of_a_joint_distribution(model):
    """Glow as a prior over images, observed through a noisy brightness reading."""
    joint = tfd.JointDistributionNamed(
        dict(
            image=as_distribution(model, temperature=0.8),
            brightness=lambda image: tfd.Normal(tf.reduce_mean(image, axis=[-3, -2, -1]), 0.05),
        )
    )
    draw = joint.sample(4, seed=3)
    assert draw["image"].shape == (4, *IMAGE_SHAPE) and draw["brightness"].shape == (4,)

    image = images_x(4)
    brightness = np.array([0.0, 0.1, -0.1, 0.2], np.float32)
    log_prob = joint.log_prob(image=image, brightness=brightness).numpy()
    cold = as_distribution(model, temperature=0.8)
    reading = tfd.Normal(image.mean(axis=(1, 2, 3)), 0.05).log_prob(brightness)
    by_hand = cold.log_prob(image).numpy() + reading.numpy()
    assert np.all(np.isfinite(log_prob))
    np.testing.assert_allclose(log_prob, by_hand, rtol=1e-5, atol=1e-3)


# ---- the backend guard and the example in docs/tfp.md ----


@pytest.mark.slow
def test_other_backends_get_a_clear_error_and_glow_tf_stays_tensorflow_free():
    # Keras' numpy backend needs nothing beyond Keras, so this runs everywhere.
    code = (
        "import sys, glow_tf\n"
        "assert 'tensorflow' not in sys.modules, 'import glow_tf imported TensorFlow'\n"
        "try:\n"
        "    import glow_tf.tf.tfp\n"
        "except ImportError as error:\n"
        "    print(error)\n"
        "else:\n"
        "    sys.exit('glow_tf.tf.tfp imported on the numpy backend')\n"
        "assert 'tensorflow' not in sys.modules, 'the refusal imported TensorFlow'\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "numpy"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=HANG,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "needs Keras' TensorFlow backend" in result.stdout
    assert "the active Keras backend is 'numpy'" in result.stdout


@pytest.mark.slow
def test_docs_example_runs_as_written():
    page = (ROOT / "docs" / "tfp.md").read_text()
    section = page.split("## Example", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "glow_tf.tf.tfp" in example
    result = subprocess.run(
        [sys.executable, "-c", example], cwd=ROOT, capture_output=True, text=True, timeout=HANG,
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
