"""The command-line tools on both Keras backends, and run folders that cross between them.

Keras picks its backend once per process, so every tool runs in its own
process, chosen with --backend (TensorFlow when it is not given).
"""

import gc
import importlib
import json
import math
import os
import signal
import subprocess
import sys

import keras
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")

from glow_tf.cli import runtime, train  # noqa: E402
from glow_tf.runs import state  # noqa: E402
from tests.commands import run_cli  # noqa: E402
from tests.events import read_events  # noqa: E402
from tests.processes import HANG, ROOT, pausing_at_backup, stopped  # noqa: E402
from tests.tiny import STEPS_PER_EPOCH, TINY_DIGITS, as_flags  # noqa: E402

# 8x8 digits, K=1, L=2, width 8: 22 steps of 64 images per epoch.
TINY = as_flags({**TINY_DIGITS, "backup_every": 5})

from_the_tensorflow_run = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="starts its own processes; run once, from the TensorFlow run",
)


def environment():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    env.pop("KERAS_BACKEND", None)  # the tools' --backend decides
    return env


def tool(script, *args):
    """Runs `python script args` in the repository root; its stdout, or a failed assert."""
    result = subprocess.run([sys.executable, script, *args], cwd=ROOT, env=environment(),
                            capture_output=True, text=True, timeout=HANG)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


def check_run(run_dir, epochs, backend):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] and metrics["epochs_completed"] == epochs
    assert metrics["steps"] == epochs * STEPS_PER_EPOCH and metrics["backend"] == backend
    assert math.isfinite(metrics["test_bits_per_dim"])
    # The summaries and Keras' losses, once per epoch, whichever backend wrote them.
    events = read_events(run_dir / "logs")
    for tag in ("validation/epoch_loss", "glow/z/level_1/mean", "glow/z/level_2/variance",
                "glow/samples/temperature_0.7", "glow/reconstructions"):
        assert sorted(step for step, _ in events[tag]) == list(range(epochs)), tag
    return metrics


def check_sample_and_evaluate(run_dir, tmp_path, *backend):
    out = tmp_path / "samples.png"
    # Phase lines come first; the last line is the grid's path.
    printed = tool("sample.py", *backend, "--run_dir", str(run_dir), "--out", str(out))
    assert printed.splitlines()[-1] == str(out)
    assert out.stat().st_size > 0
    printed = tool("evaluate.py", *backend, "--run_dir", str(run_dir))
    assert "Test bits/dim on digits (360 images): " in printed


def backup_step(backup):
    """The step of the run's backup; 0 while there is none, or it is being replaced."""
    try:
        return state.read(backup)[0]["step"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
@from_the_tensorflow_run
def test_a_run_crosses_backends_through_a_kill_and_both_sample_and_evaluate_it(tmp_path):
    """One run, each way across: TensorFlow trains epoch 1; JAX resumes it for epoch 2,
    is killed after a backup there, and the same JAX command completes it; then
    sample.py and evaluate.py read it on TensorFlow and on JAX."""
    run_dir = tmp_path / "run"
    tool("main.py", *TINY, "--epochs", "1", "--run_dir", str(run_dir))
    first = check_run(run_dir, epochs=1, backend="tensorflow")["test_bits_per_dim"]

    # More epochs continue the run, here on the other backend.
    command = [sys.executable, "main.py", "--backend", "jax", *TINY, "--epochs", "2",
               "--run_dir", str(run_dir)]
    backup, log = run_dir / "backup" / "state.npz", tmp_path / "killed.log"
    # It stops itself right after its first backup in epoch 2 and is killed
    # there: never too late, however fast the machine.
    with open(log, "w") as stderr:
        process = subprocess.Popen(pausing_at_backup(STEPS_PER_EPOCH, command), cwd=ROOT,
                                   env=environment(), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        stopped(process, "a backup in epoch 2", log)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert STEPS_PER_EPOCH < backup_step(backup) < 2 * STEPS_PER_EPOCH

    tool("main.py", *command[2:])  # the same command resumes the run and completes it
    assert check_run(run_dir, epochs=2, backend="jax")["test_bits_per_dim"] < first
    check_sample_and_evaluate(run_dir, tmp_path / "tensorflow")  # the default
    check_sample_and_evaluate(run_dir, tmp_path / "jax", "--backend", "jax")


TOOL_IMPORTS = """
import sys
import glow_tf, common_definitions, main, sample, evaluate
import glow_tf.cli.train, glow_tf.cli.sample, glow_tf.cli.evaluate
print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'sklearn') if m in sys.modules))
from glow_tf.cli import runtime
runtime.prepare('tensorflow')
keras = runtime.start_keras()
from glow_tf.tf import pipelines
pipelines._digits_levels()
import gc
frozen = gc.get_freeze_count()  # Keras' and TensorFlow's objects, out of the collector's way
print(keras.backend.backend(), sorted(m for m in ('sklearn', 'jax') if m in sys.modules),
      frozen > 100_000, gc.isenabled())
with runtime.kept_imports():
    import sklearn.datasets, jax  # what was held off comes when asked for
print(gc.get_freeze_count() > frozen, gc.isenabled())
"""


@from_the_tensorflow_run
def test_the_tools_import_keras_once_their_flags_are_read_and_leave_out_what_no_tool_uses():
    # --backend is read from the flags, so Keras must not start on import.
    # Then Keras' scikit-learn wrappers, TensorFlow Lite's JAX converter and
    # scikit-learn's datasets module are no tool's (glow_tf/cli/runtime.py).
    result = subprocess.run([sys.executable, "-c", TOOL_IMPORTS], cwd=ROOT, env=environment(),
                            capture_output=True, text=True, timeout=HANG)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:3] == ["[]", "tensorflow [] True True", "True True"], \
        result.stdout


def test_a_tools_main_called_from_python_leaves_the_callers_collector_as_it_is():
    """Keras was imported before any tool started it (by this test run): what a
    tool then imports is neither frozen nor imported with the collector paused."""
    frozen, paused = gc.get_freeze_count(), []
    with runtime.kept_imports():
        paused.append(not gc.isenabled())
        importlib.import_module("glow_tf.tf.training")
    assert gc.get_freeze_count() == frozen and paused == [False] and gc.isenabled()


def test_another_backend_than_the_running_one_is_a_users_error(tmp_path, capsys):
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train, "--backend", other, *TINY, "--run_dir", str(tmp_path / "run"))
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith(f"main.py: error: --backend={other}: Keras already runs on ")
    assert error.count("\n") == 1
    assert not (tmp_path / "run").exists()


