"""A full disk and a read-only subfolder under main.py: one line naming the file, exit status 1,
the files of before intact, no temp file left, and the same command resumes to the end.

A full disk is simulated in this process: `os.fsync`, which every write of the run folder
calls on its temp file once written (glow_tf.runs.files.atomic_write), fails with ENOSPC for
the file under test, as the kernel reports a full disk for data it accepted earlier; and
TensorFlow's summary writer fails its flush with the error TensorFlow gives for ENOSPC.
"""

import contextlib
import errno
import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from glow_tf.runs import load_model, state  # noqa: E402
from glow_tf.runs.files import TEMP_MARK  # noqa: E402
from tests.faults.test_faults import snapshot, subprocess_env  # noqa: E402
from tests.processes import HANG, ROOT  # noqa: E402
from tests.tiny_runs import TRAIN_TINY_ARGS as TINY  # noqa: E402

STEPS_PER_EPOCH = 22


class DiskFull:
    """Makes the `at`-th write of a file named `name` fail with ENOSPC (1-based)."""

    def __init__(self, monkeypatch, name, at=1):
        self.name, self.at, self.writes = name, at, 0
        real_fsync = os.fsync

        def fsync(fd):
            temp = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
            if temp.startswith(f".{name}.") and TEMP_MARK in temp:
                self.writes += 1
                if self.writes == self.at:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)


class SummaryDiskFull:
    """TensorBoard's event files under `log_subdir` cannot be made, as on a full disk.

    TensorFlow drops the events it fails to write to an open event file; a
    full disk shows when a writer opens its file and writes the first event.
    """

    def __init__(self, monkeypatch, log_subdir):
        self.failed = []

        def create_file_writer(logdir, *args, **kwargs):
            if os.path.basename(os.fspath(logdir)) != log_subdir:
                return real(logdir, *args, **kwargs)
            path = os.path.join(logdir, "events.out.tfevents.1.host.2.v2")
            self.failed.append(path)
            # TensorFlow's words, as it said them on a full tmpfs.
            raise tf.errors.ResourceExhaustedError(None, None, (
                "{{function_node __wrapped__CreateSummaryFileWriter_device_/job:localhost/"
                f"replica:0/task:0/device:CPU:0}}}} {path}; {os.strerror(errno.ENOSPC)}\n\t"
                f"Failed to flush 1 events to {path}\n\tFlushing first event.\n\tCould not "
                "initialize events writer. [Op:CreateSummaryFileWriter] name: "))

        real = tf.summary.create_file_writer
        monkeypatch.setattr(tf.summary, "create_file_writer", create_file_writer)


def temp_files(folder):
    return [str(p) for p in folder.rglob("*") if TEMP_MARK in p.name]


def expect_one_line(status, error, line):
    assert status == 1, error
    assert error == f"main.py: error: {line}\n", error


@pytest.mark.slow
def test_a_full_disk_at_each_write_ends_in_one_line_and_the_run_resumes(run_main, tmp_path,
                                                                          monkeypatch):
    run = tmp_path / "run"
    args = [*TINY, "--run_dir", str(run)]
    backup = run / "backup" / "state.npz"

    with monkeypatch.context() as patch:  # the backup of step 10
        DiskFull(patch, "state.npz", at=2)
        status, error = run_main(*args)
    expect_one_line(status, error, (
        f"{backup} could not be written: no space left on the device (the file there before "
        f"is unchanged). {run} keeps its backup of step 5 (5 steps into epoch 1): "
        "free some space, then the same command resumes from it."))
    assert state.read_step(backup) == 5 and not temp_files(run)

    with monkeypatch.context() as patch:  # the summaries' event file, when training starts
        summaries = SummaryDiskFull(patch, "glow")
        status, error = run_main(*args)
    expect_one_line(status, error, (
        f"{summaries.failed[0]} could not be written: no space left on the device (the events "
        f"written before it are kept). {run} keeps its backup of step 5 (5 steps into epoch "
        "1): free some space, then the same command resumes from it."))
    assert state.read_step(backup) == 5 and not (run / "metrics.json").exists()

    with monkeypatch.context() as patch:  # metrics.json, at the epoch's end
        DiskFull(patch, "metrics.json")
        status, error = run_main(*args)
    expect_one_line(status, error, (
        f"{run / 'metrics.json'} could not be written: no space left on the device (nothing "
        f"was written). {run} keeps its backup of step 20 (20 steps into epoch 1): "
        "free some space, then the same command resumes from it."))
    assert state.read_step(backup) == 20 and not (run / "metrics.json").exists()

    with monkeypatch.context() as patch:  # newest.weights.h5, when training ends
        DiskFull(patch, "newest.weights.h5")
        status, error = run_main(*args)
    expect_one_line(status, error, (
        f"{run / 'newest.weights.h5'} could not be written: no space left on the device "
        f"(nothing was written). {run} keeps its backup of step 22 (the end of epoch 1): free "
        "some space, then the same command resumes from it."))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 1 and not metrics["finished"]
    assert not (run / "newest.weights.h5").exists() and not temp_files(run)

    config = (run / "config.json").read_bytes()
    with monkeypatch.context() as patch:  # config.json: a longer run rewrites it
        DiskFull(patch, "config.json")
        status, error = run_main(*args, "--epochs", "2")
    expect_one_line(status, error, (
        f"{run / 'config.json'} could not be written: no space left on the device (the file "
        f"there before is unchanged). {run} keeps its backup of step 22 (the end of epoch "
        "1): free some space, then the same command resumes from it."))
    assert (run / "config.json").read_bytes() == config

    # With space again, the same command ends the run: the last backup is
    # the end of its only epoch, so no step runs and the weights are written.
    status, error = run_main(*args)
    assert status == 0, error
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["finished"] and metrics["epochs_completed"] == 1
    assert metrics["steps"] == STEPS_PER_EPOCH
    _, values, _ = state.read(backup)
    model = load_model(run).model
    for variable, value in zip(model.weights, values):
        np.testing.assert_array_equal(np.asarray(variable.numpy()), value, err_msg=variable.path)
    assert not temp_files(run)


