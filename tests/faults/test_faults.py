"""Faults: a user's bad input, a diverged loss, a killed process. Nothing may be lost.

The command-line cases call `glow_tf.cli.train.main` in this process with freshly parsed
flags (the same path `python main.py` takes after absl parsed them) and
check the exit status, the one-line message, and that the folder tree is
byte for byte what it was. absl's own flag errors, and the kill test, run
`python main.py` in real subprocesses.
"""

import hashlib
import json
import math
import os
import pathlib
import random
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from glow_tf import DataConfig  # noqa: E402
from glow_tf.cli.settings import configs_for  # noqa: E402
from glow_tf.runs import RunDir, RunDirError, load_model, state  # noqa: E402
from glow_tf.tf import pipelines as data  # noqa: E402
from glow_tf.tf import callbacks, training  # noqa: E402
from tests.bijector_checks import to_numpy  # noqa: E402
from tests.processes import HANG, ROOT, wait_for  # noqa: E402
from tests.tiny import STEPS_PER_EPOCH, TINY_DIGITS  # noqa: E402
# A tiny model on the real digits: 1437 // 64 = 22 steps per epoch.
TINY = {**TINY_DIGITS, "epochs": 2, "backup_every": 5}


def snapshot(folder):
    """{relative path: sha256 (files) or None (folders)} of everything under folder."""
    folder = pathlib.Path(folder)
    tree = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        tree[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return tree


def tiny_configs(**changes):
    return configs_for("digits", **{**TINY, **changes})


def subprocess_env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}


# ---- main.py: a user's bad input ----


def image_folder(folder, count, mode="RGB", size=(10, 12)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "L": 1}[mode]
    for i in range(count):
        pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8).squeeze()
        Image.fromarray(pixels, mode).save(folder / f"{i:02d}.png")
    return folder


