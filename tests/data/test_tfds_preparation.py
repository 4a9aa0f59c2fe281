"""tensorflow-datasets' real preparation of cifar10 and mnist, and its failures, offline.

No mock data: each test writes a few images in the dataset's published
format (CIFAR-10's binary tar.gz, MNIST's gzipped idx files), serves them
over HTTP on 127.0.0.1, and points the dataset's download URLs there. The
real code then downloads them, checks their checksums (registered for the
served URLs, as tensorflow-datasets registers a dataset's own), extracts,
parses and writes the prepared dataset, which the pipelines read. A change
in tensorflow-datasets that breaks that path fails here.
"""

import gzip
import hashlib
import http.server
import io
import socket
import struct
import tarfile
import threading

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from tensorflow_datasets.core.download import checksums  # noqa: E402
from tensorflow_datasets.image_classification import cifar, mnist  # noqa: E402

from glow_tf.datasets import DataConfig, DatasetError  # noqa: E402
from glow_tf.tf import pipelines  # noqa: E402

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"]
MNIST_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def closed_port():
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def register(monkeypatch, builder_class, served):
    """The builder's download checksums: those of the served files, under their real names.

    `served` maps each real URL to (served URL, its bytes). The builder's
    own checksums are read first (the real code that reads them runs), and
    each served URL takes its real URL's file name with the served bytes'
    size and SHA-256, so tensorflow-datasets checks what it downloads.
    """
    real = builder_class.url_infos
    infos = {
        local: checksums.UrlInfo(size=tfds.core.utils.Size(len(data)),
                                 checksum=hashlib.sha256(data).hexdigest(),
                                 filename=real[url].filename)
        for url, (local, data) in served.items()
    }
    monkeypatch.setattr(builder_class, "url_infos", infos)


# ---- the published formats ----


def cifar10_archive(train, test):
    """CIFAR-10's binary version: per image a label byte, then the R, G and B planes."""
    def batch(images, labels):
        return b"".join(bytes([label]) + image.transpose(2, 0, 1).tobytes()
                        for image, label in zip(images, labels))

    files = {"batches.meta.txt": "\n".join(CIFAR_LABELS).encode() + b"\n",
             "test_batch.bin": batch(*test)}
    for k in range(5):  # the five training batches, two images each
        files[f"data_batch_{k + 1}.bin"] = batch(train[0][2 * k:2 * k + 2],
                                                 train[1][2 * k:2 * k + 2])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def idx_images(images):
    return gzip.compress(struct.pack(">iiii", 2051, len(images), 28, 28) + images.tobytes())


def idx_labels(labels):
    return gzip.compress(struct.pack(">ii", 2049, len(labels)) + bytes(labels))


def random_split(rng, count, shape):
    return (rng.integers(0, 256, (count, *shape), dtype=np.uint8),
            rng.integers(0, 10, count).astype(np.uint8))


@pytest.fixture
def cifar10(server, monkeypatch):
    """CIFAR-10 with 10 training and 3 test images, served; returns (train, test) (images, labels)."""
    root, base = server
    rng = np.random.default_rng(0)
    train, test = random_split(rng, 10, (32, 32, 3)), random_split(rng, 3, (32, 32, 3))
    data = cifar10_archive(train, test)
    (root / "cifar-10-binary.tar.gz").write_bytes(data)
    local = f"{base}/cifar-10-binary.tar.gz"
    route_cifar10(monkeypatch, local)
    register(monkeypatch, cifar.Cifar10, {CIFAR_URL: (local, data)})
    return train, test


def route_cifar10(monkeypatch, url):
    """Points tensorflow-datasets' CIFAR-10 download at `url`."""
    original = cifar.Cifar10._cifar_info
    monkeypatch.setattr(cifar.Cifar10, "_cifar_info",
                        property(lambda self: original.fget(self)._replace(url=url)))


def sorted_images(images, labels):
    """The images (and labels) in the order of their pixels: tfds shuffles as it prepares."""
    order = np.lexsort(images.reshape(len(images), -1).T)
    return images[order], labels[order]


def prepared_images(config, split):
    """The pipelines' images and labels of the prepared split, sorted as `sorted_images`."""
    return sorted_images(*pipelines.take_examples(
        pipelines.load_split(config, split, labels=True), 1000))


def test_cifar10_is_downloaded_checked_and_prepared(cifar10, tmp_path):
    train, test = cifar10
    config = DataConfig("cifar10", data_dir=str(tmp_path / "tfds"))
    for split, (images, labels) in (("train", train), ("test", test)):
        got = prepared_images(config, split)
        expected = sorted_images(images, labels)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    builder = tfds.builder("cifar10", data_dir=str(tmp_path / "tfds"))
    assert builder.is_prepared()
    assert builder.info.features["label"].names == CIFAR_LABELS


