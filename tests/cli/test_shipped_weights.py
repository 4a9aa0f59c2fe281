"""The shipped runs (glow_tf/pretrained/): they load by name and score as published."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import common_definitions as defs  # noqa: E402
from glow_tf import DataConfig  # noqa: E402
from glow_tf.runs import load_model, shipped_runs  # noqa: E402
from glow_tf.tf import pipelines  # noqa: E402

# Mean bits/dim of the 360 digits test images under dequantisation noise of seed 0.
SHIPPED_TEST_BITS_PER_DIM = 2.11874


@pytest.mark.slow
def test_the_shipped_weights_score_the_pinned_bits_per_dim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found by name from any folder
    assert defs.PRETRAINED_RUN in shipped_runs()
    loaded = load_model(defs.PRETRAINED_RUN)
    data = DataConfig(**loaded.config["data"])
    images = pipelines.take_images(pipelines.load_split(data, "test"), 360)
    assert images.shape == (360, 8, 8, 1)
    bpd = np.asarray(loaded.model.bits_per_dim(images, seed=0)).mean()
    assert bpd == pytest.approx(SHIPPED_TEST_BITS_PER_DIM, abs=1e-4)


# The shipped photo model (glow_tf/pretrained/cifar10-jpeg-pretrained), trained
# on CIFAR-10 training images, JPEG quality 75, with every 10th file held out
# (docs/training.md#photos-on-a-cpu). The photos are not in the repository, so
# the held-out figure is pinned as the run recorded it, and the weights by
# what they give on images the test makes itself.
PHOTO_RUN = "cifar10-jpeg-pretrained"
PHOTO_HELD_OUT_BITS_PER_DIM = 3.1361
PHOTO_RAMPS_BITS_PER_DIM = 2.77715


def colour_ramps():
    """Eight 32x32 RGB images: a colour ramp across each, at eight angles."""
    y, x = np.mgrid[0:32, 0:32] / 31.0
    images = []
    for k in range(8):
        angle = k * np.pi / 8
        ramp = np.cos(angle) * x + np.sin(angle) * y
        ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
        rgb = np.stack([ramp, 1 - ramp, 0.5 + 0.25 * np.sin(6 * ramp)], -1)
        images.append(np.round(rgb * 255))
    return np.asarray(images, np.uint8)


def test_the_shipped_photo_model_loads_by_name_and_scores_its_pinned_figures(tmp_path,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert PHOTO_RUN in shipped_runs()
    loaded = load_model(PHOTO_RUN)
    metrics = json.loads((Path(loaded.run_dir) / "metrics.json").read_text())
    assert metrics["finished"]
    assert metrics["test_bits_per_dim"] == pytest.approx(PHOTO_HELD_OUT_BITS_PER_DIM, abs=5e-5)
    # The folder by its name, not by a path of the machine it trained on.
    assert loaded.config["data"]["data_dir"] == "cifar10-jpeg"
    bpd = np.asarray(loaded.model.bits_per_dim(colour_ramps(), seed=0)).mean()
    assert bpd == pytest.approx(PHOTO_RAMPS_BITS_PER_DIM, abs=1e-4)
