"""Every default of the command-line tools, in one place.

`Hyperparameters` holds the defaults, which are the paper's CIFAR-10 setup
(Kingma & Dhariwal 2018): those of the model and of training are read from
the library's own `GlowConfig` and `TrainingConfig`, so the two cannot drift
apart. `PRESETS` changes some of them per dataset (the offline `digits` gets
a small model that trains on a CPU in minutes), and a flag given on the
command line beats both: `hyperparameters_for` applies the three in that
order.
"""

import dataclasses

from glow_tf.config import COUPLINGS, PERMUTATIONS, GlowConfig
from glow_tf.distribute import STRATEGIES
from glow_tf.precision import MIXED_PRECISIONS
from glow_tf.training_config import OPTIMIZERS, TrainingConfig

# The names glow_tf.data accepts (a test checks they agree); spelt out here
# so that reading the defaults needs no TensorFlow.
DATASETS = (
    "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "celeba",
    "imagenet32", "imagenet64", "folder",
)
DEFAULT_DATASET = "digits"
# Runs live in CHECKPOINT_ROOT/<dataset> unless --run_dir says otherwise, so
# the same command finds (and resumes) its own run.
CHECKPOINT_ROOT = "checkpoints"
# Shipped weights; no run writes here by default.
PRETRAINED_RUN_DIR = "checkpoints/digits-pretrained"

_MODEL = GlowConfig()
_TRAINING = TrainingConfig()


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """One run's settings, flag by flag (main.py has a flag for each field)."""

    dataset: str = DEFAULT_DATASET
    data_dir: str | None = None
    img_size: int = _MODEL.image_shape[0]
    channel_size: int = _MODEL.image_shape[2]
    k_glow: int = _MODEL.k_glow
    l_glow: int = _MODEL.l_glow
    hidden_channels: int = _MODEL.hidden_channels
    coupling: str = _MODEL.coupling
    permutation: str = _MODEL.permutation
    n_bits: int = _MODEL.n_bits
    y_condition: bool = False
    weight_y: float = _MODEL.weight_y
    batch_size: int = _TRAINING.batch_size
    epochs: int = _TRAINING.epochs
    lr: float = _TRAINING.lr
    warmup: float = _TRAINING.warmup
    optimizer: str = _TRAINING.optimizer
    clipnorm: float = _TRAINING.clipnorm or 0.0  # a flag has no None: 0 is off
    weight_decay: float = _TRAINING.weight_decay
    seed: int = _TRAINING.seed
    n_init: int = _TRAINING.n_init
    backup_every: int = _TRAINING.backup_every
    # How to compute, not what: a rerun may change these (but mixed_precision)
    # and still resume the same run (glow_tf.run_dir.MAY_CHANGE_ON_RESUME).
    jit: bool = _TRAINING.jit
    mixed_precision: str = _TRAINING.mixed_precision
    remat: bool = _TRAINING.remat
    strategy: str = _TRAINING.strategy
    steps_per_execution: int = _TRAINING.steps_per_execution
    run_dir: str | None = None

    @property
    def resolved_run_dir(self):
        return self.run_dir or f"{CHECKPOINT_ROOT}/{self.dataset}"


HELP = {
    "dataset": "Training images: digits is offline, folder reads --data_dir, the "
               "others download through tensorflow-datasets on first use.",
    "data_dir": "The image folder for --dataset folder; for the tensorflow-datasets "
                "sources, where they are stored (default ~/tensorflow_datasets).",
    "img_size": "Height and width the images are padded or resized to.",
    "channel_size": "Image channels: 1 (grey) or 3 (RGB); other images are converted.",
    "k_glow": "K, steps of flow per level.",
    "l_glow": "L, levels of the multi-scale architecture.",
    "hidden_channels": "Width of the coupling networks.",
    "coupling": "Coupling layer.",
    "permutation": "Channel permutation: the learned invertible 1x1 convolution, "
                   "LU-decomposed (lu) or plain (conv), or a fixed reverse or shuffle.",
    "n_bits": "Bits per colour channel the images are reduced to (1..8).",
    "y_condition": "Class-conditional Glow: the top prior depends on the label, and a "
                   "classifier on the top latent adds to the loss (datasets with labels).",
    "weight_y": "With --y_condition: weight of the classifier's cross-entropy (bits "
                "per image) in the loss.",
    "batch_size": "Images per training step.",
    "epochs": "Passes over the training split; raising it continues a finished run.",
    "lr": "Learning rate after the warmup.",
    "warmup": "Epochs (may be fractional) of linear learning-rate warmup; 0 for none.",
    "optimizer": "Optimizer.",
    "clipnorm": "Clip each gradient to this norm; 0 for no clipping.",
    "weight_decay": "Decoupled weight decay (AdamW-style) of the convolution kernels; "
                    "0 for none.",
    "seed": "Seed of the weights, the data order and the noise.",
    "n_init": "Training images for the data-dependent ActNorm initialisation.",
    "backup_every": "Steps between the backups an interrupted run resumes from.",
    "jit": "Compile the training step with XLA (jit_compile=True). Without it Keras "
           "decides: XLA on a TensorFlow GPU, none on a CPU; JAX always compiles.",
    "mixed_precision": "Run the coupling networks in bfloat16, or in float16 with "
                       "loss scaling; log-dets, priors and the loss stay float32.",
    "remat": "Recompute the coupling networks in the backward pass instead of "
             "storing their activations: less memory, more compute.",
    "strategy": "Devices to train on: mirrored (this machine's GPUs), multi_worker "
                "(the cluster in TF_CONFIG) or tpu with TensorFlow; data_parallel "
                "(every local device) with JAX. --batch_size is the global batch.",
    "steps_per_execution": "Training steps per call of the compiled step: fewer "
                           "Python round trips for small models.",
    "run_dir": f"This run's folder (default {CHECKPOINT_ROOT}/<dataset>); rerunning "
               "the same command there resumes it.",
}

