"""Data augmentation in the tf.data pipeline: small translations and, where allowed, flips.

Each training image is padded by `DataConfig.max_shift` pixels on every side
and cropped back to its size at a random offset, so it moves by up to that
many pixels in each direction; datasets drawn on black are padded with
black, the others with their own mirrored border. Where the dataset allows
it (`Source.flip`), it is also flipped left to right with probability one
half. Values are only moved, never blended, so the images keep their n_bits
levels. The randomness is stateless, from the run's seed: the same seed
gives the same augmented epochs.
"""

import tensorflow as tf

from glow_tf.datasets import SOURCES
from glow_tf.tf.maps import map_as_written


def augment(dataset, config, seed):
    """The unbatched `dataset` (images, or {"images", "labels"} dicts) with its images augmented."""
    source = SOURCES[config.dataset]
    shift, size = config.max_shift, config.img_size
    mode = "CONSTANT" if source.pad_to_grow else "REFLECT"

    def move(image, seeds):
        padded = tf.pad(image, [[shift, shift], [shift, shift], [0, 0]], mode=mode)
        image = tf.image.stateless_random_crop(
            padded, (size, size, config.channel_size), seed=seeds[0]
        )
        if source.flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
        return image

    def apply(example, seeds):
        if isinstance(example, dict):
            return {**example, "images": move(example["images"], seeds)}
        return move(example, seeds)

    # Two seed pairs per image, new ones each epoch.
    seeds = map_as_written(
        tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4),
        lambda values: tf.reshape(values, (2, 2)),
    )
    return map_as_written(tf.data.Dataset.zip((dataset, seeds)), apply,
                          num_parallel_calls=tf.data.AUTOTUNE)
