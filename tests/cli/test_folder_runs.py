"""main.py, evaluate.py and sample.py on an image folder with train/ and test/ class folders."""

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from glow_tf.cli import evaluate, sample, train  # noqa: E402
from tests.commands import run_cli  # noqa: E402
from tests.tiny_runs import TINY  # noqa: E402


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """train/ (16 dark, 16 light) and test/ (3 dark, 2 light) 8x8 RGB images in class folders."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, counts in (("train", (16, 16)), ("test", (3, 2))):
        for name, count, low in (("dark", counts[0], 0), ("light", counts[1], 128)):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(low, low + 128, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(photos, tmp_path_factory):
    """A one-epoch main.py run on the folder, and what main.py printed."""
    run_dir = tmp_path_factory.mktemp("runs") / "photos"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        run_cli(train, "--dataset", "folder", "--data_dir", str(photos), "--img_size", "8",
                *[f"--{k}={v}" for k, v in {**TINY, "n_init": 16, "batch_size": 8}.items()],
                "--run_dir", str(run_dir))
    return run_dir, stdout.getvalue().splitlines()


@pytest.mark.slow
def test_main_trains_on_train_and_prints_what_it_found(photos, folder_run):
    run_dir, lines = folder_run
    assert [line for line in lines if line.startswith("Image folder")] == [
        f"Image folder {photos}: 32 training images (train/), 5 test images (test/), "
        "2 classes (dark, light); resized to 8x8 RGB."
    ], lines
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 4  # 32 training images in batches of 8
    assert np.isfinite(metrics["test_bits_per_dim"])


def test_evaluate_scores_the_folders_test_split(folder_run, capsys):
    run_cli(evaluate, "--run_dir", str(folder_run[0]))
    assert "Test bits/dim on folder (5 images): " in capsys.readouterr().out


def test_sample_moves_test_images_along_a_class_direction(folder_run, tmp_path, capsys):
    out = tmp_path / "light.png"
    run_cli(sample, "--run_dir", str(folder_run[0]), "--mode", "manipulate", "--attribute",
            "light", "--n", "2", "--scales", "-1,0,1", "--out", str(out))
    assert capsys.readouterr().out.splitlines()[-1] == str(out)
    picture = np.asarray(Image.open(out))
    # 2 rows of 3 cells, each 8x8 enlarged 4x, 4 pixels apart.
    assert picture.shape == (2 * 32 + 4, 3 * 32 + 2 * 4, 3)
    with pytest.raises(SystemExit):
        run_cli(sample, "--run_dir", str(folder_run[0]), "--mode", "manipulate",
                "--attribute", "cat", "--out", str(tmp_path / "cat.png"))
    assert "--attribute='cat': expected one of dark, light" in capsys.readouterr().err
