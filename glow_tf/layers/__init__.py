"""Glow's bijectors, one per file, all with `call(x, inverse=False, labels=None) -> (y, logdet)`.

`networks` holds the two plain layers the bijectors use: the coupling
network NN() and the zero-initialised convolution of the priors. `chain`
and `step` compose bijectors: a step of flow, a level's K steps.
"""

from glow_tf.layers.actnorm import ActNorm
from glow_tf.layers.base import Bijector
from glow_tf.layers.chain import Chain
from glow_tf.layers.coupling import Coupling
from glow_tf.layers.invertible_conv import Invertible1x1Conv
from glow_tf.layers.networks import CouplingNetwork, ZeroConv2D
from glow_tf.layers.permutation import Permute
from glow_tf.layers.prior import LearnedPrior
from glow_tf.layers.split import SplitPrior
from glow_tf.layers.squeeze import Squeeze
from glow_tf.layers.step import FlowStep, FlowSteps

__all__ = [
    "ActNorm",
    "Bijector",
    "Chain",
    "Coupling",
    "CouplingNetwork",
    "FlowStep",
    "FlowSteps",
    "Invertible1x1Conv",
    "LearnedPrior",
    "Permute",
    "SplitPrior",
    "Squeeze",
    "ZeroConv2D",
]
