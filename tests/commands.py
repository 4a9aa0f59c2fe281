"""Running a command-line tool's `main` in this process, as absl would after parsing argv."""

from absl import flags


def program_of(module):
    """'sample.py' for glow_tf.cli.sample: the name its messages start with here."""
    return {"train": "main"}.get(module.__name__.rsplit(".", 1)[-1],
                                 module.__name__.rsplit(".", 1)[-1]) + ".py"


def flag_values(module, *args):
    """The tool's flags, parsed from args."""
    values = flags.FlagValues()
    module.define_flags(values)
    values([program_of(module), *args])
    return values


def run_cli(module, *args):
    """module.main with args on the command line (SystemExit on a user's error)."""
    return module.main([program_of(module)], flag_values(module, *args))
