"""A run folder has one writer, and holds one run: a second process and a folder without
its config.json are refused, with nothing written."""

import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

from common_definitions import PRESETS  # noqa: E402
from glow_tf.runs import RunDir, RunDirError  # noqa: E402
from glow_tf.runs.folder import RunDirBusyError  # noqa: E402
from tests.processes import HANG, ROOT, frozen, wait_for  # noqa: E402
from tests.tiny import TINY_DIGITS, as_flags  # noqa: E402
from tests.faults.test_faults import snapshot, subprocess_env  # noqa: E402

TINY = as_flags({**TINY_DIGITS, "epochs": 2})
HOLD_LOCK = (
    "import signal, sys\n"
    "from glow_tf.runs import RunDir\n"
    "run = RunDir(sys.argv[1])\n"
    "run.lock()\n"
    "print('locked', flush=True)\n"
    "signal.pause()  # until the test kills it\n"
)


def test_the_lock_names_its_holder_and_goes_with_it(tmp_path):
    first = RunDir(tmp_path / "run")
    first.lock()
    with pytest.raises(RunDirBusyError, match=f"process {os.getpid()} is training there"):
        RunDir(tmp_path / "run").lock()
    first.unlock()
    RunDir(tmp_path / "run").lock()  # free again


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusyError, match=f"process {holder.pid} is training there"):
            RunDir(tmp_path).lock()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=HANG)
    run = RunDir(tmp_path)
    run.lock()  # the operating system released it with the process
    run.unlock()


@pytest.mark.slow
def test_a_second_main_py_on_the_same_folder_is_refused_and_the_first_finishes(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "main.py"), *TINY, "--run_dir", str(run_dir)]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=tmp_path, env=subprocess_env(),
                                 stdout=subprocess.DEVNULL, stderr=log)
    try:
        # It holds the folder's lock once it wrote config.json. Stopped there,
        # it is training, however long the second takes to start.
        wait_for(lambda: (run_dir / "config.json").exists(), "the first run's config.json",
                 first, tmp_path / "first.log")
        with frozen(first) as alive:
            assert alive, "the first run ended before the second started"
            second = subprocess.run([*command, "--lr", "0.0005"], cwd=tmp_path,
                                    env=subprocess_env(), capture_output=True, text=True,
                                    timeout=HANG)
        first.wait(timeout=HANG)
    finally:
        if first.poll() is None:
            first.kill()
    error = (tmp_path / "first.log").read_text()
    assert second.returncode == 1
    # The last line is ours; TensorFlow may log its start-up before it.
    assert "Traceback" not in second.stderr, second.stderr
    assert second.stderr.splitlines()[-1].startswith(
        f"main.py: error: {run_dir} is in use: process {first.pid} is training there."
    ), second.stderr
    assert first.returncode == 0, error
    metrics = (run_dir / "metrics.json").read_text()
    assert '"finished": true' in metrics and '"epochs_completed": 2' in metrics
    preset_lr = PRESETS["digits"]["lr"]
    assert json.loads((run_dir / "config.json").read_text())["training"]["lr"] == preset_lr


def test_a_folder_with_weights_but_no_config_is_refused(tmp_path, capsys, monkeypatch):
    from glow_tf.cli import train
    from tests.commands import run_cli

    run_dir = tmp_path / "run"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "newest.weights.h5").write_bytes(b"weights of some run")
    (run_dir / "backup" / "state.npz").write_bytes(b"its backup")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train, *TINY, "--n_bits", "5", "--run_dir", str(run_dir))
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and (
        f"{run_dir} holds newest.weights.h5, backup/state.npz but no config.json"
    ) in error, error
    assert snapshot(tmp_path) == before
    with pytest.raises(RunDirError, match="Put that run's config.json back to resume it"):
        RunDir(run_dir).check({})


def test_the_polyak_horizon_counts_only_between_averaging_runs():
    from glow_tf.runs.folder import config_differences

    now = {"data": {"dataset": "digits", "augment": False},
           "model": {"k_glow": 32, "log_scale_factor": 1.0},
           "training": {"lr": 4e-3, "polyak": True, "polyak_epochs": 3.0}}
    without_averaging = {**now, "training": {"lr": 4e-3, "polyak": False, "polyak_epochs": 1.0}}
    assert config_differences(without_averaging, {**without_averaging, "training": {
        "lr": 4e-3, "polyak": False, "polyak_epochs": 3.0}}) == []
    # Between two averaging runs, the horizon counts.
    averaged = {**now, "training": {"lr": 4e-3, "polyak": True, "polyak_epochs": 1.0}}
    assert config_differences(averaged, now) == [
        "training.polyak_epochs: 1.0 in the run folder, 3.0 now"
    ]
