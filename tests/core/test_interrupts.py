"""glow_tf.interrupts: a Ctrl-C that Python would drop in a finalizer still stops the program.

The signal is sent by the test itself (`signal.raise_signal`), so its
moment is exact: Python runs the handler at the next bytecode.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from glow_tf import interrupts
from glow_tf.runs import files
from tests.processes import HANG, ROOT

# Bounds the wait for a handed-back Ctrl-C, which takes milliseconds.
HAND_BACK = 60


@pytest.fixture
def installed():
    """glow_tf.interrupts handles SIGINT in this test; pytest's handling after it."""
    interrupts.install()
    try:
        yield
    finally:
        interrupts.uninstall()


# A Ctrl-C raised inside a garbage collection callback, as it comes when the
# signal arrives while the collector runs and JAX's callback runs next.
SWALLOWED_BY_THE_COLLECTOR = """
import gc, signal, sys, time
sys.path.insert(0, {root!r})
if {install}:
    from glow_tf import interrupts
    interrupts.install()

def callback(phase, info):
    if phase == "stop" and armed:
        signal.raise_signal(signal.SIGINT)  # its KeyboardInterrupt is raised here

armed = False
gc.callbacks.append(callback)
armed = True
try:
    gc.collect()
    armed = False
    outcome = "gc.collect() returned"
    if {install}:
        # The handed-back Ctrl-C comes when the helper thread next gets the interpreter.
        deadline = time.monotonic() + {hang}
        while time.monotonic() < deadline:
            pass
        outcome = "no KeyboardInterrupt"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt in the program"
print(outcome)
"""


def run_script(install):
    script = SWALLOWED_BY_THE_COLLECTOR.format(root=str(ROOT), install=install, hang=HAND_BACK)
    return subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=2 * HANG)


def test_python_drops_a_ctrl_c_raised_in_a_collection_callback():
    """The cause: what a program without glow_tf.interrupts does (it goes on)."""
    result = run_script(install=False)
    assert "Exception ignored in: <function callback" in result.stderr, result.stderr
    assert "KeyboardInterrupt" in result.stderr
    assert result.stdout == "gc.collect() returned\n", result.stdout


def test_a_ctrl_c_dropped_by_a_collection_callback_is_raised_again():
    result = run_script(install=True)
    assert result.stdout == "KeyboardInterrupt in the program\n", result
    assert "Exception ignored" not in result.stderr, result.stderr


class RaisesCtrlCWhenCollected:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)


def test_a_ctrl_c_dropped_by_a_finalizer_is_raised_again(installed):
    with pytest.raises(KeyboardInterrupt):
        RaisesCtrlCWhenCollected()  # dropped at once: __del__ swallows its KeyboardInterrupt
        deadline = time.monotonic() + HAND_BACK
        while time.monotonic() < deadline:  # until the helper thread hands the signal back
            pass
    assert interrupts.received()


def test_a_ctrl_c_that_code_dropped_is_raised_at_the_next_check(installed):
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass  # as some library's `except BaseException` might
    assert interrupts.received()
    assert interrupts.caused(ValueError("what the interrupted code failed on next"))
    assert not interrupts.caused(SystemExit(1))
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()


def test_a_second_ctrl_c_does_not_break_the_handling_of_the_first(installed):
    handled = []
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        signal.raise_signal(signal.SIGINT)  # pressed again, while the first is handled
        handled.append("the first")
    assert handled == ["the first"] and interrupts.received()


def test_without_install_nothing_is_recorded():
    assert not interrupts.received()
    interrupts.check()
    assert not interrupts.caused(ValueError())
    with pytest.raises(KeyboardInterrupt):  # Python's own handler
        signal.raise_signal(signal.SIGINT)
    assert not interrupts.received()


def test_after_finish_a_ctrl_c_changes_nothing():
    before = signal.getsignal(signal.SIGINT)
    interrupts.install()
    try:
        interrupts.finish()
        signal.raise_signal(signal.SIGINT)
        assert not interrupts.received()
    finally:
        interrupts.uninstall()
    assert signal.getsignal(signal.SIGINT) is before


def listing(folder):
    return sorted(os.listdir(folder))


def test_a_ctrl_c_during_a_write_leaves_the_file_of_before(installed, tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"epochs": 1})

    def interrupted(temp):
        with open(temp, "w") as f:
            f.write('{"epochs": ')
        signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, interrupted)
    assert files.read_json(path) == {"epochs": 1} and listing(tmp_path) == ["metrics.json"]


def test_after_a_dropped_ctrl_c_a_finished_write_is_not_put_in_place(installed, tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"epochs": 1})

    def dropping(temp):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        with open(temp, "w") as f:
            f.write('{"epochs": 2}')

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, dropping)
    assert files.read_json(path) == {"epochs": 1} and listing(tmp_path) == ["metrics.json"]


def test_a_ctrl_c_as_the_temp_file_is_made_leaves_none(installed, tmp_path, monkeypatch):
    real_mkstemp = files.tempfile.mkstemp

    def mkstemp(**kwargs):
        real_mkstemp(**kwargs)  # made, but its name never reaches atomic_write
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(files.tempfile, "mkstemp", mkstemp)
    with pytest.raises(KeyboardInterrupt):
        files.write_json(tmp_path / "metrics.json", {"epochs": 1})
    assert listing(tmp_path) == []
