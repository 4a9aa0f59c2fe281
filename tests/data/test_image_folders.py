"""Image folders as people keep them: split folders, class folders, and the held-out rule."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from glow_tf import image_folders  # noqa: E402
from glow_tf.datasets import DataConfig, DatasetError, num_classes  # noqa: E402
from glow_tf.tf import attributes, pipelines  # noqa: E402


def write_image(path, level, size=(6, 6), suffix=None):
    """A grey image of one level, as RGB, at path (folders made as needed)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((*size, 3), level, np.uint8)).save(path)
    return path


def class_folders(root, counts):
    """root/<class>/<i>.png for {class: count}; each image's level is unique."""
    level = 0
    for name, count in counts.items():
        for i in range(count):
            write_image(os.path.join(root, name, f"{i:02d}.png"), level)
            level += 5
    return root


def config(data_dir, **changes):
    return DataConfig("folder", **{"img_size": 4, "channel_size": 3, "n_bits": 8,
                                   "data_dir": str(data_dir), **changes})


def split(config_, name, labels=False):
    return pipelines.take_examples(pipelines.load_split(config_, name, labels=labels), 10_000)


@pytest.mark.parametrize("test_name", image_folders.TEST_FOLDERS)
def test_train_and_test_folders_are_the_splits(tmp_path, test_name):
    class_folders(tmp_path / "train", {"cat": 4, "dog": 3})
    class_folders(tmp_path / test_name, {"cat": 1, "dog": 2})
    layout = image_folders.find(str(tmp_path))
    assert layout.classes == ("cat", "dog")
    assert [os.path.relpath(p, tmp_path) for p in layout.test] == [
        f"{test_name}/cat/00.png", f"{test_name}/dog/00.png", f"{test_name}/dog/01.png"]
    assert len(layout.train) == 7 and layout.test_from == f"{test_name}/"
    images, labels = split(config(tmp_path), "train", labels=True)
    assert images.shape == (7, 4, 4, 3) and list(labels) == [0] * 4 + [1] * 3
    images, labels = split(config(tmp_path), "test", labels=True)
    assert images.shape == (3, 4, 4, 3) and list(labels) == [0, 1, 1]
    assert num_classes(config(tmp_path)) == 2


def test_test_is_preferred_to_a_validation_folder(tmp_path):
    class_folders(tmp_path / "train", {"a": 2})
    class_folders(tmp_path / "val", {"a": 1})
    class_folders(tmp_path / "test", {"a": 3})
    assert len(image_folders.find(str(tmp_path)).test) == 3


def test_split_folders_without_class_folders(tmp_path):
    for i in range(3):
        write_image(tmp_path / "train" / f"{i}.png", 10 * i)
    write_image(tmp_path / "test" / "x.png", 7)
    layout = image_folders.find(str(tmp_path))
    assert (len(layout.train), len(layout.test), layout.classes) == (3, 1, None)
    with pytest.raises(DatasetError, match=r"0\.png is not in a class subfolder"):
        num_classes(config(tmp_path))


@pytest.mark.parametrize("train, test, message", [
    ({"cat": 2, "dog": 2}, {"cat": 1, "emu": 1},
     r"test/emu has no train/emu; the class folders of train/ and test/ must have the same "
     r"names \(classes only in test/: emu; only in train/: dog\)"),
    ({"cat": 2, "dog": 2}, {"cat": 1},
     "train/dog has no test/dog; .* only in train/: dog"),
])
def test_classes_must_be_the_same_in_both_splits(tmp_path, train, test, message):
    class_folders(tmp_path / "train", train)
    class_folders(tmp_path / "test", test)
    with pytest.raises(DatasetError, match=message):
        image_folders.find(str(tmp_path))


def test_a_train_folder_alone_holds_out_the_same_files_as_before(tmp_path):
    """data_dir with only train/ tests on what data_dir=train/ always did: every 10th file."""
    class_folders(tmp_path / "train", {"airplane": 12, "bird": 9, "cat": 4})
    (tmp_path / "README.txt").write_text("not an image")
    alone = image_folders.find(str(tmp_path))
    inside = image_folders.find(str(tmp_path / "train"))
    assert alone.test == inside.test and alone.train == inside.train
    assert alone.classes == inside.classes == ("airplane", "bird", "cat")
    assert alone.test_labels == inside.test_labels
    assert [os.path.relpath(p, tmp_path / "train") for p in alone.test] == [
        "airplane/09.png", "bird/07.png"]
    assert (alone.train_from, alone.test_from) == ("train/", "every 10th file of train/")
    np.testing.assert_array_equal(split(config(tmp_path), "test")[0],
                                  split(config(tmp_path / "train"), "test")[0])


