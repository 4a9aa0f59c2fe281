"""An image folder's layout: its files, its train and test splits, its classes (no TensorFlow).

The one source of how `--dataset folder` reads `data_dir`, for the training
pipelines (glow_tf.tf.pipelines) and the attributes (glow_tf.tf.attributes)
alike. Image files are those ending in IMAGE_EXTENSIONS, found in every
subfolder, sorted by path. Three layouts:

- **Split folders**: `train/` and a test folder (`test/`, else
  `validation/`, `valid/` or `val/`) beside it. They are the splits, and
  the folders beneath them the classes: a class must have images in both
  (say `train/cat/` and `test/cat/`). Other files and folders beside them
  are not read.
- **A training folder alone**: `train/` is all there is. Every
  TEST_EVERY-th file of it is the test split: the same files as when
  `data_dir` is `train/` itself.
- **Anything else** (a flat folder, one folder per class): every
  TEST_EVERY-th file (the 10th, 20th, ...) is the test split; with fewer
  files, the last one. The classes are the folders under `data_dir`.

Classes are sorted names, numbered 0, 1, ... (as in Keras'
image_dataset_from_directory). A folder with an image outside every class
folder has no classes.
"""

import concurrent.futures
import dataclasses
import os

from glow_tf.datasets import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TEST_EVERY = 10
TRAIN_FOLDER = "train"
# In this order of preference, when there are several.
TEST_FOLDERS = ("test", "validation", "valid", "val")
# An image folder's prepared images (both splits, at the model's size) are
# kept in memory, decoded once, while they take at most this many bytes:
# 349,525 RGB images at 32x32, or 87,381 at 64x64. A larger folder is
# decoded anew in every epoch.
IN_MEMORY_BYTES = 1 << 30


def held_out(count):
    """Which of `count` items (in order) are the test split: every TEST_EVERY-th one.

    With fewer than TEST_EVERY items, the last one, so that both splits
    have one as soon as there are two.
    """
    test = [i % TEST_EVERY == TEST_EVERY - 1 for i in range(count)]
    if count and not any(test):
        test[-1] = True
    return test


@dataclasses.dataclass(frozen=True)
class Layout:
    """What `find` found in a folder.

    Attributes:
        data_dir: the folder.
        train, test: the image files of each split, sorted by path.
        classes: the class names, sorted; None when the folder has none.
        train_labels, test_labels: each file's class number (None without
            classes).
        no_classes: why there are no classes (None when there are).
        train_from, test_from: where each split comes from, in words
            ("train/", "every 10th file of train/").
    """

    data_dir: str
    train: tuple
    test: tuple
    classes: tuple | None
    train_labels: tuple | None
    test_labels: tuple | None
    no_classes: str | None
    train_from: str
    test_from: str

    def files(self, split):
        return self.train if split == "train" else self.test

    def labels(self, split):
        """Each file's class number; -1 for every file of a folder without classes."""
        labels = self.train_labels if split == "train" else self.test_labels
        return labels if labels is not None else (-1,) * len(self.files(split))

    def check_classes(self):
        """The class names; DatasetError saying why, for a folder without classes."""
        if self.classes is None:
            raise DatasetError(self.no_classes)
        return self.classes

    def describe(self, image_shape):
        """One line: the images per split, the classes, the size they are resized to."""
        height, width, channels = image_shape
        if self.classes is None:
            classes = "no classes"
        else:
            shown = ", ".join(self.classes[:10]) + (", ..." if len(self.classes) > 10 else "")
            classes = f"{len(self.classes)} classes ({shown})"
        colour = {1: "grey", 3: "RGB"}.get(channels, f"{channels} channels")
        return (
            f"Image folder {self.data_dir}: {len(self.train):,} training images "
            f"({self.train_from}), {len(self.test):,} test images ({self.test_from}), "
            f"{classes}; resized to {height}x{width} {colour}."
        )


def find(data_dir):
    """The folder's `Layout`; DatasetError for a folder that cannot be one.

    Lists the files without opening them (see `check_images`).
    """
    if not data_dir or not os.path.isdir(data_dir):
        raise DatasetError(f"data_dir={data_dir!r}: expected an existing folder of images.")
    if not os.access(data_dir, os.R_OK | os.X_OK):
        raise DatasetError(f"data_dir={data_dir!r}: the folder is not readable.")
    subfolders = {name for name in os.listdir(data_dir)
                  if os.path.isdir(os.path.join(data_dir, name))}
    test_folder = next((name for name in TEST_FOLDERS if name in subfolders), None)
    if TRAIN_FOLDER in subfolders and test_folder is not None:
        return _split_folders(data_dir, test_folder)
    if TRAIN_FOLDER in subfolders and _only_train(data_dir):
        return _held_out_layout(data_dir, os.path.join(data_dir, TRAIN_FOLDER),
                                f"{TRAIN_FOLDER}/", f"of {TRAIN_FOLDER}/")
    return _held_out_layout(data_dir, data_dir, "the other files", "")


