"""Bijectors in sequence: the composition every block of a Glow is made of."""

import keras

from glow_tf.layers.base import Bijector


@keras.saving.register_keras_serializable(package="glow_tf")
class Chain(Bijector):
    """Applies `bijectors` in order; the inverse applies their inverses in reverse.

    f = f_n o ... o f_1,   logdet = sum_i logdet_i

    Each bijector takes what the one before it returned, so a split (one
    tensor to two) may end a chain, and its inverse then takes the pair.
    `labels` reach every bijector.

    Args:
        bijectors: the bijectors, in the data -> latent order.

    Example:
        >>> step = Chain([ActNorm(), Invertible1x1Conv(), Coupling(512)])
        >>> y, logdet = step(x)
    """

    def __init__(self, bijectors=(), **kwargs):
        super().__init__(**kwargs)
        self.bijectors = list(bijectors)

    def build(self, input_shape):
        shape = input_shape
        for bijector in self.bijectors:
            if not bijector.built:  # a deserialised bijector comes built
                bijector.build(shape)
            shape = bijector.compute_output_shape(shape)

    def forward(self, x, labels=None):
        logdet = 0.0
        for bijector in self.bijectors:
            x, term = bijector(x, labels=labels)
            logdet = logdet + term
        return x, logdet

    def inverse(self, y, labels=None):
        logdet = 0.0
        for bijector in reversed(self.bijectors):
            y, term = bijector(y, inverse=True, labels=labels)
            logdet = logdet + term
        return y, logdet

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for bijector in self.bijectors:
            shape = bijector.compute_output_shape(shape)
        return shape

    def get_config(self):
        return {
            **super().get_config(),
            "bijectors": [keras.saving.serialize_keras_object(b) for b in self.bijectors],
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["bijectors"] = [
            keras.saving.deserialize_keras_object(b) for b in config["bijectors"]
        ]
        return cls(**config)


def unchained(bijectors):
    """The bijectors that `bijectors` are made of, in order, with every Chain opened.

    The flow's levels give squeeze, actnorm, permutation, coupling, ...,
    split: what a profile of the layers times one by one.
    """
    for bijector in bijectors:
        if isinstance(bijector, Chain):
            yield from unchained(bijector.bijectors)
        else:
            yield bijector
