"""Loading a trained Glow from a run folder or a weights file, with errors a user can act on.

`load_model` is the one way in; `newest_run` finds the run that the
command-line tools default to, and `shipped_run` the runs that ship inside
the package (glow_tf/pretrained/). Backend-agnostic. The weights are Keras
3's `*.weights.h5` (what training writes: glow_tf.runs.folder).
"""

import collections
import os

from glow_tf import phases
from glow_tf.runs.files import read_json
from glow_tf.runs.folder import CONFIG, WEIGHTS, RunDirError

# The trained runs that ship inside the package, one folder each, found by name.
SHIPPED_RUNS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "pretrained")


class WeightsError(ValueError):
    """A weights file that is missing, unreadable, or of another model."""


def newest_run(root):
    """The run folder under `root` whose weights were written last, or None.

    A run folder is a direct subfolder of `root` with a config.json and a
    newest or best weights file; "last" compares the modification time of
    that weights file (newest.weights.h5, else best.weights.h5). So a run
    trained after cloning beats the shipped checkpoints/digits-pretrained,
    which is found when it is the only run.
    """
    if not os.path.isdir(root):
        return None
    found = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        weights = run_weights(path)
        if weights and os.path.isfile(os.path.join(path, CONFIG)):
            found.append((os.path.getmtime(weights), path))
    return max(found)[1] if found else None


def shipped_runs():
    """The names of the runs that ship inside the package (e.g. "digits-pretrained")."""
    if not os.path.isdir(SHIPPED_RUNS):
        return []
    return sorted(name for name in os.listdir(SHIPPED_RUNS)
                  if os.path.isfile(os.path.join(SHIPPED_RUNS, name, CONFIG)))


def shipped_run(name):
    """The folder of the shipped run `name`; RunDirError naming the shipped runs if none."""
    if name not in shipped_runs():
        raise RunDirError(
            f"run_dir={name!r}: no such folder, nor a run shipped with glow_tf; the shipped "
            f"runs are {', '.join(shipped_runs()) or 'none'}."
        )
    return os.path.join(SHIPPED_RUNS, name)


def resolve_run_dir(run_dir):
    """`run_dir` itself if it is a folder, else the shipped run of that name.

    So "digits-pretrained" names the shipped run from any working folder,
    unless a folder of that name is there.
    """
    run_dir = os.fspath(run_dir)
    if os.path.isdir(run_dir) or os.sep in run_dir.rstrip(os.sep):
        return run_dir
    return shipped_run(run_dir)


def run_weights(path, which=None):
    """The weights file of a run folder: `which` ("newest"/"best"), or newest else best.

    None when there is none (a run that has not finished an epoch).
    """
    for choice in (which,) if which else ("newest", "best"):
        weights = os.path.join(path, WEIGHTS[choice])
        if os.path.isfile(weights):
            return weights
    return None


def check_weights_file(path):
    """WeightsError unless `path` is an existing HDF5 file with a weights-file name."""
    import h5py

    if not os.path.exists(path):
        raise WeightsError(f"weights={path!r}: no such file.")
    if not os.path.isfile(path):
        raise WeightsError(f"weights={path!r}: not a file; expected a .weights.h5 file.")
    if not path.endswith(".weights.h5"):
        raise WeightsError(
            f"weights={path!r}: expected a Keras weights file named *.weights.h5 (what "
            "model.save_weights and main.py write)."
        )
    if not h5py.is_hdf5(path):
        raise WeightsError(
            f"weights={path!r}: not an HDF5 file; expected weights written by "
            "model.save_weights (a .weights.h5)."
        )


Loaded = collections.namedtuple("Loaded", "model config config_path run_dir weights")
Loaded.__doc__ = """What `load_model` found.

Attributes:
    model: the Glow with its weights.
    config: the run's config.json as a dict ({"model", "data", "training"}),
        or None for a lone weights file.
    config_path: the config.json read, or None.
    run_dir: the run folder, or None.
    weights: the weights file loaded.
"""