def check_images(paths, workers=8):
    """DatasetError naming the first of `paths` that is not a readable image.

    Opens each file's header (PIL), several at a time. For a folder that
    the pipelines do not decode at once (larger than IN_MEMORY_BYTES).
    """
    from PIL import Image, UnidentifiedImageError

    def problem(path):
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, UnidentifiedImageError) as error:
            return str(error)
        return None

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for path, error in zip(paths, pool.map(problem, paths)):
            if error is not None:
                raise DatasetError(not_an_image(path, error))


def not_an_image(path, reason):
    """The error message for a file that is not a readable image."""
    return f"{path}: not a readable image ({reason}); delete or replace it."


def _image_files(folder, data_dir):
    files = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not files:
        where = "" if folder == data_dir else f" (in {os.path.relpath(folder, data_dir)}/)"
        raise DatasetError(
            f"data_dir={data_dir!r} holds no images{where}; expected files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}."
        )
    return files


def _only_train(data_dir):
    """Whether train/ is the only entry of data_dir with images in it."""
    for name in os.listdir(data_dir):
        path = os.path.join(data_dir, name)
        if name == TRAIN_FOLDER:
            continue
        if os.path.isdir(path):
            if any(n.lower().endswith(IMAGE_EXTENSIONS)
                   for _, _, names in os.walk(path) for n in names):
                return False
        elif name.lower().endswith(IMAGE_EXTENSIONS):
            return False
    return True


def _classes_of(files, folder):
    """(class names, label per file), or (None, why) when a file is outside every class folder."""
    tops = [os.path.relpath(path, folder).split(os.sep)[0] for path in files]
    loose = [path for path, top in zip(files, tops) if os.path.isfile(os.path.join(folder, top))]
    if loose:
        return None, (
            f"{loose[0]} is not in a class subfolder; class labels of a folder come from "
            f"its subfolders ({folder}/<class>/<image>)."
        )
    classes = sorted(set(tops))
    index = {name: i for i, name in enumerate(classes)}
    return tuple(classes), tuple(index[top] for top in tops)


def _held_out_layout(data_dir, folder, train_from, of):
    files = _image_files(folder, data_dir)
    if len(files) < 2:
        raise DatasetError(
            f"data_dir={data_dir!r} holds {len(files)} image, expected at least 2 (one for "
            "training, one for testing)."
        )
    test = held_out(len(files))
    classes, labels = _classes_of(files, folder)
    split = lambda items, want: tuple(x for x, t in zip(items, test) if t == want)  # noqa: E731
    if classes is None:
        no_classes, train_labels, test_labels = f"data_dir={data_dir!r}: {labels}", None, None
    else:
        no_classes, train_labels, test_labels = None, split(labels, False), split(labels, True)
    return Layout(
        data_dir, split(files, False), split(files, True), classes, train_labels, test_labels,
        no_classes, train_from, f"every {TEST_EVERY}th file {of}".strip(),
    )


def _split_folders(data_dir, test_folder):
    train_dir, test_dir = (os.path.join(data_dir, n) for n in (TRAIN_FOLDER, test_folder))
    train, test = _image_files(train_dir, data_dir), _image_files(test_dir, data_dir)
    train_classes, train_labels = _classes_of(train, train_dir)
    test_classes, test_labels = _classes_of(test, test_dir)
    classes = no_classes = None
    if train_classes is None or test_classes is None:
        no_classes = f"data_dir={data_dir!r}: " + (
            train_labels if train_classes is None else test_labels)
        train_labels = test_labels = None
    elif train_classes != test_classes:
        only_test = sorted(set(test_classes) - set(train_classes))
        only_train = sorted(set(train_classes) - set(test_classes))
        which = (f"{test_folder}/{only_test[0]} has no {TRAIN_FOLDER}/{only_test[0]}"
                 if only_test else
                 f"{TRAIN_FOLDER}/{only_train[0]} has no {test_folder}/{only_train[0]}")
        raise DatasetError(
            f"data_dir={data_dir!r}: {which}; the class folders of {TRAIN_FOLDER}/ and "
            f"{test_folder}/ must have the same names (classes only in {test_folder}/: "
            f"{', '.join(only_test) or 'none'}; only in {TRAIN_FOLDER}/: "
            f"{', '.join(only_train) or 'none'})."
        )
    else:
        classes = train_classes
    return Layout(data_dir, tuple(train), tuple(test), classes, train_labels, test_labels,
                  no_classes, f"{TRAIN_FOLDER}/", f"{test_folder}/")
