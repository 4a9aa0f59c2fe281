"""The whole Glow on tiny shapes: bijection, exact likelihood, sampling, saving, fit."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from glow_tf import Glow, GlowConfig
from glow_tf import quantization, sampling
from tests.bijector_checks import log_abs_det_jacobian, randomize_weights, to_numpy
from tests.tiny import TINY_MODEL

TINY = GlowConfig(**TINY_MODEL)


def uint8_images(n, shape=TINY.image_shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype(np.uint8)


@pytest.fixture
def model():
    """A tiny Glow, initialised on data and then randomised, so no part is an identity.

    The perturbation is small: larger ones saturate the couplings' sigmoid
    scales, and the composed map becomes too ill-conditioned to invert in
    float32.
    """
    model = Glow(TINY)
    model.initialize(uint8_images(32))
    randomize_weights(model, stddev=0.02)
    return model


def x_batch(n=3, seed=1):
    return to_numpy(quantization.dequantize(uint8_images(n, seed=seed), TINY.n_bits, seed=seed))


def flatten_latents(zs):
    return ops.concatenate([ops.reshape(z, (ops.shape(z)[0], -1)) for z in zs], axis=1)


@pytest.mark.both_backends
def test_decode_inverts_encode(model):
    x = x_batch()
    zs, _ = model.encode(x)
    assert [tuple(z.shape[1:]) for z in zs] == list(model.latent_shapes)
    np.testing.assert_allclose(to_numpy(model.decode(zs)), x, atol=1e-4)
    _, decode_logdet = model.decode_with_logdet(zs)
    np.testing.assert_allclose(to_numpy(decode_logdet), -to_numpy(model.encode(x)[1]), atol=1e-3)


@pytest.mark.slow
@pytest.mark.both_backends
def test_log_prob_is_the_change_of_variables(model):
    """log p(x) against an independent computation: N(0, I) at the flattened
    latents plus log|det| of the autodiff Jacobian of the whole map."""
    x = x_batch()
    zs, logdet = model.encode(x)
    log_prob = to_numpy(model.log_prob(x))

    def encode_flat(v):
        return ops.reshape(flatten_latents(model.encode(ops.reshape(v, (1, *TINY.image_shape)))[0]), (-1,))

    eps = to_numpy(flatten_latents(zs)).astype(np.float64)
    gaussian = -0.5 * (eps**2).sum(axis=1) - 0.5 * eps.shape[1] * math.log(2 * math.pi)
    for i in range(len(x)):
        jacobian_logdet = log_abs_det_jacobian(encode_flat, x[i])
        np.testing.assert_allclose(to_numpy(logdet)[i], jacobian_logdet, rtol=1e-4, atol=2e-3)
        np.testing.assert_allclose(log_prob[i], gaussian[i] + jacobian_logdet, rtol=1e-4, atol=2e-3)


@pytest.mark.both_backends
def test_bits_per_dim_is_log_prob_plus_bin_term(model):
    images = uint8_images(4, seed=2)
    x = quantization.dequantize(images, TINY.n_bits, seed=7)
    # The noise lies inside one bin, below the next level.
    offset = to_numpy(x) - to_numpy(quantization.quantize(images, TINY.n_bits))
    assert offset.min() >= 0 and offset.max() < 1 / 2**TINY.n_bits
    d = 4 * 4 * 2
    expected = (-to_numpy(model.log_prob(x)) + d * TINY.n_bits * math.log(2)) / (d * math.log(2))
    np.testing.assert_allclose(to_numpy(model.bits_per_dim(images, seed=7)), expected, rtol=1e-5)
    # What fit() minimises is the same quantity.
    per_image = to_numpy(model(images))
    assert per_image.shape == (4,) and np.all(np.isfinite(per_image))


@pytest.mark.both_backends
def test_sample_shape_dtype_and_temperature(model):
    x = to_numpy(model.sample(5, temperature=0.7, seed=0))
    assert x.shape == (5, *TINY.image_shape) and x.dtype == np.float32
    assert np.all(np.isfinite(x)) and x.min() >= -0.5 and x.max() <= 0.5
    assert not np.allclose(x[0], x[1])
    cold = [to_numpy(model.sample(2, temperature=0.0, seed=s)) for s in (0, 1)]
    np.testing.assert_array_equal(cold[0], cold[1])
    zeros = [np.zeros((2, *shape), np.float32) for shape in model.latent_shapes]
    prior_mean = np.clip(to_numpy(model.decode(zeros)), -0.5, 0.5)
    np.testing.assert_allclose(cold[0], prior_mean, atol=1e-6)
    with pytest.raises(ValueError, match="temperature=-1"):
        model.sample(2, temperature=-1)


@pytest.mark.both_backends
def test_latents_and_dequantisation_noise_are_keras_own_draws_for_the_seed(model):
    """glow_tf draws them as flat vectors (glow_tf/draws.py: faster to compile
    on JAX); the numbers must stay those Keras draws for each shape."""
    shapes = model.latent_shapes
    generator = keras.random.SeedGenerator(11)
    expected = [0.7 * to_numpy(keras.random.normal((3, *shape), seed=generator))
                for shape in shapes]
    drawn = sampling.draw_latents(shapes, 3, 0.7, seed=11)
    assert [tuple(z.shape) for z in drawn] == [(3, *shape) for shape in shapes]
    for z, want in zip(drawn, expected):
        np.testing.assert_array_equal(to_numpy(z), want)
    images = uint8_images(3)
    noise = to_numpy(quantization.dequantize(images, TINY.n_bits, seed=5)) \
        - to_numpy(quantization.quantize(images, TINY.n_bits))
    want = to_numpy(keras.random.uniform(images.shape, 0.0, 1.0 / 2**TINY.n_bits, seed=5))
    np.testing.assert_allclose(noise, want, atol=1e-7)


def test_one_sample_with_a_one_by_one_top_latent(model):
    """A batch of one through a 1x1 top latent (TINY's, and 8x8 images at L=3).

    Keras' TensorFlow `add` once broadcast the top prior's unbatched mean
    against such a batch into the wrong shape.
    """
    assert model.latent_shapes[-1][:2] == (1, 1)
    x = to_numpy(model.sample(1, seed=0))
    assert x.shape == (1, *TINY.image_shape)
    zs, _ = model.encode(x)
    np.testing.assert_allclose(to_numpy(model.decode(zs)), x, atol=1e-4)


@pytest.mark.both_backends
def test_weights_round_trip(model, tmp_path):
    path = str(tmp_path / "tiny.weights.h5")
    model.save_weights(path)
    fresh = Glow(TINY)
    x = x_batch()
    assert not np.allclose(to_numpy(fresh.log_prob(x)), to_numpy(model.log_prob(x)))
    fresh.load_weights(path)
    np.testing.assert_array_equal(to_numpy(fresh.log_prob(x)), to_numpy(model.log_prob(x)))
    assert fresh.initialized


def test_build_again_confirms_the_shape_and_adds_no_weights():
    model = Glow(TINY)
    count = len(model.weights)
    model.build((None, *TINY.image_shape))  # built in __init__; a second call changes nothing
    assert len(model.weights) == count
    wrong = (None, TINY.image_shape[0] * 2, *TINY.image_shape[1:])
    with pytest.raises(ValueError, match=r"Glow\.build\(\(None, 8.*takes images of shape"):
        model.build(wrong)


def test_whole_model_saves_and_loads(model, tmp_path):
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Glow) and loaded.config == TINY
    x = x_batch()
    np.testing.assert_array_equal(to_numpy(loaded.log_prob(x)), to_numpy(model.log_prob(x)))


@pytest.mark.both_backends
def test_initialize_standardises_the_first_actnorm():
    model = Glow(TINY)
    assert not model.initialized
    images = uint8_images(256)
    model.initialize(images)
    assert model.initialized
    squeeze, steps = model.flow.levels[0].bijectors[:2]
    first_step = steps.step_weights(0)
    squeezed, _ = squeeze(quantization.dequantize(images, TINY.n_bits, seed=3))
    # The first ActNorm, y = (x + b) * exp(log_s), with the first step's weights.
    log_s = model.config.log_scale_factor * first_step["actnorm.log_scale"]
    y = (to_numpy(squeezed) + first_step["actnorm.bias"]) * np.exp(log_s)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=0.05)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=0.05)


@pytest.mark.both_backends
def test_initialize_runs_a_levels_steps_as_one_compiled_step_on_jax(monkeypatch):
    """Every step's first ActNorm standardises what reaches it through the steps
    before it; on JAX a level's step is traced once, not K times."""
    from glow_tf.layers import step as step_module

    config = GlowConfig(**{**TINY_MODEL, "k_glow": 3})
    images = uint8_images(256)
    calls = []
    forward = step_module.FlowStep.forward

    def counted_forward(self, *args, **kwargs):
        calls.append(self)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(step_module.FlowStep, "forward", counted_forward)
    model = Glow(config)
    model.initialize(images)
    jax = keras.backend.backend() == "jax"
    assert len(calls) == config.l_glow * (1 if jax else config.k_glow)
    monkeypatch.undo()

    squeeze, steps = model.flow.levels[0].bijectors[:2]
    h, _ = squeeze(quantization.dequantize(images, config.n_bits, seed=3))
    for k, weights in enumerate(steps.rows()):
        actnorm = steps.step_weights(k)
        log_s = config.log_scale_factor * actnorm["actnorm.log_scale"]
        y = (to_numpy(h) + actnorm["actnorm.bias"]) * np.exp(log_s)
        np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=0.05, err_msg=f"step {k}")
        np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=0.05, err_msg=f"step {k}")
        h, _ = steps.call_step(h, weights)


