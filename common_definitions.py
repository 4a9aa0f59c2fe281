"""Every default of the command-line tools, in one place.

- The settings of a run (the model, the data, training) default to the
  fields of the library's configs: `GlowConfig` and `TrainingConfig` in
  glow_tf/config.py, `DataConfig` in glow_tf/datasets.py. Those are the
  paper's CIFAR-10 setup (Kingma & Dhariwal 2018); a dataset's image size,
  channels and bits default to the dataset's own. Each field holds its
  default and its help, and main.py's flags are made from them, so this
  file does not repeat them.
- `PRESETS` changes some settings per dataset. A flag given on the command
  line beats both.
- The rest are the tools' own: where runs live, and the defaults of
  sample.py and evaluate.py.

docs/cli.md lists every flag with its default and preset.
"""

from glow_tf.config import SAMPLE_TEMPERATURE, GlowConfig, TrainingConfig  # noqa: F401
from glow_tf.datasets import DATASETS, DataConfig  # noqa: F401

DEFAULT_DATASET = "digits"
# Runs live in CHECKPOINT_ROOT/<dataset> unless --run_dir says otherwise, so
# the same command finds (and resumes) its own run.
CHECKPOINT_ROOT = "checkpoints"
# The run shipped inside the package (glow_tf/pretrained/), by name: the tools'
# default when CHECKPOINT_ROOT holds no run.
PRETRAINED_RUN = "digits-pretrained"

# Values that differ from the defaults, per dataset.
PRESETS = {
    "digits": {
        # Deep and narrow, with decay of the kernels: 1437 training images
        # overfit a wide model within a few epochs (docs/design.md). With
        # the Polyak average over 3 epochs, a learning rate of 4e-3 (and so
        # twice the decay per step) reaches in 25 epochs what 2e-3 did not
        # in 40 (docs/training.md).
        "k_glow": 32, "l_glow": 2, "hidden_channels": 16,
        "batch_size": 64, "epochs": 25, "lr": 4e-3, "warmup": 2.0,
        "weight_decay": 0.5, "polyak_epochs": 3.0, "backup_every": 11,
    },
}

# Named presets (--preset NAME), for a model rather than a dataset: on top of
# the dataset's preset, beneath the flags given.
NAMED_PRESETS = {
    # 32x32 RGB photos in half an hour on a 2-core CPU (--dataset folder).
    # Each value is the better side of a lever measured one at a time on
    # photos (docs/training.md#photos-on-a-cpu): a small model, a short
    # warmup, a learning rate twice the paper's, and a Polyak average over a
    # tenth of an epoch, for a schedule of minutes instead of days.
    "photos32": {
        "img_size": 32, "channel_size": 3, "k_glow": 8, "l_glow": 3,
        "hidden_channels": 64, "batch_size": 32, "lr": 4e-3, "warmup": 0.05,
        "polyak_epochs": 0.1, "epochs": 4, "augment": False,
    },
    # The paper's 256x256 CelebA-HQ model (Kingma & Dhariwal 2018, section 5:
    # K=32, L=6, width 512, 5-bit images) for a folder of 256x256 faces, with
    # per-step checkpointing, at the batch that fits 16 GiB. The memory plan
    # (benchmarks/memory_plan.py, docs/performance.md#the-memory-plan) puts a
    # step at 4.4 GiB + 269 MiB per image with --remat (at most 44, 135 and 287
    # images in float32 with Adam and Polyak averaging), against 5.4 GiB +
    # 3.8 GiB per image without it (2, 9 and 19); CELEBA256_BATCH_BY_MEMORY_GIB
    # leaves about a tenth for the ops' working space, in multiples of 8:
    #   python main.py --dataset folder --data_dir FACES --preset celeba256
    #   python main.py --dataset folder --data_dir FACES --preset celeba256 --batch_size 120
    "celeba256": {
        "img_size": 256, "n_bits": 5, "k_glow": 32, "l_glow": 6,
        "hidden_channels": 512, "remat": True, "batch_size": 32,
    },
}
CELEBA256_BATCH_BY_MEMORY_GIB = {16: 32, 40: 120, 80: 256}

# ---- sample.py ----

SAMPLE_MODES = ("samples", "temperatures", "interpolate", "reconstruct", "manipulate")
SAMPLE_SEED = 0
# --n per mode: samples in the grid; samples per temperature row; paths
# between pairs of test images (rows); test images beside their reconstruction;
# test images moved along an attribute's direction (rows).
SAMPLE_N = {"samples": 64, "temperatures": 10, "interpolate": 8, "reconstruct": 32,
            "manipulate": 8}
INTERPOLATION_STEPS = 8  # columns of each interpolation, both ends included
# Small images are enlarged (nearest neighbour) to about this many pixels a side.
SAMPLE_CELL_PIXELS = 32
SAMPLES_DIR = "samples"
# --mode manipulate: the multiples of the attribute direction, one column each
# (0 is the image itself), and how many labelled training images the
# directions are averaged over (the first ones of the training split).
MANIPULATION_SCALES = "-1,-0.5,0,0.5,1"
ATTRIBUTE_IMAGES = 20_000
# --mode manipulate on --dataset folder: the attribute CSV inside --data_dir.
ATTRIBUTES_CSV = "attributes.csv"

# ---- evaluate.py ----

EVAL_BATCH_SIZE = 256
EVAL_SEED = 0  # of the dequantisation noise: a rerun prints the same numbers
EVALUATION_DIR = "evaluation"
# Offline OOD sets made from any dataset's test split (Nalisnick et al. also
# score such transformed images): "invert" swaps ink and background, "vflip"
# turns the images upside down (the same pixel statistics, other shapes).
OOD_TRANSFORMS = ("none", "invert", "vflip")
