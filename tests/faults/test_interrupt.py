"""Ctrl-C at any moment: one line saying what was kept, exit status 130, no traceback, no
half-written file; the same command then resumes a training run to its end.

Each moment is reached by waiting for an event of its phase (a library the
process maps as it starts, a file it writes, a line of the test pass's
phase log). The process is then stopped (SIGSTOP), so that its files are
what it had done when the signal came, sent SIGINT, and let go (SIGCONT).
The checks compare its line with those files, wherever the moment landed,
so no outcome depends on the machine's speed. Why a Ctrl-C could be lost,
and what keeps it: glow_tf/interrupts.py, docs/faults.md.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys

import keras
import pytest

pytest.importorskip("tensorflow")

from glow_tf import interrupts  # noqa: E402
from glow_tf.cli.settings import configs_for  # noqa: E402
from glow_tf.runs import files, state  # noqa: E402
from glow_tf.tf import faults, training  # noqa: E402
from glow_tf.tf.test_pass import PHASE_LOG  # noqa: E402
from tests.faults.test_faults import snapshot, subprocess_env  # noqa: E402
from tests.processes import HANG, ROOT, has_loaded, interrupt_when  # noqa: E402

EPOCHS, STEPS_PER_EPOCH = 4, 1437 // 256
TINY = {"k_glow": 1, "l_glow": 1, "hidden_channels": 8, "epochs": EPOCHS, "batch_size": 256,
        "backup_every": 1, "n_init": 64, "warmup": 0.5}
ARGS = [f"--{name}={value}" for name, value in TINY.items()]
LAST_STEP = EPOCHS * STEPS_PER_EPOCH

# Shared libraries that every start maps, on either backend, after the tool's
# handler is in place: numpy's, then TensorFlow's, seconds apart.
START_UP = ["_multiarray_umath", "libtensorflow_framework", "_pywrap_tensorflow_internal",
            "_pywrap_tfe", "_pywrap_file_io"]


def schedule(rng):
    """20 phases in the order a run meets them: each epoch's, then the end's."""
    any_time = ["startup", "tracing", "mid_epoch", "backup"]
    moments = []
    for _ in range(EPOCHS - 1):
        moments += rng.sample(any_time, len(any_time)) + ["test_pass"]
    # After "ending" the run may be finished: only a start is left to interrupt.
    return moments + [rng.choice(any_time), "final_evaluation", "final_evaluation", "ending",
                      "startup"]


class Run:
    """main.py's runs in one folder, each interrupted at a moment of a phase."""

    def __init__(self, folder, backend):
        self.folder = folder
        self.path = folder / "run"
        self.backup = self.path / "backup" / "state.npz"
        self.phases = folder / "phases.log"
        self.command = [sys.executable, str(ROOT / "main.py"), *ARGS, "--backend", backend,
                        "--run_dir", str(self.path)]
        self.env = {**subprocess_env(), PHASE_LOG: str(self.phases)}
        if backend == "jax":
            # Compiled once for the 21 processes: each still traces its step.
            self.env.update(JAX_COMPILATION_CACHE_DIR=str(folder / "jax-cache"),
                            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")

    def step(self):
        return state.read_step(self.backup) if self.backup.exists() else 0

    def metrics(self):
        path = self.path / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def test_passes(self):
        """The steps of the test passes begun so far, as the phase log has them."""
        text = self.phases.read_text() if self.phases.exists() else ""
        return [int(line.split()[-1]) for line in text.split("\n")[:-1]]  # whole lines

    def temp_files(self):
        return [p for p in self.path.rglob("*") if files.TEMP_MARK in p.name] \
            if self.path.exists() else []

    def event(self, phase, process, rng):
        """The wait for `phase`'s moment in `process`: a function that is true once it came."""
        start_step, passes = self.step(), len(self.test_passes())
        metrics_mtime = (self.path / "metrics.json").stat().st_mtime_ns \
            if (self.path / "metrics.json").exists() else 0
        if phase == "startup":
            library = rng.choice(START_UP)
            return f"the process to map {library}", lambda: has_loaded(process.pid, library)
        if phase == "tracing":
            # Keras' TensorBoard callback opens its file (named with the pid)
            # as fit begins; the first step's trace follows.
            pattern = f".{process.pid}."
            train_logs = self.path / "logs" / "train"
            return "fit to begin", lambda: train_logs.exists() and any(
                pattern in p.name for p in train_logs.iterdir())
        if phase == "mid_epoch":
            target = start_step + rng.randint(1, 2)
            return f"a backup of step {target}", lambda: self.step() >= target
        if phase == "backup":
            backup_dir = self.backup.parent
            return "a backup being written", lambda: self.step() > start_step or (
                backup_dir.exists() and any(p.name.startswith(f".{self.backup.name}.")
                                            for p in backup_dir.iterdir()))
        if phase == "test_pass":
            return "a test pass", lambda: len(self.test_passes()) > passes
        if phase == "final_evaluation":
            return "the final test pass", lambda: LAST_STEP in self.test_passes()[passes:]
        assert phase == "ending"
        metrics = self.path / "metrics.json"
        return "the last epoch's metrics.json", lambda: (
            metrics.exists() and metrics.stat().st_mtime_ns > metrics_mtime
            and self.metrics().get("epochs_completed") == EPOCHS)

    def interrupt(self, phase, rng, log):
        """Runs main.py, sends SIGINT at `phase`'s moment; checks what it says. A history line."""
        before = snapshot(self.path) if self.path.exists() else {}
        process, what, (finished, step) = interrupt_when(
            self.command, lambda process: self.event(phase, process, rng), log,
            lambda: (bool(self.metrics().get("finished")), self.step()),
            cwd=self.folder, env=self.env)
        error = log.read_text()
        seen = f"{phase} ({what}), frozen at step {step}"
        assert "Traceback" not in error and "Exception ignored" not in error, f"{seen}\n{error}"
        assert not self.temp_files(), f"{seen}: a temp file was left: {self.temp_files()}"
        # TensorFlow and JAX may log above it; the tool's own line is the last.
        own = [line for line in error.splitlines() if line.startswith("main.py:")]
        if process.returncode == 0 and finished:
            return f"{seen}: the run had finished; it exited 0"
        assert process.returncode == 130, f"{seen}: exit status {process.returncode}\n{error}"
        assert len(own) == 1 and own == error.splitlines()[-1:], f"{seen}\n{error}"
        self.check_line(own[0], before)
        return f"{seen}: {own[0]}"

    def check_line(self, line, before):
        """The line says what the folder holds."""
        run = re.escape(str(self.path))
        if line == "main.py: interrupted before training began; nothing was written.":
            assert (snapshot(self.path) if self.path.exists() else {}) == before, line
            return
        if re.fullmatch(rf"main\.py: interrupted as training ended; {run} holds the finished "
                        r"run\.", line):
            assert self.metrics().get("finished"), line
            return
        if re.fullmatch(rf"main\.py: interrupted\. {run} has no backup yet; the same command "
                        r"starts the run again\.", line):
            assert not self.backup.exists(), line
            return
        found = re.fullmatch(
            rf"main\.py: interrupted\. {run} keeps its backup of step (\d+) \((?:(\d+) steps "
            r"into epoch (\d+)|the end of epoch (\d+))\); the same command resumes from it\.",
            line,
        )
        assert found, line
        step = int(found.group(1))
        assert step == self.step() > 0, line
        epochs, steps = divmod(step, STEPS_PER_EPOCH)
        if steps:
            assert (int(found.group(2)), int(found.group(3))) == (steps, epochs + 1), line
        else:
            assert int(found.group(4)) == epochs, line


BACKENDS = ["tensorflow", pytest.param("jax", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("jax") is None, reason="JAX is not installed"))]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_at_20_moments_is_honoured_and_the_same_command_resumes(tmp_path, backend):
    rng = random.Random()
    run = Run(tmp_path, backend)
    history = []
    for i, phase in enumerate(schedule(rng)):
        try:
            history.append(run.interrupt(phase, rng, tmp_path / f"moment_{i:02d}.log"))
        except AssertionError as error:
            raise AssertionError("\n".join([*history, str(error)])) from None

    done = subprocess.run(run.command, cwd=tmp_path, env=run.env, capture_output=True,
                          text=True, timeout=HANG)
    assert done.returncode == 0, "\n".join([*history, done.stderr[-3000:]])
    metrics = run.metrics()
    assert metrics["finished"] and metrics["epochs_completed"] == EPOCHS, history
    assert metrics["steps"] == LAST_STEP, history
    assert not run.temp_files()