BAD_FLAGS = [
    (["--l_glow", "4"], "image_shape=(8, 8, 1): height and width must be divisible by "
                        "2**l_glow = 16 (l_glow=4)"),
    (["--img_size", "4", "--l_glow", "3"], "image_shape=(4, 4, 1): height and width must be "
                                           "divisible by 2**l_glow = 8"),
    (["--img_size", "12", "--l_glow", "3"], "image_shape=(12, 12, 1): height and width must be "
                                            "divisible by 2**l_glow = 8"),
    (["--img_size", "0"], "img_size=0: expected an integer >= 1"),
    (["--channel_size", "2"], "channel_size=2: expected 1 (grey) or 3 (RGB)"),
    (["--channel_size", "4"], "channel_size=4: expected 1 (grey) or 3 (RGB)"),
    (["--k_glow", "0"], "k_glow=0: expected an integer >= 1"),
    (["--l_glow", "0"], "l_glow=0: expected an integer >= 1"),
    (["--k_glow", "-3"], "k_glow=-3: expected an integer >= 1"),
    (["--n_bits", "0"], "n_bits=0: expected an integer in 1..8"),
    (["--n_bits", "9"], "n_bits=9: expected an integer in 1..8"),
    (["--batch_size", "0"], "batch_size=0: expected an integer >= 1"),
    (["--batch_size", "-64"], "batch_size=-64: expected an integer >= 1"),
    # Only known once the data is there, still before anything is written.
    (["--batch_size", "5000"], "The digits training split has 1437 images, fewer than one "
                               "batch (batch_size=5000); lower --batch_size"),
    (["--dataset", "folder"], "dataset='folder' needs data_dir"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_exit_with_one_line_and_write_nothing(run_main, tmp_path, argv, message):
    before = snapshot(tmp_path)
    status, error = run_main(*argv)
    assert status == 1
    assert error.startswith("main.py: error: ") and message in error, error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert snapshot(tmp_path) == before == {}


def test_bad_image_folders_exit_with_one_line_and_write_nothing(run_main, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    broken = image_folder(tmp_path / "broken", 3)
    (broken / "01.png").write_bytes(b"\x89PNG\r\n\x1a\n but then no image at all")
    one = image_folder(tmp_path / "one", 1)
    cases = [
        (tmp_path / "missing", "data_dir='{}': expected an existing folder of images"),
        (empty / "notes.txt", "data_dir='{}': expected an existing folder of images"),
        (empty, "data_dir='{}' holds no images; expected files ending in .png, .jpg"),
        (broken, f"{broken / '01.png'}: not a readable image"),
        (one, "data_dir='{}' holds 1 image, expected at least 2"),
    ]
    before = snapshot(tmp_path)
    for folder, message in cases:
        status, error = run_main("--dataset", "folder", "--data_dir", str(folder),
                                 "--img_size", "8", "--l_glow", "1", "--batch_size", "1",
                                 "--run_dir", str(tmp_path / "run"))
        assert status == 1, folder
        assert error.startswith("main.py: error: ") and message.format(folder) in error, error
        assert error.count("\n") == 1 and "Traceback" not in error
    assert snapshot(tmp_path) == before


def test_unwritable_run_folders_exit_with_one_line_and_write_nothing(run_main, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    cases = [
        (tmp_path / "a_file", "run_dir='{}' is a file; expected a folder for the run"),
        (tmp_path / "a_file" / "run", "run_dir='{}': " + f"{tmp_path / 'a_file'} is a file"),
        # No user, root included, may make folders in /proc.
        (pathlib.Path("/proc/glow_tf_run/digits"), "run_dir='{}' cannot be written"),
    ]
    before = snapshot(tmp_path)
    for run_dir, message in cases:
        status, error = run_main("--run_dir", str(run_dir), *[f"--{k}={v}" for k, v in TINY.items()])
        assert status == 1, run_dir
        assert error.startswith("main.py: error: ") and message.format(run_dir) in error, error
        assert error.count("\n") == 1 and "Traceback" not in error
    assert snapshot(tmp_path) == before
    assert not os.path.exists("/proc/glow_tf_run")


def test_a_run_folder_with_an_unreadable_config_is_refused(run_main, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"model": {"k_glow": 1,')  # not ours: we write atomically
    before = snapshot(tmp_path)
    status, error = run_main("--run_dir", str(run_dir))
    assert status == 1
    assert f"{run_dir / 'config.json'} cannot be read" in error and "--run_dir" in error
    assert snapshot(tmp_path) == before


def test_rgb_folders_convert_to_grey_and_grey_to_rgb(tmp_path):
    """channel_size is what the model gets; the data converts, so these are no mismatch."""
    rgb = image_folder(tmp_path / "rgb", 2, "RGB")
    grey = image_folder(tmp_path / "grey", 2, "L")
    for source, channels in ((rgb, 1), (grey, 3)):
        config = DataConfig("folder", img_size=8, channel_size=channels, n_bits=8,
                                 data_dir=str(source))
        image = next(data.load_split(config, "train").as_numpy_iterator())
        assert image.shape == (8, 8, channels) and image.dtype == np.uint8


def test_library_refuses_a_model_and_data_of_other_channels(tmp_path):
    model_config, data_config, training_config = tiny_configs()
    rgb_data = DataConfig("digits", img_size=8, channel_size=3, n_bits=4)
    with pytest.raises(ValueError, match=r"The model expects images of shape \(8, 8, 1\) but "
                                         r"the data config gives \(8, 8, 3\)"):
        training.train_and_evaluate(model_config, rgb_data, training_config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_run_dir_check_writes_nothing(tmp_path):
    run = RunDir(tmp_path / "deep" / "run")
    run.check({"model": {}})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RunDirError, match="cannot be written"):
        RunDir("/proc/glow_tf_run").check({})


def test_absl_flag_errors_name_the_choices_without_a_traceback(tmp_path):
    """Flag parsing fails in absl before main(); as a real process."""
    commands = {
        "dataset": ["--dataset", "imagenet"],
        "integer": ["--k_glow", "two"],
    }
    processes = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), *argv, "--run_dir", str(tmp_path / name)],
            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for name, argv in commands.items()
    }
    outputs = {name: p.communicate(timeout=HANG) for name, p in processes.items()}
    for name, process in processes.items():
        _, error = outputs[name]
        assert process.returncode == 1, error
        assert "Traceback" not in error
        # One line of ours (TensorFlow may log its start-up before it).
        assert error.splitlines()[-1].startswith("main.py: error: flag --"), error
    assert ("flag --dataset=imagenet: value should be one of <digits|mnist|fashion_mnist|"
            "cifar10|cifar100|svhn|celeba|imagenet32|imagenet64|folder>") in outputs["dataset"][1]
    assert "flag --k_glow=two: invalid literal for int()" in outputs["integer"][1]
    assert list(tmp_path.iterdir()) == []


# ---- numerical faults ----


class PoisonOptimizer(keras.callbacks.Callback):
    """Before step `at_step`, sets the optimizer's momentums to NaN.

    That step's loss is still finite (computed before the update), but its
    update makes every weight NaN: the case a loss check alone misses.
    Snapshots the run folder just before, to compare with what is left.
    """

    def __init__(self, at_step, run_dir):
        super().__init__()
        self.at_step, self.run_dir, self.before = at_step, run_dir, None

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) + 1 == self.at_step:
            self.before = snapshot(self.run_dir)
            for variable in self.model.optimizer.variables:
                if variable.path.endswith("_momentum"):
                    variable.assign(np.full(variable.shape, np.nan, variable.dtype))


@pytest.mark.slow
def test_divergence_stops_names_the_step_and_keeps_the_last_finite_files(tmp_path, monkeypatch):
    # The Keras weights files are written when training stops, not also after
    # epoch 1 on a machine slow enough to take KERAS_WEIGHTS_EVERY seconds.
    monkeypatch.setattr(callbacks, "KERAS_WEIGHTS_EVERY", math.inf)
    configs = tiny_configs(epochs=2)
    # Step 32 is the 10th of the second epoch, when a backup is due (every 5).
    poison = PoisonOptimizer(32, tmp_path)
    with pytest.raises(training.TrainingDiverged) as error:
        training.train_and_evaluate(*configs, tmp_path, callbacks=[poison], verbose=0)
    assert str(error.value) == (
        f"Training diverged: the loss became nan at step 33 (epoch 2). {tmp_path} keeps "
        "the last finite weights: newest of epoch 1, best of epoch 1. The same command "
        "with a lower --lr or with --clipnorm resumes from the backup of step 27."
    )
    # Nothing was backed up after the poisoned update: not the backup due at
    # step 32 (its loss was finite, its weights were not). The Keras weights
    # files, written when training stopped, hold epoch 1's weights.
    after = snapshot(tmp_path)
    changed = {k for k in set(after) | set(poison.before)
               if after.get(k) != poison.before.get(k) and not k.startswith("logs")}
    assert changed == {"newest.weights.h5", "best.weights.h5"}
    epoch_1 = state.read(tmp_path / "backup" / "best.npz")[1]
    for which in ("newest", "best"):
        loaded = load_model(tmp_path, which=which).model
        for variable, value in zip(loaded.weights, epoch_1):
            np.testing.assert_array_equal(to_numpy(variable), value, err_msg=variable.path)

    # The same command resumes from the backup of step 27 and completes.
    _, metrics = training.train_and_evaluate(*configs, tmp_path, verbose=0)
    assert metrics["finished"] and metrics["steps"] == 2 * STEPS_PER_EPOCH
    assert np.isfinite(metrics["test_bits_per_dim"])


@pytest.mark.slow
def test_a_huge_learning_rate_exits_with_the_step_from_main(run_main, tmp_path):
    run_dir = tmp_path / "run"
    status, error = run_main("--run_dir", str(run_dir), "--lr", "1e6", "--warmup", "0",
                             *[f"--{k}={v}" for k, v in TINY.items() if k != "warmup"])
    assert status == 1 and "Traceback" not in error and error.count("\n") == 1
    assert error.startswith("main.py: error: Training diverged: the loss became ")
    step = int(error.split(" at step ")[1].split()[0])
    assert 1 <= step <= STEPS_PER_EPOCH and "(epoch 1)" in error
    assert "has no weights of a finished epoch yet" in error
    assert not (run_dir / "newest.weights.h5").exists()
    backup = run_dir / "backup" / "state.npz"
    if step > TINY["backup_every"]:
        # A backup was taken before the loss broke: it must hold finite weights.
        _, weights, optimizer = state.read(backup)
        assert all(np.all(np.isfinite(w)) for w in weights + optimizer if w.dtype.kind == "f")


# ---- a real process, SIGKILLed at random points ----


# The Polyak average spans a quarter epoch: the preset's 3 epochs would
# still hold much of the untrained weights at the end of this short run.
KILL_ARGS = ["--k_glow", "2", "--l_glow", "1", "--hidden_channels", "8", "--epochs", "3",
             "--backup_every", "2", "--n_init", "64", "--polyak_epochs", "0.25"]


def check_weights_files(run_dir, test_images):
    """Every weights file in the run folder loads into a Glow and scores finite bits/dim."""
    from glow_tf import Glow, GlowConfig

    checked = []
    files = {"newest": run_dir / "newest.weights.h5", "best": run_dir / "best.weights.h5",
             "backup": run_dir / "backup" / "state.npz"}
    for which, path in files.items():
        if path.exists():
            model = Glow(GlowConfig.from_dict(RunDir(run_dir).read_config()["model"]))
            if which == "backup":
                state.restore(path, model)
            else:
                model.load_weights(path)
            assert np.all(np.isfinite(to_numpy(model.bits_per_dim(test_images, seed=0)))), which
            checked.append(which)
    return checked


def written_since(path, mtime):
    """Whether `path` was written after `mtime` (ns); a file is replaced whole, never edited."""
    return path.exists() and path.stat().st_mtime_ns > mtime


def mtime(path):
    return path.stat().st_mtime_ns if path.exists() else 0


def kill_moment(rng, process, run_dir, log, before):
    """Waits for a random moment of this process's training; says which.

    `before`: the backup's mtime before the process started.

    Right after one of its next backups, while a backup is written (its
    temp file seen; else the next backup), or as an epoch ends (its
    metrics.json written, the backup and weights files to follow). Each
    comes within an epoch of the last backup, so no process nears the end
    of the run, however fast the machine.
    """
    backup, metrics = run_dir / "backup" / "state.npz", run_dir / "metrics.json"
    wait_for(lambda: written_since(backup, before), "its first backup", process, log)
    first = mtime(backup)
    kind = rng.choice(["after a backup", "during a backup", "as an epoch ends"])
    if kind == "after a backup":
        for _ in range(rng.randint(1, 3)):
            since = mtime(backup)
            wait_for(lambda: written_since(backup, since), "a backup", process, log)
    elif kind == "during a backup":
        wait_for(lambda: written_since(backup, first) or any(
            p.name.startswith(".state.npz.") for p in backup.parent.iterdir()),
            "a backup's temp file", process, log)
    else:
        since = mtime(metrics)
        wait_for(lambda: written_since(metrics, since), "an epoch's metrics.json", process, log)
    return kind


@pytest.mark.slow
def test_sigkill_at_random_points_then_the_run_resumes_and_completes(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "main.py"), *KILL_ARGS, "--run_dir", str(run_dir)]
    metadata = run_dir / "backup" / "state.npz"
    test_images = data.take_images(data.load_split(DataConfig("digits"), "test"), 16)
    rng = random.Random()
    history = []
    for kill in range(3):
        log, before = tmp_path / f"session_{kill}.log", mtime(metadata)
        with open(log, "w") as stderr:
            process = subprocess.Popen(command, cwd=ROOT, env=subprocess_env(),
                                       stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                kind = kill_moment(rng, process, run_dir, log, before)
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=HANG)
            finally:
                if process.poll() is None:
                    process.kill()
        history.append(f"kill {kill} {kind}: the backup holds step "
                       f"{state.read(metadata)[0]['step']}")
        assert process.returncode == -signal.SIGKILL, f"finished before the kill: {history}"
        assert check_weights_files(run_dir, test_images)[-1] == "backup", history

    final = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True,
                           text=True, timeout=HANG)
    assert final.returncode == 0, final.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] and metrics["epochs_completed"] == 3, history
    assert metrics["steps"] == 3 * STEPS_PER_EPOCH, history
    assert np.isfinite(metrics["test_bits_per_dim"]) and metrics["test_bits_per_dim"] < 4.0
    assert check_weights_files(run_dir, test_images) == ["newest", "best", "backup"]
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name], "a temp file was left"
