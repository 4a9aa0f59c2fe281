import signal

import keras
import pytest


def pytest_configure(config):
    # A shell that starts a job in the background without job control
    # starts it with SIGINT ignored, and so every process the tests start
    # would ignore it too: the Ctrl-C tests need SIGINT as a terminal gives it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