# ---- in this process: a Ctrl-C dropped by a finalizer, and one during a backup's write ----


class DropsCtrlC(keras.callbacks.Callback):
    """At the end of step `step`, a Ctrl-C raised in a finalizer, which Python drops.

    As when SIGINT arrives while the collector runs and JAX's collection
    callback runs next. Runs after the run folder's own callbacks.
    """

    def __init__(self, step):
        super().__init__()
        self.step, self.steps = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps == self.step:
            Finalizer()


class Finalizer:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)


@pytest.fixture
def handled():
    """glow_tf.interrupts handles SIGINT in this test, as in the command-line tools."""
    interrupts.install()
    try:
        yield
    finally:
        interrupts.uninstall()


@pytest.mark.slow
def test_a_dropped_ctrl_c_and_one_during_a_backup_stop_training_with_what_was_kept(
        tmp_path, handled, monkeypatch):
    configs = configs_for("digits", **{**TINY, "epochs": 2})
    run = tmp_path / "run"
    backup = run / "backup" / "state.npz"
    with pytest.raises(faults.TrainingInterrupted) as stopped:
        training.train_and_evaluate(*configs, run, callbacks=[DropsCtrlC(3)], verbose=0)
    # The backup of step 3 was written before the Ctrl-C; none after it.
    assert str(stopped.value) == (f"interrupted. {run} keeps its backup of step 3 (3 steps into "
                                  "epoch 1); the same command resumes from it.")
    assert state.read_step(backup) == 3

    # Resumed, a Ctrl-C during the next backup's write leaves the one of step 3.
    interrupts.install()  # forgets the Ctrl-C above
    kept = backup.read_bytes()
    fsync = os.fsync

    def interrupted_fsync(fd):
        if "/backup/.state.npz." in os.readlink(f"/proc/self/fd/{fd}"):
            signal.raise_signal(signal.SIGINT)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(faults.TrainingInterrupted) as stopped:
        training.train_and_evaluate(*configs, run, verbose=0)
    assert f"{run} keeps its backup of step 3 (3 steps into epoch 1)" in str(stopped.value)
    assert backup.read_bytes() == kept
    assert not [p for p in run.rglob("*") if files.TEMP_MARK in p.name]

    monkeypatch.setattr(os, "fsync", fsync)
    interrupts.install()
    _, metrics = training.train_and_evaluate(*configs, run, verbose=0)
    assert metrics["finished"] and metrics["steps"] == 2 * STEPS_PER_EPOCH


