"""--polyak: the optimizer's average of the weights is what a run saves, scores and resumes."""

import json

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from glow_tf import TrainingConfig  # noqa: E402
from glow_tf.cli.settings import configs_for  # noqa: E402
from glow_tf.runs import load_model, state  # noqa: E402
from glow_tf.tf import pipelines, polyak, training  # noqa: E402
from glow_tf.tf import test_pass  # noqa: E402
from glow_tf.tf.callbacks import HostWeights  # noqa: E402
from tests.bijector_checks import to_numpy  # noqa: E402
from tests.tiny import STEPS_PER_EPOCH, TINY_DIGITS  # noqa: E402

# A tiny model on the real digits: 1437 // 64 = 22 steps per epoch. An
# average over a quarter epoch (momentum 1 - 1/5.5) stays well apart from
# the raw weights, so that mixing the two up shows.
TINY = {**TINY_DIGITS, "epochs": 2, "backup_every": 5, "polyak": True, "polyak_epochs": 0.25}
MOMENTUM = 1 - 1 / (0.25 * STEPS_PER_EPOCH)


def tiny_configs(**changes):
    return configs_for("digits", **{**TINY, **changes})


def _key(path):
    """A weight's path without the model's own name (glow, glow_1, ...)."""
    return path.split("/", 1)[1]