def load_model(run_dir=None, *, weights=None, which="newest", model_config=None):
    """A trained Glow from a run folder or a weights file.

    Args:
        run_dir: a run folder (config.json and weights, as main.py writes),
            or the name of a run shipped with the package
            ("digits-pretrained"). Its `which` weights load unless `weights`
            names a file.
        weights: a weights file. Its architecture comes from the config.json
            beside it, else from `run_dir`'s, else from `model_config`.
        which: "newest" or "best" (by test bits/dim), for a run folder.
        model_config: the architecture of a lone weights file (a GlowConfig).

    Returns:
        a `Loaded` (model, config, config_path, run_dir, weights).

    Raises:
        RunDirError: `run_dir` is not a run folder, or holds another
            architecture than the config.json beside `weights`.
        WeightsError: no weights to load, or weights that do not load.
    """
    from glow_tf.config import GlowConfig
    from glow_tf.model import Glow

    if run_dir is None and weights is None:
        raise ValueError("load_model needs a run_dir or a weights file.")
    run_config = None
    if run_dir is not None:
        run_dir = resolve_run_dir(run_dir)
        run_config = _read_run_config(run_dir)
        if weights is None:
            weights = run_weights(run_dir, which)
            if weights is None:
                raise WeightsError(
                    f"run_dir={run_dir!r} holds no {which} weights yet: the run has not "
                    "finished an epoch."
                )
    check_weights_file(weights)
    beside = os.path.join(os.path.dirname(os.path.abspath(weights)), CONFIG)
    config, config_path = run_config, run_dir and os.path.join(run_dir, CONFIG)
    if os.path.isfile(beside) and (
        run_dir is None or not os.path.samefile(beside, config_path)
    ):
        config, config_path = _read_run_config(os.path.dirname(beside)), beside
        if run_config is not None:
            _refuse_other_architecture(run_config, run_dir, config, beside)
    if config is not None:
        model_config = GlowConfig.from_dict(config["model"])
    elif model_config is None:
        raise WeightsError(
            f"weights={weights!r}: no config.json beside them; give their architecture "
            "(model_config, or the architecture flags)."
        )
    phases.report(f"Building the model and loading its weights from {weights} ...")
    model = Glow(model_config)
    _load_weights(model, weights)
    return Loaded(model, config, config_path, run_dir, weights)


def _read_run_config(run_dir):
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path):
        raise RunDirError(
            f"run_dir={run_dir!r}: no {CONFIG} there; expected a training run's folder "
            "(main.py writes it)."
        )
    try:
        config = read_json(path)
        config["model"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunDirError(
            f"{path} cannot be read ({error!r}); expected the config.json that main.py wrote. "
            "Restore it from a copy, or give the weights file alone (--weights) with the "
            "architecture it was trained with."
        ) from None
    return config


def _refuse_other_architecture(run_config, run_dir, weights_config, config_path):
    """A run folder and weights from a run of another architecture."""
    model_a, model_b = run_config["model"], weights_config["model"]
    differences = [
        f"{name}: {model_a.get(name)!r} in {run_dir}, {model_b.get(name)!r} beside the weights"
        for name in sorted(set(model_a) | set(model_b))
        if name != "seed" and model_a.get(name) != model_b.get(name)
    ]
    if differences:
        raise RunDirError(
            f"The weights were trained with another architecture than run_dir ({config_path}): "
            + "; ".join(differences) + "."
        )


def _load_weights(model, path):
    """model.load_weights(path), with a WeightsError that says what went wrong.

    A truncated file, or one of a model of another architecture, names the
    file and the model's architecture; the cause is Keras' own message.
    """
    from glow_tf.runs import convert

    try:
        layout = convert.layout_of(path)
    except OSError:
        layout = "stacked"  # load_weights says what is wrong with the file
    if layout == "list":
        raise WeightsError(
            f"weights={path!r} are in the layout of glow_tf 0.2 (one list of layers). "
            f"Convert them once: python -m glow_tf.cli.convert {path}"
        )
    load = model.load_weights if layout == "stacked" else \
        lambda path: convert.load_earlier_layout(model, path, layout)
    try:
        load(path)
    except OSError as error:  # h5py: truncated or otherwise corrupt
        raise WeightsError(
            f"weights={path!r}: the HDF5 file cannot be read ({error}); it may be "
            f"truncated or corrupt. {_remedy(path)}"
        ) from None
    except (ValueError, KeyError) as error:
        cause = str(error).strip().splitlines()[0]
        raise WeightsError(
            f"weights={path!r} do not fit the model {describe(model.config)}: {cause} "
            "Give the architecture the weights were trained with (the config.json "
            "of their run, or the architecture flags)."
        ) from None


def _remedy(path):
    """What to do about a damaged weights file: its run can write it again, or a copy can."""
    from glow_tf.runs.folder import BACKUP, BACKUP_STATE, BEST_WEIGHTS, NEWEST_WEIGHTS

    run_dir, name = os.path.split(path)
    run_dir = run_dir or "."
    if name == NEWEST_WEIGHTS and os.path.isfile(os.path.join(run_dir, BACKUP, BACKUP_STATE)):
        return (f"Delete it and rerun main.py with --run_dir {run_dir}: the run writes it "
                "again from its backup.")
    if name == BEST_WEIGHTS:
        return "Restore it from a copy, or use the run's newest weights (--which newest)."
    return "Restore it from a copy."


def describe(config):
    """'image_shape=(8, 8, 1), k_glow=32, ...': the fields that shape the weights."""
    fields = ("image_shape", "k_glow", "l_glow", "hidden_channels", "coupling",
              "permutation", "num_classes")
    return "(" + ", ".join(f"{name}={getattr(config, name)!r}" for name in fields) + ")"
