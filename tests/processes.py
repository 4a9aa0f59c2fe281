"""Running the project's modules in their own processes, from any test folder, and waiting
for what they do.

A test that waits for a process waits for an event: a file it writes, a
line it prints, a state the operating system reports (`wait_for`). It
never sleeps for a time that a slow or busy machine might need more of.
The timeouts here only bound a hang: they are minutes, far beyond any
run's need, and a test that reaches one fails, saying what it waited for.
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Bounds a hang, not a run: no event here should take more than a fraction of it.
HANG = 600
# Seconds between two looks for an event: short beside any phase of a run.
POLL = 0.005


def run_module(module, args=(), env=None, timeout=HANG):
    """`python -m module args` in the repository root; its stdout, or a failed assert."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


def wait_for(event, what, process=None, log=None, timeout=HANG):
    """Waits until `event()` returns something true, and returns it.

    Fails, saying `what` was awaited, if `process` ends first (with the end
    of its `log` file) or after `timeout` seconds, which only bounds a hang.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = event()
        if found:
            return found
        if process is not None and process.poll() is not None:
            tail = pathlib.Path(log).read_text()[-3000:] if log else ""
            raise AssertionError(f"the process ended (status {process.returncode}) before "
                                 f"{what}\n{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s: the process hangs")
        time.sleep(POLL)


def interrupt_when(command, when, log, inspect, stdout=subprocess.DEVNULL, **popen):
    """Starts `command` (its stderr into `log`) and sends it SIGINT at a moment it reaches.

    `when(process)` gives (what, event): the moment in words and a function
    true once it came. The process is stopped there (`frozen`), `inspect()`
    looks at what it had done, and the SIGINT arrives at that moment.
    Returns (the ended process, what, what inspect returned); fails if the
    process ended before the moment.
    """
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, **popen)
        try:
            what, event = when(process)
            wait_for(event, what, process, log)
            with frozen(process) as alive:
                assert alive, f"the process ended at {what}, before its SIGINT"
                seen = inspect()
                process.send_signal(signal.SIGINT)
            process.wait(timeout=HANG)
        finally:
            if process.poll() is None:
                process.kill()
    return process, what, seen


def pausing_at_backup(step, command):
    """`command` (python SCRIPT ARGS) made to stop itself after writing a backup past `step`.

    See tests/pause_at_backup.py; `stopped` waits for that moment.
    """
    python, script, *args = command
    return [python, "-m", "tests.pause_at_backup", str(step), str(script), *args]


def stopped(process, what, log=None):
    """Waits until the process stands stopped (SIGSTOP, by itself or another)."""
    wait_for(lambda: process_state(process.pid) in ("T", "t"), what, process, log)


def process_state(pid):
    """The state letter of /proc/<pid>/stat (R running, S sleeping, T stopped, Z ended), or None."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat[stat.rindex(")") + 2]


def has_loaded(pid, *libraries):
    """Whether the process has mapped a shared library whose path holds one of `libraries`."""
    try:
        maps = pathlib.Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(library in maps for library in libraries)


@contextlib.contextmanager
def frozen(process):
    """SIGSTOP: within the block the process stands still, and what it wrote is what it did.

    Yields False, and sends nothing, if the process had ended already.
    SIGCONT on leaving; a signal sent within arrives at the stopped moment.
    """
    process.send_signal(signal.SIGSTOP)  # nothing, if it ended and was reaped
    wait_for(lambda: process_state(process.pid) in ("T", "t", "Z", None), "the process to stop")
    alive = process_state(process.pid) in ("T", "t")
    try:
        yield alive
    finally:
        if alive:
            process.send_signal(signal.SIGCONT)
