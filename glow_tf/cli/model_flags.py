"""The trained model that sample.py, evaluate.py and export.py work on, from --run_dir / --weights.

The tools take --run_dir (default: the newest run under checkpoints/, else
the shipped digits-pretrained),
--weights (one file), --which (newest or best) and main.py's architecture
flags, which describe a lone weights file that has no config.json beside
it. `glow_tf.runs.load_model` does the loading.
"""

import collections
import os

from absl import flags

import common_definitions as defs
from glow_tf.cli import runtime
from glow_tf.cli import settings as settings_lib
from glow_tf.runs import folder


def define_model_flags(flag_values):
    """--run_dir, --weights, --which and the architecture flags."""
    flags.DEFINE_string(
        "run_dir", None,
        f"A training run's folder (config.json + weights), or the name of a run shipped "
        f"with glow_tf ({defs.PRETRAINED_RUN}). Default: the newest run under "
        f"{defs.CHECKPOINT_ROOT}/, the one whose weights were written last; without one, "
        f"{defs.PRETRAINED_RUN}.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "weights", None,
        "A weights file (.weights.h5) instead of a run's. "
        "The architecture comes from the config.json beside it, else from --run_dir's, "
        "else from the architecture flags.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "which", "newest", tuple(folder.WEIGHTS),
        "Which weights of a run: the newest, or the best by test bits/dim.",
        flag_values=flag_values,
    )
    settings_lib.define_flags(flag_values, settings_lib.ARCHITECTURE)
    runtime.define_flags(flag_values)


def _run_dir(flag_values):
    """--run_dir (a shipped run's name resolved to its folder); without it and --weights,
    the newest run under checkpoints/, else the shipped one."""
    from glow_tf.runs import newest_run, resolve_run_dir

    if flag_values.run_dir is None and flag_values.weights is None:
        return newest_run(defs.CHECKPOINT_ROOT) or resolve_run_dir(defs.PRETRAINED_RUN)
    return None if flag_values.run_dir is None else resolve_run_dir(flag_values.run_dir)


def prepare_runtime(flag_values):
    """Chooses the backend and TensorFlow's CPU runtime (glow_tf.cli.runtime) for the model.

    The run's config.json gives the model's width and its training's
    threads_per_op; a lone weights file, the architecture flags. Call it before
    anything imports Keras; it starts Keras. A config.json that cannot be
    read is left to `load_model` to report.
    """
    hidden_channels, threads_per_op = flag_values.hidden_channels, "auto"
    config_dir = _run_dir(flag_values)
    if flag_values.weights is not None:
        beside = os.path.dirname(os.path.abspath(flag_values.weights))
        if os.path.isfile(os.path.join(beside, folder.CONFIG)):
            config_dir = beside
    if config_dir is not None:
        try:
            config = folder.RunDir(config_dir).read_config()
            hidden_channels = config["model"]["hidden_channels"]
            threads_per_op = config.get("training", {}).get("threads_per_op", "auto")
        except (OSError, ValueError, KeyError, TypeError):
            pass
    runtime.prepare(flag_values.backend)
    runtime.tune_tensorflow(threads_per_op, hidden_channels)


Trained = collections.namedtuple("Trained", "model data run_dir weights")
Trained.__doc__ = """The model a tool works on: the Glow with its weights, the DataConfig of
its dataset, its run folder (None for a lone weights file) and the weights file."""


def load_model(flag_values):
    """The `Trained` model that the flags name.

    Raises ValueError (RunDirError, WeightsError, DatasetError) for the
    user's errors.
    """
    from glow_tf.datasets import DataConfig
    from glow_tf.runs import load_model

    run_dir, weights = _run_dir(flag_values), flag_values.weights
    given = settings_lib.explicit(flag_values, settings_lib.ARCHITECTURE)
    flagged = settings_lib.configs_from(settings_lib.settings_from_flags(
        flag_values, settings_lib.ARCHITECTURE
    ))
    loaded = load_model(run_dir, weights=weights, which=flag_values.which,
                        model_config=flagged.model)
    if loaded.config is None:  # a lone weights file: the flags gave the architecture
        return Trained(loaded.model, flagged.data, run_dir, loaded.weights)
    _check_flags_agree(given, loaded.config, loaded.config_path)
    data = dict(loaded.config["data"])
    if "data_dir" in given:
        data["data_dir"] = given["data_dir"]
    return Trained(loaded.model, DataConfig(**data), run_dir, loaded.weights)


def _check_flags_agree(given, run_config, config_path):
    """Architecture flags given with a config.json must repeat its values."""
    stored = settings_lib.architecture_of(run_config)
    differences = [
        f"{name}: {stored[name]!r} in {config_path}, {value!r} from --{name}"
        for name, value in given.items()
        if name != "data_dir" and stored[name] != value
    ]
    if differences:
        raise ValueError(
            "The architecture flags differ from the weights' run: " + "; ".join(differences)
            + ". Leave those flags out (config.json gives the architecture)."
        )