# ---- sample.py, evaluate.py, export.py: SIGINT while they work ----


def tool_cases(run, out):
    """(tool, its arguments, the event of the moment, what it waits for, the file it writes)."""
    png, report = out / "manipulated.png", out / "report.png"
    export = out / "export"
    return {
        "sample_starting": (
            "sample.py", ["--run_dir", str(run), "--out", str(png)],
            lambda process, log: has_loaded(process.pid, "libtensorflow_framework"),
            "TensorFlow's start", png),
        "sample_manipulating": (
            "sample.py", ["--run_dir", str(run), "--mode", "manipulate", "--attribute", "digit_3",
                          "--n", "4", "--out", str(png)],
            lambda process, log: (run / "directions" / "digits.npz").exists(),
            "the attribute directions", png),
        "evaluate_scoring_ood": (
            "evaluate.py", ["--run_dir", str(run), "--ood_dataset", "digits",
                            "--ood_transform", "invert", "--out", str(report)],
            lambda process, log: "Test bits/dim on" in log.with_suffix(".out").read_text(),
            "the test bits/dim", report),
        "export_writing": (
            "export.py", ["--run_dir", str(run), "--out", str(export)],
            lambda process, log: any(p.name.startswith(".export.") for p in out.iterdir()),
            "the export's temp folder", export),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sample_starting", "sample_manipulating",
                                  "evaluate_scoring_ood", "export_writing"])
def test_sample_evaluate_and_export_end_on_ctrl_c_with_one_line(finished, tmp_path, case):
    run, out = tmp_path / "run", tmp_path / "out"
    shutil.copytree(finished, run)
    out.mkdir()
    tool, args, event, what, output = tool_cases(run, out)[case]
    log = tmp_path / "stderr.log"
    env = {**subprocess_env(), "PYTHONUNBUFFERED": "1"}  # so that its lines are seen as printed
    with open(log.with_suffix(".out"), "w") as stdout:
        process, _, written = interrupt_when(
            [sys.executable, str(ROOT / tool), *args],
            lambda process: (what, lambda: event(process, log)), log, output.exists,
            stdout=stdout, cwd=tmp_path, env=env)
    error = log.read_text()
    assert process.returncode == 130 or written, error[-3000:]
    assert process.returncode in (0, 130), error[-3000:]
    assert "Traceback" not in error and "Exception ignored" not in error, error[-3000:]
    if process.returncode == 130:
        own = [line for line in error.splitlines() if line.startswith(f"{tool}:")]
        assert own == error.splitlines()[-1:], error[-3000:]
        assert own[0] in (f"{tool}: interrupted; {output} was not written.",
                          f"{tool}: interrupted before it began; nothing was written.",
                          f"{tool}: interrupted; nothing was written."), own
        assert not output.exists(), own
    assert not [p for p in [*out.rglob("*"), *run.rglob("*")] if files.TEMP_MARK in p.name]
