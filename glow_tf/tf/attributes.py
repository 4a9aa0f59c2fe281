"""Images with binary attributes, for attribute manipulation (glow_tf.analysis.manipulation).

Three sources, each giving (uint8 images, an (N, A) 0/1 matrix, A names):

- CelebA (`celeba`): the 40 attributes of tensorflow-datasets `celeb_a`
  (Smiling, Blond_Hair, Young, ...), the paper's figure 5.
- A dataset with classes (digits, mnist, cifar10, ..., an image folder with
  class folders): each class one against the rest, named digit_0 ..
  digit_9 for the digit datasets, by the class folder's name for a folder
  ("cat"), and class_0, class_1, ... otherwise.
- An image folder with a CSV file: a header row (a name for the file column,
  then one name per attribute), then one row per image: its path relative
  to the CSV's folder, then 0 or 1 per attribute. Every 10th row (the 10th,
  20th, ...) is the test split, as for a folder without split folders
  (glow_tf.image_folders.held_out).
"""

import csv
import os

import numpy as np
import tensorflow as tf

from glow_tf import image_folders
from glow_tf.datasets import SOURCES, DatasetError, num_classes
from glow_tf.tf import pipelines, tfds_sources
from glow_tf.tf.maps import map_as_written

DIGIT_DATASETS = ("digits", "mnist")


def load_attributes(config, split, csv_path=None, max_images=None, spread=False):
    """(images, attributes, names) of one split ("train" or "test").

    Args:
        config: the DataConfig of the model's data (size, channels, bits).
        csv_path: the attribute CSV, for `config.dataset == "folder"`; None
            for a folder's classes.
        max_images: read at most this many images (default all).
        spread: take the max_images evenly spaced through the split, not
            the first ones: a split sorted by class (a folder's) starts with
            the first classes only.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: expected 'train' or 'test'.")
    if config.dataset == "celeba":
        examples, names = _celeba(config, split)
    elif config.dataset == "folder" and csv_path is not None:
        examples, names = _csv(config, split, csv_path)
    elif SOURCES[config.dataset].num_classes or config.dataset == "folder":
        examples, names = _one_vs_rest(config, split)
    else:
        raise DatasetError(
            f"dataset={config.dataset!r} has no attributes; attribute manipulation needs "
            "celeba, a dataset with classes, or an image folder with class folders or an "
            "attribute CSV."
        )
    if max_images:
        count = int(examples.cardinality())
        if spread and count > max_images:
            examples = examples.shard(-(-count // max_images), 0)
        examples = examples.take(max_images)
    batches = list(examples.batch(1024).as_numpy_iterator())
    if not batches:
        raise DatasetError(f"The {config.dataset} {split} split holds no images.")
    images = np.concatenate([b[0] for b in batches])
    attributes = np.concatenate([b[1] for b in batches]).astype(np.int32)
    return images, attributes, names


def _one_vs_rest(config, split):
    if config.dataset == "folder":
        names = list(image_folders.find(config.data_dir).check_classes())
    else:
        prefix = "digit" if config.dataset in DIGIT_DATASETS else "class"
        names = [f"{prefix}_{k}" for k in range(num_classes(config))]
    count = len(names)
    examples = map_as_written(
        pipelines.load_split(config, split, labels=True),
        lambda example: (example["images"], tf.one_hot(example["labels"], count, dtype=tf.int32))
    )
    return examples, names


def _celeba(config, split):
    source = SOURCES["celeba"]
    builder = tfds_sources.prepared("celeba", source, config.data_dir)
    names = list(builder.info.features["attributes"].keys())
    dataset = builder.as_dataset(split="train" if split == "train" else source.test_split)
    return map_as_written(
        dataset,
        lambda example: (
            pipelines.prepare_image(example["image"], source, config),
            tf.stack([tf.cast(example["attributes"][name], tf.int32) for name in names]),
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    ), names


def read_attribute_csv(csv_path):
    """(image paths, (N, A) 0/1 matrix, A names) from an attribute CSV; clear errors."""
    if not csv_path or not os.path.isfile(csv_path):
        raise DatasetError(
            f"attributes_csv={csv_path!r}: no such file; expected a CSV with a header row, "
            "then one row per image: its path (relative to the CSV's folder), then 0/1 "
            "per attribute."
        )
    with open(csv_path, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if len(rows) < 2 or len(rows[0]) < 2:
        raise DatasetError(
            f"{csv_path}: expected a header row (file, then attribute names) and at least one "
            "image row."
        )
    names = [name.strip() for name in rows[0][1:]]
    if len(set(names)) != len(names) or not all(names):
        raise DatasetError(f"{csv_path}: the attribute names must be unique and non-empty.")
    folder = os.path.dirname(os.path.abspath(csv_path))
    paths, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise DatasetError(
                f"{csv_path}, line {line}: {len(row)} columns, expected {len(rows[0])} (a file, "
                f"then {len(names)} attributes)."
            )
        path = os.path.join(folder, row[0].strip())
        if not os.path.isfile(path):
            raise DatasetError(f"{csv_path}, line {line}: {row[0]!r}: no such image file.")
        cells = [cell.strip() for cell in row[1:]]
        if not all(cell in ("0", "1") for cell in cells):
            raise DatasetError(
                f"{csv_path}, line {line}: attribute values {cells}; expected 0 or 1."
            )
        paths.append(path)
        values.append([int(cell) for cell in cells])
    return paths, np.asarray(values, np.int32), names


def _csv(config, split, csv_path):
    paths, values, names = read_attribute_csv(csv_path)
    wanted = np.asarray(image_folders.held_out(len(paths))) == (split == "test")
    source = SOURCES["folder"]
    channels = config.channel_size
    examples = map_as_written(
        tf.data.Dataset.from_tensor_slices((np.asarray(paths)[wanted], values[wanted])),
        lambda path, row: (
            pipelines.prepare_image(
                tf.io.decode_image(tf.io.read_file(path), channels=channels,
                                   expand_animations=False),
                source, config,
            ),
            row,
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return examples, names