def test_a_class_called_train_is_a_class(tmp_path):
    """CIFAR-100 has a class 'train': beside other class folders it is one of them."""
    class_folders(tmp_path, {"bus": 6, "train": 6})
    layout = image_folders.find(str(tmp_path))
    assert layout.classes == ("bus", "train") and len(layout.test) == 1


def test_held_out_is_every_tenth_else_the_last():
    assert [i for i, t in enumerate(image_folders.held_out(25)) if t] == [9, 19]
    assert image_folders.held_out(3) == [False, False, True]
    assert image_folders.held_out(0) == []


def test_the_folder_is_described_once_with_its_splits_classes_and_size(tmp_path, caplog):
    class_folders(tmp_path / "train", {"cat": 3, "dog": 3})
    class_folders(tmp_path / "test", {"cat": 1, "dog": 1})
    with caplog.at_level(logging.INFO, logger="glow_tf.phases"):
        pipelines.make_datasets(config(tmp_path, img_size=8), batch_size=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "glow_tf.phases"]
    assert lines[0] == (
        f"Image folder {tmp_path}: 6 training images (train/), 2 test images (test/), "
        "2 classes (cat, dog); resized to 8x8 RGB."
    )
    assert sum(line.startswith("Image folder") for line in lines) == 1
    assert any(line.startswith("Decoding the 6 training images into memory") for line in lines)


def test_decoded_images_stay_in_memory(tmp_path):
    """An epoch reads no file: the split is decoded once, when it is loaded."""
    class_folders(tmp_path / "train", {"cat": 3})
    class_folders(tmp_path / "test", {"cat": 1})
    train = pipelines.load_split(config(tmp_path), "train")
    first = np.stack(list(train.as_numpy_iterator()))
    for path in image_folders.find(str(tmp_path)).train:
        os.remove(path)
    np.testing.assert_array_equal(np.stack(list(train.as_numpy_iterator())), first)
    assert [image[0, 0, 0] for image in first] == [0, 5, 10]


def test_a_folder_too_large_for_memory_is_checked_and_read_every_epoch(tmp_path, monkeypatch):
    class_folders(tmp_path, {"cat": 12})
    in_memory = split(config(tmp_path), "train")[0]
    monkeypatch.setattr(image_folders, "IN_MEMORY_BYTES", 0)
    streamed = pipelines.load_split(config(tmp_path), "train")
    np.testing.assert_array_equal(np.stack(list(streamed.as_numpy_iterator())), in_memory)
    (tmp_path / "cat" / "05.png").write_bytes(b"\x89PNG\r\n\x1a\n but then no image")
    with pytest.raises(DatasetError, match=r"cat/05\.png: not a readable image"):
        pipelines.load_split(config(tmp_path), "train")


def test_a_bad_jpeg_among_many_is_named(tmp_path):
    for i in range(1200):  # more than one batch of the decoding
        path = tmp_path / "train" / f"{i:04d}.jpg"
        os.makedirs(path.parent, exist_ok=True)
        Image.fromarray(np.full((4, 4, 3), i % 256, np.uint8)).save(path, quality=75)
    (tmp_path / "train" / "1100.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DatasetError, match=r"train/1100\.jpg: not a readable image"):
        pipelines.load_split(config(tmp_path), "train")


def test_a_folders_classes_are_attributes_by_name(tmp_path):
    class_folders(tmp_path / "train", {"cat": 4, "dog": 4})
    class_folders(tmp_path / "test", {"cat": 2, "dog": 2})
    images, values, names = attributes.load_attributes(config(tmp_path), "train")
    assert names == ["cat", "dog"] and images.shape == (8, 4, 4, 3)
    np.testing.assert_array_equal(values.argmax(1), [0] * 4 + [1] * 4)
    # A few images of a split sorted by class still have every class.
    _, values, _ = attributes.load_attributes(config(tmp_path), "test", max_images=2, spread=True)
    np.testing.assert_array_equal(values.argmax(1), [0, 1])


def test_a_flat_folder_has_no_class_attributes(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", i)
    with pytest.raises(DatasetError, match=r"0\.png is not in a class subfolder"):
        attributes.load_attributes(config(tmp_path), "train")
