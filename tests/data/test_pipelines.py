"""The dataset catalogue and its tf.data pipelines: every source as uint8 NHWC of the asked size."""

import os
import pathlib
import re

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

import glow_tf  # noqa: E402
from tests.tfds_mock import mock_data  # noqa: E402
from glow_tf.datasets import DataConfig, DatasetError  # noqa: E402
from glow_tf.tf import pipelines as data  # noqa: E402


def split_array(config, split):
    return np.stack(list(data.load_split(config, split).as_numpy_iterator()))


def sklearn_digits():
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.int64)


def test_digits_is_the_documented_split_and_encoding():
    config = DataConfig("digits", img_size=8, channel_size=1, n_bits=8)
    train, test = split_array(config, "train"), split_array(config, "test")
    assert train.shape == (1437, 8, 8, 1) and test.shape == (360, 8, 8, 1)
    assert train.dtype == np.uint8
    levels = sklearn_digits()
    np.testing.assert_array_equal(train[..., 0], levels[:1437] * 255 // 16)
    np.testing.assert_array_equal(test[..., 0], levels[1437:] * 255 // 16)


def test_digits_are_load_digits_read_from_its_file_or_from_it(monkeypatch):
    """Read from scikit-learn's file without importing it (a tool's process checks that:
    tests/cli/test_backends.py); load_digits itself where the file is not found."""
    import importlib.util

    from sklearn.datasets import load_digits

    digits, find_spec = load_digits(), importlib.util.find_spec
    for _ in ("its file", "load_digits"):
        levels, labels = data._digits_levels()
        assert levels.dtype == np.int64 and labels.dtype == np.int32
        np.testing.assert_array_equal(levels, digits.images)
        np.testing.assert_array_equal(labels, digits.target)
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *args: None if name == "sklearn" else
                            find_spec(name, *args))


def test_n_bits_keeps_the_top_bits():
    full = split_array(DataConfig("digits", n_bits=8), "test")
    four = split_array(DataConfig("digits", n_bits=4), "test")
    np.testing.assert_array_equal(four, full & 0xF0)
    assert len(np.unique(four)) == 16


def test_digits_pads_with_black_to_a_larger_size():
    small = split_array(DataConfig("digits", img_size=8), "test")
    big = split_array(DataConfig("digits", img_size=16), "test")
    assert big.shape == (360, 16, 16, 1)
    np.testing.assert_array_equal(big[:, 4:12, 4:12], small)
    big[:, 4:12, 4:12] = 0
    assert not big.any()


def test_make_datasets_batches_shuffles_and_keeps_every_test_image():
    config = DataConfig("digits")
    train, test = data.make_datasets(config, batch_size=100, seed=0)
    train_batches = list(train.as_numpy_iterator())
    assert len(train_batches) == 14 and all(b.shape == (100, 8, 8, 1) for b in train_batches)
    test_batches = list(test.as_numpy_iterator())
    assert sum(len(b) for b in test_batches) == 360 and test_batches[-1].shape[0] == 60
    unshuffled = split_array(config, "train")
    assert not np.array_equal(train_batches[0], unshuffled[:100])
    # Each epoch draws a new order.
    assert not np.array_equal(next(iter(train)).numpy(), train_batches[0])
    assert data.num_examples(train) == 14
    assert data.take_images(train, 5).shape == (5, 8, 8, 1)


def test_every_pipeline_runs_without_autotuning():
    """Freeing an autotuned iterator waits for its tuning thread (pipelines.untuned)."""
    config = DataConfig("digits")
    train, test = data.make_datasets(config, batch_size=100, seed=0)
    labelled = data.load_split(config, "test", labels=True)
    for dataset in (train, test, labelled, data.load_split(config, "train")):
        assert dataset.options().autotune.enabled is False
    assert tf.data.Dataset.range(3).options().autotune.enabled is not False  # tf.data's default


def test_map_functions_are_traced_as_written_without_autograph(monkeypatch):
    """AutoGraph's rewrite of the map functions was most of a pipeline's build
    (glow_tf/tf/maps.py). Without it, a Python `if` on a tensor fails as it is
    traced, where AutoGraph would have made it a graph op."""
    def branching(image, source, config):
        if tf.reduce_max(image) > 255:
            return image + 1
        return image

    assert list(tf.data.Dataset.range(2).map(lambda x: branching(x, None, None))
                .as_numpy_iterator()) == [0, 1]  # converted by tf.data's default
    monkeypatch.setattr(data, "prepare_image", branching)
    with pytest.raises(TypeError, match="as a Python `bool`"):
        data.load_split(DataConfig("digits"), "test")
    # Every map of the package goes through map_as_written.
    root = pathlib.Path(glow_tf.__file__).parent
    direct = [f"{path.relative_to(root)}:{number}" for path in root.rglob("*.py")
              for number, line in enumerate(path.read_text().splitlines(), 1)
              if re.search(r"(?<!pool)\.map\(", line) and path.name != "maps.py"]
    assert not direct, direct


def test_the_folder_decode_benchmark_prints_both_settings(tmp_path, capsys):
    from benchmarks import folder_decode

    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(
            tmp_path / f"{i:02d}.png")
    folder_decode.main(["--data_dir", str(tmp_path), "--images", "8", "--img_size", "8",
                        "--repeats", "1"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[0].strip() for row in rows] == ["off (glow_tf)", "on"]
    assert all(row[1].strip() == "8" and float(row[2].replace(",", "")) > 0 for row in rows)
    with pytest.raises(SystemExit):  # argparse's one-line error, no traceback
        folder_decode.main(["--data_dir", str(tmp_path / "missing")])
    assert "expected an existing folder of images" in capsys.readouterr().err


def test_batch_larger_than_the_training_split_is_named():
    with pytest.raises(DatasetError, match="batch_size=5000"):
        data.make_datasets(DataConfig("digits"), batch_size=5000)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"dataset": "cifar11"}, "dataset='cifar11': expected one of digits, mnist"),
        ({"channel_size": 2}, "channel_size=2: expected 1 .grey. or 3 .RGB."),
        ({"n_bits": 9}, "n_bits=9: expected an integer in 1..8"),
        ({"n_bits": 4.0}, r"n_bits=4\.0: expected an integer in 1\.\.8"),
        ({"img_size": 0}, "img_size=0: expected an integer >= 1"),
        ({"dataset": "folder"}, "needs data_dir"),
    ],
)
def test_bad_data_config_names_the_value(fields, message):
    with pytest.raises(DatasetError, match=message):
        DataConfig(**fields)


