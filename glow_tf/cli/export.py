"""Exports a trained Glow as a TensorFlow SavedModel that scores and samples without glow_tf.

    glow-export --out /tmp/glow-export                          # the newest run's weights
    glow-export --run_dir digits-pretrained --which best --out EXPORT_DIR

`tf.saved_model.load(EXPORT_DIR)` loads it with TensorFlow alone. Its
signatures: bits_per_dim (also serving_default), log_prob, encode, decode
and sample (docs/export.md). The weights come from --run_dir (default: the
run under checkpoints/ whose weights were written last) or --weights, as
for sample.py. --out must be a new or empty folder; the export is written
beside it and renamed into place when complete.
"""

from absl import app, flags, logging

from glow_tf import cli, interrupts
from glow_tf.cli import model_flags

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    model_flags.define_model_flags(flag_values)
    flags.DEFINE_string("out", None,
                        "The folder to write the SavedModel into: a new or empty one (required).",
                        flag_values=flag_values)
    flags.mark_flag_as_required("out", flag_values=flag_values)


def main(argv, flag_values=FLAGS):
    program = cli.program(argv)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # Not TensorFlow's (and JAX's) INFO lines about devices and how it stores each function.
    logging.set_verbosity(logging.WARNING)
    written = []
    try:
        try:
            model_flags.prepare_runtime(flag_values)  # before Keras starts
            from glow_tf.tf.export import check_export_dir, export_saved_model

            check_export_dir(flag_values.out, "--out")
            model = model_flags.load_model(flag_values).model
        except (ValueError, OSError) as error:
            cli.fail(program, error)
        written.append(export_saved_model(model, flag_values.out))
        interrupts.finish()
    except BaseException as error:
        # OSError: --out's folder cannot be written. The export is renamed into
        # place whole, or its temp folder removed.
        cli.stop(program, error, OSError, cli.written([flag_values.out], written))
    print(written[0])


def run():
    """The glow-export console script."""
    cli.run_main(define_flags, main)
