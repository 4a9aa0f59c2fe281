"""The command-line tools: glow-train (main.py), glow-sample (sample.py), glow-evaluate
(evaluate.py), glow-export (export.py).

Each tool is a module here with `define_flags`, `main(argv, flag_values)`
and `run()`, the console script's entry point. `settings` makes the flags
from the configs; `model_flags` finds the trained model that sample.py,
evaluate.py and export.py work on. The library itself has no absl and no default paths.
"""

import logging
import os
import sys


def program(argv):
    """The name a tool was started by (main.py, glow-train), for its messages."""
    return os.path.basename(argv[0]) if argv and argv[0] else "glow"


def fail(program, error):
    """The user's error, on one line of stderr, and exit status 1: no traceback."""
    print(f"{program}: error: {error}", file=sys.stderr)
    sys.exit(1)


def interrupted(program, interruption):
    """Ctrl-C: one line on stderr saying what was kept, and exit status 130 (128 + SIGINT)."""
    end_progress_line()
    print(f"{program}: {interruption}", file=sys.stderr)
    sys.exit(130)


def end_progress_line():
    """Ends a progress bar's unfinished line on a terminal, so that a message starts its own."""
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    sys.stdout.flush()


class _Stdout:
    """sys.stdout, remembering whether what was written last ended its line.

    Keras' progress bar leaves its line open (it redraws it with a carriage
    return), and a phase can start in the middle of an epoch.
    """

    def __init__(self, stream):
        self.stream = stream
        self.line_open = False

    def write(self, text):
        if text:
            self.line_open = not text.endswith("\n")
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


class _PhaseLines(logging.Handler):
    """Each phase line (glow_tf.phases) on stdout, on a line of its own."""

    def emit(self, record):
        stdout = sys.stdout
        if isinstance(stdout, _Stdout) and stdout.line_open:
            # Over a progress bar, which redraws itself below; in a file, after it.
            stdout.write("\r\033[K" if stdout.isatty() else "\n")
        stdout.write(record.getMessage() + "\n")
        stdout.flush()


def show_phases():
    """Prints the library's phase lines (glow_tf.phases) on stdout, as they come."""
    from glow_tf import phases

    if not isinstance(sys.stdout, _Stdout):
        sys.stdout = _Stdout(sys.stdout)
    if not any(isinstance(h, _PhaseLines) for h in phases.LOGGER.handlers):
        phases.LOGGER.addHandler(_PhaseLines())
    phases.LOGGER.setLevel(logging.INFO)
    phases.LOGGER.propagate = False


def parse_flags(argv, flag_values=None):
    """app.run's flags_parser, with a bad flag value on one line of stderr (exit status 1)."""
    from absl import flags

    try:
        return (flag_values or flags.FLAGS)(argv)
    except flags.Error as error:
        fail(program(argv), error)
