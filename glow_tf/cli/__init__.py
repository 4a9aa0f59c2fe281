"""The command-line tools: glow-train (main.py), glow-sample (sample.py), glow-evaluate (evaluate.py).

Each tool is a module here with `define_flags`, `main(argv, flag_values)`
and `run()`, the console script's entry point. `settings` makes the flags
from the configs; `model_flags` finds the trained model that sample.py and
evaluate.py work on. The library itself has no absl and no default paths.
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
