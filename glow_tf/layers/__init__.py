"""Glow's bijectors, one per file, all with `call(x, inverse=False) -> (y, logdet)`.

`networks` holds the two plain layers the bijectors use: the coupling
network NN() and the zero-initialised convolution of the priors.
"""

from glow_tf.layers.actnorm import ActNorm
from glow_tf.layers.base import Bijector
from glow_tf.layers.coupling import Coupling
from glow_tf.layers.invertible_conv import Invertible1x1Conv
from glow_tf.layers.networks import CouplingNetwork, ZeroConv2D
from glow_tf.layers.permutation import Permute
from glow_tf.layers.prior import LearnedPrior
from glow_tf.layers.split import SplitPrior
from glow_tf.layers.squeeze import Squeeze

__all__ = [
    "ActNorm",
    "Bijector",
    "Coupling",
    "CouplingNetwork",
    "Invertible1x1Conv",
    "LearnedPrior",
    "Permute",
    "SplitPrior",
    "Squeeze",
    "ZeroConv2D",
]
