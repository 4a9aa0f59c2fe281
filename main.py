"""Trains a Glow: flags -> configs -> glow_tf.training.train_and_evaluate.

    python main.py                                    # digits, offline, CPU minutes
    python main.py --dataset cifar10 --k_glow 32 --l_glow 3

Defaults come from common_definitions.py: the paper's CIFAR-10 setup, changed
per dataset by its preset (digits: a small 8x8 model); a flag given on the
command line beats both. The run lives in checkpoints/<dataset> unless
--run_dir says otherwise, and the same command run again resumes it.
"""

from absl import app, flags

import cli

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """One flag per Hyperparameters field, its default and help from common_definitions."""
    cli.define_hyperparameter_flags(flag_values)


def hyperparameters_from_flags(flag_values=FLAGS):
    """The dataset's preset, with the flags given on the command line on top."""
    return cli.hyperparameters_from_flags(flag_values)


def configs_from(hparams):
    """Hyperparameters -> (GlowConfig, DataConfig, TrainingConfig); ValueError if invalid."""
    from glow_tf.training import TrainingConfig

    model, data = cli.model_and_data_configs(hparams)
    training = TrainingConfig(
        batch_size=hparams.batch_size, epochs=hparams.epochs, lr=hparams.lr,
        warmup=hparams.warmup, optimizer=hparams.optimizer,
        clipnorm=hparams.clipnorm or None, weight_decay=hparams.weight_decay,
        seed=hparams.seed, n_init=hparams.n_init,
        backup_every=hparams.backup_every, jit=hparams.jit,
        mixed_precision=hparams.mixed_precision, remat=hparams.remat,
        strategy=hparams.strategy, steps_per_execution=hparams.steps_per_execution,
    )
    return model, data, training


def _fail(error):
    cli.fail("main.py", error)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    hparams = hyperparameters_from_flags(FLAGS)
    try:
        configs = configs_from(hparams)
    except ValueError as error:
        _fail(error)

    from glow_tf.data import DatasetError
    from glow_tf.distribute import DistributionError
    from glow_tf.run_dir import RunDirError
    from glow_tf.training import TrainingDiverged, train_and_evaluate

    try:
        train_and_evaluate(*configs, hparams.resolved_run_dir)
    except (DatasetError, DistributionError, RunDirError, TrainingDiverged) as error:
        _fail(error)


define_flags()

if __name__ == "__main__":
    app.run(main)
