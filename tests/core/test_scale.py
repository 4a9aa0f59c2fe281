"""Speed and scale options: several devices, mixed precision, remat, XLA.

These check that each option computes what the plain model computes; how
fast or how small is the benchmark's business (python -m benchmarks.train_step).
"""

import json

import keras
import numpy as np
import pytest
from keras import ops

from glow_tf import Glow, precision
from glow_tf.layers import Bijector, FlowSteps, step
from glow_tf.layers.base import layers_within
from glow_tf.layers.chain import unchained
from glow_tf.layers.networks import CouplingNetwork
from glow_tf.layers.recompute import recomputed
from glow_tf.tf import distribute
from tests import quick_compile
from tests.bijector_checks import randomize_weights, to_numpy
from tests.processes import run_module
from tests.scale_helpers import TINY, dequantised, fixed_noise_glow_class, uint8_images

BACKEND = keras.backend.backend()
from_tensorflow_run = pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="starts its own processes; run once, from the TensorFlow run",
)


# ---- several devices ----

@pytest.mark.slow
@from_tensorflow_run
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_devices_train_a_step_like_one(backend):
    """MirroredStrategy (TensorFlow) or DataParallel (JAX) over two CPU devices:
    the same loss and the same weights after one SGD step as one device."""
    if backend == "jax":
        pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")
    env = {"KERAS_BACKEND": backend,
           "XLA_FLAGS": quick_compile.flags("--xla_force_host_platform_device_count=2")}
    out = json.loads(run_module("tests.scale_helpers", env=env).strip().splitlines()[-1])
    assert out["backend"] == backend and out["replicas"] == 2, out
    one, two = out["loss"]
    np.testing.assert_allclose(two, one, rtol=1e-5)
    assert out["initial_weights_max_diff"] == 0.0
    # The step moved the weights far more than the two runs differ.
    assert out["weights_max_change"] > 1e-3, out
    assert out["weights_max_diff"] < 1e-6, out


@pytest.mark.both_backends
def test_distribution_names_are_checked():
    with pytest.raises(ValueError, match="strategy='mirorred': expected one of none, mirrored"):
        distribute.get_distribution("mirorred")
    other = "data_parallel" if BACKEND == "tensorflow" else "mirrored"
    with pytest.raises(ValueError, match=f"strategy='{other}' .* needs the"):
        distribute.get_distribution(other)
    single = distribute.get_distribution("none")
    assert single.num_replicas == 1 and single.global_batch(64) == 64
    with pytest.raises(ValueError, match="per_replica_batch=0"):
        single.global_batch(0)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute is TensorFlow's")
