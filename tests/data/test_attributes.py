"""Images with binary attributes: CelebA's 40, a dataset's classes, an image folder's CSV."""

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from glow_tf import DataConfig  # noqa: E402
from tests.tfds_mock import mock_data  # noqa: E402
from glow_tf.datasets import DatasetError  # noqa: E402
from glow_tf.tf import attributes  # noqa: E402


def test_celeba_attributes_on_mock_data():
    config = DataConfig("celeba", img_size=16, n_bits=5)
    with mock_data(num_examples=6):
        images, values, names = attributes.load_attributes(config, "train")
        raw = list(tfds.load("celeb_a", split="train").as_numpy_iterator())
    assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
    assert not (images & 0x07).any(), "n_bits=5 keeps the top 5 bits only"
    assert len(names) == 40 and "Smiling" in names and "Blond_Hair" in names
    assert values.shape == (6, 40) and set(np.unique(values)) <= {0, 1}
    expected = np.array([[int(example["attributes"][name]) for name in names] for example in raw])
    np.testing.assert_array_equal(values, expected)


def test_digits_classes_one_against_the_rest():
    images, values, names = attributes.load_attributes(DataConfig("digits"), "test", max_images=50)
    from sklearn.datasets import load_digits

    targets = load_digits().target[1437:1487]
    assert names == [f"digit_{k}" for k in range(10)]
    assert images.shape == (50, 8, 8, 1) and values.shape == (50, 10)
    np.testing.assert_array_equal(values.argmax(1), targets)
    assert (values.sum(1) == 1).all()


def write_folder(tmp_path, rows, header="file,Smiling,Young"):
    for i in range(len(rows)):
        Image.fromarray(np.full((6, 6, 3), 20 * i, np.uint8)).save(tmp_path / f"{i:02d}.png")
    lines = [header] + [f"{i:02d}.png," + ",".join(map(str, row)) for i, row in enumerate(rows)]
    (tmp_path / "attributes.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "attributes.csv")


def test_a_folder_with_an_attribute_csv(tmp_path):
    rows = [[i % 2, i // 6] for i in range(12)]
    csv_path = write_folder(tmp_path, rows)
    config = DataConfig("folder", img_size=8, channel_size=3, n_bits=8, data_dir=str(tmp_path))
    train, train_values, names = attributes.load_attributes(config, "train", csv_path)
    test, test_values, _ = attributes.load_attributes(config, "test", csv_path)
    assert names == ["Smiling", "Young"]
    # Every 10th row tests: row 9 here.
    assert len(train) == 11 and len(test) == 1
    np.testing.assert_array_equal(test_values, [rows[9]])
    np.testing.assert_array_equal(train_values, [r for i, r in enumerate(rows) if i != 9])
    assert train.shape[1:] == (8, 8, 3)
    assert test[0].mean() == pytest.approx(180, abs=2)  # image 09 is grey level 180


@pytest.mark.parametrize("header, rows, message", [
    ("file,Smiling", [[2]], r"line 2: attribute values \['2'\]; expected 0 or 1"),
    ("file,Smiling,Smiling", [[0, 1]], "must be unique"),
    ("file,Smiling", [[0, 1]], "line 2: 3 columns, expected 2"),
])
def test_bad_attribute_csvs_are_named(tmp_path, header, rows, message):
    csv_path = write_folder(tmp_path, rows, header)
    with pytest.raises(DatasetError, match=message):
        attributes.read_attribute_csv(csv_path)


def test_missing_images_and_files_are_named(tmp_path):
    csv_path = write_folder(tmp_path, [[1], [0]], "file,Smiling")
    (tmp_path / "01.png").unlink()
    with pytest.raises(DatasetError, match="line 3: '01.png': no such image file"):
        attributes.read_attribute_csv(csv_path)
    with pytest.raises(DatasetError, match="attributes_csv='nowhere.csv': no such file"):
        attributes.read_attribute_csv("nowhere.csv")


def test_a_dataset_without_attributes_is_refused():
    with pytest.raises(DatasetError, match="dataset='imagenet32' has no attributes"):
        attributes.load_attributes(DataConfig("imagenet32"), "test")
