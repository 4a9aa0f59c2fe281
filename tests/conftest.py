import os
import shutil
import signal
import tempfile

import keras
import pytest

# Read by JAX as it starts: a compiled program is kept in the folder and
# loaded, not compiled again, by any later process that compiles it.
JAX_CACHE = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
             "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


def pytest_configure(config):
    # A shell that starts a job in the background without job control
    # starts it with SIGINT ignored, and so every process the tests start
    # would ignore it too: the Ctrl-C tests need SIGINT as a terminal gives it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # The JAX processes the tests start build the same small models again and
    # again, and XLA compiles each of their initialisers and steps anew in
    # every process: a tenth of a second each on a 2-core machine, some 200
    # per process. One compilation cache for the whole run, in the
    # environment that every process the tests start inherits.
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        config.jax_cache_folder = tempfile.mkdtemp(prefix="glow_tf-tests-jax-cache-")
        os.environ.update(JAX_CACHE, JAX_COMPILATION_CACHE_DIR=config.jax_cache_folder)


def pytest_unconfigure(config):
    folder = getattr(config, "jax_cache_folder", None)
    if folder:
        for name in [*JAX_CACHE, "JAX_COMPILATION_CACHE_DIR"]:
            os.environ.pop(name, None)
        shutil.rmtree(folder, ignore_errors=True)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _phase_lines_start_off():
    """A tool's main run in-process turns on printing the phase lines
    (glow_tf.cli.show_phases), maybe in a fixture shared by several tests;
    each test starts with them off, as a library user has them."""
    import logging

    from glow_tf import phases

    phases.LOGGER.handlers.clear()
    phases.LOGGER.setLevel(logging.NOTSET)
    phases.LOGGER.propagate = True
    yield