@pytest.mark.slow
def test_fit_lowers_the_loss_and_traces_its_step_once():
    """Glow.fit makes the optimizer's slots before the step is traced: on TensorFlow
    a first trace that made them would be traced again (Glow._build_optimizer)."""
    keras.utils.set_random_seed(0)
    model = Glow(TINY)
    images = uint8_images(16)
    model.initialize(images)
    model.compile(keras.optimizers.Adamax(3e-3))
    traces, train_step = [], model.train_step

    def counted_train_step(*args):  # runs as the step is traced, not at each step
        traces.append(args)
        return train_step(*args)

    model.train_step = counted_train_step
    history = model.fit(images, batch_size=16, epochs=20, verbose=0).history["loss"]
    assert len(traces) == 1, traces
    assert all(np.isfinite(history))
    assert np.mean(history[-3:]) < np.mean(history[:3]) - 0.1, history


@pytest.mark.slow
def test_paper_cifar10_model_has_about_44m_parameters():
    model = Glow(GlowConfig(image_shape=(32, 32, 3), k_glow=32, l_glow=3, hidden_channels=512))
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    # PyTorch ports of the same architecture report 44.1M-44.2M.
    assert 44.0e6 < trainable < 44.3e6, trainable


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"image_shape": (28, 28, 1), "l_glow": 3}, r"image_shape=\(28, 28, 1\).*divisible by 2\*\*l_glow = 8"),
        ({"image_shape": (4, 4, 1), "l_glow": 3}, r"image_shape=\(4, 4, 1\).*divisible by 2\*\*l_glow = 8"),
        ({"image_shape": (32, 32)}, r"image_shape=\(32, 32\): expected three positive integers"),
        ({"k_glow": 0}, "k_glow=0: expected an integer >= 1"),
        ({"l_glow": 0}, "l_glow=0: expected an integer >= 1"),
        ({"hidden_channels": -4}, "hidden_channels=-4"),
        ({"n_bits": 0}, "n_bits=0: expected an integer in 1..8"),
        ({"n_bits": 9}, "n_bits=9: expected an integer in 1..8"),
        ({"coupling": "spline"}, "coupling='spline': expected one of affine, additive"),
        ({"permutation": "random"}, "permutation='random': expected one of lu, conv, reverse, shuffle"),
    ],
)
def test_bad_config_names_the_value(fields, message):
    with pytest.raises(ValueError, match=message):
        GlowConfig(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"image_shape": (8, 4, 3), "l_glow": 1, "k_glow": 1},  # non-square, L = 1
        {"image_shape": (8, 8, 1), "l_glow": 3, "k_glow": 1},  # 1x1 at the top
        {"image_shape": (4, 4, 5), "l_glow": 2, "permutation": "conv", "coupling": "additive"},
        {"image_shape": (4, 4, 2), "permutation": "shuffle"},
        {"image_shape": (4, 4, 2), "permutation": "reverse"},
    ],
)
def test_any_valid_shape_and_option_round_trips(fields):
    config = GlowConfig(**{"k_glow": 2, "l_glow": 2, "hidden_channels": 8, "seed": 0, **fields})
    model = Glow(config)
    randomize_weights(model, stddev=0.02)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, *config.image_shape)).astype(np.float32)
    zs, logdet = model.encode(x)
    np.testing.assert_allclose(to_numpy(model.decode(zs)), x, atol=1e-4)
    assert np.all(np.isfinite(to_numpy(logdet)))


