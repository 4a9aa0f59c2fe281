"""Trains a Glow: flags -> configs -> glow_tf.tf.training.train_and_evaluate.

    glow-train                                        # digits, offline, CPU minutes
    glow-train --dataset cifar10 --k_glow 32 --l_glow 3

One flag per setting (glow_tf.cli.settings); the dataset's preset
(common_definitions.PRESETS) changes some defaults, and a flag given on the
command line beats both. The run lives in checkpoints/<dataset> unless
--run_dir says otherwise, and the same command run again resumes it.
"""

import sys

from absl import app, flags

from glow_tf import cli, interrupts
from glow_tf.cli import runtime
from glow_tf.cli import settings as settings_lib

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    settings_lib.define_flags(flag_values)
    runtime.define_flags(flag_values)


def main(argv, flag_values=FLAGS):
    program = cli.program(argv)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        _main(program, flag_values)
    except BaseException as error:
        if not interrupts.caused(error):
            raise
        # Training's own says what the run folder kept; before it, nothing was written.
        # (Not imported here: the interruption may have come in TensorFlow's import.)
        faults = sys.modules.get("glow_tf.tf.faults")
        if faults is None or not isinstance(error, faults.TrainingInterrupted):
            error = "interrupted before training began; nothing was written."
        cli.interrupted(program, error)


def _main(program, flag_values):
    cli.show_phases()
    settings = settings_lib.settings_from_flags(flag_values)
    try:
        configs = settings_lib.configs_from(settings)
        runtime.prepare(flag_values.backend)  # before anything imports Keras
        _check_loop_and_jit(configs.training)
    except ValueError as error:
        cli.fail(program, error)
    runtime.tune_tensorflow(configs.training.threads_per_op, configs.model.hidden_channels)

    with runtime.kept_imports():  # TensorFlow's, on JAX
        from glow_tf.datasets import DatasetError
        from glow_tf.runs import RunDir, RunDirError, WeightsError
        from glow_tf.runs.files import WriteError
        from glow_tf.runs.state import StateError
        from glow_tf.tf import faults, training
        from glow_tf.tf.distribute import DistributionError

    run_dir = settings_lib.run_dir_of(settings)
    try:
        result = training.train_and_evaluate(*configs, run_dir)
    except (DatasetError, DistributionError, RunDirError, WeightsError, StateError, WriteError,
            faults.TrainingWriteError, training.TrainingDiverged) as error:
        cli.end_progress_line()  # the error may come in the middle of an epoch
        cli.fail(program, error)
    try:
        print(result.summary)
        interrupts.finish()  # from here on, a Ctrl-C changes nothing
    except KeyboardInterrupt:
        raise faults.interruption(RunDir(run_dir), finished=True) from None


def _check_loop_and_jit(training_config):
    """XLA cannot differentiate TensorFlow's loop of unknown length (see Glow.compile)."""
    if training_config.jit and training_config.loop == "loop" and \
            runtime.start_keras().backend.backend() == "tensorflow":
        raise ValueError("--loop=loop with --jit on TensorFlow: XLA cannot differentiate "
                         "TensorFlow's loop; use --loop=auto or --loop=unrolled.")


def run():
    """The glow-train console script."""
    cli.run_main(define_flags, main)
