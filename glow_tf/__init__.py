"""glow_tf: Glow (Kingma & Dhariwal 2018) as a backend-agnostic Keras 3 model.

Only the Keras core is imported here, so `KERAS_BACKEND=jax` works without
TensorFlow installed; the TensorFlow-only parts (data, training, TFP) are
imported from their own modules.
"""

# The layers come first: glow_tf.networks needs glow_tf.layers.actnorm.
from glow_tf import layers
from glow_tf.config import GlowConfig
from glow_tf.model import Glow

__all__ = ["Glow", "GlowConfig", "layers"]
__version__ = "0.1.0"
