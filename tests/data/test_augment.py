"""--augment: translations of up to max_shift pixels, flips only where the dataset allows them."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from glow_tf import DataConfig  # noqa: E402
from glow_tf.tf import augment, pipelines  # noqa: E402


def asymmetric_image(size, channels):
    """An image whose translations and mirror images are all different from each other."""
    image = np.zeros((size, size, channels), np.uint8)
    image[1:size - 2, 2, :] = 240  # a vertical bar left of centre
    image[1, 2:size - 2, :] = 160  # a top bar to its right: an "F"
    image[size // 2, 2:size // 2 + 1, :] = 96
    return image


def shifted(image, dy, dx, mode):
    """`image` moved by (dy, dx), the uncovered border filled as augment pads it."""
    s = 2 * max(abs(dy), abs(dx), 1)
    pad = np.pad(image, [(s, s), (s, s), (0, 0)],
                 mode="constant" if mode == "CONSTANT" else "reflect")
    h, w = image.shape[:2]
    return pad[s - dy:s - dy + h, s - dx:s - dx + w]


def augmented(config, image, count=64, seed=0):
    dataset = tf.data.Dataset.from_tensors(image).repeat(count)
    return np.stack(list(augment.augment(dataset, config, seed).as_numpy_iterator()))


def explain(out, image, shift, mode):
    """('move', dy, dx) or ('flip', dy, dx) that turns image into out; None if neither."""
    for kind, base in (("move", image), ("flip", image[:, ::-1])):
        for dy in range(-shift, shift + 1):
            for dx in range(-shift, shift + 1):
                if np.array_equal(out, shifted(base, dy, dx, mode)):
                    return kind, dy, dx
    return None


def test_digits_move_by_at_most_a_pixel_and_never_flip():
    config = DataConfig("digits", augment=True)
    image = asymmetric_image(8, 1)
    outs = augmented(config, image)
    kinds = [explain(out, image, config.max_shift, "CONSTANT") for out in outs]
    assert None not in kinds, "every output is a translation of the image"
    assert {k[0] for k in kinds} == {"move"}, "digits are never flipped"
    assert len({k[1:] for k in kinds}) >= 6, "the offsets vary"
    assert set(np.unique(outs)) <= set(np.unique(image)), "values are moved, never blended"


def test_cifar10_images_are_also_flipped():
    config = DataConfig("cifar10", img_size=16, augment=True)
    assert config.max_shift == 1
    image = asymmetric_image(16, 3)
    kinds = [explain(out, image, 1, "REFLECT") for out in augmented(config, image)]
    assert None not in kinds
    counts = {kind: sum(k[0] == kind for k in kinds) for kind in ("move", "flip")}
    assert counts["move"] > 10 and counts["flip"] > 10, counts


def test_the_same_seed_gives_the_same_epoch_and_the_next_epoch_differs():
    config = DataConfig("digits", augment=True)
    image = asymmetric_image(8, 1)
    np.testing.assert_array_equal(augmented(config, image), augmented(config, image))
    assert not np.array_equal(augmented(config, image), augmented(config, image, seed=1))
    dataset = augment.augment(tf.data.Dataset.from_tensors(image).repeat(16), config, 0)
    first, second = (np.stack(list(dataset.as_numpy_iterator())) for _ in range(2))
    assert not np.array_equal(first, second), "each epoch draws new offsets"


def test_only_the_training_split_is_augmented():
    plain = pipelines.make_datasets(DataConfig("digits"), 64, seed=0)
    moved = pipelines.make_datasets(DataConfig("digits", augment=True), 64, seed=0)
    np.testing.assert_array_equal(np.concatenate(list(plain[1].as_numpy_iterator())),
                                  np.concatenate(list(moved[1].as_numpy_iterator())))
    assert not np.array_equal(next(iter(plain[0])).numpy(), next(iter(moved[0])).numpy())
