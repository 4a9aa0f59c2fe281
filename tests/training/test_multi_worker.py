"""Training on several processes (TensorFlow's multi_worker) and devices (JAX's data_parallel).

Each test runs `main.py` in real processes on a tiny digits model: a first
session is killed (SIGKILL) in its second epoch, the same command then
resumes it to the end. The first epoch, uninterrupted, is compared with a
run on one device at the same global batch, and the run folder must hold
one writer's files only.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from glow_tf.cli import train  # noqa: E402
from tests.commands import run_cli  # noqa: E402
from tests.events import read_events  # noqa: E402
from tests.processes import ROOT  # noqa: E402

# 1437 // 64 = 22 steps per epoch. Three epochs, so that a session killed
# right after a backup of the second epoch has an epoch and more to go.
STEPS_PER_EPOCH = 22
EPOCHS = 3
TINY = ["--dataset", "digits", "--k_glow", "1", "--l_glow", "2", "--hidden_channels", "8",
        "--n_init", "64", "--warmup", "0.5", "--backup_every", "3"]
# Seconds any one session may take (each is tens of seconds on two cores).
SESSION_TIMEOUT = 240


def free_ports(count):
    """Ports that were free a moment ago (bound to port 0, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def environment(**changes):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    for name in ("TF_CONFIG", "XLA_FLAGS", "KERAS_BACKEND"):
        env.pop(name, None)
    env.update(changes)
    return env


def main_py(run_dir, *args):
    return [sys.executable, str(ROOT / "main.py"), *TINY, "--run_dir", str(run_dir), *args]


def start(commands, envs, logs):
    """The commands as processes, their output into the log files."""
    processes = []
    for command, env, log in zip(commands, envs, logs):
        with open(log, "w") as out:
            processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                              stderr=subprocess.STDOUT))
    return processes


def logs_of(logs):
    return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)


def backup_step(run_dir):
    from glow_tf.runs import state

    try:
        return state.read(run_dir / "backup" / "state.npz")[0]["step"]
    except (OSError, ValueError, KeyError):
        return 0  # not there yet, or being replaced


def kill_after_backup_of_epoch_two(processes, run_dir, logs):
    """SIGKILLs every process once the run folder has a backup from the second epoch."""
    deadline = time.monotonic() + SESSION_TIMEOUT
    try:
        while backup_step(run_dir) <= STEPS_PER_EPOCH:
            for p in processes:
                assert p.poll() is None, "a process ended before the kill:\n" + logs_of(logs)
            assert time.monotonic() < deadline, "no backup in time:\n" + logs_of(logs)
            time.sleep(0.01)
    finally:
        for p in processes:
            p.send_signal(signal.SIGKILL)
        for p in processes:
            p.wait()
    step = backup_step(run_dir)
    assert STEPS_PER_EPOCH < step < EPOCHS * STEPS_PER_EPOCH, step
    return step


def finish(processes, logs):
    for p in processes:
        try:
            p.wait(timeout=SESSION_TIMEOUT)
        except subprocess.TimeoutExpired:
            for q in processes:
                q.kill()
            pytest.fail("a session did not finish in time:\n" + logs_of(logs))
        assert p.returncode == 0, logs_of(logs)


def first_epoch(run_dir):
    """(train bits/dim, test bits/dim) of epoch 1, from the run's TensorBoard logs."""
    events = read_events(run_dir / "logs")
    train_loss = dict(events["train/epoch_loss"])[0]
    test_loss = dict(events["validation/epoch_loss"])[0]
    return float(train_loss), float(test_loss)


def event_file_pids(run_dir):
    """The process id in each TensorBoard event file's name, per logs subfolder."""
    found = {}
    for path in (run_dir / "logs").rglob("events.out.tfevents.*"):
        # events.out.tfevents.<time>.<host>.<pid>.<count>.v2; the host may hold dots.
        pid = int(re.search(r"\.(\d+)\.\d+\.v2$", path.name).group(1))
        found.setdefault(path.parent.name, []).append(pid)
    return found


def check_finished(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] and metrics["epochs_completed"] == EPOCHS, metrics
    assert metrics["steps"] == EPOCHS * STEPS_PER_EPOCH, metrics
    assert np.isfinite(metrics["test_bits_per_dim"]) and metrics["test_bits_per_dim"] < 4.0
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name], "a temp file was left"
    return metrics


