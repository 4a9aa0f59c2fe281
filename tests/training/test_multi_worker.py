"""Training on several processes (TensorFlow's multi_worker) and devices (JAX's data_parallel).

Each test runs `main.py` in real processes on a tiny digits model: a first
round ends in its second epoch by a SIGKILL (of worker 1, with two workers;
the chief then stops by itself), the same commands then resume it to the end. The first epoch, uninterrupted, is compared with
one process at the same global batch, and the run folder must hold one
writer's files only.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests import quick_compile  # noqa: E402
from tests.events import read_events  # noqa: E402
from tests.processes import HANG, ROOT, pausing_at_backup, stopped  # noqa: E402
from tests.tiny import STEPS_PER_EPOCH  # noqa: E402
from tests.two_replicas import flags  # noqa: E402

# Four epochs take the tiny run under 4 bits/dim. Each first round stops
# itself right after a backup in epoch 2 (tests/pause_at_backup.py) and is
# killed there; the second round completes it.
EPOCHS = 4


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
    for name in ("TF_CONFIG", "KERAS_BACKEND"):
        env.pop(name, None)
    env.update(changes)
    return env


def main_py(run_dir, **changes):
    return [sys.executable, str(ROOT / "main.py"), *flags(**changes), "--run_dir", str(run_dir)]


@pytest.fixture
def start():
    """start(commands, envs, logs): the commands as processes, their output into the logs.

    Whatever is still running when the test ends is killed.
    """
    started = []

    def start(commands, envs, logs):
        processes = []
        for command, env, log in zip(commands, envs, logs):
            with open(log, "w") as out:
                processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                                  stderr=subprocess.STDOUT))
        started.extend(processes)
        return processes

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def logs_of(logs):
    return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)


def backup_step(run_dir):
    from glow_tf.runs import state

    try:
        return state.read(run_dir / "backup" / "state.npz")[0]["step"]
    except (OSError, ValueError, KeyError):
        return 0  # not there yet, or being replaced


def kill_after_backup_of_epoch_two(processes, run_dir, logs, victims=None):
    """SIGKILLs the victims (all the processes) once the run has a backup from epoch 2.

    The first process writes the backups, and was started `pausing_at_backup`
    of epoch 1's last step: it stands stopped right after that backup, so
    the run is in epoch 2 whatever the machine's speed. A writer that is
    not a victim goes on afterwards.
    """
    victims = processes if victims is None else victims
    try:
        stopped(processes[0], "a backup from epoch 2", logs[0])
        for p in processes[1:]:
            assert p.poll() is None, "a process ended before the kill:\n" + logs_of(logs)
    finally:
        for p in victims:
            p.send_signal(signal.SIGKILL)
            p.wait()
        if processes[0] not in victims:
            processes[0].send_signal(signal.SIGCONT)
    step = backup_step(run_dir)
    assert STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH, step
    return step


def finish(processes, logs):
    for p in processes:
        try:
            p.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            for q in processes:
                q.kill()
            pytest.fail(f"a round did not end within {HANG} s: it hangs\n" + logs_of(logs))
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


def cluster_envs(temp_folders):
    """Each worker's environment: TF_CONFIG of a cluster on free local ports, its TMPDIR."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(len(temp_folders))]}
    return [environment(TF_CONFIG=json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": index}}),
                        TMPDIR=str(temp))
            for index, temp in enumerate(temp_folders)]


def scratch_folders(temp):
    return [p.name for p in temp.iterdir() if p.name.startswith("glow-worker-")]


