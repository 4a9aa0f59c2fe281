"""Image datasets as tf.data pipelines of uint8 NHWC batches (TensorFlow only).

Every dataset of the catalogue (`glow_tf.datasets`) comes out the same way:
uint8 images of `img_size` x `img_size` x `channel_size`, reduced to their
top `n_bits` bits (the model keeps only those bits anyway, so the reduction
is idempotent), shuffled, batched and prefetched. The model adds the
dequantisation noise itself.

Sizes: datasets drawn on a black background (mnist, fashion_mnist, digits)
are zero-padded, centred, to a larger `img_size` (MNIST's 28x28 becomes
32x32 so that L=3 levels divide it); every other change of size resizes
(antialiased bilinear).
"""

import importlib.util
import os

import numpy as np
import tensorflow as tf

from glow_tf import image_folders, phases
from glow_tf.datasets import DIGITS_NUM_TRAIN, SOURCES, DatasetError, num_classes
from glow_tf.tf import augment, tfds_sources
from glow_tf.tf.maps import map_as_written

_SHUFFLE_BUFFER = 10_000


def load_split(config, split, labels=False):
    """One split ("train" or "test") as a tf.data.Dataset of single uint8 images.

    With `labels`, each element is {"images": image, "labels": int32 class},
    the input of a class-conditional Glow (see `num_classes`). Unshuffled and
    unbatched; `make_datasets` adds the rest.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: expected 'train' or 'test'.")
    if labels:
        num_classes(config)  # a dataset without labels fails here, by name
    source = SOURCES[config.dataset]
    if config.dataset == "folder":
        examples = _folder(config, split)  # prepared already
    else:
        if config.dataset == "digits":
            examples = tf.data.Dataset.from_tensor_slices(_digits(split))
        else:
            examples = _tfds(source, config, split)
        examples = map_as_written(
            examples, lambda image, label: (prepare_image(image, source, config), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if labels:
        examples = map_as_written(
            examples, lambda image, label: {"images": image, "labels": tf.cast(label, tf.int32)}
        )
    else:
        examples = map_as_written(examples, lambda image, label: image)
    return untuned(examples)


def untuned(dataset):
    """The dataset without tf.data's autotuning thread; what follows it inherits that.

    An iterator that autotunes owns a thread that sleeps between its
    optimisations, and freeing the iterator waits for that thread: in a
    process that goes on after a run (the tests, a notebook), freeing an
    iterator that an earlier run had left to Python's collector stood still
    for up to 40 s.
    Without autotuning, a folder's decode kept as many cores busy
    (benchmarks/folder_decode.py, docs/design.md).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def make_datasets(config, batch_size, seed=0, labels=False):
    """(train, test) batched pipelines: train shuffled with whole batches only.

    The test split keeps its last, smaller batch, so that every test image
    counts once in the test bits/dim. With `labels`, batches are
    {"images", "labels"} dicts (see `load_split`). With `config.augment`, the
    training images are augmented (glow_tf.tf.augment); the test images never.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected an integer >= 1.")
    train = load_split(config, "train", labels)
    num_train = num_examples(train)
    if num_train < batch_size:
        raise DatasetError(
            f"The {config.dataset} training split has {num_train} images, fewer "
            f"than one batch (batch_size={batch_size}); lower --batch_size."
        )
    train = train.shuffle(min(num_train, _SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    if config.augment:
        train = augment.augment(train, config, seed)
    train = (
        train.batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = load_split(config, "test", labels).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return train, test


def take_images(dataset, n):
    """Up to n images from a dataset of images or of batches, as a numpy array.

    Datasets of {"images", "labels"} give their images.
    """
    return take_examples(dataset, n)[0]


def take_examples(dataset, n):
    """(images, labels): up to n examples as numpy arrays; labels None without them."""
    has_labels = isinstance(dataset.element_spec, dict)
    spec = dataset.element_spec["images"] if has_labels else dataset.element_spec
    if len(spec.shape) == 4:
        dataset = dataset.unbatch()
    batches = list(dataset.take(n).batch(max(n, 1)).as_numpy_iterator())
    if not batches:
        raise DatasetError("The dataset is empty; expected at least one image.")
    if has_labels:
        return batches[0]["images"], batches[0]["labels"]
    return batches[0], None


def num_examples(dataset):
    """Elements in a finite dataset: its cardinality, or a count when unknown."""
    count = int(dataset.cardinality())
    if count >= 0:
        return count
    return int(dataset.reduce(np.int64(0), lambda n, _: n + 1))


# ---- sources ----


# Each source yields (image, label) pairs; label -1 where there is none.


def _digits(split):
    phases.report(f"Reading the digits {_SPLIT_NAMES[split]} images (scikit-learn) ...")

    levels, labels = _digits_levels()  # (1797, 8, 8), 0..16; (1797,)
    images = (levels * 255 // 16).astype(np.uint8)[..., None]
    train = slice(None, DIGITS_NUM_TRAIN) if split == "train" else slice(DIGITS_NUM_TRAIN, None)
    return images[train], labels[train]


def _digits_levels():
    """The 1,797 digits (8x8, levels 0..16) and their labels, as load_digits gives them.

    Read from the file in scikit-learn's package that load_digits reads,
    without importing scikit-learn: its import is half a second of every
    start of a tool on a 2-core machine, and all it would do here is read
    this file. Where the file is not there, load_digits itself.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package; imports nothing
    folders = spec.submodule_search_locations if spec is not None else None
    path = os.path.join(folders[0], "datasets", "data", "digits.csv.gz") if folders else ""
    if os.path.isfile(path):
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)  # 64 pixels, then the label
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int32)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.int64), digits.target.astype(np.int32)


