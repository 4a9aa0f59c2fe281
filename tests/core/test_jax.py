"""The backend-agnostic core, run again on JAX from the TensorFlow run.

Keras picks its backend once per process, so the JAX run is a subprocess:
one `python -m pytest` covers both backends. It reruns the tests marked
`both_backends`: what can differ between backends (each bijector's log-det
and inverse, the model's likelihood, compiled encode and decode, random
draws, the weights round trip, fit, mixed precision, remat, compiled steps,
Keras' internals), each once. The rest of tests/core computes nothing a
backend could change: shapes, messages, configs, plain NumPy.
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


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="started from the TensorFlow run only",
)
def test_the_core_tests_marked_both_backends_pass_on_jax():
    pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "both_backends", "tests/core",
         # TensorFlow Probability's module skips itself off TensorFlow; nothing in it is marked.
         "--ignore", "tests/core/test_tfp.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUITE_HANG,
    )
    output = result.stdout + result.stderr
    assert "backend: jax" in output, output[-3000:]
    assert result.returncode == 0, output[-6000:]
    assert " passed" in output and " failed" not in output
    # Every test chosen for JAX runs there: none is skipped on it.
    assert " skipped" not in output, output[-3000:]
