"""One step of flow, and the K steps of a level (Glow, section 3 and figure 2a)."""

import keras

from glow_tf.layers.actnorm import ActNorm
from glow_tf.layers.base import Bijector
from glow_tf.layers.chain import Chain
from glow_tf.layers.coupling import Coupling
from glow_tf.layers.invertible_conv import Invertible1x1Conv
from glow_tf.layers.permutation import Permute

# Permutations that are a learned 1x1 convolution; the others are fixed (Permute).
CONVOLUTIONS = {"lu": True, "conv": False}


@keras.saving.register_keras_serializable(package="glow_tf")
class FlowStep(Chain):
    """ActNorm, then a channel permutation, then a coupling.

    The permutation is the invertible 1x1 convolution ("lu", LU-decomposed,
    or "conv", plain) or one of the paper's fixed baselines ("reverse",
    "shuffle"). The step is a function of its weights as well as a layer:
    `step.stateless_call(trainable, non_trainable, x)` runs the same math
    on other values of them, which is what a loop over the stacked weights
    of a level's steps needs.

    Args:
        hidden_channels: width of the coupling network.
        coupling: "affine" or "additive".
        permutation: "lu", "conv", "reverse" or "shuffle".
        log_scale_factor: of the ActNorms (see ActNorm).
        remat: recompute the coupling network in the backward pass.
        permutation_seed, coupling_seed: seeds of the random initial
            weights; None for random ones.
    """

    def __init__(self, hidden_channels=512, coupling="affine", permutation="lu",
                 log_scale_factor=1.0, remat=False, permutation_seed=None, coupling_seed=None,
                 **kwargs):
        dtype = kwargs.get("dtype")
        if permutation in CONVOLUTIONS:
            mixing = Invertible1x1Conv(lu_decomposed=CONVOLUTIONS[permutation],
                                       seed=permutation_seed, dtype=dtype, name="invconv")
        else:
            mixing = Permute(permutation, seed=permutation_seed, dtype=dtype, name="permute")
        super().__init__([
            ActNorm(log_scale_factor=log_scale_factor, dtype=dtype, name="actnorm"),
            mixing,
            Coupling(hidden_channels, affine=coupling == "affine", remat=remat,
                     seed=coupling_seed, log_scale_factor=log_scale_factor, dtype=dtype,
                     name="coupling"),
        ], **kwargs)
        self.hidden_channels = hidden_channels
        self.coupling = coupling
        self.permutation = permutation
        self.log_scale_factor = log_scale_factor
        self.remat = remat
        self.permutation_seed = permutation_seed
        self.coupling_seed = coupling_seed

    def get_config(self):
        return {
            **Bijector.get_config(self),
            "hidden_channels": self.hidden_channels,
            "coupling": self.coupling,
            "permutation": self.permutation,
            "log_scale_factor": self.log_scale_factor,
            "remat": self.remat,
            "permutation_seed": self.permutation_seed,
            "coupling_seed": self.coupling_seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="glow_tf")
class FlowSteps(Chain):
    """The K steps of flow of one level, applied in order.

    A block of its own so that how the steps run is its business alone:
    the level around it, the flow and their callers see one bijector,
    whether the steps run one after the other (here) or as one loop over
    their stacked weights.

    Args:
        bijectors: the `FlowStep`s, in the data -> latent order.
    """
