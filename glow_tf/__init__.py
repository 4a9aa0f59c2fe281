"""glow_tf: Glow (Kingma & Dhariwal 2018) as a backend-agnostic Keras 3 model.

The package is laid out in rooms:

- the core, here: `config` (GlowConfig, TrainingConfig), `datasets` (the
  dataset catalogue and DataConfig), `model` (Glow), `layers` (one bijector
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

from glow_tf import layers
from glow_tf.config import GlowConfig, TrainingConfig
from glow_tf.datasets import DataConfig
from glow_tf.model import Glow

__all__ = ["DataConfig", "Glow", "GlowConfig", "TrainingConfig", "layers"]
__version__ = "0.2.0"
