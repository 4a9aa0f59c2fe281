"""glow_tf: Glow (Kingma & Dhariwal 2018) as a backend-agnostic Keras 3 model.

The package is laid out in rooms:

- the core, here: `config` (GlowConfig, TrainingConfig), `datasets` (the
  dataset catalogue and DataConfig), `image_folders` (an image folder's
  splits and classes), `phases` (the long phases of a run, told as they
  start), `model` (Glow), `layers` (one bijector
  per file, and the coupling networks), `quantization`, `checks`,
  `precision`. Keras, NumPy and SciPy only: it imports without TensorFlow,
  so `KERAS_BACKEND=jax` works where TensorFlow is not installed.
- `glow_tf.runs`: run folders, safe writes, loading a trained model.
- `glow_tf.analysis`: pictures and scores of a trained model.
- `glow_tf.tf`: what needs TensorFlow: the tf.data pipelines, training
  through `fit` with its callbacks, TensorBoard summaries, distribution,
  the TensorFlow Probability adapter, the SavedModel export.
- `glow_tf.cli`: the command-line tools (glow-train, glow-sample,
  glow-evaluate, glow-export), their flags made from the configs.
"""

import importlib

from glow_tf.config import GlowConfig, TrainingConfig
from glow_tf.datasets import DataConfig

__all__ = ["DataConfig", "Glow", "GlowConfig", "TrainingConfig", "layers"]
__version__ = "0.2.0"

# Keras picks its backend when it is first imported. The configs import
# without it; Glow and the layers import it when first asked for, so that
# the command-line tools can choose the backend (--backend) after reading
# their flags. `from glow_tf import Glow` works as ever.
_LAZY = {"Glow": ("glow_tf.model", "Glow"), "layers": ("glow_tf.layers", None)}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'glow_tf' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})
