"""keras.random's normal and uniform draws, made as one flat vector and reshaped.

Both backends fill a shape in row-major order, so the numbers are the ones
`keras.random` draws for the shape itself: same seed, same values
(tests/core/test_model.py checks it). Why flat: JAX compiles its random
bits once for every shape, and XLA on a CPU took 0.5 to 2.4 s for each 4-D
shape of the paper model's latents, against 0.16 s for a flat one; the three
latents of its first sample spent 4 s there. A shape that holds a traced
size (a batch axis unknown while TensorFlow traces) is drawn as it is.
"""

import math
import numbers

import keras
from keras import ops


def normal(shape, seed):
    return _drawn(keras.random.normal, shape, seed=seed)


def uniform(shape, minval, maxval, seed):
    return _drawn(keras.random.uniform, shape, minval=minval, maxval=maxval, seed=seed)


def _drawn(draw, shape, **kwargs):
    if not all(isinstance(size, numbers.Integral) for size in shape):
        return draw(shape, **kwargs)
    return ops.reshape(draw((math.prod(shape),), **kwargs), shape)
