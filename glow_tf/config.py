"""The settings of a run: GlowConfig (the model) and TrainingConfig (how to train it).

Each field carries its default and its help text (`setting`), the one
source that the class docstrings, the command-line flags and docs/cli.md
are made from. DataConfig, the third part of a run, lives beside the
dataset catalogue in `glow_tf.datasets`. Nothing here imports TensorFlow.
"""

import dataclasses
import math

from glow_tf import precision as precision_lib

COUPLINGS = ("affine", "additive")
# The paper's three ways of permuting channels between couplings (section 3.2):
# a learned 1x1 convolution (LU-decomposed or plain), a fixed reversal, and a
# fixed random shuffle.
PERMUTATIONS = ("lu", "conv", "reverse", "shuffle")
OPTIMIZERS = ("adamax", "adam")
# tf.distribute on TensorFlow; keras.distribution on JAX (glow_tf.tf.distribute).
TF_STRATEGIES = ("mirrored", "multi_worker", "tpu")
JAX_STRATEGIES = ("data_parallel",)
STRATEGIES = ("none", *TF_STRATEGIES, *JAX_STRATEGIES)
THREADS_PER_OP = ("auto", "one", "all")
# How a level runs its K steps of flow (Glow(loop=...), glow_tf.layers.step.FlowSteps).
LOOPS = ("auto", "loop", "unrolled")
# The sampling temperature of the paper's figures (Kingma & Dhariwal 2018,
# section 5): what the tools and the TensorBoard samples use unless told.
SAMPLE_TEMPERATURE = 0.7
# Coupling networks at most this wide make ops too small to split over a
# CPU's cores: one thread per op costs less CPU time (docs/performance.md).
NARROW_WIDTH = 64
# From this width, a coupling network's convolutions are most of a step, and
# on TensorFlow's CPU `loop="auto"` runs a level's steps as one loop
# (glow_tf.layers.step.loops_by_default) and the tools run Grappler's
# remapper, which fuses each convolution with its bias and ReLU
# (glow_tf.cli.runtime.tune_tensorflow); docs/performance.md.
WIDE_WIDTH = 256


def setting(default, help, *, choices=None, flag=True):
    """A config field with its help text, and whether the command line has a flag for it.

    `flag=False` marks a field that the command line derives from other
    flags (GlowConfig.image_shape comes from --img_size and --channel_size).
    """
    return dataclasses.field(
        default=default, metadata={"help": help, "choices": choices, "flag": flag}
    )


def documented(cls):
    """Appends an Attributes section, made from the fields' help, to the class docstring."""
    lines = [f"        {f.name}: {f.metadata['help']}" for f in dataclasses.fields(cls)]
    cls.__doc__ = f"{cls.__doc__.rstrip()}\n\n    Attributes:\n" + "\n".join(lines) + "\n"
    return cls


def check_n_bits(n_bits, error=ValueError):
    """Raises `error` naming `n_bits` unless it is an integer in 1..8.

    The model's quantisation and the data's bit reduction share this check,
    so that both refuse the same values with the same words.
    """
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or not 1 <= n_bits <= 8:
        raise error(f"n_bits={n_bits!r}: expected an integer in 1..8.")


def check_positive_ints(config, names, error=ValueError):
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise error(f"{name}={value!r}: expected an integer >= 1.")


class _Config:
    """to_dict / from_dict for the frozen config dataclasses."""

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from `to_dict()` output, naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown {cls.__name__} fields {unknown}; expected a subset of "
                f"{sorted(known)}."
            )
        return cls(**values)

    @classmethod
    def help(cls, name):
        """The help text of field `name`."""
        return {f.name: f for f in dataclasses.fields(cls)}[name].metadata["help"]


