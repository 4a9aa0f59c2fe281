"""Rewrites weights files of earlier layouts in the current one, in place.

    python -m glow_tf.cli.convert checkpoints/cifar10            # a run folder's newest and best
    python -m glow_tf.cli.convert path/to/newest.weights.h5      # one file, config.json beside it

glow_tf 0.2 wrote a Glow's weights as one list of layers, and later each
step of flow as a layer of its own; glow_tf now writes each level's steps
as stacked variables (glow_tf.runs.convert). The values do not change. Each file is written atomically; files already in
the current layout are left as they are. Prints each file it converted.
"""

import os

from absl import app

from glow_tf import cli


def main(argv):
    program = cli.program(argv)
    if len(argv) < 2:
        raise app.UsageError("Give the run folders or weights files to convert.")
    from glow_tf.config import GlowConfig
    from glow_tf.runs import RunDir, RunDirError, convert

    try:
        for path in argv[1:]:
            if os.path.isdir(path):
                converted = convert.convert_run(path)
            else:
                config = RunDir(os.path.dirname(os.path.abspath(path))).read_config()
                converted = [convert.convert_weights(path, GlowConfig.from_dict(config["model"]))] \
                    if convert.layout_of(path) != "stacked" else []
            for name in converted:
                print(name)
    except (ValueError, OSError, RunDirError) as error:
        cli.fail(program, error)


if __name__ == "__main__":
    app.run(main)