@pytest.mark.slow
def test_two_workers_train_like_one_process_write_once_and_resume(tmp_path, start):
    run_dir, own_dir = tmp_path / "run", tmp_path / "worker_1_folder"
    temp = [tmp_path / "temp_0", tmp_path / "temp_1"]
    for folder in temp:
        folder.mkdir()
    workers = dict(strategy="multi_worker", epochs=EPOCHS)

    # Ended in epoch 2. Worker 1 is given a folder of its own, where it may
    # write nothing: the chief's folder holds the run. Beside them, the
    # reference: one process on two replicas (MirroredStrategy over two
    # logical CPUs), for one epoch.
    reference = tmp_path / "one_process"
    logs = [tmp_path / "a_0.log", tmp_path / "a_1.log", tmp_path / "one_process.log"]
    processes = start(
        [pausing_at_backup(STEPS_PER_EPOCH, main_py(run_dir, **workers)),
         main_py(own_dir, **workers),
         [sys.executable, "-m", "tests.two_replicas", str(reference), "1"]],
        [*cluster_envs(temp), environment()], logs,
    )
    # Worker 1 is killed; the chief stops at its next collective, with one line.
    kill_after_backup_of_epoch_two(processes[:2], run_dir, logs, victims=processes[1:2])
    processes[0].wait(timeout=HANG)
    error = logs[0].read_text().strip().splitlines()[-1]
    assert processes[0].returncode == 1, logs_of(logs)
    assert error.startswith("main.py: error: Another worker of the cluster stopped"), error
    assert f"resume from the chief's backup in {run_dir}" in error, error
    finish(processes[2:], logs[2:])
    assert "strategy multi_worker: 2 replicas of 32 images" in logs[0].read_text()
    assert not own_dir.exists()
    chief = processes[0].pid
    assert event_file_pids(run_dir) == {"train": [chief], "validation": [chief], "glow": [chief]}
    config_written = (run_dir / "config.json").stat().st_mtime_ns
    two_workers = first_epoch(run_dir)
    assert scratch_folders(temp[0]) == [] and len(scratch_folders(temp[1])) == 1

    # Both rerun the same command: the chief resumes from its backup, and
    # worker 1 takes the chief's weights and optimizer state.
    logs = [tmp_path / "b_0.log", tmp_path / "b_1.log"]
    processes = start([main_py(run_dir, **workers)] * 2, cluster_envs(temp), logs)
    finish(processes, logs)
    metrics = check_finished(run_dir)
    # Worker 1 scored its own weights: the chief's.
    assert (f"Worker 1 of 2 trained {EPOCHS * STEPS_PER_EPOCH} steps, to test bits/dim "
            f"{metrics['test_bits_per_dim']:.4f};") in logs[1].read_text(), logs_of(logs)
    assert (run_dir / "config.json").stat().st_mtime_ns == config_written
    pids = event_file_pids(run_dir)
    assert sorted(pids) == ["glow", "train", "validation"], pids
    for folder, found in pids.items():
        assert sorted(found) == sorted([chief, processes[0].pid]), (folder, found)
    # The finished worker removed its scratch folder (the killed one's stays).
    assert len(scratch_folders(temp[1])) == 1

    # One process on two replicas splits each global batch as the two
    # workers do and draws the same noise: the same first epoch up to float
    # error. (Against one replica, see tests/two_replicas.py.)
    np.testing.assert_allclose(two_workers, first_epoch(reference), rtol=1e-5)


# ---- JAX: two devices of one process ----


@pytest.mark.slow
def test_jax_data_parallel_trains_like_one_device_and_resumes(tmp_path, start):
    pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")
    run_dir = tmp_path / "run"
    two_devices = environment(KERAS_BACKEND="jax", XLA_FLAGS=quick_compile.flags(
        "--xla_force_host_platform_device_count=2"))
    command = main_py(run_dir, strategy="data_parallel", epochs=EPOCHS)

    # The two-device round, killed in epoch 2, beside one epoch on one device.
    logs = [tmp_path / "a.log", tmp_path / "one_device.log"]
    processes = start([pausing_at_backup(STEPS_PER_EPOCH, command),
                       main_py(tmp_path / "one_device", epochs=1)],
                      [two_devices, environment(KERAS_BACKEND="jax")], logs)
    kill_after_backup_of_epoch_two(processes[:1], run_dir, logs)
    finish(processes[1:], logs[1:])
    assert "strategy data_parallel: 2 replicas of 32 images" in logs[0].read_text()
    two = first_epoch(run_dir)

    logs = [tmp_path / "b.log"]
    finish(start([command], [two_devices], logs), logs)
    check_finished(run_dir)
    assert len(event_file_pids(run_dir)["train"]) == 2
    # The whole batch is one array on either, so the same noise: the figures
    # agree up to the order of float sums.
    np.testing.assert_allclose(two, first_epoch(tmp_path / "one_device"), rtol=1e-5)


def test_one_process_is_its_own_chief_and_trains_unchanged():
    from glow_tf.tf import distribute

    one = distribute.get_distribution("none")
    assert one.is_chief and one.worker == (0, 1) and not one.multi_worker
    values = [np.arange(3)]
    assert one.from_chief(values) is values
    dataset = tf.data.Dataset.range(3)
    assert one.prepare_dataset(dataset) is dataset