def test_wrong_image_shape_is_named(model):
    with pytest.raises(ValueError, match=r"images has shape \(2, 4, 4, 3\); this model expects \(batch, 4, 4, 2\)"):
        model.bits_per_dim(np.zeros((2, 4, 4, 3), np.uint8))


CONDITIONAL = GlowConfig(
    image_shape=(4, 4, 2), k_glow=1, l_glow=2, hidden_channels=8, n_bits=5,
    num_classes=3, weight_y=0.5, seed=0,
)


@pytest.fixture
def conditional_model():
    model = Glow(CONDITIONAL)
    model.initialize(uint8_images(32))
    randomize_weights(model, stddev=0.02)
    return model


@pytest.mark.both_backends
def test_conditional_log_prob_depends_on_the_label(conditional_model):
    x = x_batch()
    per_class = [to_numpy(conditional_model.log_prob(x, labels=np.full(3, c))) for c in range(3)]
    assert not np.allclose(per_class[0], per_class[1])
    assert not np.allclose(per_class[1], per_class[2])
    # The bijection itself is exact for every label.
    labels = np.array([2, 0, 1])
    zs, _ = conditional_model.encode(x, labels)
    np.testing.assert_allclose(to_numpy(conditional_model.decode(zs, labels)), x, atol=1e-4)