def test_mnist_is_downloaded_checked_and_prepared(server, monkeypatch, tmp_path):
    root, base = server
    rng = np.random.default_rng(1)
    train, test = random_split(rng, 12, (28, 28)), random_split(rng, 4, (28, 28))
    contents = dict(zip(MNIST_FILES, [idx_images(train[0]), idx_labels(train[1]),
                                      idx_images(test[0]), idx_labels(test[1])]))
    for name, data in contents.items():
        (root / "mnist" / name).parent.mkdir(exist_ok=True)
        (root / "mnist" / name).write_bytes(data)
    # The real files hold 60,000 and 10,000 images; the builder reads that many.
    monkeypatch.setattr(mnist, "_TRAIN_EXAMPLES", 12)
    monkeypatch.setattr(mnist, "_TEST_EXAMPLES", 4)
    monkeypatch.setattr(mnist.MNIST, "URL", f"{base}/mnist/")
    register(monkeypatch, mnist.MNIST, {
        mnist._MNIST_URL + name: (f"{base}/mnist/{name}", data) for name, data in contents.items()
    })
    config = DataConfig("mnist", img_size=32, n_bits=8, data_dir=str(tmp_path / "tfds"))
    for split, (images, labels) in (("train", train), ("test", test)):
        got_images, got_labels = prepared_images(config, split)
        padded = np.zeros((len(images), 32, 32, 1), np.uint8)
        padded[:, 2:30, 2:30, 0] = images  # 28x28 padded, centred, to 32x32
        expected = sorted_images(padded, labels)
        np.testing.assert_array_equal(got_images, expected[0])
        np.testing.assert_array_equal(got_labels, expected[1])


def test_a_download_with_another_checksum_is_refused(cifar10, tmp_path):
    root = tmp_path / "www"
    data = bytearray((root / "cifar-10-binary.tar.gz").read_bytes())
    data[-1] ^= 0xFF  # one byte changed after its checksum was registered
    (root / "cifar-10-binary.tar.gz").write_bytes(bytes(data))
    config = DataConfig("cifar10", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DatasetError, match=r"^cifar10 could not be prepared "
                                           r"\(NonMatchingChecksumError: Artifact http://127"):
        pipelines.load_split(config, "train")
    assert not tfds.builder("cifar10", data_dir=str(tmp_path / "tfds")).is_prepared()


def test_offline_a_download_fails_at_once_with_how_to_go_on(monkeypatch, tmp_path):
    """A host that cannot be reached: one error, before tensorflow-datasets' minutes of retries."""
    url = f"http://127.0.0.1:{closed_port()}/cifar-10-binary.tar.gz"
    route_cifar10(monkeypatch, url)
    register(monkeypatch, cifar.Cifar10, {CIFAR_URL: (url, b"never served")})
    data_dir = tmp_path / "tfds"
    with pytest.raises(DatasetError) as error:
        pipelines.load_split(DataConfig("cifar10", data_dir=str(data_dir)), "train")
    message = str(error.value)
    assert message.startswith("cifar10 could not be fetched: 127.0.0.1 cannot be reached "
                              "(Connection refused). To go on offline: put its download "
                              f"cifar-10-binary.tar.gz ({url}, 0 MB) in "
                              f"{data_dir / 'downloads' / 'manual'}, or a copy of "
                              "tensorflow-datasets' prepared cifar10/3.0.2"), message
    assert message.endswith("or train on a folder of images with --dataset folder "
                            "--data_dir DIR."), message
    assert "\n" not in message


def test_main_offline_exits_with_one_line_and_writes_no_run_folder(monkeypatch, tmp_path,
                                                                     capsys):
    from glow_tf.cli import train
    from tests.commands import run_cli

    url = f"http://127.0.0.1:{closed_port()}/cifar-10-binary.tar.gz"
    route_cifar10(monkeypatch, url)
    register(monkeypatch, cifar.Cifar10, {CIFAR_URL: (url, b"never served")})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train, "--dataset", "cifar10", "--k_glow", "32", "--l_glow", "3",
                "--data_dir", str(tmp_path / "tfds"))
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("main.py: error: cifar10 could not be fetched: 127.0.0.1 cannot "
                            "be reached (Connection refused)"), error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "checkpoints").exists()


def test_the_download_put_in_the_manual_folder_is_prepared_offline(monkeypatch, tmp_path):
    rng = np.random.default_rng(2)
    train, test = random_split(rng, 10, (32, 32, 3)), random_split(rng, 3, (32, 32, 3))
    data = cifar10_archive(train, test)
    url = f"http://127.0.0.1:{closed_port()}/cifar-10-binary.tar.gz"
    route_cifar10(monkeypatch, url)
    register(monkeypatch, cifar.Cifar10, {CIFAR_URL: (url, data)})
    manual = tmp_path / "tfds" / "downloads" / "manual"
    manual.mkdir(parents=True)
    (manual / "cifar-10-binary.tar.gz").write_bytes(data)
    got = prepared_images(DataConfig("cifar10", data_dir=str(tmp_path / "tfds")), "train")
    np.testing.assert_array_equal(got[0], sorted_images(*train)[0])


@pytest.mark.parametrize("dataset, files", [
    ("celeba", ["identity_CelebA.txt", "img_align_celeba.zip", "list_attr_celeba.txt",
                "list_eval_partition.txt", "list_landmarks_align_celeba.txt"]),
    ("imagenet32", ["train_32x32.tar", "valid_32x32.tar"]),
    ("imagenet64", ["train_64x64.tar", "valid_64x64.tar"]),
])
def test_datasets_fetched_by_hand_name_their_files_and_where_they_go(tmp_path, dataset, files):
    data_dir = tmp_path / "tfds"
    with pytest.raises(DatasetError) as error:
        pipelines.load_split(DataConfig(dataset, data_dir=str(data_dir)), "train")
    message = str(error.value)
    assert message.startswith(f"{dataset} needs files fetched by hand: put "), message
    positions = [message.index(f"{name} (http") for name in files]
    assert positions == sorted(positions)
    assert f" in {data_dir / 'downloads' / 'manual'} (tensorflow-datasets checks them" in message
    assert "\n" not in message
