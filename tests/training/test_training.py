"""Training into a run folder: its contents, TensorBoard, resuming."""

import json
import math
import os
import re

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from glow_tf import DataConfig, Glow, GlowConfig, TrainingConfig, quantization  # noqa: E402
from glow_tf.cli.settings import configs_for  # noqa: E402
from glow_tf.runs import RunDir, RunDirMismatchError, files, load_model, state  # noqa: E402
from glow_tf.runs.files import atomic_write  # noqa: E402
from glow_tf.tf import pipelines as data  # noqa: E402
from glow_tf.tf import callbacks, training  # noqa: E402
from glow_tf.tf.schedules import LinearWarmup  # noqa: E402
from tests.bijector_checks import randomize_weights, to_numpy  # noqa: E402
from tests.events import read_events  # noqa: E402
from tests.tiny import TINY_DIGITS  # noqa: E402

# A tiny model on the real digits: 1437 // 64 = 22 steps per epoch. These
# runs keep the raw weights: an average over an epoch would still hold much
# of the untrained weights after two (test_polyak.py trains with averages).
TINY = {**TINY_DIGITS, "epochs": 2, "backup_every": 5, "polyak": False}


def tiny_configs(**changes):
    return configs_for("digits", **{**TINY, **changes})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    model, metrics = training.train_and_evaluate(*tiny_configs(), run_dir, verbose=0)
    return run_dir, model, metrics


@pytest.mark.slow
def test_run_folder_holds_everything(finished_run):
    run_dir, _, metrics = finished_run
    for name in ("config.json", "metrics.json", "newest.weights.h5", "best.weights.h5",
                 "backup/state.npz", "backup/best.npz"):
        assert (run_dir / name).is_file(), name
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name], "a temp file was left"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["k_glow"] == 1 and config["model"]["image_shape"] == [8, 8, 1]
    assert config["data"] == {"dataset": "digits", "img_size": 8, "channel_size": 1,
                              "n_bits": 4, "data_dir": None, "augment": False}
    assert config["training"]["epochs"] == 2
    stored = json.loads((run_dir / "metrics.json").read_text())
    assert stored == metrics
    assert stored["finished"] and stored["epochs_completed"] == 2 and stored["steps"] == 44
    # The tiny model learns something within 44 steps: below the 4 bits of
    # an untrained, uniform model.
    assert 2.0 < stored["test_bits_per_dim"] < 4.0
    assert stored["best_test_bits_per_dim"] <= stored["test_bits_per_dim"] + 0.05


@pytest.mark.slow
def test_weights_reload_to_the_same_log_prob(finished_run):
    run_dir, model, metrics = finished_run
    images = data.take_images(data.load_split(DataConfig("digits"), "test"), 8)
    floats = quantization.dequantize(images, 4, seed=1)
    newest = load_model(run_dir, which="newest").model
    np.testing.assert_array_equal(to_numpy(newest.log_prob(floats)), to_numpy(model.log_prob(floats)))
    assert newest.initialized
    best = load_model(run_dir, which="best").model
    if metrics["best_epoch"] == metrics["epochs_completed"]:
        np.testing.assert_array_equal(to_numpy(best.log_prob(floats)), to_numpy(model.log_prob(floats)))
    else:
        assert np.all(np.isfinite(to_numpy(best.log_prob(floats))))


