"""The command-line tools: glow-train (main.py), glow-sample (sample.py), glow-evaluate
(evaluate.py), glow-export (export.py).

Each tool is a module here with `define_flags`, `main(argv, flag_values)`
and `run()`, the console script's entry point. `settings` makes the flags
from the configs; `model_flags` finds the trained model that sample.py,
evaluate.py and export.py work on. The library itself has no absl and no default paths.
"""

import os
import sys


def program(argv):
    """The name a tool was started by (main.py, glow-train), for its messages."""
    return os.path.basename(argv[0]) if argv and argv[0] else "glow"


def fail(program, error):
    """The user's error, on one line of stderr, and exit status 1: no traceback."""
    print(f"{program}: error: {error}", file=sys.stderr)
    sys.exit(1)


def parse_flags(argv, flag_values=None):
    """app.run's flags_parser, with a bad flag value on one line of stderr (exit status 1)."""
    from absl import flags

    try:
        return (flag_values or flags.FLAGS)(argv)
    except flags.Error as error:
        fail(program(argv), error)
