import gc
import os
import shutil
import signal
import tempfile

import keras
import pytest

from tests import quick_compile

# Read by JAX as it starts: a compiled program is kept in the folder and
# loaded, not compiled again, by any later process that compiles it.
JAX_CACHE = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
             "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


def pytest_configure(config):
    _pin_this_worker(config)
    # pytest-xdist's `-n 2` hands out one test at a time as a worker frees
    # up, rather than a quarter of each worker's share at once: with the
    # slow tests first (below), the two workers end together.
    if getattr(config.option, "maxschedchunk", "absent") is None:
        config.option.maxschedchunk = 1
    # A shell that starts a job in the background without job control
    # starts it with SIGINT ignored, and so every process the tests start
    # would ignore it too: the Ctrl-C tests need SIGINT as a terminal gives it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # XLA's quickest compile (tests/quick_compile.py), decided once, before
    # the workers start, in the environment every process inherits. A run
    # given its own XLA_FLAGS keeps them.
    if "XLA_FLAGS" not in os.environ:
        config.quick_xla_flags = os.environ["XLA_FLAGS"] = quick_compile.accepted()
    # The JAX processes the tests start build the same small models again and
    # again, and XLA compiles each of their initialisers and steps anew in
    # every process: a tenth of a second each on a 2-core machine, some 200
    # per process. One compilation cache for the whole run, in the
    # environment that every process the tests start inherits.
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        config.jax_cache_folder = tempfile.mkdtemp(prefix="glow_tf-tests-jax-cache-")
        os.environ.update(JAX_CACHE, JAX_COMPILATION_CACHE_DIR=config.jax_cache_folder)


def _pin_this_worker(config):
    """Under pytest-xdist, each worker and every process it starts keep to
    their own share of the machine's cores: TensorFlow and XLA size their
    thread pools to the cores a process may use, and two workers' processes
    would otherwise each take all of them."""
    worker = getattr(config, "workerinput", None)  # set on xdist's workers only
    if worker is None or not hasattr(os, "sched_setaffinity"):
        return
    index, count = int(worker["workerid"][2:]), int(worker["workercount"])  # "gw0", 2
    cores = sorted(os.sched_getaffinity(0))
    if count > 1 and len(cores) >= count:
        os.sched_setaffinity(0, cores[index::count])


def pytest_collection_finish():
    # Every test module is imported now, and with them TensorFlow, Keras and
    # JAX: thousands of modules whose objects live to the end of the run.
    # Python's cycle collector walked all of them again in each full pass
    # (2.6 of the 42 CPU-s of the quick core tests); frozen, it leaves them
    # out, as the tools do with their imports (glow_tf/cli/runtime.py).
    gc.freeze()


def pytest_collection_modifyitems(config, items):
    # Slow tests first, so that parallel workers take the long ones while
    # there are short ones left to even out the end.
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_unconfigure(config):
    if hasattr(config, "quick_xla_flags"):
        os.environ.pop("XLA_FLAGS", None)
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
