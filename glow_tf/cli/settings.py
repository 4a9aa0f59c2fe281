"""The command line's settings: one flag per config field, made from the field itself.

A flag's name, default, type, choices and help all come from the field of
DataConfig, GlowConfig or TrainingConfig it sets (`glow_tf.config.setting`);
only `--y_condition`, `--preset` and `--run_dir` are the command line's own.
The value a run gets is, in order: the field's default, the dataset's preset
(`common_definitions.PRESETS`), the named preset (`--preset`,
`common_definitions.NAMED_PRESETS`), the flag given on the command line.

A few fields are derived rather than flagged: GlowConfig's image_shape and
n_bits come from the data's --img_size, --channel_size and --n_bits, its
seed from the training --seed, and num_classes from --y_condition and the
dataset's classes.
"""

import collections
import dataclasses
import types

from absl import flags

import common_definitions as defs
from glow_tf.config import GlowConfig, TrainingConfig
from glow_tf.datasets import DataConfig, check_dataset, num_classes

Configs = collections.namedtuple("Configs", "model data training")

# The command line's own settings, beside the configs' fields.
Own = collections.namedtuple("Own", "default help")
OWN = {
    "y_condition": Own(
        False,
        "Class-conditional Glow: the top prior depends on the label, and a classifier on "
        "the top latent adds to the loss (datasets with labels).",
    ),
    "preset": Own(
        None,
        "Settings for a model rather than a dataset, beneath the flags given: "
        + "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
                    for name, values in defs.NAMED_PRESETS.items()) + ".",
    ),
    "run_dir": Own(
        None,
        f"This run's folder (default {defs.CHECKPOINT_ROOT}/<dataset>); rerunning the same "
        "command there resumes it.",
    ),
}


def _flagged(config_class):
    return [f for f in dataclasses.fields(config_class) if f.metadata["flag"]]


# Every flag of main.py, in the order --help and docs/cli.md list them.
FIELDS = {
    **{f.name: f for f in _flagged(DataConfig)},
    **{f.name: f for f in _flagged(GlowConfig)},
    **{f.name: f for f in _flagged(TrainingConfig)},
}
NAMES = (*FIELDS, *OWN)
# What sample.py and evaluate.py take: the data and the architecture (and
# the dataset's classes, for a conditional model), not how it was trained.
ARCHITECTURE = (
    *(f.name for f in _flagged(DataConfig)),
    *(f.name for f in _flagged(GlowConfig) if f.name != "weight_y"),
    "y_condition",
)


def default(name):
    """The value of setting `name` before any preset or flag."""
    return OWN[name].default if name in OWN else FIELDS[name].default


def help_text(name):
    """The flag's help: the field's own, and the presets that change its value."""
    text = OWN[name].help if name in OWN else FIELDS[name].metadata["help"]
    changed = [f"{d}: {p[name]}" for d, p in defs.PRESETS.items() if name in p]
    return text + (f" Presets: {'; '.join(changed)}." if changed else "")


def choices(name):
    if name == "preset":
        return tuple(defs.NAMED_PRESETS)
    return None if name in OWN else FIELDS[name].metadata["choices"]


def kind(name):
    """bool, int, float or str: the flag's type (the field's, without None)."""
    if name in OWN:
        return bool if name == "y_condition" else str
    annotation = FIELDS[name].type
    if isinstance(annotation, types.UnionType):
        (annotation,) = [t for t in annotation.__args__ if t is not type(None)]
    return annotation


_DEFINE = {
    bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}


def define_flags(flag_values, names=NAMES):
    """One absl flag per named setting."""
    for name in names:
        if choices(name):
            flags.DEFINE_enum(name, default(name), choices(name), help_text(name),
                              flag_values=flag_values)
        else:
            _DEFINE[kind(name)](name, default(name), help_text(name), flag_values=flag_values)


def explicit(flag_values, names=NAMES):
    """{name: value} of the named flags given on the command line."""
    return {name: flag_values[name].value for name in names if flag_values[name].present}


def settings_for(dataset=defs.DEFAULT_DATASET, **given):
    """Every setting: the defaults, `dataset`'s preset, the named preset, then `given`."""
    check_dataset(dataset)
    unknown = sorted(set(given) - set(NAMES))
    if unknown:
        raise ValueError(f"Unknown settings {unknown}; expected some of {sorted(NAMES)}.")
    preset = given.get("preset")
    if preset is not None and preset not in defs.NAMED_PRESETS:
        raise ValueError(f"preset={preset!r}: expected one of {sorted(defs.NAMED_PRESETS)}.")
    values = {name: default(name) for name in NAMES}
    return {**values, **defs.PRESETS.get(dataset, {}), **defs.NAMED_PRESETS.get(preset, {}),
            **given, "dataset": dataset}


def configs_from(settings):
    """Flat settings -> Configs(model, data, training); ValueError if a value is bad."""
    data = DataConfig(**{f.name: settings[f.name] for f in _flagged(DataConfig)})
    model = GlowConfig(
        **{f.name: settings[f.name] for f in _flagged(GlowConfig)},
        image_shape=data.image_shape, n_bits=data.n_bits, seed=settings["seed"],
        num_classes=num_classes(data) if settings["y_condition"] else 0,
    )
    training = TrainingConfig(**{f.name: settings[f.name] for f in _flagged(TrainingConfig)})
    return Configs(model, data, training)


def configs_for(dataset=defs.DEFAULT_DATASET, **given):
    """`configs_from(settings_for(dataset, **given))`: what main.py runs with these flags."""
    return configs_from(settings_for(dataset, **given))


def settings_from_flags(flag_values, names=NAMES):
    """The settings the flags ask for: the dataset's preset, the given flags on top."""
    given = explicit(flag_values, names)
    given.pop("dataset", None)
    return settings_for(flag_values.dataset, **given)


def run_dir_of(settings):
    return settings["run_dir"] or f"{defs.CHECKPOINT_ROOT}/{settings['dataset']}"


def architecture_of(run_config):
    """The ARCHITECTURE settings of a run's config.json ({"model", "data", ...})."""
    model, data = run_config["model"], DataConfig(**run_config["data"])
    values = {f.name: getattr(data, f.name) for f in _flagged(DataConfig)}
    values.update({name: model[name] for name in ARCHITECTURE if name in model})
    values["y_condition"] = model.get("num_classes", 0) > 0
    return values
