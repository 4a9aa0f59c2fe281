"""Trains a Glow: flags -> configs -> glow_tf.training.train_and_evaluate.

    python main.py                                    # digits, offline, CPU minutes
    python main.py --dataset cifar10 --k_glow 32 --l_glow 3

Defaults come from common_definitions.py: the paper's CIFAR-10 setup, changed
per dataset by its preset (digits: a small 8x8 model); a flag given on the
command line beats both. The run lives in checkpoints/<dataset> unless
--run_dir says otherwise, and the same command run again resumes it.
"""

import dataclasses
import sys

from absl import app, flags

import common_definitions as defs

FLAGS = flags.FLAGS
_ENUMS = {
    "dataset": defs.DATASETS,
    "coupling": defs.COUPLINGS,
    "permutation": defs.PERMUTATIONS,
    "optimizer": defs.OPTIMIZERS,
    "mixed_precision": defs.MIXED_PRECISIONS,
    "strategy": defs.STRATEGIES,
}
_DEFINE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}


def define_flags(flag_values=FLAGS):
    """One flag per Hyperparameters field, its default and help from common_definitions."""
    defaults = defs.Hyperparameters()
    for field in dataclasses.fields(defs.Hyperparameters):
        name, default = field.name, getattr(defaults, field.name)
        help_text = defs.HELP[name] + defs.preset_note(name)
        if name in _ENUMS:
            flags.DEFINE_enum(name, default, _ENUMS[name], help_text, flag_values=flag_values)
        else:
            kind = type(default) if default is not None else str
            _DEFINE[kind](name, default, help_text, flag_values=flag_values)


def hyperparameters_from_flags(flag_values=FLAGS):
    """The dataset's preset, with the flags given on the command line on top."""
    explicit = {
        field.name: flag_values[field.name].value
        for field in dataclasses.fields(defs.Hyperparameters)
        if field.name != "dataset" and flag_values[field.name].present
    }
    return defs.hyperparameters_for(flag_values.dataset, **explicit)


def configs_from(hparams):
    """Hyperparameters -> (GlowConfig, DataConfig, TrainingConfig); ValueError if invalid."""
    from glow_tf import GlowConfig
    from glow_tf.data import DataConfig
    from glow_tf.training import TrainingConfig

    model = GlowConfig(
        image_shape=(hparams.img_size, hparams.img_size, hparams.channel_size),
        k_glow=hparams.k_glow, l_glow=hparams.l_glow,
        hidden_channels=hparams.hidden_channels, coupling=hparams.coupling,
        permutation=hparams.permutation, n_bits=hparams.n_bits, seed=hparams.seed,
    )
    data = DataConfig(
        dataset=hparams.dataset, img_size=hparams.img_size,
        channel_size=hparams.channel_size, n_bits=hparams.n_bits, data_dir=hparams.data_dir,
    )
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
    print(f"main.py: error: {error}", file=sys.stderr)
    sys.exit(1)


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
