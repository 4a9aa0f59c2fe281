"""What the command-line tools share: hyperparameter flags, loading a trained model, failing.

main.py defines a flag for every field of `common_definitions.Hyperparameters`;
sample.py and evaluate.py define the architecture's fields only, and find
the weights with --run_dir / --weights. One path from flags to configs:
`hyperparameters_from_flags` then `model_and_data_configs`.
"""

import dataclasses
import os
import sys

from absl import flags

import common_definitions as defs

_ENUMS = {
    "dataset": defs.DATASETS,
    "coupling": defs.COUPLINGS,
    "permutation": defs.PERMUTATIONS,
    "optimizer": defs.OPTIMIZERS,
    "mixed_precision": defs.MIXED_PRECISIONS,
    "strategy": defs.STRATEGIES,
}
_DEFINE = {
    bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}
ALL_FIELDS = tuple(field.name for field in dataclasses.fields(defs.Hyperparameters))


def define_hyperparameter_flags(flag_values, names=ALL_FIELDS):
    """One flag per named Hyperparameters field, its default and help from common_definitions."""
    defaults = defs.Hyperparameters()
    for name in names:
        default = getattr(defaults, name)
        help_text = defs.HELP[name] + defs.preset_note(name)
        if name in _ENUMS:
            flags.DEFINE_enum(name, default, _ENUMS[name], help_text, flag_values=flag_values)
        else:
            kind = type(default) if default is not None else str
            _DEFINE[kind](name, default, help_text, flag_values=flag_values)


def explicit_flags(flag_values, names=ALL_FIELDS):
    """{name: value} of the named flags given on the command line."""
    return {name: flag_values[name].value for name in names if flag_values[name].present}


def hyperparameters_from_flags(flag_values, names=ALL_FIELDS):
    """The dataset's preset, with the flags given on the command line on top."""
    explicit = explicit_flags(flag_values, names)
    explicit.pop("dataset", None)
    return defs.hyperparameters_for(flag_values.dataset, **explicit)


def model_and_data_configs(hparams):
    """Hyperparameters -> (GlowConfig, DataConfig); ValueError if invalid."""
    from glow_tf import GlowConfig
    from glow_tf.data import DataConfig, num_classes

    data = DataConfig(
        dataset=hparams.dataset, img_size=hparams.img_size,
        channel_size=hparams.channel_size, n_bits=hparams.n_bits, data_dir=hparams.data_dir,
    )
    model = GlowConfig(
        image_shape=(hparams.img_size, hparams.img_size, hparams.channel_size),
        k_glow=hparams.k_glow, l_glow=hparams.l_glow,
        hidden_channels=hparams.hidden_channels, coupling=hparams.coupling,
        permutation=hparams.permutation, n_bits=hparams.n_bits, seed=hparams.seed,
        # The classes are the dataset's.
        num_classes=num_classes(data) if hparams.y_condition else 0,
        weight_y=hparams.weight_y,
    )
    return model, data


def fail(program, error):
    """The user's error, on one line of stderr, and exit status 1: no traceback."""
    print(f"{program}: error: {error}", file=sys.stderr)
    sys.exit(1)


# ---- sample.py and evaluate.py: a trained model from --run_dir / --weights ----

# The flags that fix the architecture (and the dataset of a model without a
# config.json); data_dir only says where that dataset lives.
ARCHITECTURE_FLAGS = (
    "dataset", "data_dir", "img_size", "channel_size", "k_glow", "l_glow",
    "hidden_channels", "coupling", "permutation", "n_bits", "y_condition",
)
# Where each architecture flag's value sits in a run's config.json.
_IN_CONFIG = {
    "dataset": lambda c: c["data"]["dataset"],
    "img_size": lambda c: c["model"]["image_shape"][0],
    "channel_size": lambda c: c["model"]["image_shape"][2],
    "k_glow": lambda c: c["model"]["k_glow"],
    "l_glow": lambda c: c["model"]["l_glow"],
    "hidden_channels": lambda c: c["model"]["hidden_channels"],
    "coupling": lambda c: c["model"]["coupling"],
    "permutation": lambda c: c["model"]["permutation"],
    "n_bits": lambda c: c["model"]["n_bits"],
    "y_condition": lambda c: c["model"].get("num_classes", 0) > 0,
}


