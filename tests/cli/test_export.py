"""glow-export: a SavedModel that serves the Keras model's values without glow_tf, from either backend.

Also runs as `python -m tests.cli.test_export RUN_DIR OUT REFERENCES`: export
with this process's backend and write the model's values beside, which is
how the test exports from the backend it does not run on.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

tf = pytest.importorskip("tensorflow")

from glow_tf import quantization  # noqa: E402
from glow_tf.cli import export  # noqa: E402
from glow_tf.runs import RunDir, load_model  # noqa: E402
from glow_tf.runs.files import TEMP_MARK, save_weights  # noqa: E402
from tests.bijector_checks import randomize_weights, to_numpy  # noqa: E402
from tests.commands import run_cli  # noqa: E402
from tests.processes import HANG, ROOT, run_module  # noqa: E402
from tests.tiny_runs import make_run  # noqa: E402

CHECK = ROOT / "tests" / "cli" / "saved_model_check.py"
SEED = 3


def write_references(run_dir, path):
    """The Keras model's values, for saved_model_check.py to compare an export with."""
    model = load_model(run_dir).model
    config = model.config
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, *config.image_shape), dtype=np.uint8)
    x = to_numpy(quantization.quantize(images, config.n_bits))
    x = (x + rng.uniform(0, 2.0**-config.n_bits, x.shape)).astype(np.float32)
    labels = rng.integers(0, config.num_classes, 7).astype(np.int32) if config.num_classes else None
    ref = {"images": images, "x": x, "seed": SEED, "levels": len(model.latent_shapes),
           "n_bits": config.n_bits}
    if labels is not None:
        ref["labels"] = labels
    for n in (1, 7):
        some = None if labels is None else labels[:n]
        ref[f"bits_per_dim_{n}"] = to_numpy(model.bits_per_dim(images[:n], some, seed=SEED))
        ref[f"log_prob_{n}"] = to_numpy(model.log_prob(x[:n], some))
        for level, latent in enumerate(model.encode(x[:n], some)[0]):
            ref[f"latent_{level}_{n}"] = to_numpy(latent)
        for temperature in (0.0, 0.7):
            sample = to_numpy(model.sample(n, temperature, seed=SEED, labels=some))
            ref[f"images_{temperature}_{n}"] = to_numpy(quantization.to_uint8(sample, config.n_bits))
            if temperature == 0.0:
                ref[f"sample_0_{n}"] = sample
    ref["log_prob_gradient"] = log_prob_gradient(model, x, labels)
    np.savez(path, **ref)


def log_prob_gradient(model, x, labels):
    """d sum(log p(x)) / dx, by the backend's autodiff."""
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.grad(lambda x: ops.sum(model.log_prob(x, labels)))(x))
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(model.log_prob(x, labels))
    return tape.gradient(total, x).numpy()


def export_with_references(run_dir, out, references):
    run_cli(export, "--run_dir", str(run_dir), "--out", str(out))
    write_references(run_dir, references)


def export_on(backend, run_dir, folder):
    """(export folder, references) of run_dir, exported by a process on `backend`."""
    out, references = folder / "export", folder / "references.npz"
    if backend == keras.backend.backend():
        export_with_references(run_dir, out, references)
    else:
        run_module("tests.cli.test_export", [str(run_dir), str(out), str(references)],
                   env={"KERAS_BACKEND": backend})
    return out, references


def check_without_glow_tf(export_dir, references, folder):
    """saved_model_check.py in a process that cannot import glow_tf; its output."""
    folder.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-I", str(CHECK), str(export_dir), str(references)],
        cwd=folder, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True, text=True, timeout=HANG,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert f"checked {export_dir}" in result.stdout, result.stdout
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_export_serves_the_models_values_without_glow_tf(tiny_run, backend, tmp_path):
    (tmp_path / "export").mkdir()  # an empty folder is a valid --out
    if backend == "jax":
        # Exported on JAX, through jax2tf (which backend trained the weights is no matter
        # to the export: a run's weights load on either, tests/cli/test_backends.py).
        pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")
    out, references = export_on(backend, tiny_run[0], tmp_path)
    output = check_without_glow_tf(out, references, tmp_path / "elsewhere")
    assert "batch 1:" in output and "batch 7:" in output and "gradient" in output
    assert not [path for path in tmp_path.iterdir() if TEMP_MARK in path.name]


@pytest.mark.slow
def test_a_conditional_models_export_takes_labels(tmp_path):
    run_dir = tmp_path / "conditional"
    make_run(run_dir, epochs=0, y_condition=True)
    model = load_model(run_dir).model
    # Off their zero initialisation, so that the labels change every value.
    randomize_weights(model, stddev=0.05)
    save_weights(model, RunDir(run_dir).weights("newest"))
    out, references = export_on(keras.backend.backend(), run_dir, tmp_path)
    check_without_glow_tf(out, references, tmp_path / "elsewhere")
    signature = tf.saved_model.load(str(out)).signatures["sample"]
    assert set(signature.structured_input_signature[1]) == {"labels", "temperature", "seed"}


if __name__ == "__main__":
    export_with_references(*sys.argv[1:4])
