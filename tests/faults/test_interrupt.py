"""Ctrl-C during main.py's training: one line saying what was kept, exit status 130, and the
same command resumes the run to its end."""

import json
import re
import signal
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

from glow_tf.runs import state  # noqa: E402
from tests.faults.test_faults import subprocess_env, wait_for_backup  # noqa: E402
from tests.processes import ROOT  # noqa: E402

ARGS = ["--k_glow", "1", "--l_glow", "2", "--hidden_channels", "8", "--epochs", "2",
        "--backup_every", "3", "--n_init", "64", "--warmup", "0.5"]
STEPS_PER_EPOCH = 22


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_and_the_same_command_resumes(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "main.py"), *ARGS, "--run_dir", str(run_dir)]
    backup = run_dir / "backup" / "state.npz"
    log = tmp_path / "interrupted.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, cwd=tmp_path, env=subprocess_env(),
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_for_backup(process, backup, 0, log)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    error = log.read_text()
    assert process.returncode == 130, error[-3000:]
    assert "Traceback" not in error and "Exception ignored" not in error, error[-3000:]
    line = error.splitlines()[-1]
    found = re.fullmatch(
        rf"main\.py: interrupted\. {re.escape(str(run_dir))} keeps its backup of step (\d+) "
        r"\((?:(\d+) steps into epoch (\d+)|the end of epoch (\d+))\); the same command "
        r"resumes from it\.",
        line,
    )
    assert found, line
    step = int(found.group(1))
    assert step == state.read_step(backup) and step > 0
    epochs, steps = divmod(step, STEPS_PER_EPOCH)
    if steps:
        assert (int(found.group(2)), int(found.group(3))) == (steps, epochs + 1), line
    else:
        assert int(found.group(4)) == epochs, line

    done = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] and metrics["epochs_completed"] == 2
    assert metrics["steps"] == 2 * STEPS_PER_EPOCH
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name]