@pytest.mark.both_backends
def test_conditional_model_needs_labels_and_checks_them(conditional_model):
    x = x_batch()
    with pytest.raises(ValueError, match=r"class-conditional \(num_classes=3\): pass labels, one integer in 0..2"):
        conditional_model.log_prob(x)
    with pytest.raises(ValueError, match="label 3 is out of range: expected integers in 0..2"):
        conditional_model.log_prob(x, labels=np.array([0, 1, 3]))
    with pytest.raises(ValueError, match=r"labels has shape \(2,\); expected one label per image, shape \(3,\)"):
        conditional_model.log_prob(x, labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="this model is unconditional"):
        Glow(TINY).log_prob(x, labels=np.array([0, 1, 2]))
    # Eager tensors are checked as NumPy arrays are: -1 would pick the last class.
    with pytest.raises(ValueError, match="label -1 is out of range: expected integers in 0..2"):
        conditional_model.log_prob(x, labels=ops.convert_to_tensor(np.array([0, -1, 2])))
    with pytest.raises(ValueError, match="label -1 is out of range"):
        conditional_model.bits_per_dim(uint8_images(3), labels=ops.convert_to_tensor([0, -1, 2]))


def test_conditional_samples_and_loss(conditional_model):
    samples = [to_numpy(conditional_model.sample(2, temperature=0.0, labels=c)) for c in range(2)]
    assert not np.allclose(samples[0], samples[1])  # the class moves the prior's mean
    images, labels = uint8_images(6), np.array([0, 1, 2, 0, 1, 2])
    conditional_model({"images": images, "labels": labels})
    # Zero-initialised classifier weights were randomised; its loss is still
    # weight_y times a cross-entropy in bits, which is positive.
    (classifier_loss,) = conditional_model.losses
    assert float(to_numpy(classifier_loss)) > 0


@pytest.mark.slow
@pytest.mark.both_backends
def test_conditional_fit_lowers_the_loss():
    keras.utils.set_random_seed(0)
    model = Glow(CONDITIONAL)
    images = uint8_images(16)
    labels = np.arange(16) % 3
    model.initialize(images)
    model.compile(keras.optimizers.Adamax(3e-3))
    data = {"images": images, "labels": labels}
    history = model.fit(data, batch_size=16, epochs=15, verbose=0).history["loss"]
    assert np.mean(history[-3:]) < np.mean(history[:3]) - 0.1, history
    # The loss is bits/dim plus weight_y times the classifier's cross-entropy
    # in bits: replay the dequantisation noise of one eager call to check it.
    state = to_numpy(model.seed_generator.state)
    y_pred = model(data)
    loss = float(to_numpy(model.compute_loss(y_pred=y_pred)))
    replay = keras.random.SeedGenerator(0)
    replay.state.assign(state)
    x = quantization.dequantize(images, CONDITIONAL.n_bits, seed=replay)
    bpd = quantization.bits_per_dim(to_numpy(model.log_prob(x, labels)), 4 * 4 * 2, CONDITIONAL.n_bits)
    np.testing.assert_allclose(to_numpy(y_pred), bpd, rtol=1e-5)
    logits = to_numpy(model.class_logits(x)).astype(np.float64)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    bits_y = -log_softmax[np.arange(16), labels].mean() / math.log(2)
    np.testing.assert_allclose(loss, bpd.mean() + CONDITIONAL.weight_y * bits_y, rtol=1e-5)


