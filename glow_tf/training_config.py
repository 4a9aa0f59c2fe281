"""TrainingConfig: how to train a Glow (backend-agnostic).

It lives apart from glow_tf.training, which imports the data pipelines
(tf.data, tensorflow-datasets), so that common_definitions.py reads its
defaults from here without loading those.
"""

import dataclasses
import math

from glow_tf import distribute
from glow_tf import precision as precision_lib

OPTIMIZERS = ("adamax", "adam")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How to train (the model and the data have their own configs).

    Attributes:
        batch_size: images per step.
        epochs: passes over the training split.
        lr: learning rate after the warmup.
        warmup: epochs (may be fractional) of linear warmup from ~0 to lr,
            counted in epochs as in the original Glow code; 0 for none.
        optimizer: "adamax" (the paper's) or "adam".
        clipnorm: clip each gradient to this norm; None for no clipping.
        weight_decay: decoupled weight decay (as in AdamW: each step,
            w -= lr * weight_decay * w) of the convolution kernels, the only
            weights of the coupling networks and split priors that are not
            scales or shifts; 0 for none. It fights overfitting on small
            datasets such as digits.
        seed: seeds Python, NumPy and the backend, and the data shuffling.
        n_init: training images for the data-dependent initialisation.
        backup_every: steps between the backups that an interrupted run
            resumes from (one is also taken at the end of every epoch).
        jit: compile the training step with XLA (`jit_compile=True`); False
            leaves it to Keras ("auto": XLA on a TensorFlow GPU, JAX always
            compiles).
        mixed_precision: "none", "bfloat16" or "float16" (with loss
            scaling) for the coupling networks (`glow_tf.precision`).
        remat: recompute the coupling networks in the backward pass
            (`Glow(remat=True)`).
        strategy: a `glow_tf.distribute` strategy name; `batch_size` is the
            global batch, split over its replicas.
        steps_per_execution: training steps per call of the compiled step.
    """

    batch_size: int = 64
    epochs: int = 100
    lr: float = 1e-3
    warmup: float = 10.0
    optimizer: str = "adamax"
    clipnorm: float | None = None
    weight_decay: float = 0.0
    seed: int = 0
    n_init: int = 256
    backup_every: int = 500
    jit: bool = False
    mixed_precision: str = "none"
    remat: bool = False
    strategy: str = "none"
    steps_per_execution: int = 1

    def __post_init__(self):
        for name in ("batch_size", "epochs", "n_init", "backup_every", "steps_per_execution"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}: expected an integer >= 1.")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r}: expected a learning rate > 0.")
        if not (isinstance(self.warmup, (int, float)) and self.warmup >= 0):
            raise ValueError(f"warmup={self.warmup!r}: expected a number of epochs >= 0.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer={self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}."
            )
        if self.clipnorm is not None and not self.clipnorm > 0:
            raise ValueError(
                f"clipnorm={self.clipnorm!r}: expected a norm > 0, or None for no clipping."
            )
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay={self.weight_decay!r}: expected a number >= 0.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed={self.seed!r}: expected an integer.")
        for name in ("jit", "remat"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected True or False.")
        precision_lib.from_mixed_precision(self.mixed_precision)
        if self.strategy not in distribute.STRATEGIES:
            raise ValueError(
                f"strategy={self.strategy!r}: expected one of {', '.join(distribute.STRATEGIES)}."
            )

    @property
    def precision(self):
        """The `glow_tf.precision` name of `mixed_precision`."""
        return precision_lib.from_mixed_precision(self.mixed_precision)

    def to_dict(self):
        return dataclasses.asdict(self)
