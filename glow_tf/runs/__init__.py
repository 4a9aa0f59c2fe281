"""Run folders: their layout, writing them safely, and loading a trained model back.

Backend-agnostic and TensorFlow-free: a run written on one Keras backend
loads on the other.
"""

from glow_tf.runs.folder import RunDir, RunDirError, RunDirMismatchError
from glow_tf.runs.loading import (
    Loaded, WeightsError, load_model, newest_run, resolve_run_dir, shipped_runs,
)

__all__ = [
    "Loaded", "RunDir", "RunDirError", "RunDirMismatchError", "WeightsError", "load_model",
    "newest_run", "resolve_run_dir", "shipped_runs",
]
