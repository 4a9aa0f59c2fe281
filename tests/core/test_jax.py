"""The backend-agnostic core, run again on JAX from the TensorFlow run.

Keras picks its backend once per process, so the JAX run is a subprocess:
one `python -m pytest` covers both backends.
"""

import os
import pathlib
import subprocess
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Bounds a hang of the whole JAX run: minutes where the machine is slow, never an hour.
SUITE_HANG = 3600
# test_scale.py: mixed precision, remat (jax.checkpoint) and compiled steps on
# JAX are what runs on the GPU machine.
CORE_TESTS = ["tests/core/test_layers.py", "tests/core/test_model.py", "tests/core/test_scale.py",
              "tests/core/test_manipulation.py", "tests/core/test_keras_internals.py"]


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="started from the TensorFlow run only",
)
def test_core_suite_passes_on_jax():
    pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *CORE_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUITE_HANG,
    )
    output = result.stdout + result.stderr
    assert "backend: jax" in output, output[-3000:]
    assert result.returncode == 0, output[-6000:]
    assert " passed" in output and " failed" not in output