# Values that differ from the defaults above, per dataset.
_PAPER_32 = {"img_size": 32, "channel_size": 3}
PRESETS = {
    "digits": {
        "img_size": 8, "channel_size": 1, "n_bits": 4,
        # Deep and narrow, with decay of the kernels: 1437 training images
        # overfit a wide model within a few epochs (tuning runs in README).
        "k_glow": 32, "l_glow": 2, "hidden_channels": 16,
        "batch_size": 64, "epochs": 40, "lr": 2e-3, "warmup": 2.0,
        "weight_decay": 0.5, "backup_every": 11,
    },
    "mnist": {"img_size": 32, "channel_size": 1},  # 28x28 padded to 32x32
    "fashion_mnist": {"img_size": 32, "channel_size": 1},
    "cifar10": _PAPER_32,
    "cifar100": _PAPER_32,
    "svhn": _PAPER_32,
    "celeba": {"img_size": 64, "channel_size": 3},
    "imagenet32": _PAPER_32,
    "imagenet64": {"img_size": 64, "channel_size": 3},
    "folder": _PAPER_32,
}


def hyperparameters_for(dataset=DEFAULT_DATASET, **explicit):
    """The defaults, then `dataset`'s preset, then the explicit values."""
    if dataset not in PRESETS:
        raise ValueError(f"dataset={dataset!r}: expected one of {', '.join(DATASETS)}.")
    fields = {f.name for f in dataclasses.fields(Hyperparameters)}
    unknown = sorted(set(explicit) - fields)
    if unknown:
        raise ValueError(f"Unknown hyperparameters {unknown}; expected some of {sorted(fields)}.")
    return Hyperparameters(**{**PRESETS[dataset], **explicit, "dataset": dataset})


def preset_note(name):
    """' Presets: digits: 8; celeba: 64.' for the presets that change `name`."""
    default = getattr(Hyperparameters(), name)
    values = [f"{d}: {p[name]}" for d, p in PRESETS.items() if p.get(name, default) != default]
    return f" Presets: {'; '.join(values)}." if values else ""


# ---- sample.py ----

SAMPLE_MODES = ("samples", "temperatures", "interpolate", "reconstruct")
SAMPLE_TEMPERATURE = 0.7  # the paper's figures
SAMPLE_SEED = 0
# --n per mode: samples in the grid; samples per temperature row; paths
# between pairs of test images (rows); test images beside their reconstruction.
SAMPLE_N = {"samples": 64, "temperatures": 10, "interpolate": 8, "reconstruct": 32}
INTERPOLATION_STEPS = 8  # columns of each interpolation, both ends included
# Small images are enlarged (nearest neighbour) to about this many pixels a side.
SAMPLE_CELL_PIXELS = 32
SAMPLES_DIR = "samples"

# ---- evaluate.py ----

EVAL_BATCH_SIZE = 256
EVAL_SEED = 0  # of the dequantisation noise: a rerun prints the same numbers
EVALUATION_DIR = "evaluation"
# Offline OOD sets made from any dataset's test split (Nalisnick et al. also
# score such transformed images): "invert" swaps ink and background, "vflip"
# turns the images upside down (the same pixel statistics, other shapes).
OOD_TRANSFORMS = ("none", "invert", "vflip")