def test_tensorboard_holds_losses_latent_statistics_and_images(finished_run):
    run_dir, model, _ = finished_run
    events = read_events(run_dir / "logs")
    for tag in ("train/epoch_loss", "validation/epoch_loss", "train/epoch_learning_rate"):
        assert [step for step, _ in events[tag]] == [0, 1], tag
    # Warmup of half an epoch (11 steps) is over after each epoch.
    np.testing.assert_allclose([v for _, v in events["train/epoch_learning_rate"]],
                               tiny_configs()[2].lr)
    for level in (1, 2):
        means = [float(v) for _, v in events[f"glow/z/level_{level}/mean"]]
        variances = [float(v) for _, v in events[f"glow/z/level_{level}/variance"]]
        assert len(means) == len(variances) == 2
        assert all(abs(m) < 2 for m in means) and all(0 < v < 10 for v in variances)
    # The last epoch's values are those of the final model on the test split,
    # dequantised as the test pass does: batches of 64, the last one padded,
    # noise from a generator of the run's seed (0).
    generator = keras.random.SeedGenerator(0)
    zs, bpd = [[], []], []
    for batch in data.load_split(DataConfig("digits"), "test").batch(64).as_numpy_iterator():
        n = len(batch)
        padded = np.concatenate([batch, np.repeat(batch[-1:], 64 - n, axis=0)])
        x = quantization.dequantize(padded, 4, seed=generator)
        for level, z in enumerate(model.encode(x)[0]):
            zs[level].append(to_numpy(z)[:n].astype(np.float64))
        bpd.append(to_numpy(model.log_prob(x))[:n])
    for level, z in enumerate(zs, start=1):
        z = np.concatenate(z)
        assert len(z) == 360
        np.testing.assert_allclose(float(events[f"glow/z/level_{level}/mean"][-1][1]), z.mean(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(float(events[f"glow/z/level_{level}/variance"][-1][1]), z.var(), rtol=1e-4)
    # The test loss is the bits/dim of the same pass: the bin term of 4 bits
    # less log p(x) / (64 log 2) per image.
    expected = np.mean(4.0 - np.concatenate(bpd) / (64 * np.log(2.0)))
    assert float(events["validation/epoch_loss"][-1][1]) == pytest.approx(expected, abs=1e-5)
    (step, samples), = events["glow/samples/temperature_0.7"][-1:]
    assert step == 1 and samples.shape == (4 * 9 - 1, 4 * 9 - 1, 1) and samples.std() > 0
    _, grid = events["glow/reconstructions"][-1]
    assert grid.shape == (2 * 9 - 1, 8 * 9 - 1, 1)
    # The lower row (reconstructions) repeats the upper row (originals).
    np.testing.assert_array_equal(grid[:8], grid[9:])
    assert float(events["glow/reconstructions/max_abs_error"][-1][1]) < 1e-3


def test_rerunning_a_finished_run_changes_nothing(finished_run, capsys):
    run_dir, model, metrics = finished_run
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    again = training.train_and_evaluate(*tiny_configs(), run_dir, verbose=0)
    assert again.metrics == metrics
    assert again.summary == (f"{run_dir} finished 2 epochs already: test bits/dim "
                             f"{metrics['test_bits_per_dim']:.4f}. Nothing to do.")
    assert capsys.readouterr().out == ""  # the library returns the line; main.py prints it
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before


def test_other_hyperparameters_in_the_same_folder_are_refused(finished_run):
    run_dir, _, _ = finished_run
    with pytest.raises(RunDirMismatchError) as error:
        training.train_and_evaluate(*tiny_configs(hidden_channels=16, warmup=1.0), run_dir, verbose=0)
    message = str(error.value)
    assert "model.hidden_channels: 8 in the run folder, 16 now" in message
    assert "training.warmup: 0.5 in the run folder, 1.0 now" in message
    assert "--run_dir" in message


class Interrupt(keras.callbacks.Callback):
    """Stands for a crash: raises after `at_step` training steps of this fit() call."""

    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at_step:
            raise KeyboardInterrupt("simulated crash")


class Record(keras.callbacks.Callback):
    """Notes the step and epoch a fit() call starts from (after BackupAndRestore)."""

    def on_train_begin(self, logs=None):
        self.start_step = int(self.model.optimizer.iterations.numpy())
        self.epochs, self.steps_in_epoch = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.steps_in_epoch.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps_in_epoch[-1] += 1


@pytest.mark.slow
def test_interrupted_run_resumes_mid_epoch_without_a_second_init(tmp_path, monkeypatch):
    calls = []
    original = Glow.initialize
    monkeypatch.setattr(Glow, "initialize", lambda self, images: calls.append(len(images)) or original(self, images))
    configs = tiny_configs(epochs=3)
    # 22 steps per epoch; crash at step 33, in the middle of the second epoch.
    with pytest.raises(KeyboardInterrupt):
        training.train_and_evaluate(*configs, tmp_path, callbacks=[Interrupt(33)], verbose=0)
    assert calls == [64]
    # Backups after steps 5, 10, 15, 20, 22 (end of epoch 1), 27, 32: the
    # last one after batch 9 (0-based) of the second epoch.
    assert state.read(tmp_path / "backup" / "state.npz")[0]["step"] == 32
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs_completed"] == 1

    record = Record()
    _, metrics = training.train_and_evaluate(*configs, tmp_path, callbacks=[record], verbose=0)
    assert calls == [64], "a resumed run must not initialise again"
    assert record.start_step == 32 and record.epochs == [1, 2]
    # The rest of the second epoch (12 steps), then the third: the same step
    # count as an uninterrupted run.
    assert record.steps_in_epoch == [12, 22]
    assert metrics["finished"] and metrics["epochs_completed"] == 3
    assert metrics["steps"] == 3 * 22
    assert metrics["test_bits_per_dim"] < 4.0


@pytest.mark.slow
def test_a_run_traces_each_function_once_and_writes_keras_files_at_its_end(tmp_path, monkeypatch):
    traces, states, keras_files = [], [], []
    train_step, write_state, save_weights = Glow.train_step, state.write, files.save_weights
    # Called once per trace of the compiled step.
    monkeypatch.setattr(Glow, "train_step", lambda self, data: traces.append(1) or train_step(self, data))
    monkeypatch.setattr(state, "write", lambda path, *args, **kwargs: (
        states.append(os.path.basename(path)) or write_state(path, *args, **kwargs)))
    monkeypatch.setattr(files, "save_weights", lambda model, path: (
        keras_files.append(os.path.basename(path)) or save_weights(model, path)))
    monkeypatch.setattr(callbacks, "KERAS_WEIGHTS_EVERY", math.inf)
    model, metrics = training.train_and_evaluate(
        *tiny_configs(epochs=2, backup_every=11), tmp_path, verbose=0)
    # The optimizer is built before fit: a step whose first trace created its
    # slot variables would be traced twice (minutes for a deep Glow). The
    # test passes, the summaries and the final score share one compiled
    # encode and one decode, each traced once for the whole run.
    assert len(traces) == 1, traces
    assert model.traces == {"encode": 1, "decode": 1}
    # Backups after steps 11 and 33, and at each epoch's end (22, 44), where
    # none is written for the step itself; best.npz when the test improves.
    assert [name for name in states if name == "state.npz"] == ["state.npz"] * 4
    assert set(states) - {"state.npz"} <= {"best.npz"}
    assert state.read(tmp_path / "backup" / "state.npz")[0]["step"] == 44
    # The Keras weights files once, at the end; best is a copy when it is newest.
    expected = ["newest.weights.h5"] + (
        [] if metrics["best_epoch"] == 2 else ["best.weights.h5"])
    assert keras_files == expected


@pytest.mark.slow
def test_keras_weights_files_hold_the_newest_and_the_best_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "KERAS_WEIGHTS_EVERY", 0.0)  # after every epoch
    model, metrics = training.train_and_evaluate(*tiny_configs(epochs=2), tmp_path, verbose=0)
    best = state.read(tmp_path / "backup" / "best.npz")[1]
    newest = load_model(tmp_path, which="newest").model
    for loaded, expected in ((newest, [to_numpy(v) for v in model.weights]),
                             (load_model(tmp_path, which="best").model, best)):
        for variable, value in zip(loaded.weights, expected):
            np.testing.assert_array_equal(to_numpy(variable), value, err_msg=variable.path)


@pytest.mark.slow
def test_more_epochs_continue_a_finished_run(tmp_path):
    training.train_and_evaluate(*tiny_configs(epochs=1), tmp_path, verbose=0)
    record = Record()
    _, metrics = training.train_and_evaluate(*tiny_configs(epochs=2), tmp_path, callbacks=[record], verbose=0)
    assert record.start_step == 22 and record.epochs == [1]
    assert metrics["epochs_completed"] == 2 and metrics["steps"] == 44
    assert json.loads((tmp_path / "config.json").read_text())["training"]["epochs"] == 2


# ---- pieces ----


def test_linear_warmup():
    schedule = LinearWarmup(1e-3, warmup_steps=4)
    values = [float(schedule(step)) for step in range(6)]
    np.testing.assert_allclose(values, [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3], rtol=1e-6)
    assert float(LinearWarmup(1e-3, 0)(0)) == pytest.approx(1e-3)
    assert LinearWarmup.from_config(schedule.get_config()).warmup_steps == 4


def test_optimizer_choice_and_clipping():
    config = TrainingConfig(optimizer="adam", clipnorm=1.5, lr=3e-4, warmup=2)
    optimizer = training.make_optimizer(config, steps_per_epoch=10)
    assert isinstance(optimizer, keras.optimizers.Adam) and optimizer.clipnorm == 1.5
    assert optimizer.learning_rate.numpy() == pytest.approx(3e-4 / 20)
    assert isinstance(training.make_optimizer(TrainingConfig(), 10), keras.optimizers.Adamax)


def test_weight_decay_shrinks_the_kernels_only():
    model = Glow(GlowConfig(image_shape=(4, 4, 2), k_glow=1, l_glow=2, hidden_channels=4, seed=0))
    randomize_weights(model, stddev=0.1)
    config = TrainingConfig(lr=0.1, warmup=0, weight_decay=2.0)
    optimizer = training.make_optimizer(config, steps_per_epoch=1, model=model)
    before = {v.path: to_numpy(v) for v in model.trainable_variables}
    # Zero gradients: any change is the decay, w -= lr * weight_decay * w.
    optimizer.apply([keras.ops.zeros_like(v) for v in model.trainable_variables],
                    model.trainable_variables)
    kernels = {v.path for v in model.trainable_variables if re.split("[/.]", v.path)[-1] == "kernel"}
    assert len(kernels) == 2 * 3 + 1  # conv_in, conv_hidden, conv_out per coupling; the split prior
    for v in model.trainable_variables:
        expected = before[v.path] * (0.8 if v.path in kernels else 1.0)
        np.testing.assert_allclose(to_numpy(v), expected, rtol=1e-6, err_msg=v.path)
    with pytest.raises(ValueError, match="weight_decay needs the model"):
        training.make_optimizer(config, steps_per_epoch=1)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"optimizer": "sgd"}, "optimizer='sgd': expected one of adamax, adam"),
        ({"lr": 0.0}, "lr=0.0: expected a learning rate > 0"),
        ({"warmup": -1}, "warmup=-1: expected a number of epochs >= 0"),
        ({"clipnorm": -1.0}, "clipnorm=-1.0"),
        ({"weight_decay": -0.1}, "weight_decay=-0.1: expected a number >= 0"),
        ({"batch_size": 0}, "batch_size=0: expected an integer >= 1"),
    ],
)
def test_bad_training_config_names_the_value(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**fields)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def fail(temp):
        with open(temp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_written_files_get_ordinary_permissions(tmp_path):
    atomic_write(tmp_path / "a.json", lambda temp: open(temp, "w").close())
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_killed_writers_temp_files_are_removed_on_the_next_start(tmp_path):
    (tmp_path / "backup").mkdir()
    stale = [tmp_path / ".newest.weights.h5.x1.tmp.weights.h5",
             tmp_path / "backup" / ".state.npz.x2.tmp.npz"]
    for path in stale:
        path.write_bytes(b"half a file")
    (tmp_path / "keep.txt").write_text("not ours")
    RunDir(tmp_path).prepare({"model": {}})
    assert not any(path.exists() for path in stale)
    assert (tmp_path / "keep.txt").exists()


def test_run_dir_reports_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a training run folder"):
        RunDir(tmp_path).read_config()


def test_the_cli_reports_a_run_folder_mismatch(finished_run, capsys):
    from absl import flags

    from glow_tf.cli import train

    run_dir, _, _ = finished_run
    values = flags.FlagValues()
    train.define_flags(values)
    values(["main.py", *[f"--{k}={v}" for k, v in TINY.items()], "--k_glow", "2",
            "--run_dir", str(run_dir)])
    with pytest.raises(SystemExit) as exit_info:
        train.main(["main.py"], values)
    assert exit_info.value.code == 1
    assert "model.k_glow: 1 in the run folder, 2 now" in capsys.readouterr().err


def test_fit_refuses_a_dataset_of_float_images():
    model = Glow(GlowConfig(image_shape=(4, 4, 2), k_glow=1, l_glow=2, hidden_channels=4, seed=0))
    model.compile(keras.optimizers.Adam(1e-4))
    floats = tf.data.Dataset.from_tensor_slices(np.zeros((8, 4, 4, 2), np.float32)).batch(4)
    with pytest.raises(ValueError, match="images have dtype float32; Glow.fit expects uint8"):
        model.fit(floats, epochs=1, verbose=0)
    labelled = tf.data.Dataset.from_tensor_slices(
        {"images": np.zeros((8, 4, 4, 2), np.float32), "labels": np.zeros(8, np.int32)}
    ).batch(4)
    with pytest.raises(ValueError, match="images have dtype float32; Glow.evaluate expects"):
        model.evaluate(labelled, verbose=0)


@pytest.mark.slow
def test_backups_count_steps_when_a_call_runs_several(tmp_path, monkeypatch):
    steps = []
    write_state = state.write
    monkeypatch.setattr(state, "write", lambda path, model, values, step, *args, **kwargs: (
        steps.append((os.path.basename(path), step)) or write_state(path, model, values, step, *args, **kwargs)))
    # Keras calls the callbacks once per call of 4 steps: after steps 4, 8, ...
    _, metrics = training.train_and_evaluate(
        *tiny_configs(epochs=1, backup_every=5, steps_per_execution=4), tmp_path, verbose=0)
    assert metrics["steps"] == 22
    assert [step for name, step in steps if name == "state.npz"] == [8, 16, 22]
