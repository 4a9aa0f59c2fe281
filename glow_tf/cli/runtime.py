"""The Keras backend and TensorFlow's CPU kernels, chosen before either starts.

Keras reads KERAS_BACKEND once, when it is first imported, and TensorFlow
reads TF_ENABLE_ONEDNN_OPTS once, when it is first imported. So the tools
import neither until their flags are read: `glow_tf` imports Keras only
when Glow or the layers are first asked for, the tools' modules import
the rest inside `main`, and a test keeps it so. `prepare` then sets both
variables, and the process starts Keras once, with the backend asked for.
(Starting the process again with the variables set would work too, but
would pay TensorFlow's import, seconds, twice.)
"""

import os
import sys

from absl import flags

from glow_tf.config import use_onednn

BACKENDS = ("tensorflow", "jax")


def define_flags(flag_values):
    flags.DEFINE_enum(
        "backend", None, BACKENDS,
        "Keras backend to run on. Default: the KERAS_BACKEND environment variable, else "
        "Keras' own default (tensorflow). TensorFlow still reads the data either way.",
        flag_values=flag_values,
    )


def prepare(backend=None, onednn="auto", hidden_channels=None):
    """Sets KERAS_BACKEND and TF_ENABLE_ONEDNN_OPTS for this process's first import.

    Args:
        backend: "tensorflow", "jax", or None for the environment's choice.
        onednn: TrainingConfig.onednn ("auto", "on", "off"). "auto" leaves a
            TF_ENABLE_ONEDNN_OPTS that the environment already sets.
        hidden_channels: the model's width, which "auto" decides by; None
            leaves TF_ENABLE_ONEDNN_OPTS alone.

    Raises:
        ValueError: Keras already runs on another backend in this process
            (a tool's `main` called from Python after Keras was imported).
    """
    if backend is not None:
        if "keras" in sys.modules:
            current = sys.modules["keras"].backend.backend()
            if current != backend:
                raise ValueError(
                    f"--backend={backend}: Keras already runs on {current} in this "
                    f"process; start a new one (or set KERAS_BACKEND={backend} before "
                    "Python imports Keras)."
                )
        os.environ["KERAS_BACKEND"] = backend
    if hidden_channels is None or "tensorflow" in sys.modules:
        return  # Once TensorFlow runs, its kernels stay as they are (speed only).
    if onednn == "auto" and "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        return  # the user's own choice
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if use_onednn(onednn, hidden_channels) else "0"
