"""docs/cli.md, made from the tools' flags: `python -m glow_tf.cli.reference > docs/cli.md`.

A test compares docs/cli.md with `render()`, so the page cannot drift from
the flags, whose help comes from the configs' fields.
"""

import importlib
import re

from absl import flags

TOOLS = (
    ("train", "main.py", "glow-train"),
    ("sample", "sample.py", "glow-sample"),
    ("evaluate", "evaluate.py", "glow-evaluate"),
    ("export", "export.py", "glow-export"),
)

INTRO = """\
# Command-line reference

Every flag of the four tools, with its default and the presets that change
it. Each tool runs as `python <script>` from the repository, or as its
command after `pip install .`; `--help` lists the same flags. What the tools
do is explained in [training.md](training.md) and
[sampling-and-evaluation.md](sampling-and-evaluation.md).

A setting's value is, in order: its default (the field of `GlowConfig`,
`TrainingConfig` or `DataConfig` that the flag sets), the dataset's preset
(`common_definitions.PRESETS`), and the flag given on the command line, even
one that repeats the default. `--img_size`, `--channel_size` and `--n_bits`
default to the dataset's own. Boolean flags take `--jit` / `--nojit`.

This page is made from the flags by `python -m glow_tf.cli.reference >
docs/cli.md` (a test checks that it is current). A setting's help text
lives in the config field it sets (`glow_tf/config.py`,
`glow_tf/datasets.py`); the help of a tool's own flags, in its module
under `glow_tf/cli/`.
"""


def _default(flag):
    if flag.default is None:
        return "the dataset's" if "Default: the dataset's" in flag.help else "none"
    if isinstance(flag.default, bool):
        return "on" if flag.default else "off"
    return f"`{flag.default}`"


def _cell(text):
    return " ".join(text.split()).replace("|", "\\|")


def tool_table(module_name):
    """The markdown table of one tool's flags, in the order it defines them."""
    module = importlib.import_module(f"glow_tf.cli.{module_name}")
    values = flags.FlagValues()
    module.define_flags(values)
    rows = ["| flag | default | meaning |", "|---|---|---|"]
    for flag in _in_order(values):
        choices = getattr(flag.parser, "enum_values", None)
        # absl puts the choices in front of an enum's help; they go at its end here.
        meaning = _cell(re.sub(r"^<[^>]*>: ", "", flag.help))
        if choices:
            meaning += f" One of: {', '.join(f'`{c}`' for c in choices)}."
        rows.append(f"| `--{flag.name}` | {_default(flag)} | {meaning} |")
    return "\n".join(rows)


def _in_order(values):
    seen, ordered = set(), []
    for flags_of_module in values.flags_by_module_dict().values():
        for flag in flags_of_module:
            if flag.name not in seen:
                seen.add(flag.name)
                ordered.append(flag)
    return ordered


def render():
    parts = [INTRO]
    for module_name, script, command in TOOLS:
        module = importlib.import_module(f"glow_tf.cli.{module_name}")
        summary = module.__doc__.strip().splitlines()[0]
        parts.append(f"## `{script}` / `{command}`\n\n{summary}\n\n{tool_table(module_name)}\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