class RecordWeights(keras.callbacks.Callback):
    """The trainable weights (by `_key`) after every training step."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append({_key(v.path): to_numpy(v).copy()
                           for v in self.model.trainable_weights})


def average_by_hand(steps, momentum):
    """Keras' average: the first step's weights, then m <- momentum m + (1 - momentum) w."""
    averages = [dict(steps[0])]
    for weights in steps[1:]:
        averages.append({path: momentum * averages[-1][path] + (1 - momentum) * w
                         for path, w in weights.items()})
    return averages


def trainable_values(model):
    return {_key(v.path): to_numpy(v) for v in model.trainable_weights}


def assert_weights_close(actual, expected, rtol=1e-5, atol=1e-6):
    assert actual.keys() == expected.keys()
    for path in expected:
        np.testing.assert_allclose(actual[path], expected[path], rtol=rtol, atol=atol,
                                   err_msg=path)


def scored(model, configs):
    """The run's test pass (its data and noise seed) on `model`'s weights."""
    _, data_config, training_config = configs
    _, test = pipelines.make_datasets(data_config, training_config.batch_size,
                                      seed=training_config.seed)
    return test_pass.TestPass(test, training_config.batch_size, HostWeights(),
                              seed=training_config.seed).run(model)


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("polyak")
    record = RecordWeights()
    configs = tiny_configs()
    model, metrics = training.train_and_evaluate(*configs, run_dir, callbacks=[record],
                                                 verbose=0)
    return run_dir, configs, model, metrics, record.steps


@pytest.mark.slow
def test_the_saved_weights_are_the_average_and_the_backup_keeps_the_raw_ones(averaged_run):
    run_dir, _, model, metrics, steps = averaged_run
    assert metrics["steps"] == len(steps) == 2 * STEPS_PER_EPOCH
    averages = average_by_hand(steps, MOMENTUM)
    newest = trainable_values(load_model(run_dir, which="newest").model)
    assert_weights_close(newest, averages[-1])
    # fit ends with the averages in the model (Keras' finalize_variable_values).
    assert_weights_close(trainable_values(model), averages[-1])
    # best.weights.h5: the average at the end of the best epoch.
    best = trainable_values(load_model(run_dir, which="best").model)
    assert_weights_close(best, averages[metrics["best_epoch"] * STEPS_PER_EPOCH - 1])

    # The backup: the raw weights, and the optimizer's averages beside them.
    meta, model_values, optimizer_values = state.read(run_dir / "backup" / "state.npz")
    assert meta["step"] == len(steps)
    raw = {_key(d["path"]): v for d, v in zip(meta["model"], model_values)
           if _key(d["path"]) in steps[-1]}
    assert_weights_close(raw, steps[-1], rtol=0, atol=0)
    stored_averages = {d["path"]: v for d, v in zip(meta["optimizer"], optimizer_values)
                       if "average" in d["path"]}
    assert len(stored_averages) == len(newest)
    # The raw and the averaged weights differ, so the checks above tell them apart.
    assert max(np.abs(raw[p] - newest[p]).max() for p in raw) > 1e-3


@pytest.mark.slow
def test_the_test_pass_scores_the_average(averaged_run):
    run_dir, configs, _, metrics, _ = averaged_run
    newest = load_model(run_dir, which="newest").model
    assert scored(newest, configs) == pytest.approx(metrics["test_bits_per_dim"], abs=1e-5)
    # The raw weights score otherwise.
    raw = load_model(run_dir, which="newest").model
    state.restore(run_dir / "backup" / "state.npz", raw)
    assert abs(scored(raw, configs) - metrics["test_bits_per_dim"]) > 1e-4


class Interrupt(keras.callbacks.Callback):
    """Stands for a crash: raises after `at_step` training steps."""

    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch, logs=None):
        if int(to_numpy(self.model.optimizer.iterations)) == self.at_step:
            raise KeyboardInterrupt("simulated crash")


@pytest.mark.slow
@pytest.mark.parametrize("averaged", [True, False])
def test_a_resumed_run_ends_with_the_same_weights(tmp_path, monkeypatch, averaged):
    make_datasets = pipelines.make_datasets

    def one_batch_over_and_over(config, batch_size, seed=0, labels=False):
        # A resumed epoch starts its data anew; the same batch at every step
        # makes that position irrelevant, so both runs see the same data.
        train, test = make_datasets(config, batch_size, seed=seed, labels=labels)
        batch = tf.data.Dataset.from_tensors(next(iter(train))).repeat(STEPS_PER_EPOCH)
        return pipelines.untuned(batch), test

    monkeypatch.setattr(pipelines, "make_datasets", one_batch_over_and_over)
    configs = tiny_configs(polyak=averaged)
    whole, _ = training.train_and_evaluate(*configs, tmp_path / "whole", verbose=0)
    # Killed in the second epoch after the backup of step 27, resumed: the
    # weights, the optimizer's state (the averages too) and the noise
    # generator continue from the backup.
    with pytest.raises(KeyboardInterrupt):
        training.train_and_evaluate(*configs, tmp_path / "resumed", callbacks=[Interrupt(30)],
                                    verbose=0)
    assert state.read(tmp_path / "resumed" / "backup" / "state.npz")[0]["step"] == 27
    resumed, metrics = training.train_and_evaluate(*configs, tmp_path / "resumed", verbose=0)
    assert metrics["steps"] == 2 * STEPS_PER_EPOCH
    assert_weights_close(trainable_values(resumed), trainable_values(whole))
    for name in ("whole", "resumed"):
        newest = trainable_values(load_model(tmp_path / name, which="newest").model)
        assert_weights_close(newest, trainable_values(whole))
    backups = [state.read(tmp_path / name / "backup" / "state.npz")
               for name in ("whole", "resumed")]
    for a, b in zip(backups[0][1] + backups[0][2], backups[1][1] + backups[1][2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    whole_metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert metrics["test_bits_per_dim"] == pytest.approx(whole_metrics["test_bits_per_dim"],
                                                         abs=1e-5)


def test_without_polyak_the_optimizer_keeps_no_average():
    assert TrainingConfig().polyak  # the paper's recipe, and better on digits (docs/training.md)
    config = TrainingConfig(polyak=False)
    optimizer = training.make_optimizer(config, STEPS_PER_EPOCH)
    assert polyak.averaging(optimizer) is None and not optimizer.use_ema
    weights = [keras.Variable(np.ones((2, 3), "float32"))]
    optimizer.build(weights)
    assert not [v for v in optimizer.variables if "average" in v.path]


def test_the_optimizer_averages_over_polyak_epochs():
    optimizer = training.make_optimizer(
        TrainingConfig(polyak=True, polyak_epochs=2.0), STEPS_PER_EPOCH)
    assert polyak.averaging(optimizer) is optimizer
    assert optimizer.ema_momentum == pytest.approx(1 - 1 / 44)
    # Float16's loss scaling wraps the optimizer that averages.
    wrapped = training.make_optimizer(
        TrainingConfig(polyak=True, mixed_precision="float16"), STEPS_PER_EPOCH)
    assert polyak.averaging(wrapped) is wrapped.inner_optimizer
    # An average shorter than a step is the weights themselves.
    assert polyak.ema_momentum(0.01, STEPS_PER_EPOCH) == 0.0


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "1"])
def test_bad_polyak_epochs_are_named(value):
    with pytest.raises(ValueError, match=r"polyak_epochs=.*expected a number of epochs > 0"):
        TrainingConfig(polyak_epochs=value)