# ---- values that are no images: checked where they exist ----


@pytest.mark.both_backends
def test_log_prob_refuses_non_finite_x(model):
    x = x_batch()
    x[1, 0, 0, 0], x[2, 1, 2, 1] = np.nan, -np.inf
    message = r"x holds 2 non-finite value\(s\) \(NaN or inf\); log_prob needs finite inputs"
    with pytest.raises(ValueError, match=message):
        model.log_prob(x)
    with pytest.raises(ValueError, match=message):
        model.log_prob(ops.convert_to_tensor(x))


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda u: np.where(u == 255, np.nan, u).astype(np.float32), "have dtype float32"),
        (lambda u: u.astype(np.float32) / 255 - 0.5, "have dtype float32"),
        (lambda u: u.astype(np.float32) / 255, "have dtype float32"),
        (lambda u: u.astype(np.float64), "have dtype float64"),
        (lambda u: u.astype(np.int32) + 1, r"holds values in \[1, 256\], outside 0..255"),
        (lambda u: u.astype(np.int64) - 1, r"holds values in \[-1, 254\], outside 0..255"),
    ],
    ids=["nan", "flow-inputs", "scaled-to-1", "whole-floats", "above-255", "below-0"],
)
def test_bits_per_dim_refuses_what_are_no_uint8_images(model, make_bad, message):
    images = np.minimum(uint8_images(3), 254)
    images[0, 0, 0, 0], images[1, 0, 0, 0] = 0, 255
    bad = make_bad(images)
    with pytest.raises(ValueError, match=f"images {message}; bits_per_dim expects uint8 images"):
        model.bits_per_dim(bad)
    with pytest.raises(ValueError, match=f"images {message}; initialize expects uint8 images"):
        model.initialize(bad)


@pytest.mark.both_backends
def test_integer_images_with_uint8_values_score_the_same(model):
    images = uint8_images(3)
    for dtype in (np.int32, np.int64):
        np.testing.assert_array_equal(
            to_numpy(model.bits_per_dim(images.astype(dtype), seed=3)),
            to_numpy(model.bits_per_dim(images, seed=3)),
        )


@pytest.mark.both_backends
def test_fit_refuses_float_images_at_trace_time(model):
    """The audit's case: images/255 trained silently, every pixel floored to black."""
    images = uint8_images(8)
    model.compile(keras.optimizers.Adam(1e-4))
    with pytest.raises(ValueError, match="images have dtype float32; Glow.fit expects uint8"):
        model.fit(images.astype(np.float32) / 255, batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="images have dtype float64; Glow.evaluate expects"):
        model.evaluate(images.astype(np.float64), batch_size=4, verbose=0)
    # Inside the compiled step, where the values cannot be seen, the dtype still can.
    with pytest.raises(ValueError, match="images have dtype float32; Glow expects uint8"):
        model.train_on_batch(images.astype(np.float32))


@pytest.mark.both_backends
def test_value_checks_are_skipped_inside_a_traced_function(model):
    # Traced inputs have no values: the check cannot run there and must not
    # break tracing; the NaN comes out as a NaN.
    x = x_batch()
    x[0, 0, 0, 0] = np.nan
    if keras.backend.backend() == "jax":
        import jax

        traced = jax.jit(model.log_prob)
    else:
        import tensorflow as tf

        traced = tf.function(model.log_prob)
    log_prob = to_numpy(traced(x))
    assert np.isnan(log_prob[0]) and np.all(np.isfinite(log_prob[1:]))


# ---- compiled encode and decode (glow_tf.compiled) ----