def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG environment variable, which is not set"):
        distribute.get_distribution("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(ValueError, match=r"TF_CONFIG='\{cluster' is not valid JSON"):
        distribute.get_distribution("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ValueError, match="expected a JSON object with 'cluster' and 'task'"):
        distribute.get_distribution("multi_worker")


# ---- mixed precision ----

# On JAX once, with float16: its loss scaling too (which the quick run checks
# in tests/training/test_training_options.py).
@pytest.mark.slow
@pytest.mark.parametrize("mode", [
    "bfloat16", pytest.param("float16", marks=pytest.mark.both_backends),
])
def test_mixed_precision_keeps_log_dets_in_float32(mode):
    reference = Glow(TINY)
    with precision.precision_scope(mode):
        model = Glow(TINY)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    model.initialize(uint8_images(32))
    randomize_weights(model, stddev=0.02)
    reference.set_weights(model.get_weights())

    # Only the coupling networks (and their sublayers) compute in the reduced type.
    networks = {
        id(sub)
        for net in layers_within(model) if isinstance(net, CouplingNetwork)
        for sub in layers_within(net)
    }
    assert networks
    for layer in layers_within(model)[1:]:
        expected = mode if id(layer) in networks else "float32"
        assert layer.compute_dtype == expected, (layer.name, layer.compute_dtype)
        assert layer.variable_dtype == "float32", layer.name

    # Every bijector's log-det, and each latent, comes out float32.
    h = ops.convert_to_tensor(dequantised(uint8_images(4, seed=3)))
    for layer in [*unchained(model.flow.levels), model.flow.prior]:
        out, logdet = layer(h)
        assert isinstance(layer, Bijector)
        assert keras.backend.standardize_dtype(logdet.dtype) == "float32", layer.name
        parts = out if isinstance(out, tuple) else (out,)
        for part in parts:
            assert keras.backend.standardize_dtype(part.dtype) == "float32", layer.name
        h = parts[0]  # a split's kept half goes on
    network = next(l for l in layers_within(model.flow) if isinstance(l, CouplingNetwork))
    assert keras.backend.standardize_dtype(network(ops.ones((1, 2, 2, 4))).dtype) == mode

    # The same density as float32, to the reduced type's precision.
    images = uint8_images(4, seed=4)
    np.testing.assert_allclose(
        to_numpy(model.bits_per_dim(images, seed=5)),
        to_numpy(reference.bits_per_dim(images, seed=5)), rtol=2e-2,
    )

    optimizer = precision.with_loss_scaling(keras.optimizers.Adam(1e-3), mode)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (mode == "float16")
    model.compile(optimizer)
    history = model.fit(uint8_images(16), batch_size=8, epochs=2, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)), history
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_precision_names_are_checked():
    with pytest.raises(ValueError, match="precision='fp16': expected one of float32, bfloat16, float16"):
        precision.set_precision("fp16")
    optimizer = keras.optimizers.Adam()
    assert precision.with_loss_scaling(optimizer, "bfloat16") is optimizer


# ---- rematerialisation ----

def tiny(**fields):
    """TINY with `fields` changed."""
    return TINY.__class__(**{**TINY.to_dict(), **fields})


def loss_and_gradients(model, x):
    """-mean log p(x) and its gradients, by the current backend's autodiff."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = -ops.mean(model.log_prob(x))
        grads = tape.gradient(loss, model.trainable_variables)
        return to_numpy(loss), [to_numpy(g) for g in grads]
    if BACKEND == "jax":
        import jax

        def loss_fn(values):
            mapping = list(zip(model.trainable_variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return -ops.mean(model.log_prob(x))

        loss, grads = jax.value_and_grad(loss_fn)([v.value for v in model.trainable_variables])
        return to_numpy(loss), [to_numpy(g) for g in grads]
    raise NotImplementedError(f"No gradients for the {BACKEND!r} backend.")


def trained_pair(tmp_path, **options):
    """A plain Glow with random weights, a Glow(**options) that loaded its weights file,
    and the file."""
    plain = Glow(TINY, loop="unrolled")
    plain.initialize(uint8_images(32))
    randomize_weights(plain, stddev=0.02)
    other = Glow(TINY, **options)
    other.initialize(uint8_images(32))  # an eager pass that assigns variables

    def paths(model):  # below the model's own (auto-numbered) name
        return [v.path.split("/", 1)[1] for v in model.weights]

    # The same weights file: how the steps run adds and renames nothing.
    assert paths(other) == paths(plain)
    path = str(tmp_path / "plain.weights.h5")
    plain.save_weights(path)
    other.load_weights(path)
    return plain, other, path


def assert_same_loss_and_gradients(model, plain, rtol=1e-6):
    x = dequantised(uint8_images(4, seed=6))
    plain_loss, plain_grads = loss_and_gradients(plain, x)
    loss, grads = loss_and_gradients(model, x)
    np.testing.assert_allclose(loss, plain_loss, rtol=rtol)
    assert len(grads) == len(plain_grads)
    assert any(np.abs(g).max() > 1e-3 for g in plain_grads)
    for g, g_plain in zip(grads, plain_grads):
        np.testing.assert_allclose(g, g_plain, rtol=1e-4, atol=1e-6)


# On JAX once, through the loop: keras.remat inside a scan.
@pytest.mark.slow
@pytest.mark.parametrize("loop", [
    "unrolled", pytest.param("loop", marks=pytest.mark.both_backends),
])
def test_remat_gives_the_same_gradients(monkeypatch, tmp_path, loop):
    """Per-step checkpointing: each step of flow (unrolled), or the loop's one step,
    goes through keras.remat, and the loss and gradients stay the same."""
    calls = []
    real_remat = keras.remat

    def counting_remat(fn):
        calls.append(fn)
        return real_remat(fn)

    monkeypatch.setattr(keras, "remat", counting_remat)
    plain, remat, path = trained_pair(tmp_path, remat=True, loop=loop)
    assert remat.initialized and not calls  # not while initialising
    remat.compile(keras.optimizers.SGD(1e-3))
    remat.fit(uint8_images(4), batch_size=4, verbose=0)  # a compiled step through keras.remat
    assert calls
    calls.clear()
    remat.load_weights(path)
    assert_same_loss_and_gradients(remat, plain)
    # One per step of flow, or one per level's loop; the plain model's never.
    per_level = 1 if loop == "loop" else TINY.k_glow
    assert len(calls) == per_level * TINY.l_glow, len(calls)
    assert Glow.from_config(remat.get_config()).remat is True


def test_remat_runs_each_level_as_one_loop_unless_told_otherwise():
    remat = Glow(TINY, remat=True)
    remat.initialize(uint8_images(8))
    assert all(level.bijectors[1].looped for level in remat.flow.levels)
    unrolled = Glow(TINY, remat=True, loop="unrolled")
    unrolled.initialize(uint8_images(8))
    assert not any(level.bijectors[1].looped for level in unrolled.flow.levels)


@pytest.mark.both_backends
def test_auto_loops_on_tensorflows_cpu_from_the_wide_width_and_always_on_jax():
    """loop="auto" without remat: on TensorFlow's CPU the unrolled steps below
    WIDE_WIDTH and one loop per level from it; on JAX the loop at every width."""
    from glow_tf.config import WIDE_WIDTH

    looped = {}
    for width in (WIDE_WIDTH // 2, WIDE_WIDTH):
        model = Glow(tiny(hidden_channels=width))
        model.initialize(uint8_images(8))
        looped[width] = [level.bijectors[1].looped for level in model.flow.levels]
    expected_narrow = BACKEND == "jax"
    assert looped == {WIDE_WIDTH // 2: [expected_narrow] * TINY.l_glow,
                      WIDE_WIDTH: [True] * TINY.l_glow}


def compiled_scratch_bytes(model, images):
    """XLA's scratch memory for JAX's compiled loss and gradients: what the step keeps."""
    import jax

    def loss(values, images):
        with keras.StatelessScope(state_mapping=list(zip(model.trainable_variables, values))):
            return ops.mean(model(images))

    values = [v.value for v in model.trainable_variables]
    compiled = jax.jit(jax.value_and_grad(loss)).lower(values, images).compile()
    return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.slow
@pytest.mark.both_backends
@pytest.mark.skipif(BACKEND != "jax", reason="XLA's memory analysis of a JAX function")
def test_remat_keeps_a_tenth_of_what_each_step_of_flow_stores(tmp_path, monkeypatch):
    """Per extra step of flow, the compiled step keeps little more than the step's
    input with remat, every activation without: asked of the compiler (buffer
    sizes, no clock).

    Unrolled, XLA on a CPU merges JAX's recomputation back into the forward
    pass; the loop, which remat picks, keeps it (FlowSteps.looped). Without
    remat, `loop="auto"` on JAX's CPU recomputes too (FlowSteps.recomputes):
    an explicit loop keeps every activation. From KEEP_HIDDEN_FROM_WIDTH,
    "auto" keeps the coupling networks' hidden convolution output
    (FlowSteps.keeps_hidden): a scratch between the two, and the plain
    model's loss and gradients. That is checked on this narrow model with
    the width lowered to its own, where compiling takes a fraction of the time.
    """
    # Images large enough that activations, not the stacked weights, fill the scratch.
    images = np.random.default_rng(0).integers(0, 32, (8, 16, 16, 2), dtype=np.uint8)
    scratch, forms = {}, {"kept": {"loop": "loop"}, "remat": {"remat": True},
                          "auto": {}}
    configs = {k: tiny(image_shape=(16, 16, 2), k_glow=k) for k in (2, 4)}
    for k, config in configs.items():
        for form, options in forms.items():
            if form == "auto" and k == 2:
                continue
            model = Glow(config, **options)
            model.initialize(images)
            assert not any(level.bijectors[1].keeps_hidden for level in model.flow.levels)
            scratch[k, form] = compiled_scratch_bytes(model, images)
    per_step = {form: (scratch[4, form] - scratch[2, form]) / 2 for form in ("kept", "remat")}
    # Measured (XLA on a CPU, 16x16x2 images, width 8): 51 KB with remat, 563 KB without.
    assert per_step["remat"] < 0.2 * per_step["kept"], scratch
    assert scratch[4, "remat"] < 0.5 * scratch[4, "kept"], scratch
    assert scratch[4, "auto"] == scratch[4, "remat"], scratch

    wide = Glow(tiny(hidden_channels=step.KEEP_HIDDEN_FROM_WIDTH))
    wide.initialize(uint8_images(8))
    assert all(level.bijectors[1].keeps_hidden for level in wide.flow.levels)

    monkeypatch.setattr(step, "KEEP_HIDDEN_FROM_WIDTH", TINY.hidden_channels)
    plain, auto, _ = trained_pair(tmp_path)
    assert all(level.bijectors[1].keeps_hidden for level in auto.flow.levels)
    assert_same_loss_and_gradients(auto, plain)
    model = Glow(configs[4])
    model.initialize(images)
    assert all(level.bijectors[1].keeps_hidden for level in model.flow.levels)
    kept_hidden = compiled_scratch_bytes(model, images)
    assert scratch[4, "remat"] < kept_hidden < scratch[4, "kept"], (kept_hidden, scratch)


@pytest.mark.skipif(BACKEND == "jax", reason="JAX keeps it: the test above")
def test_only_jax_keeps_the_hidden_output():
    """Recomputing while keeping the hidden output is a JAX checkpoint policy:
    asking for it on another backend says so, and "auto" never does there."""
    with pytest.raises(ValueError, match=f"keep_hidden needs the JAX backend, not '{BACKEND}'"):
        recomputed(lambda x: x, keep_hidden=True)
    model = Glow(tiny(hidden_channels=step.KEEP_HIDDEN_FROM_WIDTH))
    model.initialize(uint8_images(8))
    assert not any(level.bijectors[1].keeps_hidden for level in model.flow.levels)


@pytest.mark.slow
def test_looped_and_unrolled_steps_give_the_same_density_and_gradients(tmp_path):
    plain, looped, _ = trained_pair(tmp_path, loop="loop")
    assert all(level.bijectors[1].looped for level in looped.flow.levels)
    assert not any(level.bijectors[1].looped for level in plain.flow.levels)
    x = dequantised(uint8_images(4, seed=7))
    np.testing.assert_allclose(to_numpy(looped.log_prob(x)), to_numpy(plain.log_prob(x)),
                               rtol=1e-5, atol=1e-5)
    zs = looped.encode(x)[0]
    np.testing.assert_allclose(to_numpy(looped.decode(zs)), to_numpy(plain.decode(zs)),
                               atol=1e-5)
    assert_same_loss_and_gradients(looped, plain, rtol=1e-5)
    assert Glow.from_config(looped.get_config()).loop == "loop"


# ---- compiled steps ----

@pytest.mark.slow
@pytest.mark.parametrize(
    "fields", [pytest.param({}, id="lu-affine", marks=pytest.mark.both_backends),
               pytest.param({"permutation": "conv", "coupling": "additive"}, id="conv-additive")],
)
def test_jit_and_steps_per_execution_train_like_the_plain_step(fields):
    """jit_compile=True (XLA on TensorFlow) with 2 steps per execution gives
    the weights of plain one-step-per-call training."""
    config = tiny(**fields)
    x = dequantised(uint8_images(16, seed=7))
    weights = None
    results = []
    for jit, steps_per_execution in ((False if BACKEND == "tensorflow" else "auto", 1), (True, 2)):
        model = fixed_noise_glow_class()(config)
        model.initialize(uint8_images(32))
        if weights is None:
            randomize_weights(model, stddev=0.02)
            weights = model.get_weights()
        model.set_weights(weights)
        model.compile(keras.optimizers.SGD(0.02), jit_compile=jit,
                      steps_per_execution=steps_per_execution)
        history = model.fit(x, batch_size=4, epochs=1, shuffle=False, verbose=0)
        assert model.jit_compile == (jit is True or BACKEND == "jax")
        results.append((history.history["loss"][0], model.get_weights()))
    (loss_plain, w_plain), (loss_jit, w_jit) = results
    np.testing.assert_allclose(loss_jit, loss_plain, rtol=1e-4)
    assert max(np.abs(a - b).max() for a, b in zip(w_plain, weights)) > 1e-3
    for a, b in zip(w_jit, w_plain):
        np.testing.assert_allclose(a, b, atol=2e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="XLA's limit on TensorFlow's loops")
def test_xla_on_tensorflow_unrolls_the_auto_loop_and_refuses_an_explicit_one():
    model = Glow(TINY, remat=True)  # which loops on its own
    model.compile(keras.optimizers.SGD(0.02), jit_compile=True)
    steps = [layer for layer in layers_within(model.flow) if isinstance(layer, FlowSteps)]
    assert steps and all(s.loop == "unrolled" and not s.looped for s in steps)
    with pytest.raises(ValueError, match=r"loop='loop' with jit_compile=True"):
        Glow(TINY, loop="loop").compile(keras.optimizers.SGD(0.02), jit_compile=True)