GRAPPLER = """
import sys
from glow_tf.cli import runtime
runtime.prepare('tensorflow')
runtime.tune_tensorflow('auto', int(sys.argv[1]))
import tensorflow as tf
options = tf.config.optimizer.get_experimental_options()
print(options.get('disable_meta_optimizer'),
      sorted(name for name, on in options.items() if on and name in runtime.GRAPPLER_PASSES))
"""


@from_the_tensorflow_run
def test_the_tools_run_grapplers_remapper_alone_for_a_wide_model_on_a_cpu():
    """Grappler on a CPU: off below WIDE_WIDTH; from it, the remapper (which fuses a
    convolution with its bias and ReLU) and no other pass."""
    from glow_tf.config import WIDE_WIDTH

    printed = {}
    for width in (WIDE_WIDTH // 2, WIDE_WIDTH):
        result = subprocess.run([sys.executable, "-c", GRAPPLER, str(width)], cwd=ROOT,
                                env=environment(), capture_output=True, text=True,
                                timeout=HANG)
        assert result.returncode == 0, result.stderr[-3000:]
        printed[width] = result.stdout.strip()
    assert printed == {WIDE_WIDTH // 2: "True []", WIDE_WIDTH: "False ['remapping']"}


TRACE_COUNTS = """
import json, sys
from glow_tf import Glow
from glow_tf.cli.settings import configs_for
from glow_tf.tf import training

losses = []
compute_loss = Glow.compute_loss
# Python runs the training step's body once per trace of it.
Glow.compute_loss = lambda self, *a, **k: losses.append(1) or compute_loss(self, *a, **k)
configs = configs_for("digits", k_glow=1, l_glow=2, hidden_channels=8, epochs=2, n_init=64,
                      warmup=0.5, backup_every=5)
model, _ = training.train_and_evaluate(*configs, sys.argv[1], verbose=0)
print(json.dumps({"train_step": len(losses), **model.traces}))
"""


@pytest.mark.slow
@from_the_tensorflow_run
def test_a_jax_run_traces_each_function_once(tmp_path):
    # (On TensorFlow: tests/training/test_training.py, in this process.)
    result = subprocess.run(
        [sys.executable, "-c", TRACE_COUNTS, str(tmp_path / "run")], cwd=ROOT,
        env={**environment(), "KERAS_BACKEND": "jax"}, capture_output=True, text=True,
        timeout=HANG,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    # Two epochs, their test passes and summaries, and the final score.
    assert counts == {"train_step": 1, "encode": 1, "decode": 1}