@pytest.mark.slow
@pytest.mark.both_backends
def test_compiled_encode_and_decode_compute_what_the_layers_do(model):
    x = x_batch(5)
    zs, logdet = model.encode(x)  # compiled
    direct_zs, direct_logdet = model.flow(ops.convert_to_tensor(x))  # op by op
    for z, direct in zip(zs, direct_zs):
        np.testing.assert_allclose(to_numpy(z), to_numpy(direct), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(logdet), to_numpy(direct_logdet), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        to_numpy(model.decode(zs)), to_numpy(model.flow(direct_zs, inverse=True)[0]), atol=1e-5
    )
    # The compiled functions read the weights as they are now, not as traced.
    before = to_numpy(model.encode(x)[1])
    log_scale = next(v for v in model.weights if v.path.endswith("actnorm.log_scale"))
    log_scale.assign(log_scale + 0.5)
    assert not np.allclose(to_numpy(model.encode(x)[1]), before)


@pytest.mark.both_backends
def test_compiled_functions_trace_once_per_batch_shape(model):
    for n in (3, 5, 3):
        model.encode(x_batch(n))
        model.sample(n, temperature=0.5, seed=n)
    # TensorFlow: one trace for every batch size; JAX: one per batch size.
    expected = 1 if keras.backend.backend() == "tensorflow" else 2
    assert model.traces == {"encode": expected, "decode": expected}


@pytest.mark.both_backends
def test_encode_images_gives_the_dequantised_input_its_latents_and_bits_per_dim(model):
    images = uint8_images(4)
    x, zs, bpd = model.encode_images(images, seed=7)
    np.testing.assert_array_equal(to_numpy(x), to_numpy(quantization.dequantize(images, TINY.n_bits, seed=7)))
    for z, expected in zip(zs, model.encode(x)[0]):
        np.testing.assert_allclose(to_numpy(z), to_numpy(expected), atol=1e-6)
    np.testing.assert_allclose(to_numpy(bpd), to_numpy(model.bits_per_dim(images, seed=7)), atol=1e-6)


# ---- seeded initialisers ----

SEEDED = dict(image_shape=(8, 8, 1), k_glow=2, l_glow=2, hidden_channels=8, n_bits=4)


def random_kernels(model):
    """{path below the model: values} of the weights drawn at random when it is built.

    Of the LU factors, the entries below (L) and above (U) the diagonal. A
    level's steps hold each weight stacked: one entry per step, "path[k]".
    """
    names = ("conv_in.kernel", "conv_hidden.kernel", ".lower", ".upper", ".log_s",
             "invconv.kernel")
    kernels = {}
    for v in model.weights:
        if not v.path.endswith(names):
            continue
        for k, values in enumerate(to_numpy(v)):
            if v.path.endswith((".lower", ".upper")):
                rows, columns = np.tril_indices(len(values), -1)
                values = values[rows, columns] if v.path.endswith(".lower") \
                    else values.T[rows, columns]
            kernels[f"{v.path.split('/', 1)[1]}[{k}]"] = values
    return kernels


@pytest.mark.parametrize("permutation, per_step", [
    pytest.param("lu", 5, marks=pytest.mark.both_backends), ("conv", 3),
])
def test_the_seed_fixes_every_random_kernel_and_no_two_share_a_stream(permutation, per_step):
    config = GlowConfig(**SEEDED, permutation=permutation, seed=1)
    first, again = Glow(config), Glow(config)
    for a, b in zip(first.weights, again.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=a.path)
    kernels = random_kernels(first)
    assert len(kernels) == per_step * SEEDED["k_glow"] * SEEDED["l_glow"]
    for seed in (2, None):
        theirs = random_kernels(Glow(GlowConfig(**{**config.to_dict(), "seed": seed})))
        for path, values in kernels.items():
            assert not np.array_equal(values, theirs[path]), f"{path}: the same with seed={seed}"
    # No two kernels start from the same stream: not even their first entries agree.
    flat = {path: np.abs(values).ravel() for path, values in kernels.items()}
    paths = sorted(flat)
    for i, a in enumerate(paths):
        for b in paths[i + 1:]:
            n = min(flat[a].size, flat[b].size, 8)
            assert not np.allclose(flat[a][:n], flat[b][:n]), f"{a} and {b} share a stream"
