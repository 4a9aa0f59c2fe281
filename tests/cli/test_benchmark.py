"""The benchmark script (benchmarks/train_step.py): its table, its processes, its errors.

It is timed nowhere here; these check that it runs and reports on either backend.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.processes import HANG, ROOT, run_module

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                       reason="starts its own processes; run once, from the TensorFlow run"),
]


BENCH_TINY = ["--image_size=8", "--k_glow=1", "--l_glow=2", "--hidden_channels=8",
              "--batch_size=4", "--steps=2", "--warmup=1", "--repeats=1"]


XLA_OPS_TINY = ["--image_size=8", "--channels=1", "--k_glow=2", "--l_glow=2",
                "--hidden_channels=8", "--batch_size=4", "--calls=1"]


def test_bench_and_xla_ops_run_on_jax_without_tensorflow():
    """benchmarks.train_step and benchmarks.xla_ops, one after the other in one JAX process."""
    pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")
    script = (
        "import runpy, sys\n"
        # Two steps a level, so that they run as one loop.
        f"for name, argv in [('train_step', [*{BENCH_TINY!r}, '--k_glow=2']),\n"
        f"                   ('xla_ops', {XLA_OPS_TINY!r})]:\n"
        "    sys.argv = ['benchmarks.' + name, *argv]\n"
        "    try:\n"
        "        runpy.run_module('benchmarks.' + name, run_name='__main__')\n"
        "    except SystemExit as exit:\n"
        "        assert not exit.code, exit.code\n"
        "print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "jax"},
        capture_output=True, text=True, timeout=HANG,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "tensorflow imported: False" in result.stdout, out[-4000:]
    # On JAX's CPU, loop="auto" recomputes each step (FlowSteps.recomputes).
    bench, xla_ops = result.stdout.split("| form |")
    check_table(bench, backend="jax", rows=1, remat="auto")
    check_xla_ops("| form |" + xla_ops)


def check_xla_ops(stdout):
    """Its four forms, each with op kinds summed: recomputing keeps the least scratch,
    and keeping the hidden output more, at any width."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    assert len(lines) == 6, stdout
    rows = {}
    for line in lines[2:]:
        form, compile_s, call_ms, scratch, ops_ms, kinds = \
            [cell.strip() for cell in line.strip("|").split("|")]
        assert float(compile_s) > 0 and float(call_ms) > 0 and float(ops_ms) > 0, line
        assert "fusion" in kinds, line
        rows[form] = float(scratch.replace(",", ""))
    assert list(rows) == ["unrolled", "loop", "loop-remat", "loop-keep-hidden"], stdout
    assert rows["loop-remat"] < rows["loop-keep-hidden"] < rows["loop"], stdout


def test_gpu_table_runs_small_on_jax_with_tensorflow_blocked(tmp_path):
    """The GPU table's command, on a CPU with a tiny model: its five rows, each in a
    process of its own, none of which can import TensorFlow. Not timed."""
    pytest.importorskip("jax", reason="JAX is not installed (requirements-dev.txt has it)")
    blocked = tmp_path / "blocked" / "tensorflow"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('TensorFlow is blocked here')\n")
    env = {"KERAS_BACKEND": "jax",
           "PYTHONPATH": os.pathsep.join([str(blocked.parent), str(ROOT)])}
    path = tmp_path / "gpu.json"
    out = run_module("benchmarks.gpu_table", [
        "--image_size=8", "--k_glow=1", "--l_glow=2", "--hidden_channels=8",
        "--batch_sizes=2,4", "--steps=1", "--warmup=1", "--repeats=1", f"--json={path}"],
        env=env, timeout=1800)  # five processes that each start JAX and compile
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| batch | precision | remat | images/s |"), out
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert [row[:3] for row in rows] == [
        ["2", "float32", "no"], ["4", "float32", "no"], ["2", "bfloat16", "no"],
        ["4", "bfloat16", "no"], ["4", "float32", "yes"]], out
    assert all(float(row[3]) > 0 for row in rows)
    results = json.loads(path.read_text())
    assert all(r["backend"] == "jax" and np.isfinite(r["loss_after"]) for r in results)


def test_bench_rows_in_their_own_processes(tmp_path):
    """Two rows (two batch sizes) through child processes, plus the JSON file."""
    path = tmp_path / "rows.json"
    out = run_module("benchmarks.train_step", [*BENCH_TINY, "--batch_size=2,4", "--remat",
                                       "--precision=bfloat16", f"--json={path}"])
    check_table(out, backend="tensorflow", rows=2, remat="yes")
    rows = json.loads(path.read_text())
    assert [r["batch"] for r in rows] == [2, 4]
    assert all(r["remat"] and r["precision"] == "bfloat16" for r in rows)
    assert all(np.isfinite(r["loss_after"]) for r in rows)


def check_table(stdout, backend, rows, remat=None):
    lines = [l for l in stdout.splitlines() if l.startswith("|")]
    assert lines[0].startswith("| backend | device | batch |"), stdout
    body = lines[2:]
    assert len(body) == rows, stdout
    for line in body:
        cells = [c.strip() for c in line.strip("|").split("|")]
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        row = dict(zip(header, cells))
        assert row["backend"] == backend
        assert float(row["images/s"]) > 0
        assert row["peak memory"].split()[1] == "GiB"
        assert int(row["parameters"].replace(",", "")) > 0
        assert remat is None or row["remat"] == remat, line


