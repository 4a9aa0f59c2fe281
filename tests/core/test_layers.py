"""Every bijector through the shared check, plus what is particular to each."""

import numpy as np
import pytest
from keras import ops

from glow_tf import GlowConfig
from glow_tf.flow import GlowFlow
from glow_tf.layers import (
    ActNorm,
    Chain,
    Coupling,
    FlowStep,
    FlowSteps,
    Invertible1x1Conv,
    LearnedPrior,
    Permute,
    SplitPrior,
    Squeeze,
)
from glow_tf.layers.actnorm import data_initialization
from glow_tf.layers.networks import CouplingNetwork, conv_as_matmul, conv_same
from tests.bijector_checks import check_bijector, randomize_weights, to_numpy
from tests.tiny import TINY_MODEL


# Rerun on JAX (tests/core/test_jax.py): each bijector, and each form of a level, once.
JAX_TOO = pytest.mark.both_backends


def batch(shape=(2, 4, 4, 4), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize(
    "make_layer",
    [
        pytest.param(lambda: ActNorm(), id="actnorm", marks=JAX_TOO),
        pytest.param(lambda: ActNorm(log_scale_factor=3.0), id="actnorm-factor-3"),
        pytest.param(lambda: Invertible1x1Conv(lu_decomposed=True, seed=1), id="invconv-lu",
                     marks=JAX_TOO),
        pytest.param(lambda: Invertible1x1Conv(lu_decomposed=False, seed=1), id="invconv-plain",
                     marks=JAX_TOO),
        pytest.param(lambda: Permute("reverse"), id="permute-reverse"),
        pytest.param(lambda: Permute("shuffle", seed=3), id="permute-shuffle", marks=JAX_TOO),
        pytest.param(lambda: Coupling(8, affine=True), id="coupling-affine", marks=JAX_TOO),
        pytest.param(lambda: Coupling(8, log_scale_factor=3.0), id="coupling-factor-3"),
        pytest.param(lambda: Coupling(8, affine=False), id="coupling-additive", marks=JAX_TOO),
        pytest.param(lambda: Squeeze(), id="squeeze", marks=JAX_TOO),
        pytest.param(lambda: SplitPrior(), id="split-prior", marks=JAX_TOO),
        pytest.param(lambda: LearnedPrior(), id="learned-prior", marks=JAX_TOO),
        pytest.param(lambda: FlowStep(8, permutation_seed=1, coupling_seed=2), id="flow-step"),
        pytest.param(lambda: FlowStep(8, "additive", "shuffle", permutation_seed=2),
                     id="flow-step-additive-shuffle"),
        pytest.param(lambda: FlowSteps([FlowStep(8, name=f"step_{k}") for k in range(2)],
                                       loop="unrolled"), id="flow-steps-unrolled", marks=JAX_TOO),
        pytest.param(lambda: FlowSteps([FlowStep(8, name=f"step_{k}") for k in range(3)],
                                       loop="loop"), id="flow-steps-loop", marks=pytest.mark.slow),
        pytest.param(lambda: FlowSteps([FlowStep(8, "additive", "reverse", name=f"step_{k}")
                                        for k in range(2)], loop="loop", remat=True),
                     id="flow-steps-loop-remat", marks=[JAX_TOO, pytest.mark.slow]),
        pytest.param(lambda: Chain([Squeeze(), FlowSteps([FlowStep(8)]), SplitPrior()]),
                     id="level"),
    ],
)
def test_bijector_protocol(make_layer):
    check_bijector(make_layer(), batch())


# The whole multi-scale flow: 4x4x2 images, two levels (a split, then the top prior).
FLOW = GlowConfig(**TINY_MODEL)


@pytest.mark.slow
def test_the_multi_scale_flow_is_one_bijector():
    flow = GlowFlow(FLOW)
    # A smaller perturbation than the layers': composed, larger ones make the
    # map too ill-conditioned for float32.
    flow.build(batch((2, *FLOW.image_shape)).shape)
    randomize_weights(flow, stddev=0.02)
    latents, _ = check_bijector(flow, batch((2, *FLOW.image_shape)), randomize=False)
    assert [z.shape[1:] for z in latents] == list(flow.latent_shapes) == [(2, 2, 4), (1, 1, 16)]


@pytest.mark.slow
def test_the_class_conditional_flow_takes_labels_through_the_protocol():
    flow = GlowFlow(GlowConfig(**{**FLOW.to_dict(), "num_classes": 3}))
    x = batch((3, *FLOW.image_shape))
    flow.build(x.shape)
    randomize_weights(flow, stddev=0.02)
    check_bijector(flow, x, randomize=False, labels=[0, 2, 1])
    with pytest.raises(ValueError, match="class-conditional \\(num_classes=3\\): pass labels"):
        flow(x)


@pytest.mark.both_backends
def test_a_flow_step_is_a_function_of_its_weights():
    """What a loop over a level's stacked weights relies on: stateless_call runs the
    step's math on any values of its weights."""
    step = FlowStep(8)
    x = batch()
    step.build(x.shape)
    randomize_weights(step)
    other = FlowStep(8)
    other.build(x.shape)
    randomize_weights(other, seed=5)
    (y, logdet), _ = step.stateless_call(
        [v.value for v in other.trainable_variables],
        [v.value for v in other.non_trainable_variables], x)
    expected_y, expected_logdet = other(x)
    np.testing.assert_allclose(to_numpy(y), to_numpy(expected_y), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_numpy(logdet), to_numpy(expected_logdet), rtol=1e-6)
    (x_again, _), _ = step.stateless_call(
        [v.value for v in other.trainable_variables],
        [v.value for v in other.non_trainable_variables], y, inverse=True)
    np.testing.assert_allclose(to_numpy(x_again), x, atol=1e-4)


@pytest.mark.parametrize("factor", [pytest.param(1.0, marks=JAX_TOO), 3.0])
def test_class_conditional_prior(factor):
    layer = LearnedPrior(num_classes=3, log_scale_factor=factor)
    x = batch((3, 2, 2, 4))
    check_bijector(layer, x, labels=[0, 2, 1])
    # The same z under different classes gets a different density.
    _, logdet_0 = layer(x, labels=np.array([0, 0, 0]))
    _, logdet_1 = layer(x, labels=np.array([1, 1, 1]))
    assert not np.allclose(to_numpy(logdet_0), to_numpy(logdet_1))
    with pytest.raises(ValueError, match="class-conditional \\(num_classes=3\\): pass labels"):
        layer(x)
    with pytest.raises(ValueError, match="unconditional prior"):
        LearnedPrior()(x, labels=np.array([0, 0, 0]))


def test_coupling_with_odd_channels():
    check_bijector(Coupling(8), batch((2, 2, 2, 3)))


@pytest.mark.parametrize("factor", [1.0, 3.0])
def test_actnorm_data_init_standardises_per_channel(factor):
    x = batch((64, 4, 4, 3)) * np.array([0.1, 2.0, 5.0], np.float32) + 3.0
    layer = ActNorm(log_scale_factor=factor)
    layer.build(x.shape)
    assert to_numpy(layer.initialized) == 0.0
    layer.data_init = True
    y, _ = layer(x)
    layer.data_init = False
    y = to_numpy(y)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
    assert to_numpy(layer.initialized) == 1.0
    # The variable holds log_s / factor.
    np.testing.assert_allclose(to_numpy(layer.log_scale) * factor,
                               -np.log(x.std(axis=(0, 1, 2))), rtol=1e-4)
    # Once the flag is off, a new batch no longer moves the parameters.
    before = to_numpy(layer.bias)
    layer(x * 10.0)
    np.testing.assert_array_equal(to_numpy(layer.bias), before)


@pytest.mark.parametrize("lu_decomposed", [True, False])
def test_invertible_conv_starts_as_a_rotation(lu_decomposed):
    layer = Invertible1x1Conv(lu_decomposed=lu_decomposed, seed=0)
    layer.build((1, 1, 1, 6))
    w = to_numpy(layer.weight())
    np.testing.assert_allclose(w @ w.T, np.eye(6), atol=1e-5)
    _, logdet = layer(batch((1, 1, 1, 6)))
    np.testing.assert_allclose(to_numpy(logdet), 0.0, atol=1e-5)


def test_lu_logdet_is_sum_of_log_s():
    layer = Invertible1x1Conv(seed=0)
    layer.build((1, 3, 5, 4))
    layer.log_s.assign(np.array([0.5, -0.2, 0.1, 0.3], np.float32))
    _, logdet = layer(batch((1, 3, 5, 4)))
    np.testing.assert_allclose(to_numpy(logdet), 15 * 0.7, rtol=1e-5)
    w = to_numpy(layer.weight()).astype(np.float64)
    np.testing.assert_allclose(np.linalg.slogdet(w)[1], 0.7, rtol=1e-5)


@pytest.mark.parametrize("lu_decomposed", [True, False])
def test_constant_decompositions_hold_the_values_they_started_with(lu_decomposed):
    layer = Invertible1x1Conv(lu_decomposed=lu_decomposed, seed=0)
    x = batch((2, 2, 2, 4))
    layer.build(x.shape)
    randomize_weights(layer)
    y, logdet = layer(x)
    with layer.constant_decompositions():
        np.testing.assert_allclose(to_numpy(layer(y, inverse=True)[0]), x, atol=1e-5)
        np.testing.assert_allclose(to_numpy(layer(x)[1]), to_numpy(logdet), rtol=1e-6)
        randomize_weights(layer, seed=1)  # frozen: W^-1 and log|det W| do not follow
        np.testing.assert_allclose(to_numpy(layer(x)[1]), to_numpy(logdet), rtol=1e-6)
    # Outside, they follow the weights again.
    y, logdet_after = layer(x)
    assert np.abs(to_numpy(logdet_after) - to_numpy(logdet)).max() > 1e-3
    np.testing.assert_allclose(to_numpy(layer(y, inverse=True)[0]), x, atol=1e-5)


def test_couplings_start_with_zero_shift():
    x = batch()
    y, _ = Coupling(8, affine=False)(x)
    np.testing.assert_allclose(to_numpy(y), x, atol=1e-6)
    y, logdet = Coupling(8, affine=True)(x)
    sigmoid_2 = 1.0 / (1.0 + np.exp(-2.0))
    np.testing.assert_allclose(to_numpy(y)[..., 2:], x[..., 2:] * sigmoid_2, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(logdet), 4 * 4 * 2 * np.log(sigmoid_2), rtol=1e-5)


def test_coupling_network_shapes():
    net = CouplingNetwork(16, 6)
    out = net(batch((2, 4, 4, 3)))
    assert tuple(out.shape) == (2, 4, 4, 6)
    np.testing.assert_array_equal(to_numpy(out), 0.0)  # zero-initialised last layer


def _network_as_written(net, x):
    """NN() of the coupling, each layer in turn, in NumPy but for the convolutions:
    conv3x3 -> ActNorm -> ReLU -> conv1x1 -> ActNorm -> ReLU -> ZeroConv3x3."""
    def actnorm(h, layer):
        log_s = to_numpy(layer.log_scale) * layer.log_scale_factor
        return (h + to_numpy(layer.bias)) * np.exp(log_s)

    def conv(h, kernel):
        return to_numpy(ops.conv(h, kernel, padding="same"))

    h = np.maximum(actnorm(conv(x, net.conv_in.kernel), net.actnorm_in), 0.0)
    h = np.maximum(actnorm(conv(h, net.conv_hidden.kernel), net.actnorm_hidden), 0.0)
    out = net.conv_out
    h = conv(h, out.conv.kernel) + to_numpy(out.conv.bias)
    return h * np.exp(to_numpy(out.log_scale) * out.log_scale_factor)


@pytest.mark.both_backends
@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (2, 6, 5, 3)], ids=["one-matmul", "convolved"])
def test_coupling_network_scales_its_kernels_to_the_same_values(shape):
    """The network multiplies each ActNorm's scale into the kernel before it (and
    ZeroConv2D its output scale): the same function as the layers in turn."""
    net = CouplingNetwork(16, 6, seed=1, log_scale_factor=3.0)
    x = batch(shape)
    net.build(x.shape)
    randomize_weights(net, stddev=0.3)
    expected = _network_as_written(net, x)
    # Within float32 rounding of the largest output: entries near zero are
    # differences of large terms, summed in another order.
    np.testing.assert_allclose(to_numpy(net(x)), expected, rtol=0,
                               atol=1e-5 * np.abs(expected).max())


