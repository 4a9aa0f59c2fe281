"""Glow.sample decodes a large n in batches of one shape, so its memory does not grow with n."""

import math

import numpy as np
import pytest

from glow_tf import Glow, GlowConfig
from glow_tf.model import SAMPLE_BATCH_SIZE
from tests.bijector_checks import to_numpy
from tests.tiny import TINY_DIGITS_MODEL

TINY = TINY_DIGITS_MODEL


def tiny_model(**changes):
    """A tiny Glow whose weights are moved off their identity initialisation."""
    model = Glow(GlowConfig(**{**TINY, **changes}))
    rng = np.random.default_rng(0)
    for variable in model.trainable_variables:
        value = to_numpy(variable)
        variable.assign(value + 0.05 * rng.standard_normal(value.shape).astype(value.dtype))
    return model


class DecodeCalls:
    """Records the batch size of every latent list the model's decode is called with."""

    def __init__(self, model):
        self.sizes = []
        decode = model.decode

        def recorded(zs, labels=None):
            self.sizes.append(int(zs[0].shape[0]))
            if labels is not None:
                assert int(labels.shape[0]) == self.sizes[-1]
            return decode(zs, labels)

        model.decode = recorded


def test_sample_decodes_20000_images_in_batches_of_one_shape():
    model = tiny_model()
    calls = DecodeCalls(model)
    x = to_numpy(model.sample(20000, temperature=0.7, seed=3))
    assert x.shape == (20000, 8, 8, 1) and np.isfinite(x).all()
    assert calls.sizes == [SAMPLE_BATCH_SIZE] * math.ceil(20000 / SAMPLE_BATCH_SIZE)
    assert model.traces["decode"] == 1  # the compiled decode, traced once, used 20 times
    # The same images as one decode of all of them, whose noise is the same draw.
    whole = to_numpy(model.sample(20000, temperature=0.7, seed=3, batch_size=20000))
    assert calls.sizes[-1] == 20000
    np.testing.assert_allclose(x, whole, atol=1e-5)


def test_batch_size_does_not_change_the_samples_of_a_conditional_model():
    model = tiny_model(num_classes=3)
    calls = DecodeCalls(model)
    batched = to_numpy(model.sample(10, seed=1, batch_size=4))
    assert calls.sizes == [4, 4, 4]  # the last batch of 2 padded to 4
    whole = to_numpy(model.sample(10, seed=1))
    assert calls.sizes[-1] == 10
    np.testing.assert_allclose(batched, whole, atol=1e-5)
    # Labels follow their images through the batches: class 2 only, from a label per image.
    only_2 = to_numpy(model.sample(10, seed=1, labels=[2] * 10, batch_size=4))
    assert not np.allclose(only_2, batched, atol=1e-3)
    np.testing.assert_allclose(
        only_2, to_numpy(model.sample(10, seed=1, labels=2)), atol=1e-5)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "8"])
def test_a_bad_batch_size_is_refused(batch_size):
    model = Glow(GlowConfig(**TINY))
    with pytest.raises(ValueError, match=f"batch_size={batch_size!r}: expected an integer >= 1"):
        model.sample(4, batch_size=batch_size)