# ---- tensorflow-datasets sources, on mock data ----


@pytest.mark.parametrize(
    "dataset, img_size, channels",
    [("cifar10", 32, 3), ("svhn", 32, 3), ("mnist", 32, 1), ("cifar10", 16, 1)],
)
def test_tfds_sources_on_mock_data(dataset, img_size, channels):
    config = DataConfig(dataset, img_size=img_size, channel_size=channels, n_bits=5)
    with mock_data(num_examples=10):
        train, test = data.make_datasets(config, batch_size=4, seed=0)
        batch = next(iter(train)).numpy()
        test_images = np.concatenate(list(test.as_numpy_iterator()))
    assert batch.shape == (4, img_size, img_size, channels) and batch.dtype == np.uint8
    assert test_images.shape[1:] == (img_size, img_size, channels)
    assert not (test_images & 0x07).any(), "n_bits=5 keeps the top 5 bits only"
    assert batch.std() > 0


def test_mnist_is_padded_from_28_to_32():
    with mock_data(num_examples=4):
        raw = next(iter(tfds.load("mnist", split="test")))["image"].numpy()
        padded = split_array(DataConfig("mnist", img_size=32, n_bits=8), "test")[0]
    assert raw.shape == (28, 28, 1)
    np.testing.assert_array_equal(padded[2:30, 2:30], raw)
    padded[2:30, 2:30] = 0
    assert not padded.any()


# ---- a folder of images ----


def write_images(folder, sizes, mode="RGB"):
    rng = np.random.default_rng(0)
    for i, (height, width) in enumerate(sizes):
        channels = 3 if mode == "RGB" else 1
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
        image.save(os.path.join(folder, f"image_{i:02d}.png"))


def test_folder_resizes_and_splits_every_tenth_image(tmp_path):
    sizes = [(12, 10), (16, 16), (7, 20)] * 7  # 21 images of mixed sizes
    write_images(tmp_path, sizes)
    (tmp_path / "notes.txt").write_text("not an image, and not an image extension")
    config = DataConfig("folder", img_size=8, channel_size=3, n_bits=8, data_dir=str(tmp_path))
    train, test = split_array(config, "train"), split_array(config, "test")
    assert train.shape == (19, 8, 8, 3) and test.shape == (2, 8, 8, 3)
    # image_09 and image_19 are the test split: both were 12x10.
    original = np.asarray(Image.open(tmp_path / "image_09.png"))
    expected = tf.image.resize(original[None].astype(np.float32), (8, 8), antialias=True)
    np.testing.assert_allclose(test[0], np.round(expected[0].numpy()), atol=1)


def test_folder_converts_grey_images_to_rgb(tmp_path):
    write_images(tmp_path, [(8, 8)] * 3, mode="L")
    config = DataConfig("folder", img_size=8, channel_size=3, n_bits=8, data_dir=str(tmp_path))
    train = split_array(config, "train")
    assert train.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(train[..., 0], train[..., 2])
    np.testing.assert_array_equal(train[0, ..., 0], np.asarray(Image.open(tmp_path / "image_00.png")))


def test_empty_folder_is_a_clear_error(tmp_path):
    config = DataConfig("folder", data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match=r"holds no images; expected files ending in \.png"):
        data.load_split(config, "train")


def test_missing_folder_is_a_clear_error(tmp_path):
    config = DataConfig("folder", data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="expected an existing folder of images"):
        data.load_split(config, "train")


def test_unreadable_image_is_named(tmp_path):
    write_images(tmp_path, [(8, 8)] * 2)
    (tmp_path / "broken.png").write_bytes(b"this is not a PNG")
    config = DataConfig("folder", data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match=r"broken\.png: not a readable image"):
        data.load_split(config, "train")


def test_single_image_folder_is_a_clear_error(tmp_path):
    write_images(tmp_path, [(8, 8)])
    config = DataConfig("folder", data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match="holds 1 image, expected at least 2"):
        data.load_split(config, "test")
