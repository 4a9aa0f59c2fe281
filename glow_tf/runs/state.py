"""A training run's state in one NumPy file: the backup that a resumed run reads.

Keras writes a `.weights.h5` one HDF5 dataset at a time after walking the
model's object graph: 0.8 s for the 3,000 arrays of the digits Glow with
its optimizer's slots (most of it Python), more on a loaded machine. A run
backs up several times an epoch, so its backup is one uncompressed `.npz`
instead: the values of the model's variables and of the optimizer's, in
their order, with each one's path and shape to check against, the step
count and, in a training backup, the state of the model's noise generator
(`Glow.seed_generator`, which `model.weights` leaves out), so that a
resumed run draws the dequantisation noise an uninterrupted one would.
Writing it takes under a tenth of a second (docs/performance.md). NumPy
only, so a state written on one Keras backend restores on the other.

The run's newest and best weights stay Keras `.weights.h5` files
(glow_tf.runs.folder), written less often.
"""

import contextlib
import json
import os
import zipfile

import numpy as np

from glow_tf.runs.files import atomic_write

FORMAT = 1


class StateError(ValueError):
    """A state file that cannot be read, or does not fit the model or optimizer it restores."""


# What NumPy raises for a truncated or otherwise damaged .npz.
_DAMAGED = (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile)


def host_values(variables):
    """The variables' values as NumPy arrays (one transfer each)."""
    from keras import ops

    return [np.asarray(ops.convert_to_numpy(v)) for v in variables]


def write(path, model, model_values, step, optimizer=None, optimizer_values=()):
    """Writes one state file atomically.

    Args:
        model_values: `host_values(model.weights)`.
        step: the optimizer's step count the values belong to.
        optimizer, optimizer_values: the optimizer and
            `host_values(optimizer.variables)`; none for weights alone.
            With them, the model's noise generator state is written too.
    """
    generator = _generator(model) if optimizer else None
    meta = {
        "format": FORMAT,
        "step": int(step),
        "model": [_describe(v) for v in model.weights],
        "optimizer": [_describe(v) for v in optimizer.variables] if optimizer else [],
        "generator": _describe(generator) if generator is not None else None,
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    if generator is not None:
        arrays["generator"] = host_values([generator])[0]
    arrays.update({f"model_{i:05d}": value for i, value in enumerate(model_values)})
    arrays.update({f"optimizer_{i:05d}": value for i, value in enumerate(optimizer_values)})

    def write_to(temp):
        with open(temp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write_to)


def read(path):
    """(meta, model values, optimizer values) of a state file; StateError if damaged."""
    meta, model_values, optimizer_values, _ = _read(path)
    return meta, model_values, optimizer_values


def _read(path):
    with _opened(path) as (data, meta):
        model_values = [data[f"model_{i:05d}"] for i in range(len(meta["model"]))]
        optimizer_values = [data[f"optimizer_{i:05d}"] for i in range(len(meta["optimizer"]))]
        generator = data["generator"] if meta.get("generator") else None
    return meta, model_values, optimizer_values, generator


def read_step(path):
    """The step count of a state file (reads its description only); StateError if damaged."""
    with _opened(path) as (_, meta):
        return int(meta["step"])


@contextlib.contextmanager
def _opened(path):
    """(the open .npz, its description); what the file lacks or garbles is a StateError
    naming it, whether found on opening or on reading an array in the block."""
    try:
        with np.load(path, allow_pickle=False) as data:
            yield data, _meta(path, data)
    except StateError:
        raise
    except _DAMAGED as error:
        raise StateError(f"{path} cannot be read: {_damage(error)}.") from None


def _meta(path, data):
    meta = json.loads(str(data["meta"]))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        format_ = meta.get("format") if isinstance(meta, dict) else None
        raise StateError(f"{path}: state format {format_!r}; expected {FORMAT}.")
    return meta


def _damage(error):
    """What a NumPy error on reading an .npz says about the file."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, PermissionError):
        return "permission denied"
    return f"it is truncated or damaged ({type(error).__name__}: {error})"


def restore(path, model, optimizer=None, assign_with=None):
    """Assigns a state file's values to the model's (and the optimizer's) variables.

    With the optimizer, the model's noise generator state is restored too
    (where the file has it: older backups restart the noise stream).
    Returns the step count it holds. Raises StateError, naming the first
    variable that differs, when the file is of another model or optimizer.
    `assign_with(variables, values)` assigns them (default: `assign`).
    """
    meta, model_values, optimizer_values, generator_value = _read(path)
    parts = [("model", model.weights, model_values, meta["model"])]
    if optimizer is not None:
        parts.append(("optimizer", optimizer.variables, optimizer_values, meta["optimizer"]))
    for kind, variables, _, described in parts:
        _check_fits(path, kind, variables, described)
    generator = _generator(model) if optimizer is not None else None
    if generator is not None and generator_value is not None:
        if list(generator.shape) != list(generator_value.shape):
            raise StateError(
                f"{os.path.basename(path)}: the noise generator state has shape "
                f"{generator_value.shape} there and {tuple(generator.shape)} here."
            )
    for _, variables, values, _ in parts:
        (assign_with or assign)(variables, values)
    if generator is not None and generator_value is not None:
        generator.assign(generator_value)
    return meta["step"]


def assign(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


def _generator(model):
    """The state variable of the model's training noise generator, or None."""
    seed_generator = getattr(model, "seed_generator", None)
    return None if seed_generator is None else seed_generator.state


def _describe(variable):
    return {"path": variable.path, "shape": list(variable.shape)}


def _check_fits(path, kind, variables, described):
    if len(variables) != len(described):
        raise StateError(
            f"{os.path.basename(path)} holds {len(described)} {kind} variables; this "
            f"{kind} has {len(variables)}. It is the state of another architecture or "
            "optimizer: resume with the run's own settings."
        )
    for variable, stored in zip(variables, described):
        if list(variable.shape) != stored["shape"]:
            raise StateError(
                f"{os.path.basename(path)}: {kind} variable {stored['path']} has shape "
                f"{tuple(stored['shape'])} there and {tuple(variable.shape)} here "
                f"({variable.path}): the state of another architecture."
            )
