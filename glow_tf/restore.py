"""Finding a trained model's weights and loading them, with errors a user can act on.

Backend-agnostic. Two weights formats load:

- Keras 3's `*.weights.h5` (what training writes: glow_tf.run_dir), matched
  to the model by the path of each layer;
- a legacy `weights.h5` (any other `.h5`/`.hdf5` name): the HDF5 layout of
  Keras 2's `model.save_weights("weights.h5")`, one group per layer, matched
  to the model's layers in order. Keras 3 still reads it
  (`keras.src.legacy.saving.legacy_h5_format`), through `load_weights`.
"""

import os

from glow_tf import run_dir as run_dir_lib


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
        if weights and os.path.isfile(os.path.join(path, run_dir_lib.CONFIG)):
            found.append((os.path.getmtime(weights), path))
    return max(found)[1] if found else None


def run_weights(path, which=None):
    """The weights file of a run folder: `which` ("newest"/"best"), or newest else best.

    None when there is none (a run that has not finished an epoch).
    """
    for choice in (which,) if which else ("newest", "best"):
        weights = os.path.join(path, run_dir_lib.WEIGHTS[choice])
        if os.path.isfile(weights):
            return weights
    return None


def check_weights_file(path):
    """WeightsError unless `path` is an existing HDF5 file with a weights-file name."""
    import h5py

    if not os.path.exists(path):
        raise WeightsError(f"weights={path!r}: no such file.")
    if not os.path.isfile(path):
        raise WeightsError(f"weights={path!r}: not a file; expected a .weights.h5 or .h5 file.")
    if not path.endswith((".h5", ".hdf5")):
        raise WeightsError(
            f"weights={path!r}: expected a Keras weights file named *.weights.h5, or a "
            "legacy weights.h5 (.h5 / .hdf5)."
        )
    if not h5py.is_hdf5(path):
        raise WeightsError(
            f"weights={path!r}: not an HDF5 file; expected weights written by "
            "model.save_weights (a .weights.h5, or a legacy weights.h5)."
        )


def load_weights(model, path):
    """model.load_weights(path), with a WeightsError that says what went wrong.

    A truncated file, or one of a model of another architecture, names the
    file and the model's architecture; the cause is Keras' own message.
    """
    check_weights_file(path)
    try:
        model.load_weights(path)
    except OSError as error:  # h5py: truncated or otherwise corrupt
        raise WeightsError(
            f"weights={path!r}: the HDF5 file cannot be read ({error}); it may be "
            "truncated or corrupt."
        ) from None
    except (ValueError, KeyError) as error:
        cause = str(error).strip().splitlines()[0]
        raise WeightsError(
            f"weights={path!r} do not fit the model {describe(model.config)}: {cause} "
            "Give the architecture the weights were trained with (the config.json "
            "of their run, or the architecture flags)."
        ) from None


def describe(config):
    """'image_shape=(8, 8, 1), k_glow=32, ...': the fields that shape the weights."""
    fields = ("image_shape", "k_glow", "l_glow", "hidden_channels", "coupling",
              "permutation", "num_classes")
    return "(" + ", ".join(f"{name}={getattr(config, name)!r}" for name in fields) + ")"