def test_no_space_for_a_new_runs_config(run_main, tmp_path, monkeypatch):
    run = tmp_path / "run"
    DiskFull(monkeypatch, "config.json")
    status, error = run_main(*TINY, "--run_dir", str(run))
    expect_one_line(status, error, (
        f"{run / 'config.json'} could not be written: no space left on the device (nothing was "
        f"written). {run} has no backup yet: free some space, then the same command starts "
        "the run again."))
    assert sorted(os.listdir(run)) == [".lock"]


@contextlib.contextmanager
def read_only(folder):
    """Makes folder read-only for this process; yields the error a write there gets.

    Permission bits do not stop root, so for root the folder is bind-mounted
    read-only on itself instead.
    """
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            yield os.strerror(errno.EACCES)
        finally:
            os.chmod(folder, 0o755)
        return
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"root cannot make a read-only folder here: {mounted.stderr.strip()}")
    try:
        yield os.strerror(errno.EROFS)
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_backup_folder_is_named_before_training(run, run_main):
    backup = run / "backup"
    before = snapshot(run)
    with read_only(backup) as problem:
        status, error = run_main(*TINY, "--epochs=2", f"--run_dir={run}")
    expect_one_line(status, error, (
        f"{backup} cannot be written ({problem}), though the run folder can: make it writable "
        "for this user, or give this run its own --run_dir."))
    assert snapshot(run) == before


# Real TensorFlow: an event file that cannot take its first event, as on a full disk.
FULL_EVENT_FILE = """
import sys
import tensorflow as tf
from glow_tf.tf.faults import summary_write_error
try:
    tf.summary.create_file_writer(sys.argv[1])
except tf.errors.OpError as error:
    print(summary_write_error(error, sys.argv[1]))
"""
FILE_SIZE_LIMIT = 16  # bytes; an event file's first event is longer


def limit_file_size():
    # Past the limit a write fails with EFBIG, as a full disk fails with
    # ENOSPC, once the signal that would kill the process is ignored.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.mark.slow
def test_tensorflows_error_for_a_full_event_file_is_named(tmp_path):
    done = subprocess.run([sys.executable, "-c", FULL_EVENT_FILE, str(tmp_path)], cwd=ROOT,
                          env=subprocess_env(), preexec_fn=limit_file_size,
                          capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [p for p in tmp_path.iterdir() if p.name.startswith("events.out.tfevents.")]
    assert len(events) == 1
    assert done.stdout == (
        f"{events[0]} could not be written: the file-size limit (ulimit -f) is reached (the "
        "events written before it are kept).\n"), done.stdout + done.stderr[-3000:]
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_previous_weights_survive_a_full_disk_and_load(run, run_main, monkeypatch):
    newest = run / "newest.weights.h5"
    before = newest.read_bytes()
    with monkeypatch.context() as patch:  # the second epoch's newest.weights.h5
        DiskFull(patch, "newest.weights.h5")
        status, error = run_main(*TINY, "--epochs=2", f"--run_dir={run}")
    expect_one_line(status, error, (
        f"{newest} could not be written: no space left on the device (the file there before "
        f"is unchanged). {run} keeps its backup of step 44 (the end of epoch 2): free some "
        "space, then the same command resumes from it."))
    assert newest.read_bytes() == before and not temp_files(run)
    assert load_model(run).model.initialized  # epoch 1's weights, whole

    status, error = run_main(*TINY, "--epochs=2", f"--run_dir={run}")
    assert status == 0, error
    _, values, _ = state.read(run / "backup" / "state.npz")
    for variable, value in zip(load_model(run).model.weights, values):
        np.testing.assert_array_equal(np.asarray(variable.numpy()), value, err_msg=variable.path)
    assert json.loads((run / "metrics.json").read_text())["epochs_completed"] == 2