def test_a_wide_coupling_network_puts_each_bias_and_relu_where_tensorflow_fuses_them():
    """On TensorFlow, from WIDE_WIDTH, each bias is a BiasAdd of its convolution's or
    matmul's output and each ReLU follows a BiasAdd: the pattern that Grappler's
    remapper fuses into one oneDNN kernel, and whose gradient TensorFlow fuses into
    the kernel's (a broadcasting add, or a reshape between, stays three passes).
    A narrow network adds its biases by broadcasting, which costs less there."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's graph")
    import tensorflow as tf

    from glow_tf.config import WIDE_WIDTH

    def inputs_of(width):
        net = CouplingNetwork(width, 6, seed=1)
        net.build((2, 6, 5, 3))
        graph = tf.function(net).get_concrete_function(tf.TensorSpec((2, 6, 5, 3))).graph
        return {kind: sorted(op.inputs[0].op.type for op in graph.get_operations()
                             if op.type == kind)
                for kind in ("BiasAdd", "Relu")}

    assert inputs_of(WIDE_WIDTH) == {"BiasAdd": ["Conv2D", "Conv2D", "MatMul"],
                                     "Relu": ["BiasAdd"] * 2}
    assert inputs_of(WIDE_WIDTH // 2) == {"BiasAdd": [], "Relu": ["AddV2"] * 2}


@pytest.mark.both_backends
def test_coupling_network_initialises_its_actnorms_from_its_convolutions():
    """While initialising, each ActNorm of the network sees its convolution's output,
    not the scaled kernel's: afterwards each hidden layer is standardised on that batch."""
    net = CouplingNetwork(16, 6, seed=1)
    x = batch((64, 4, 4, 3)) * 3.0 + 1.0
    net.build(x.shape)
    with data_initialization(net):
        net(x)
    h = to_numpy(ops.conv(x, net.conv_in.kernel, padding="same"))
    h = (h + to_numpy(net.actnorm_in.bias)) * np.exp(to_numpy(net.actnorm_in.log_scale))
    np.testing.assert_allclose(h.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(h.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
    h = to_numpy(ops.conv(np.maximum(h, 0.0), net.conv_hidden.kernel, padding="same"))
    h = (h + to_numpy(net.actnorm_hidden.bias)) * np.exp(to_numpy(net.actnorm_hidden.log_scale))
    np.testing.assert_allclose(h.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(h.std(axis=(0, 1, 2)), 1.0, atol=1e-3)


def test_squeeze_moves_each_2x2_patch_into_channels():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    y, _ = Squeeze()(x)
    assert tuple(y.shape) == (1, 2, 2, 4)
    np.testing.assert_array_equal(to_numpy(y)[0, 0, 0], [0, 1, 4, 5])


@pytest.mark.parametrize(
    "layer, shape, message",
    [
        (Squeeze(), (1, 3, 4, 1), "even height and width, got 3x4"),
        (Coupling(4), (1, 2, 2, 1), "at least 2 channels, got 1"),
        (SplitPrior(), (1, 2, 2, 1), "at least 2 channels, got 1"),
    ],
)
def test_bad_shapes_are_named(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer.build(shape)


def test_permute_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode='flip'"):
        Permute("flip")


def test_split_prior_scores_factored_half_under_its_gaussian():
    layer = SplitPrior()
    x = batch((2, 2, 2, 4))
    check_bijector(layer, x)  # randomises the prior network
    h = to_numpy(layer.prior(x[..., :2]))
    mean, log_scale = h[..., :2], h[..., 2:]
    (kept, eps), logdet = layer(x)
    np.testing.assert_array_equal(to_numpy(kept), x[..., :2])
    eps = to_numpy(eps)
    np.testing.assert_allclose(eps, (x[..., 2:] - mean) / np.exp(log_scale), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(logdet), -log_scale.sum(axis=(1, 2, 3)), rtol=1e-5)
    assert to_numpy(ops.convert_to_tensor(logdet)).dtype == np.float32


@pytest.mark.both_backends
@pytest.mark.parametrize("height, width, channels_in, channels_out", [
    (4, 4, 2, 16), (2, 2, 16, 8), (4, 2, 3, 5), (1, 1, 4, 4),
])
def test_small_images_convolve_as_one_matmul_to_the_same_values(height, width, channels_in,
                                                               channels_out):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, height, width, channels_in)).astype("float32")
    kernel = rng.normal(size=(3, 3, channels_in, channels_out)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(conv_same(x, kernel)), to_numpy(ops.conv(x, kernel, padding="same")),
        rtol=1e-5, atol=1e-5,
    )


@pytest.mark.both_backends
@pytest.mark.parametrize("height, width, channels_in, channels_out", [
    (5, 4, 2, 16), (4, 6, 16, 3), (8, 8, 4, 4), (1, 1, 5, 2),
])
def test_convolutions_as_matmuls_give_the_same_values(height, width, channels_in,
                                                      channels_out):
    """Both forms: im2col (C_in <= C_out) and the sum of shifted per-tap outputs."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, height, width, channels_in)).astype("float32")
    kernel = rng.normal(size=(3, 3, channels_in, channels_out)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(conv_as_matmul(x, kernel)), to_numpy(ops.conv(x, kernel, padding="same")),
        rtol=1e-5, atol=1e-5,
    )


def test_a_level_holds_each_steps_constants_and_runs_unrolled_with_them():
    """An export's constants (W^-1, log|det W|) are each step's own, computed from its
    row of the stacked weights: the same values as the loop gives without them."""
    from glow_tf.layers.invertible_conv import constant_decompositions_within

    x = batch((3, 4, 4, 4))
    steps = FlowSteps([FlowStep(8, name=f"step_{k}") for k in range(3)], loop="loop")
    steps.build(x.shape)
    randomize_weights(steps)
    assert steps.looped
    expected = [to_numpy(steps(x, inverse=inverse)) for inverse in (False, True)]
    with constant_decompositions_within(steps):
        assert steps.holds_constants and not steps.stateless and not steps.looped
        held = [to_numpy(steps(x, inverse=inverse)) for inverse in (False, True)]
    assert not steps.holds_constants and steps.looped
    for (y, logdet), (expected_y, expected_logdet) in zip(held, expected):
        np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(logdet, expected_logdet, rtol=1e-5, atol=1e-5)


@pytest.mark.both_backends
def test_a_level_runs_its_steps_as_a_loop_or_unrolled_to_the_same_values():
    """The loop stacks the steps' weights and runs the first step's math on each slice:
    the same outputs and log-determinants as the steps one after the other, both ways."""
    x = batch((3, 4, 4, 4))
    unrolled = FlowSteps([FlowStep(8, name=f"step_{k}") for k in range(3)], loop="unrolled")
    looped = FlowSteps([FlowStep(8, name=f"step_{k}") for k in range(3)], loop="loop")
    for steps in (unrolled, looped):
        steps.build(x.shape)
    randomize_weights(unrolled)
    looped.set_weights(unrolled.get_weights())
    assert looped.looped and not unrolled.looped
    for inverse in (False, True):
        y, logdet = looped(x, inverse=inverse)
        expected_y, expected_logdet = unrolled(x, inverse=inverse)
        np.testing.assert_allclose(to_numpy(y), to_numpy(expected_y), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(to_numpy(logdet), to_numpy(expected_logdet), rtol=1e-5,
                                   atol=1e-5)


def test_a_level_runs_unrolled_while_its_steps_hold_python_state():
    """The data-dependent initialisation assigns variables, and an export's 1x1
    convolutions hold constants of their own: neither can be one step's math on slices."""
    from glow_tf.layers.invertible_conv import constant_decompositions_within

    steps = FlowSteps([FlowStep(8, name=f"step_{k}") for k in range(2)], loop="loop")
    steps.build((2, 4, 4, 4))
    assert steps.looped
    with data_initialization(steps):
        assert not steps.looped
        steps(batch())
    with constant_decompositions_within(steps):
        assert not steps.looped
    assert steps.looped


def test_loop_names_its_choices():
    with pytest.raises(ValueError, match="loop='scan': expected one of auto, loop, unrolled"):
        FlowSteps([FlowStep(8)], loop="scan")
