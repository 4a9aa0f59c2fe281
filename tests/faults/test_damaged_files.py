"""A truncated or garbled file of a run folder, under main.py, sample.py and evaluate.py: one
line naming the file and what to do, exit status 1, and nothing else in the folder touched."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from glow_tf.cli import evaluate, sample, train  # noqa: E402
from glow_tf.runs import load_model, state  # noqa: E402
from tests.commands import flag_values, program_of  # noqa: E402
from tests.faults.test_faults import snapshot  # noqa: E402
from tests.tiny_runs import TRAIN_TINY_ARGS as TINY_ARGS  # noqa: E402


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def run_tool(module, capsys, *args):
    """(exit status, stderr, stdout) of the tool's main with args."""
    capsys.readouterr()
    try:
        module.main([program_of(module)], flag_values(module, *args))
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.err, captured.out


def expect_line(result, program, line):
    status, error, _ = result
    assert status == 1, error
    assert error == f"{program}: error: {line}\n", error


@pytest.mark.slow
def test_main_py_with_a_truncated_backup(run, capsys):
    backup = run / "backup" / "state.npz"
    truncate(backup)
    before = snapshot(run)
    status, error, _ = run_tool(train, capsys, *TINY_ARGS, "--epochs=2", f"--run_dir={run}")
    assert status == 1 and error.count("\n") == 1, error
    assert error.startswith(f"main.py: error: {backup} cannot be read: it is truncated or "
                            "damaged (BadZipFile: "), error
    assert error.endswith(
        "It is the state this run resumes from: move it away, and the same command starts the "
        "run over.\n"), error
    assert {k: v for k, v in snapshot(run).items() if not k.startswith("logs")} == \
        {k: v for k, v in before.items() if not k.startswith("logs")}


def test_main_py_with_a_truncated_best_state(run, capsys):
    best = run / "backup" / "best.npz"
    truncate(best)
    status, error, _ = run_tool(train, capsys, *TINY_ARGS, "--epochs=2", f"--run_dir={run}")
    assert status == 1 and error.count("\n") == 1, error
    assert error.startswith(f"main.py: error: {best} cannot be read: it is truncated"), error
    assert error.endswith(
        "It holds the weights of the best epoch so far: move it away, and the same command "
        "resumes the run without them (best.weights.h5 keeps the best weights written "
        "before).\n"), error


def test_main_py_with_an_empty_metrics_file(run, capsys):
    (run / "metrics.json").write_text("")
    before = snapshot(run)
    result = run_tool(train, capsys, *TINY_ARGS, f"--run_dir={run}")
    expect_line(result, "main.py", (
        f"{run / 'metrics.json'} cannot be read (JSONDecodeError('Expecting value: line 1 "
        "column 1 (char 0)')): it is truncated or not main.py's. Move it away; the run resumes "
        "from its backup without it (the record of the best epoch starts again)."))
    assert snapshot(run) == before


def test_main_py_with_a_truncated_newest_weights_file_then_without_it(run, capsys):
    newest = run / "newest.weights.h5"
    truncate(newest)
    before = snapshot(run)
    status, error, _ = run_tool(train, capsys, *TINY_ARGS, f"--run_dir={run}")
    assert status == 1 and error.count("\n") == 1, error
    assert error.startswith(f"main.py: error: weights='{newest}': the HDF5 file cannot be "
                            "read ("), error
    assert error.endswith(
        f"it may be truncated or corrupt. Delete it and rerun main.py with --run_dir {run}: the "
        "run writes it again from its backup.\n"), error
    assert snapshot(run) == before

    # As the message says: delete it, and the same command writes it again.
    newest.unlink()
    status, error, out = run_tool(train, capsys, *TINY_ARGS, f"--run_dir={run}")
    assert status == 0, error
    assert f"{newest} was missing: written again from {run / 'backup' / 'state.npz'}." in out
    _, values, _ = state.read(run / "backup" / "state.npz")
    for variable, value in zip(load_model(run).model.weights, values):
        np.testing.assert_array_equal(np.asarray(variable.numpy()), value)


@pytest.mark.parametrize("module", [sample, evaluate])
def test_sample_and_evaluate_name_a_damaged_file_and_what_to_do(run, module, capsys):
    program = program_of(module)
    newest = run / "newest.weights.h5"
    good = newest.read_bytes()
    truncate(newest)
    status, error, _ = run_tool(module, capsys, f"--run_dir={run}")
    assert status == 1 and error.count("\n") == 1, error
    assert error.startswith(f"{program}: error: weights='{newest}': the HDF5 file cannot be "
                            "read ("), error
    assert error.endswith(f"Delete it and rerun main.py with --run_dir {run}: the run writes it "
                          "again from its backup.\n"), error

    newest.write_bytes(good)
    best = run / "best.weights.h5"
    truncate(best)
    status, error, _ = run_tool(module, capsys, f"--run_dir={run}", "--which=best")
    assert status == 1 and error.endswith(
        "Restore it from a copy, or use the run's newest weights (--which newest).\n"), error

    config = run / "config.json"
    good_config = config.read_text()
    config.write_text("garbage")
    result = run_tool(module, capsys, f"--run_dir={run}")
    expect_line(result, program, (
        f"{config} cannot be read (JSONDecodeError('Expecting value: line 1 column 1 (char "
        "0)')); expected the config.json that main.py wrote. Restore it from a copy, or give "
        "the weights file alone (--weights) with the architecture it was trained with."))
    config.write_text(good_config)

    if module is evaluate:  # sample.py does not read metrics.json
        (run / "metrics.json").write_text('{"epochs": ')
        status, error, out = run_tool(module, capsys, f"--run_dir={run}", "--max_images=64")
        assert status == 1 and error.count("\n") == 1, error
        assert error.startswith(f"{program}: error: {run / 'metrics.json'} cannot be read ("), error
        assert "bits/dim" not in out, out  # no score printed before the error
