"""No silent minute: the start of a run tells each long phase as it starts, in order."""

import contextlib
import io
import logging
import os
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

from glow_tf import phases  # noqa: E402
from glow_tf.cli import train  # noqa: E402
from tests.commands import run_cli  # noqa: E402
from tests.processes import ROOT  # noqa: E402

TINY = ["--k_glow", "1", "--l_glow", "2", "--hidden_channels", "8", "--n_init", "64",
        "--epochs", "1", "--warmup", "0.5"]
# The phase lines of a one-epoch digits run, in order: the data, the
# model, its initialisation, the compiled step, then the test pass's encode
# and the summaries' decode at the epoch's end.
PHASES = [
    "Reading the digits training images (scikit-learn) ...",
    "Reading the digits test images (scikit-learn) ...",
    "Building the model: a Glow of L=2 levels x K=1 steps, width 8, affine coupling, "
    "8x8x1 images ...",
    "Initialising the ActNorm layers from 64 training images (one pass, not compiled) ...",
    "Tracing and compiling the training step; the first step includes it ...",
    "First step done in ",
    "Compiling the model's encode (its first call includes it) ...",
    "Compiling the model's decode (its first call includes it) ...",
]


def phase_lines(stdout):
    """The lines of stdout that are phase lines, in order (the progress bar's left out)."""
    lines = stdout.replace("\r", "\n").splitlines()
    return [line for line in lines if any(line.startswith(p) for p in PHASES)]


def check_phases(lines, stdout):
    assert len(lines) == len(PHASES), stdout[-3000:]
    for line, expected in zip(lines, PHASES):
        assert line.startswith(expected), (line, expected)
    seconds = float(lines[5].removeprefix("First step done in ").split(" s,")[0])
    assert seconds > 0 and lines[5].endswith(" s, compiling the step included.")


def test_a_run_tells_its_phases_in_order(tmp_path):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        run_cli(train, *TINY, "--run_dir", str(tmp_path / "run"))
    check_phases(phase_lines(stdout.getvalue()), stdout.getvalue())
    # Each phase line starts a line of its own, even in the middle of the progress bar.
    assert "\nCompiling the model's encode" in stdout.getvalue()
    # The result comes last.
    last = stdout.getvalue().splitlines()[-1]
    assert last.startswith("Test bits/dim: ") and last.endswith(f"(run folder: {tmp_path / 'run'})")


@pytest.mark.slow
def test_the_library_reports_on_a_logger_and_prints_nothing(tmp_path, capsys, caplog):
    from glow_tf.cli.settings import configs_for
    from glow_tf.tf import training

    # A tool run earlier in this process may have taken the lines over.
    handlers, propagate = phases.LOGGER.handlers, phases.LOGGER.propagate
    phases.LOGGER.handlers, phases.LOGGER.propagate = [], True
    try:
        with caplog.at_level(logging.INFO, logger="glow_tf.phases"):
            result = training.train_and_evaluate(
                *configs_for("digits", k_glow=1, l_glow=2, hidden_channels=8, n_init=64,
                             epochs=1, warmup=0.5),
                tmp_path / "run", verbose=0,
            )
    finally:
        phases.LOGGER.handlers, phases.LOGGER.propagate = handlers, propagate
    out = capsys.readouterr().out
    assert out == "", out
    assert result.summary == (f"Test bits/dim: {result.metrics['test_bits_per_dim']:.4f} "
                              f"(run folder: {tmp_path / 'run'})")
    check_phases([r.getMessage() for r in caplog.records if r.name == "glow_tf.phases"], out)


@pytest.mark.slow
def test_a_jax_run_tells_its_phases_in_order(tmp_path):
    """As a user runs it: XLA's own compile settings, not the suite's quick ones
    (tests/quick_compile.py), and no compilation cache."""
    pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    for name in ("KERAS_BACKEND", "XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "main.py", "--backend", "jax", *TINY, "--run_dir", str(tmp_path / "r")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    check_phases(phase_lines(done.stdout), done.stdout)
