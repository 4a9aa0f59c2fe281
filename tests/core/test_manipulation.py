"""Attribute directions and moving along them (glow_tf.analysis.manipulation), on either backend."""

import numpy as np
import pytest

from glow_tf import Glow, GlowConfig, quantization
from glow_tf.analysis import manipulation
from tests.bijector_checks import randomize_weights, to_numpy

CONFIG = GlowConfig(image_shape=(8, 8, 1), k_glow=2, l_glow=2, hidden_channels=8, n_bits=4, seed=0)


@pytest.fixture(scope="module")
def model():
    glow = Glow(CONFIG)
    randomize_weights(glow, stddev=0.05)
    return glow


def labelled_images(n=40, seed=0):
    """Random 4-bit images, the first attribute brightening a corner so it shows in z."""
    rng = np.random.default_rng(seed)
    attributes = rng.integers(0, 2, (n, 2))
    attributes[:2] = [[0, 1], [1, 0]]  # both values of both attributes occur
    images = rng.integers(0, 16, (n, 8, 8, 1)) * 16
    images[attributes[:, 0] == 1, :4, :4] = 240
    return images.astype(np.uint8), attributes


def test_directions_are_the_mean_differences_of_the_latents(model):
    images, attributes = labelled_images()
    directions = manipulation.attribute_directions(
        model, images, attributes, names=["corner", "noise"], batch_size=16
    )
    assert list(directions) == ["corner", "noise"]
    # By hand: encode the bin centres in one batch, average in NumPy.
    zs, _ = model.encode(quantization.quantize(images, 4) + 1 / 32)
    zs = [to_numpy(z).astype(np.float64) for z in zs]
    for column, name in enumerate(["corner", "noise"]):
        has = attributes[:, column] == 1
        assert len(directions[name]) == len(model.latent_shapes) == 2
        for direction, z, shape in zip(directions[name], zs, model.latent_shapes):
            assert direction.shape == shape
            np.testing.assert_allclose(direction, z[has].mean(0) - z[~has].mean(0), atol=2e-5)
    # A real attribute moves the latents more than a random one.
    size = [sum(np.abs(d).sum() for d in directions[name]) for name in ("corner", "noise")]
    assert size[0] > size[1]


def test_scale_zero_gives_each_image_back(model):
    images, attributes = labelled_images()
    direction = manipulation.attribute_directions(model, images, attributes[:, 0])["0"]
    moved = manipulation.manipulate(model, images[:5], direction, [-1.0, 0.0, 1.0])
    assert moved.shape == (5, 3, 8, 8, 1)
    np.testing.assert_array_equal(
        to_numpy(quantization.to_uint8(moved[:, 1], 4)),
        to_numpy(quantization.to_uint8(quantization.quantize(images[:5], 4) + 1 / 32, 4)),
    )
    assert np.abs(moved[:, 2] - moved[:, 1]).max() > 1e-3, "scale 1 should move the images"


def test_bad_attributes_are_named(model):
    images, attributes = labelled_images(8)
    with pytest.raises(ValueError, match=r"attributes has shape \(7, 2\); expected \(8, A\)"):
        manipulation.attribute_directions(model, images, attributes[:7])
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        manipulation.attribute_directions(model, images, attributes * 2)
    with pytest.raises(ValueError, match="attribute 'all': 8 of 8 images have it"):
        manipulation.attribute_directions(model, images, np.ones(8), names=["all"])
    with pytest.raises(ValueError, match="latents are"):
        manipulation.manipulate(model, images, [np.zeros((2, 2, 8))], [1.0])