def define_model_flags(flag_values):
    """--run_dir, --weights, --which and the architecture flags."""
    flags.DEFINE_string(
        "run_dir", None,
        f"A training run's folder (config.json + weights). Default: the newest run "
        f"under {defs.CHECKPOINT_ROOT}/, the one whose weights were written last "
        f"({defs.PRETRAINED_RUN_DIR} on a fresh clone).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "weights", None,
        "A weights file instead of a run's: a Keras .weights.h5, or a legacy weights.h5. "
        "The architecture comes from the config.json beside it, else from --run_dir's, "
        "else from the architecture flags.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "which", "newest", ("newest", "best"),
        "Which weights of a run: the newest, or the best by test bits/dim.",
        flag_values=flag_values,
    )
    define_hyperparameter_flags(flag_values, ARCHITECTURE_FLAGS)


def load_model(flag_values):
    """(Glow with its weights, DataConfig of its dataset, run folder or None).

    Raises ValueError (WeightsError, DatasetError, ...) for the user's errors.
    """
    from glow_tf import Glow, GlowConfig, restore
    from glow_tf.data import DataConfig
    from glow_tf.run_dir import CONFIG, RunDir, read_json

    run_dir, weights = flag_values.run_dir, flag_values.weights
    if run_dir is not None and not os.path.isfile(os.path.join(run_dir, CONFIG)):
        raise ValueError(
            f"run_dir={run_dir!r}: no {CONFIG} there; expected a training run's folder "
            "(main.py writes it)."
        )
    if run_dir is None and weights is None:
        run_dir = restore.newest_run(defs.CHECKPOINT_ROOT)
        if run_dir is None:
            raise ValueError(
                f"No trained run under {defs.CHECKPOINT_ROOT}/ (a folder with config.json and "
                "weights): train one with main.py, or pass --run_dir or --weights."
            )
    if weights is None:
        weights = restore.run_weights(run_dir, flag_values.which)
        if weights is None:
            raise restore.WeightsError(
                f"run_dir={run_dir!r} holds no {flag_values.which} weights yet: the run "
                "has not finished an epoch."
            )
    restore.check_weights_file(weights)

    beside = os.path.join(os.path.dirname(os.path.abspath(weights)), CONFIG)
    config_path = beside if os.path.isfile(beside) else (
        os.path.join(run_dir, CONFIG) if run_dir else None
    )
    if config_path is None:  # a lone weights file: the flags give the architecture
        model_config, data_config = model_and_data_configs(
            hyperparameters_from_flags(flag_values, ARCHITECTURE_FLAGS)
        )
    else:
        stored = read_json(config_path)
        if run_dir and os.path.abspath(config_path) != os.path.abspath(os.path.join(run_dir, CONFIG)):
            _refuse_differences(RunDir(run_dir).read_config(), run_dir, stored, config_path)
        _check_flags_agree(flag_values, stored, config_path)
        model_config = GlowConfig.from_dict(stored["model"])
        data = dict(stored["data"])
        if flag_values["data_dir"].present:
            data["data_dir"] = flag_values.data_dir
        data_config = DataConfig(**data)
    model = Glow(model_config)
    restore.load_weights(model, weights)
    return model, data_config, run_dir


def _check_flags_agree(flag_values, stored, config_path):
    """Architecture flags given with a config.json must repeat its values."""
    differences = [
        f"{name}: {_IN_CONFIG[name](stored)!r} in {config_path}, {value!r} from --{name}"
        for name, value in explicit_flags(flag_values, tuple(_IN_CONFIG)).items()
        if _IN_CONFIG[name](stored) != value
    ]
    if differences:
        raise ValueError(
            "The architecture flags differ from the weights' run: " + "; ".join(differences)
            + ". Leave those flags out (config.json gives the architecture)."
        )


def _refuse_differences(run_config, run_dir, weights_config, config_path):
    """--run_dir and --weights from runs of different architectures."""
    model_a, model_b = run_config["model"], weights_config["model"]
    differences = [
        f"{name}: {model_a.get(name)!r} in {run_dir}, {model_b.get(name)!r} beside --weights"
        for name in sorted(set(model_a) | set(model_b))
        if name != "seed" and model_a.get(name) != model_b.get(name)
    ]
    if differences:
        raise ValueError(
            f"--weights were trained with another architecture than --run_dir ({config_path}): "
            + "; ".join(differences) + "."
        )
