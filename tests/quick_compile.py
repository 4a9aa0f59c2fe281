"""XLA's quickest compile, for every program the tests build.

The tests' models are tiny, and on a CPU XLA spends far longer compiling
them than running them: the JAX rerun of the core tests spent most of its
time waiting for the compiler. Two settings of XLA's own cut that by more
than half, and every test passes with them as without them:

- `--xla_backend_optimization_level=0`: LLVM does not optimise the machine
  code it emits;
- `--xla_cpu_use_fusion_emitters=false`: each fused kernel is emitted
  directly, not through an MLIR pipeline built anew for every fusion.

They reach JAX, and TensorFlow's `jit_compile`, through XLA_FLAGS, which
every process the tests start inherits (tests/conftest.py). An XLA that no
longer knows a flag ends the process at its first compile, so a probe
process compiles once with them beforehand; where it fails, the suite
compiles with XLA's defaults. One JAX run of main.py compiles as a user's does
(tests/cli/test_phases.py). The tests that run a benchmark small check its
table, not its figures; a benchmark run by hand compiles as a user's run.
"""

import importlib.util
import os
import subprocess
import sys

FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")

# One compile on each installed backend that has XLA, with the flags.
PROBE = """
import importlib.util
if importlib.util.find_spec("jax"):
    import jax, jax.numpy as jnp
    jax.jit(lambda x: x * 2)(jnp.ones(2)).block_until_ready()
if importlib.util.find_spec("tensorflow"):
    import tensorflow as tf
    tf.function(lambda x: x * 2, jit_compile=True)(tf.ones(2))
"""


def flags(*more):
    """The suite's XLA_FLAGS with `more` added: what a test that sets its own should pass."""
    return " ".join([os.environ.get("XLA_FLAGS", ""), *more]).strip()


def accepted(timeout=600):
    """FLAGS as one XLA_FLAGS value if a process compiles with them, else ""."""
    if not any(importlib.util.find_spec(name) for name in ("jax", "tensorflow")):
        return ""
    # On the CPU, as the tests compile: XLA reads the same flags for every device.
    env = {**os.environ, "XLA_FLAGS": " ".join(FLAGS), "TF_CPP_MIN_LOG_LEVEL": "3",
           "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    try:
        probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                               timeout=timeout)
    except subprocess.TimeoutExpired:
        return ""
    return " ".join(FLAGS) if probe.returncode == 0 else ""