def test_bench_rejects_bad_flags():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.train_step", "--precision=fp8"], cwd=ROOT,
        capture_output=True, text=True, timeout=HANG,
    )
    assert result.returncode == 2
    assert "--precision='fp8': expected one of float32, bfloat16, float16" in result.stderr
    assert "Traceback" not in result.stderr


def test_fit_mode_times_the_warm_up_and_every_repeat_inside_one_fit(monkeypatch):
    """A run trains in long fit() calls; the benchmark times its steps inside one."""
    from benchmarks import train_step
    from glow_tf.model import Glow

    calls = []
    fit = Glow.fit
    monkeypatch.setattr(Glow, "fit", lambda self, *a, **k: calls.append(1) or fit(self, *a, **k))
    args = train_step.parse_args([*BENCH_TINY, "--warmup=2", "--steps=3", "--repeats=2",
                                  "--sample_batch=0"])
    train_step._start_keras(args)
    row = train_step.run_row(args, 4, "float32")
    assert calls == [1]
    assert len(row["step_ms"]) == len(row["cpu_ms"]) == 2
    assert all(ms > 0 for ms in row["step_ms"])
    assert 0 < row["first_step_s"] <= row["step_warmup_s"]
    assert np.isfinite(row["loss_after"])


def test_paper_table_times_another_checkouts_glow_tf_with_this_benchmark(tmp_path):
    """The baseline's rows: this checkout's train_step, the baseline's glow_tf (here a copy
    of this one, which a marker file tells apart)."""
    from benchmarks import paper_table

    baseline = tmp_path / "baseline"
    shutil.copytree(ROOT / "glow_tf", baseline / "glow_tf",
                    ignore=shutil.ignore_patterns("__pycache__", "pretrained"))
    (baseline / "glow_tf" / "__init__.py").write_text(
        (ROOT / "glow_tf" / "__init__.py").read_text()
        + f"\nopen({str(tmp_path / 'imported')!r}, 'w').close()\n")
    row = paper_table.run_row(str(baseline), "tensorflow", BENCH_TINY)
    assert (tmp_path / "imported").exists()
    assert row["batch"] == 4 and np.isfinite(row["loss_after"]) and len(row["load"]) == 2

    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.paper_table", f"--baseline={baseline}",
         "--backends=tensorflow,torch"], cwd=ROOT, capture_output=True, text=True, timeout=HANG)
    assert result.returncode == 2
    assert "--backends: 'torch': expected tensorflow or jax." in result.stderr


def test_paper_table_has_a_row_for_each_code_and_flag(monkeypatch, capsys, tmp_path):
    """The paper's rows: before and new on both backends, new with --remat, and on
    TensorFlow new unrolled and both in bfloat16; each ratio against before's float32 row."""
    from benchmarks import paper_table

    (tmp_path / "glow_tf").mkdir()
    (tmp_path / "glow_tf" / "__init__.py").touch()
    timed = []

    def fake_row(root, backend, flags):
        timed.append((root == str(tmp_path), backend, flags[len(paper_table.PAPER):]))
        step = 1000.0 if root == str(tmp_path) else 500.0
        return {"step_ms_median": step, "step_ms": [step], "cpu_ms_median": step,
                "peak_memory_bytes": 2**30, "step_warmup_s": 1.0, "encode_warmup_s": 0.0,
                "decode_warmup_s": 0.0, "encode_ms_median": None, "sample_ms_median": None,
                "load": (0.0, 0.0)}

    monkeypatch.setattr(paper_table, "run_row", fake_row)
    paper_table.main([f"--baseline={tmp_path}", "--models=paper", "--no_memory_plan"])
    bf16 = ["--precision=bfloat16"]
    assert timed == [
        (True, "tensorflow", []), (False, "tensorflow", []), (False, "tensorflow", ["--remat"]),
        (False, "tensorflow", ["--loop=unrolled"]), (True, "tensorflow", bf16),
        (False, "tensorflow", bf16),
        (True, "jax", []), (False, "jax", []), (False, "jax", ["--remat"])]
    ratios = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert ratios[:5] == [
        f"- paper, batch 16, tensorflow, {label}: step {step}x, peak RSS 1.00x, warm-up 1.00x "
        "of before" for label, step in [("new", "0.50"), ("new --remat", "0.50"),
                                        ("new --loop=unrolled", "0.50"),
                                        ("before --precision=bfloat16", "1.00"),
                                        ("new --precision=bfloat16", "0.50")]]
    assert len(ratios) == 7


def test_profile_step_times_each_part_of_a_levels_template_step(monkeypatch, capsys):
    from benchmarks import profile_step
    from glow_tf import Glow, GlowConfig

    # TensorFlow's process-wide settings are for the benchmark's own process.
    monkeypatch.setattr(profile_step.runtime, "tune_tensorflow", lambda *args: None)
    profile_step.main(["--image_size=8", "--channels=1", "--k_glow=2", "--l_glow=2",
                       "--hidden_channels=8", "--batch_size=2", "--repeats=1", "--number=1"])
    rows = [line.strip("| ").split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ")]
    # A level's squeeze runs once per training step, each part of a step of flow K times.
    assert [(row[0], row[1], row[2]) for row in rows if row[1] in ("squeeze", "coupling")] == [
        ("1", "squeeze", "1"), ("1", "coupling", "2"), ("2", "squeeze", "1"),
        ("2", "coupling", "2")]
    variables = len(Glow(GlowConfig(image_shape=(8, 8, 1), k_glow=2, l_glow=2,
                                    hidden_channels=8)).trainable_variables)
    assert any(row[1].startswith(f"Adam's update of {variables} weights") for row in rows)