@documented
@dataclasses.dataclass(frozen=True)
class GlowConfig(_Config):
    """Architecture of a Glow model.

    The defaults are the paper's CIFAR-10 model (Kingma & Dhariwal 2018,
    table 4): K=32 steps per level, L=3 levels, 512 hidden channels, affine
    coupling, LU-decomposed 1x1 convolutions, 8-bit images.
    """

    image_shape: tuple = setting(
        (32, 32, 3),
        "(height, width, channels) of the images; height and width must be "
        "divisible by 2**l_glow (one squeeze per level).",
        flag=False,  # --img_size and --channel_size
    )
    k_glow: int = setting(32, "K, steps of flow per level.")
    l_glow: int = setting(3, "L, levels of the multi-scale architecture.")
    hidden_channels: int = setting(512, "Width of the coupling networks.")
    coupling: str = setting("affine", "Coupling layer.", choices=COUPLINGS)
    permutation: str = setting(
        "lu",
        "Channel permutation: the learned invertible 1x1 convolution, LU-decomposed "
        "(lu) or plain (conv), or a fixed reverse or shuffle.",
        choices=PERMUTATIONS,
    )
    n_bits: int = setting(
        8, "Bits per colour channel the images are quantised to (1..8).",
        flag=False,  # the data's --n_bits
    )
    num_classes: int = setting(
        0,
        "Classes of a class-conditional model (the top prior depends on the label, "
        "and a classifier reads the top latent); 0 for an unconditional one.",
        flag=False,  # --y_condition takes the dataset's classes
    )
    log_scale_factor: float = setting(
        1.0,
        "ActNorm learns its log-scale divided by this factor and multiplies it back, as the "
        "reference code does with 3, so that Adam(ax) moves the scales factor times faster; "
        "1 learns the log-scale itself.",
    )
    weight_y: float = setting(
        0.01,
        "With --y_condition: weight of the classifier's cross-entropy (bits per "
        "image) in the loss.",
    )
    seed: int | None = setting(
        None, "Seed of the weight initialisers; None draws a random one.",
        flag=False,  # the training --seed
    )

    def __post_init__(self):
        # A JSON round trip turns the tuple into a list; keep it hashable.
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        shape = self.image_shape
        if len(shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise ValueError(
                f"image_shape={shape!r}: expected three positive integers "
                "(height, width, channels)."
            )
        check_positive_ints(self, ("k_glow", "l_glow", "hidden_channels"))
        if self.coupling not in COUPLINGS:
            raise ValueError(
                f"coupling={self.coupling!r}: expected one of {', '.join(COUPLINGS)}."
            )
        if self.permutation not in PERMUTATIONS:
            raise ValueError(
                f"permutation={self.permutation!r}: expected one of "
                f"{', '.join(PERMUTATIONS)}."
            )
        check_n_bits(self.n_bits)
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(
                f"num_classes={self.num_classes!r}: expected 0 (unconditional) or "
                "the number of classes."
            )
        if not (isinstance(self.log_scale_factor, (int, float)) and self.log_scale_factor > 0
                and math.isfinite(self.log_scale_factor)):
            raise ValueError(
                f"log_scale_factor={self.log_scale_factor!r}: expected a number > 0."
            )
        if not self.weight_y >= 0:  # also rejects NaN
            raise ValueError(f"weight_y={self.weight_y!r}: expected a value >= 0.")
        height, width, _ = shape
        factor = 2**self.l_glow
        if height % factor or width % factor:
            raise ValueError(
                f"image_shape={shape!r}: height and width must be divisible by "
                f"2**l_glow = {factor} (l_glow={self.l_glow}), since every level "
                "halves them. Resize or pad the images, or use fewer levels."
            )

    @property
    def num_dims(self):
        """D = H * W * C, the dimension bits/dim divides by."""
        height, width, channels = self.image_shape
        return height * width * channels


@documented
@dataclasses.dataclass(frozen=True)
class TrainingConfig(_Config):
    """How to train a Glow (the model and the data have their own configs).

    The defaults are the paper's: Adamax at 1e-3 after a linear warmup, 64
    images per step, Polyak averaging of the weights.
    """

    batch_size: int = setting(
        64, "Images per training step: the global batch, split over the devices of --strategy."
    )
    epochs: int = setting(100, "Passes over the training split; raising it continues a finished run.")
    lr: float = setting(1e-3, "Learning rate after the warmup.")
    warmup: float = setting(
        10.0,
        "Epochs (may be fractional) of linear learning-rate warmup, counted in epochs as "
        "in the original Glow code; 0 for none.",
    )
    optimizer: str = setting("adamax", "Optimizer: adamax (the paper's) or adam.", choices=OPTIMIZERS)
    polyak: bool = setting(
        True,
        "Polyak averaging, as in the paper's code: keep an exponential moving average of "
        "the weights (the optimizer's use_ema), which the test bits/dim, the newest and "
        "best weights, sampling and evaluation use; training goes on from the raw weights. "
        "--nopolyak scores and keeps the raw weights.",
    )
    polyak_epochs: float = setting(
        1.0,
        "With --polyak: the average's horizon in epochs, as in the original Glow code: "
        "each step keeps 1 - 1/(polyak_epochs * steps per epoch) of the average.",
    )
    clipnorm: float = setting(0.0, "Clip each gradient to this norm; 0 for no clipping.")
    weight_decay: float = setting(
        0.0,
        "Decoupled weight decay (AdamW-style: each step w -= lr * weight_decay * w) of the "
        "convolution kernels, the only weights that are not scales or shifts; 0 for none.",
    )
    seed: int = setting(
        0, "Seed of the weights, the data order and the noise (Python, NumPy and the backend)."
    )
    n_init: int = setting(256, "Training images for the data-dependent ActNorm initialisation.")
    backup_every: int = setting(
        500,
        "Steps between the backups an interrupted run resumes from (one is also taken at "
        "the end of every epoch).",
    )
    jit: bool = setting(
        False,
        "Compile the training step with XLA (jit_compile=True). Without it Keras decides: "
        "XLA on a TensorFlow GPU, none on a CPU; JAX always compiles.",
    )
    mixed_precision: str = setting(
        "none",
        "Run the coupling networks in bfloat16, or in float16 with loss scaling; "
        "log-dets, priors and the loss stay float32.",
        choices=precision_lib.MIXED_PRECISIONS,
    )
    remat: bool = setting(
        False,
        "Recompute each step of flow in the backward pass instead of storing its "
        "activations (per-step checkpointing): much less memory, about one more forward pass.",
    )
    loop: str = setting(
        "auto",
        "How each level runs its K steps of flow: as one loop over their stacked weights "
        "(a trace K times shorter), unrolled, or auto: one loop with --remat, on JAX or on "
        "an accelerator, and with TensorFlow on a CPU from a width of "
        f"{WIDE_WIDTH} (a quarter of the warm-up and less memory, for a step about 1.1x "
        "as long: unrolled is the faster choice for a long run there), unrolled with "
        "TensorFlow on a CPU otherwise; on JAX's CPU the loop also recomputes each step in "
        "the backward pass, as "
        "--remat does but keeping the coupling networks' hidden convolution output from a "
        "width of 256, which is faster there (docs/performance.md). The weights are the "
        "same either way.",
        choices=LOOPS,
    )
    strategy: str = setting(
        "none",
        "Devices to train on: mirrored (this machine's GPUs), multi_worker (the cluster in "
        "TF_CONFIG) or tpu with TensorFlow; data_parallel (every local device) with JAX.",
        choices=STRATEGIES,
    )
    steps_per_execution: int = setting(
        1,
        "Training steps per call of the compiled step: fewer Python round trips for small "
        "models.",
    )
    threads_per_op: str = setting(
        "auto",
        "TensorFlow CPU threads per op: one (several ops run side by side instead), all "
        "(TensorFlow's default: each op split over every core), or auto: one when the "
        f"coupling networks are at most {NARROW_WIDTH} channels wide, whose ops are too "
        "small to split (docs/performance.md). No effect on JAX or on a GPU.",
        choices=THREADS_PER_OP,
    )

    def __post_init__(self):
        check_positive_ints(
            self, ("batch_size", "epochs", "n_init", "backup_every", "steps_per_execution")
        )
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r}: expected a learning rate > 0.")
        if not (isinstance(self.warmup, (int, float)) and self.warmup >= 0):
            raise ValueError(f"warmup={self.warmup!r}: expected a number of epochs >= 0.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer={self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}."
            )
        if not (isinstance(self.clipnorm, (int, float)) and self.clipnorm >= 0):
            raise ValueError(
                f"clipnorm={self.clipnorm!r}: expected a norm > 0, or 0 for no clipping."
            )
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay={self.weight_decay!r}: expected a number >= 0.")
        if not (isinstance(self.polyak_epochs, (int, float)) and self.polyak_epochs > 0
                and math.isfinite(self.polyak_epochs)):
            raise ValueError(
                f"polyak_epochs={self.polyak_epochs!r}: expected a number of epochs > 0."
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed={self.seed!r}: expected an integer.")
        for name in ("polyak", "jit", "remat"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected True or False.")
        precision_lib.from_mixed_precision(self.mixed_precision)
        if self.threads_per_op not in THREADS_PER_OP:
            raise ValueError(
                f"threads_per_op={self.threads_per_op!r}: expected one of "
                f"{', '.join(THREADS_PER_OP)}."
            )
        if self.loop not in LOOPS:
            raise ValueError(f"loop={self.loop!r}: expected one of {', '.join(LOOPS)}.")
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy={self.strategy!r}: expected one of {', '.join(STRATEGIES)}."
            )

    @property
    def precision(self):
        """The `glow_tf.precision` name of `mixed_precision`."""
        return precision_lib.from_mixed_precision(self.mixed_precision)


def is_wide(hidden_channels):
    """Whether coupling networks this wide count as wide (WIDE_WIDTH says what changes)."""
    return hidden_channels >= WIDE_WIDTH


def one_thread_per_op(threads_per_op, hidden_channels):
    """Whether TensorFlow should run each CPU op on one thread, for a model of this width.

    `threads_per_op` is TrainingConfig.threads_per_op: "one", "all", or
    "auto" (one for coupling networks at most NARROW_WIDTH channels wide).
    """
    if threads_per_op not in THREADS_PER_OP:
        raise ValueError(
            f"threads_per_op={threads_per_op!r}: expected one of {', '.join(THREADS_PER_OP)}."
        )
    if threads_per_op == "auto":
        return hidden_channels <= NARROW_WIDTH
    return threads_per_op == "one"
