"""Which image datasets there are, and DataConfig, the data part of a run (no TensorFlow).

The catalogue (`SOURCES`) says what each dataset is: where it comes from,
its native size and channels, its test split, its classes. The tf.data
pipelines that load them are in `glow_tf.tf.pipelines`; everything here
imports without TensorFlow, so a run's config can be read (and its class
count known) on any Keras backend.

- tensorflow-datasets: mnist, fashion_mnist, cifar10, cifar100, svhn
  (`svhn_cropped`), celeba (`celeb_a`, the central 148x148 face crop resized
  to 64x64), imagenet32 and imagenet64 (`downsampled_imagenet`, tested on its
  validation split). The first five download and are prepared on first use;
  celeba and imagenet need their files fetched by hand
  (glow_tf.tf.tfds_sources).
- digits: scikit-learn's 1797 8x8 handwritten digits, offline. Its 17 grey
  levels 0..16 are stored as uint8 `v * 255 // 16`; the first 1437 images
  are the training split and the last 360 (20%) the test split.
- folder: the image files under `data_dir`, with `train/` and `test/`
  subfolders as its splits, else every 10th file as the test split; its
  classes are its class subfolders (glow_tf.image_folders).
"""

import dataclasses

from glow_tf.config import _Config, check_n_bits, check_positive_ints, documented, setting


class DatasetError(ValueError):
    """A dataset that cannot be loaded as asked (a user's error, not a bug)."""


@dataclasses.dataclass(frozen=True)
class Source:
    """What one dataset is.

    Attributes:
        tfds_name: its tensorflow-datasets name; None for those loaded here
            (digits, folder).
        size: native height = width; None where it varies (folder).
        channels: native channels; None where they vary (folder).
        img_size, channel_size, n_bits: what a DataConfig of this dataset
            gets unless it says otherwise.
        test_split: the tensorflow-datasets split used for testing.
        pad_to_grow: drawn on black, so padded rather than resized up.
        center_crop: crop this square from the centre first.
        num_classes: classes of its labels; None for none (a folder's are
            its subfolders).
        flip: a mirror image is as likely as the image (photos of objects
            and faces), so augmentation may flip it left to right; not for
            digits and letters.
        manual: tensorflow-datasets cannot download its files (their hosts
            no longer serve them to a program): the user fetches them by
            hand (glow_tf.tf.tfds_sources).
    """

    tfds_name: str | None
    size: int | None
    channels: int | None
    img_size: int
    channel_size: int
    n_bits: int = 8
    test_split: str = "test"
    pad_to_grow: bool = False
    center_crop: int | None = None
    num_classes: int | None = None
    flip: bool = False
    manual: bool = False


SOURCES = {
    "digits": Source(None, 8, 1, 8, 1, n_bits=4, pad_to_grow=True, num_classes=10),
    # 28x28 padded to 32x32, so that L=3 levels divide it.
    "mnist": Source("mnist", 28, 1, 32, 1, pad_to_grow=True, num_classes=10),
    "fashion_mnist": Source("fashion_mnist", 28, 1, 32, 1, pad_to_grow=True, num_classes=10),
    "cifar10": Source("cifar10", 32, 3, 32, 3, num_classes=10, flip=True),
    "cifar100": Source("cifar100", 32, 3, 32, 3, num_classes=100, flip=True),
    "svhn": Source("svhn_cropped", 32, 3, 32, 3, num_classes=10),
    "celeba": Source("celeb_a", 218, 3, 64, 3, center_crop=148, flip=True, manual=True),
    "imagenet32": Source("downsampled_imagenet/32x32", 32, 3, 32, 3, test_split="validation",
                         flip=True, manual=True),
    "imagenet64": Source("downsampled_imagenet/64x64", 64, 3, 64, 3, test_split="validation",
                         flip=True, manual=True),
    "folder": Source(None, None, None, 32, 3),
}
DATASETS = tuple(SOURCES)

