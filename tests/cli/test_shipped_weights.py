"""The shipped digits weights (glow_tf/pretrained/digits-pretrained): they load by name and
score as published."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import common_definitions as defs  # noqa: E402
from glow_tf import DataConfig  # noqa: E402
from glow_tf.runs import load_model, shipped_runs  # noqa: E402
from glow_tf.tf import pipelines  # noqa: E402

# Mean bits/dim of the 360 digits test images under dequantisation noise of seed 0.
SHIPPED_TEST_BITS_PER_DIM = 2.11698


def test_the_shipped_weights_score_the_pinned_bits_per_dim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found by name from any folder
    assert defs.PRETRAINED_RUN in shipped_runs()
    loaded = load_model(defs.PRETRAINED_RUN)
    data = DataConfig(**loaded.config["data"])
    images = pipelines.take_images(pipelines.load_split(data, "test"), 360)
    assert images.shape == (360, 8, 8, 1)
    bpd = np.asarray(loaded.model.bits_per_dim(images, seed=0)).mean()
    assert bpd == pytest.approx(SHIPPED_TEST_BITS_PER_DIM, abs=1e-4)