# ---- TensorFlow: two worker processes ----


@pytest.mark.slow
def test_two_workers_train_like_one_process_write_once_and_resume(tmp_path, capsys):
    run_dir, own_dir = tmp_path / "run", tmp_path / "worker_1_folder"
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    temp = [tmp_path / "temp_0", tmp_path / "temp_1"]
    for folder in temp:
        folder.mkdir()
    envs = [environment(TF_CONFIG=json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": i}}),
                        TMPDIR=str(temp[i]))
            for i in range(2)]
    args = ["--strategy", "multi_worker", "--epochs", str(EPOCHS)]

    # Killed in epoch 2. Worker 1 is given a folder of its own, where it may
    # write nothing: the chief's folder holds the run.
    logs = [tmp_path / "a_0.log", tmp_path / "a_1.log"]
    processes = start([main_py(run_dir, *args), main_py(own_dir, *args)], envs, logs)
    kill_after_backup_of_epoch_two(processes, run_dir, logs)
    assert not own_dir.exists()
    chief_pids = {processes[0].pid}
    assert event_file_pids(run_dir) == {"train": [processes[0].pid],
                                        "validation": [processes[0].pid],
                                        "glow": [processes[0].pid]}
    config_written = (run_dir / "config.json").stat().st_mtime_ns
    two_workers = first_epoch(run_dir)

    # Both rerun the same command; worker 1 reads the chief's backup.
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    for i, env in enumerate(envs):
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
    logs = [tmp_path / "b_0.log", tmp_path / "b_1.log"]
    processes = start([main_py(run_dir, *args)] * 2, envs, logs)
    finish(processes, logs)
    chief_pids.add(processes[0].pid)
    check_finished(run_dir)
    assert "strategy multi_worker: 2 replicas of 32 images" in logs[0].read_text()
    assert "Worker 1 of 2 trained 66 steps" in logs[1].read_text(), logs_of(logs)
    assert (run_dir / "config.json").stat().st_mtime_ns == config_written
    pids = event_file_pids(run_dir)
    assert sorted(pids) == ["glow", "train", "validation"], pids
    for folder, found in pids.items():
        assert len(found) == 2 and set(found) == chief_pids, (folder, found, chief_pids)
    # Worker 1 removed its scratch folder; the killed session's is left in TMPDIR.
    assert len(list(temp[1].iterdir())) <= 1

    # One process, the same global batch, uninterrupted: the same first epoch.
    # The workers draw the dequantisation noise per replica, one process for
    # the whole batch, so the figures agree to the noise's effect, not to
    # float error (tests/core/test_scale.py compares the arithmetic itself).
    reference = tmp_path / "one_process"
    run_cli(train, *TINY, "--run_dir", str(reference), "--epochs", "1")
    capsys.readouterr()
    np.testing.assert_allclose(two_workers, first_epoch(reference), atol=0.02)


# ---- JAX: two devices of one process ----


@pytest.mark.slow
def test_jax_data_parallel_trains_like_one_device_and_resumes(tmp_path):
    pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")
    run_dir = tmp_path / "run"
    two_devices = environment(KERAS_BACKEND="jax",
                              XLA_FLAGS="--xla_force_host_platform_device_count=2")
    args = ["--strategy", "data_parallel", "--epochs", str(EPOCHS)]

    logs = [tmp_path / "a.log", tmp_path / "one_device.log"]
    # The reference, one device, one epoch, beside the two-device session.
    processes = start(
        [main_py(run_dir, *args),
         main_py(tmp_path / "one_device", "--epochs", "1")],
        [two_devices, environment(KERAS_BACKEND="jax")], logs,
    )
    kill_after_backup_of_epoch_two(processes[:1], run_dir, logs)
    finish(processes[1:], logs[1:])
    two = first_epoch(run_dir)

    logs = [tmp_path / "b.log"]
    finish(start([main_py(run_dir, *args)], [two_devices], logs), logs)
    check_finished(run_dir)
    assert "strategy data_parallel: 2 replicas of 32 images" in (tmp_path / "a.log").read_text()
    # One array for the whole batch on either: the same noise, the same
    # arithmetic up to the order of the gradient's sum.
    np.testing.assert_allclose(two, first_epoch(tmp_path / "one_device"), rtol=1e-4)