DIGITS_NUM_TRAIN = 1437


def _per_dataset(name):
    """'digits 8, mnist 32, ...': each dataset's default of a DataConfig field."""
    values = {}
    for dataset, source in SOURCES.items():
        values.setdefault(getattr(source, name), []).append(dataset)
    return "; ".join(f"{', '.join(names)}: {value}" for value, names in values.items())


@documented
@dataclasses.dataclass(frozen=True)
class DataConfig(_Config):
    """Which images, at what size and depth.

    A size, channel count or depth left at None is the dataset's own (its
    `Source`), so `DataConfig("cifar10")` is 32x32 RGB at 8 bits and
    `DataConfig("digits")` 8x8 grey at 4 bits.
    """

    dataset: str = setting(
        "digits",
        "Training images: digits is offline, folder reads --data_dir, the others come "
        "through tensorflow-datasets (mnist, fashion_mnist, cifar10, cifar100 and svhn "
        "download on first use; celeba and imagenet need files fetched by hand).",
        choices=DATASETS,
    )
    img_size: int | None = setting(
        None,
        "Height and width the images are padded or resized to. Default: the dataset's "
        f"({_per_dataset('img_size')}).",
    )
    channel_size: int | None = setting(
        None,
        "Image channels: 1 (grey) or 3 (RGB); other images are converted. Default: the "
        f"dataset's ({_per_dataset('channel_size')}).",
    )
    n_bits: int | None = setting(
        None,
        "Bits per colour channel the images are reduced to (1..8). Default: the "
        f"dataset's ({_per_dataset('n_bits')}).",
    )
    data_dir: str | None = setting(
        None,
        "The image folder for --dataset folder; for the tensorflow-datasets sources, "
        "where they are stored (default ~/tensorflow_datasets).",
    )
    augment: bool = setting(
        False,
        "Augment the training images: a random translation of up to img_size/16 pixels "
        "(at least 1), and a random left-right flip where the dataset allows it "
        f"({', '.join(n for n, s in SOURCES.items() if s.flip)}).",
    )

    def __post_init__(self):
        check_dataset(self.dataset)
        source = SOURCES[self.dataset]
        for name in ("img_size", "channel_size", "n_bits"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(source, name))
        check_n_bits(self.n_bits, DatasetError)
        check_positive_ints(self, ("img_size", "channel_size"), DatasetError)
        if self.channel_size not in (1, 3):
            raise DatasetError(
                f"channel_size={self.channel_size}: expected 1 (grey) or 3 (RGB)."
            )
        if not isinstance(self.augment, bool):
            raise DatasetError(f"augment={self.augment!r}: expected True or False.")
        if self.dataset == "folder" and not self.data_dir:
            raise DatasetError(
                "dataset='folder' needs data_dir, the folder that holds the images "
                "(--data_dir PATH)."
            )

    @property
    def image_shape(self):
        return (self.img_size, self.img_size, self.channel_size)

    @property
    def max_shift(self):
        """Pixels the augmentation may translate an image by, in each direction."""
        return max(1, self.img_size // 16)


def check_dataset(name):
    """DatasetError naming the choices unless `name` is in the catalogue."""
    if name not in SOURCES:
        raise DatasetError(f"dataset={name!r}: expected one of {', '.join(DATASETS)}.")


def num_classes(config):
    """Classes of the dataset's labels; DatasetError for a dataset without labels.

    A folder's classes are its class subfolders (glow_tf.image_folders).
    """
    if config.dataset == "folder":
        from glow_tf import image_folders

        return len(image_folders.find(config.data_dir).check_classes())
    count = SOURCES[config.dataset].num_classes
    if count is None:
        with_labels = [name for name, source in SOURCES.items() if source.num_classes]
        raise DatasetError(
            f"dataset={config.dataset!r} has no class labels; a class-conditional "
            f"model (--y_condition) needs one of {', '.join(with_labels)}, or a "
            "folder with one subfolder per class."
        )
    return count
