"""Tiny trained run folders for the sample.py / evaluate.py tests (seconds to make)."""

import keras

from glow_tf import Glow
from glow_tf.cli.settings import configs_for
from glow_tf.runs import RunDir
from glow_tf.runs.files import save_weights
from glow_tf.tf import pipelines
from tests.tiny import TINY_DIGITS, as_flags

TINY = {**TINY_DIGITS, "epochs": 1, "weight_decay": 0.0}
# main.py's run of the same model, backed up at steps 5, 10, 15, 20 and 22 (the epoch's end).
TRAIN_TINY = {**TINY, "backup_every": 5}
TRAIN_TINY_ARGS = as_flags(TRAIN_TINY)


def train_run(path):
    """A run folder that main.py's training finished (TRAIN_TINY): weights, backup, metrics."""
    from glow_tf.tf import training

    training.train_and_evaluate(*configs_for("digits", **TRAIN_TINY), path, verbose=0)
    return path


def make_run(path, epochs=1, **changes):
    """A run folder (config.json, newest.weights.h5) of a tiny digits Glow.

    It is trained by plain `fit` for `epochs` epochs (0: initialised only),
    which is enough for it to tell digits from inverted digits.
    """
    model_config, data_config, training_config = configs_for("digits", **{**TINY, **changes})
    run = RunDir(path)
    run.prepare({"model": model_config.to_dict(), "data": data_config.to_dict(),
                 "training": training_config.to_dict()})
    conditional = model_config.num_classes > 0
    train, _ = pipelines.make_datasets(data_config, 64, seed=0, labels=conditional)
    keras.utils.set_random_seed(0)
    model = Glow(model_config)
    model.initialize(pipelines.take_images(train, 64))
    if epochs:
        model.compile(keras.optimizers.Adamax(2e-3))
        model.fit(train, epochs=epochs, verbose=0, shuffle=False)
    save_weights(model, run.weights("newest"))
    run.unlock()
    return model
