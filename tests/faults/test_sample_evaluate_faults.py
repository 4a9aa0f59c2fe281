"""sample.py and evaluate.py on bad input: a one-line error, exit status 1, no file touched."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

from glow_tf.cli import evaluate, sample  # noqa: E402
from glow_tf.runs import shipped_runs  # noqa: E402
from tests.commands import flag_values, program_of  # noqa: E402
from tests.processes import HANG  # noqa: E402
from tests.tiny_runs import make_run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two initialised (untrained) run folders of different widths."""
    root = tmp_path_factory.mktemp("runs")
    make_run(root / "narrow", epochs=0)
    make_run(root / "wide", epochs=0, hidden_channels=16)
    return root


def snapshot(*folders):
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for folder in folders for path in folder.rglob("*")
    }


def expect_failure(module, args, message, monkeypatch, capsys, *watched):
    before = snapshot(*watched)
    values = flag_values(module, *args)
    with pytest.raises(SystemExit) as exit_info:
        module.main([program_of(module)], values)
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"{program_of(module)}: error: ")
    assert message in captured.err, captured.err
    assert "Traceback" not in captured.err
    # Nothing printed but the lines of the phases that had started ("Building the model ...").
    assert all(line.endswith(" ...") for line in captured.out.splitlines()), captured.out
    assert snapshot(*watched) == before, "a file was created or changed"


@pytest.mark.parametrize("module", [sample, evaluate])
def test_bad_weights_files(runs, module, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    narrow = runs / "narrow"
    data = (narrow / "newest.weights.h5").read_bytes()
    (tmp_path / "truncated.weights.h5").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.weights.h5").write_text("not weights")
    cases = [
        (["--weights", "missing.weights.h5"], "weights='missing.weights.h5': no such file"),
        (["--weights", "truncated.weights.h5", "--k_glow", "1", "--l_glow", "2", "--hidden_channels", "8",
          "--img_size", "8", "--channel_size", "1", "--n_bits", "4"],
         "weights='truncated.weights.h5': the HDF5 file cannot be read"),
        (["--weights", "notes.weights.h5"], "weights='notes.weights.h5': not an HDF5 file"),
        (["--weights", str(narrow / "newest.weights.h5"), "--k_glow", "2"],
         f"k_glow: 1 in {narrow / 'config.json'}, 2 from --k_glow"),
        # Weights of the wide run with the narrow run's config: name the difference.
        (["--run_dir", str(narrow), "--weights", str(runs / "wide" / "newest.weights.h5")],
         f"hidden_channels: 8 in {narrow}, 16 beside the weights"),
        (["--run_dir", str(tmp_path)], "no config.json there"),
    ]
    for args, message in cases:
        expect_failure(module, args, message, monkeypatch, capsys, tmp_path, runs)


def test_a_lone_weights_file_of_another_architecture(runs, tmp_path, monkeypatch, capsys):
    lone = tmp_path / "lone.weights.h5"
    lone.write_bytes((runs / "wide" / "newest.weights.h5").read_bytes())
    expect_failure(
        sample, ["--weights", str(lone), "--k_glow", "1", "--l_glow", "2", "--hidden_channels", "8",
                 "--out", str(tmp_path / "x.png")],
        f"weights='{lone}' do not fit the model (image_shape=(8, 8, 1), k_glow=1, l_glow=2, "
        "hidden_channels=8", monkeypatch, capsys, tmp_path, runs,
    )


def test_bad_sampling_options(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = ["--run_dir", str(runs / "narrow")]
    for args, message in [
        (["--temp", "-0.5"], "--temp=-0.5: expected a temperature >= 0"),
        (["--n", "0"], "--n=0: expected a number of images >= 1"),
        (["--out", "grid.jpg"], "--out='grid.jpg': expected a file name ending in .png"),
        (["--label", "3"], "--label=3: this model is unconditional"),
    ]:
        expect_failure(sample, run + args, message, monkeypatch, capsys, tmp_path, runs)


def test_a_run_that_is_neither_a_folder_nor_shipped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    expect_failure(sample, ["--run_dir", "no-such-run"],
                   "run_dir='no-such-run': no such folder, nor a run shipped with glow_tf; the "
                   f"shipped runs are {', '.join(shipped_runs())}", monkeypatch, capsys, tmp_path)


def test_bad_evaluation_options(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = ["--run_dir", str(runs / "narrow")]
    for args, message in [
        (["--batch_size", "0"], "--batch_size=0: expected an integer >= 1"),
        (["--ood_transform", "invert"], "--ood_transform and --ood_data_dir need --ood_dataset"),
        (["--ood_dataset", "folder"], "dataset='folder' needs data_dir"),
        (["--ood_dataset", "folder", "--ood_data_dir", str(tmp_path)], "holds no images"),
    ]:
        expect_failure(evaluate, run + args, message, monkeypatch, capsys, tmp_path, runs)


@pytest.mark.slow
def test_real_command_lines(runs, tmp_path):
    """The scripts as users run them: a picture, and absl's own error for a bad --mode."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
    out = tmp_path / "grid.png"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "sample.py"), "--run_dir", str(runs / "narrow"),
         "--n", "4", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(out) and out.is_file()

    before = snapshot(tmp_path, runs)
    failed = subprocess.run(
        [sys.executable, os.path.join(ROOT, "sample.py"), "--run_dir", str(runs / "narrow"),
         "--mode", "zoom"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG,
    )
    assert failed.returncode != 0
    assert "--mode=zoom: value should be one of <samples|temperatures|interpolate|reconstruct|manipulate>" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert snapshot(tmp_path, runs) == before