def _tfds(source, config, split):
    builder = tfds_sources.prepared(config.dataset, source, config.data_dir)
    tfds_split = "train" if split == "train" else source.test_split
    dataset = builder.as_dataset(split=tfds_split, shuffle_files=split == "train")
    return map_as_written(
        dataset,
        lambda example: (example["image"], example.get("label", tf.constant(-1, tf.int64))),
    )


def _folder(config, split):
    """The folder's split as prepared (image, label) pairs, decoded once where they fit.

    Decoding is the check that every file is an image: a folder that fits
    in memory (image_folders.IN_MEMORY_BYTES) is decoded here, in parallel,
    and a file that does not decode is named; a larger one has every
    file's header checked first, and is decoded anew in every epoch.
    """
    layout = image_folders.find(config.data_dir)
    _report_found(layout, config)
    files, labels = list(layout.files(split)), np.asarray(layout.labels(split), np.int32)
    total = (len(layout.train) + len(layout.test)) * int(np.prod(config.image_shape))
    if total <= image_folders.IN_MEMORY_BYTES:
        phases.report(
            f"Decoding the {len(files):,} {_SPLIT_NAMES[split]} images into memory "
            f"({len(files) * np.prod(config.image_shape) / 2**20:,.0f} MiB; once per run) ..."
        )
        return tf.data.Dataset.from_tensor_slices((_decode_all(files, config), labels))
    phases.report(f"Checking the {len(files):,} {_SPLIT_NAMES[split]} image files ...")
    image_folders.check_images(files)
    return map_as_written(
        tf.data.Dataset.from_tensor_slices((files, labels)),
        lambda path, label: (_decode_file(path, config), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


_SPLIT_NAMES = {"train": "training", "test": "test"}
# (data_dir, image shape) of the folders described so far: a tool loads
# both splits of one folder, which is described once.
_described = set()


def _report_found(layout, config):
    key = (os.path.abspath(layout.data_dir), config.image_shape)
    if key not in _described:
        _described.add(key)
        phases.report(layout.describe(config.image_shape))


def _decode_file(path, config):
    image = tf.io.decode_image(tf.io.read_file(path), channels=config.channel_size,
                               expand_animations=False)
    return prepare_image(image, SOURCES["folder"], config)


_DECODE_BATCH = 512


def _decode_all(files, config):
    """Every file decoded and prepared, as one uint8 array; DatasetError naming a bad file."""
    decoded = untuned(map_as_written(
        tf.data.Dataset.from_tensor_slices(files),
        lambda path: _decode_file(path, config), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    ).batch(_DECODE_BATCH))
    batches = []
    try:
        for batch in decoded.as_numpy_iterator():
            batches.append(batch)
    except tf.errors.OpError:
        # The error does not say which file; the batch it came in does.
        start = len(batches) * _DECODE_BATCH
        for path in files[start:start + _DECODE_BATCH] + files[:start]:
            try:
                _decode_file(path, config)
            except tf.errors.OpError as error:
                reason = error.message.splitlines()[0] if error.message else "cannot be decoded"
                raise DatasetError(image_folders.not_an_image(path, reason)) from None
        raise
    return np.concatenate(batches)


# ---- one image to the asked size, channels and depth ----


def prepare_image(image, source, config):
    """One decoded image at the config's size and channels, reduced to its n_bits (uint8)."""
    if source.center_crop:
        image = tf.image.resize_with_crop_or_pad(image, source.center_crop, source.center_crop)
    image = _to_channels(image, config.channel_size)
    image = _to_size(image, config.img_size, source.pad_to_grow)
    # Keep the top n_bits of each value, as the model's quantisation does.
    mask = (0xFF << (8 - config.n_bits)) & 0xFF
    return tf.bitwise.bitwise_and(image, tf.constant(mask, tf.uint8))


def _to_channels(image, channels):
    have = image.shape[-1]
    if have == channels:
        return image
    if have == 1 and channels == 3:
        return tf.image.grayscale_to_rgb(image)
    if have == 3 and channels == 1:
        grey = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
        return tf.cast(tf.clip_by_value(tf.round(grey), 0, 255), tf.uint8)
    raise DatasetError(f"Cannot convert images with {have} channels to {channels}.")


def _to_size(image, size, pad_to_grow):
    height, width = image.shape[0], image.shape[1]
    if (height, width) == (size, size):
        return image
    if pad_to_grow and height is not None and height <= size and width <= size:
        return tf.image.pad_to_bounding_box(
            image, (size - height) // 2, (size - width) // 2, size, size
        )
    if height is None or width is None:
        # A decoded file's size is known only when it runs; one of the asked
        # size is kept as it is (resizing it would give it back, slower).
        same = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
        image = tf.cond(same, lambda: image, lambda: _resize(image, size))
        image.set_shape((size, size, image.shape[-1]))
        return image
    return _resize(image, size)


def _resize(image, size):
    # Antialiased bilinear: a proper low-pass filter when shrinking.
    resized = tf.image.resize(
        tf.cast(image, tf.float32), (size, size), method="bilinear", antialias=True
    )
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
