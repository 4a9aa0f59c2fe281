"""One step of flow, and the K steps of a level (Glow, section 3 and figure 2a)."""

import keras
from keras import ops

from glow_tf.config import LOOPS
from glow_tf.layers.actnorm import ActNorm
from glow_tf.layers.base import Bijector, layers_within, on_cpu
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
        permutation_seed, coupling_seed: seeds of the random initial
            weights; None for random ones.
    """

    def __init__(self, hidden_channels=512, coupling="affine", permutation="lu",
                 log_scale_factor=1.0, permutation_seed=None, coupling_seed=None,
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
            Coupling(hidden_channels, affine=coupling == "affine", seed=coupling_seed,
                     log_scale_factor=log_scale_factor, dtype=dtype, name="coupling"),
        ], **kwargs)
        self.hidden_channels = hidden_channels
        self.coupling = coupling
        self.permutation = permutation
        self.log_scale_factor = log_scale_factor
        self.permutation_seed = permutation_seed
        self.coupling_seed = coupling_seed

    def get_config(self):
        return {
            **Bijector.get_config(self),
            "hidden_channels": self.hidden_channels,
            "coupling": self.coupling,
            "permutation": self.permutation,
            "log_scale_factor": self.log_scale_factor,
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
    whether the steps run one after the other or as one loop.

    The loop (`keras.ops.scan`: `tf.while_loop` on TensorFlow, `lax.scan`
    on JAX) stacks the steps' weights where it is called and runs the first
    step's math (`stateless_call`) on each step's slice of them, so a trace
    holds one step instead of K: tracing and compiling take about K times
    less. The steps keep their own variables, so the weights file is the
    same either way. `loop="auto"` picks what measured better for the
    backend and device (`loops_by_default`), and always the loop with
    `remat`: see `looped`.

    Args:
        bijectors: the `FlowStep`s, in the data -> latent order.
        remat: recompute each step's activations in the backward pass
            (per-step checkpointing): the backward pass keeps only each
            step's input, and recomputes one step at a time.
        loop: "auto", "loop" or "unrolled".
    """

    def __init__(self, bijectors=(), remat=False, loop="auto", **kwargs):
        super().__init__(bijectors, **kwargs)
        if loop not in LOOPS:
            raise ValueError(f"loop={loop!r}: expected one of {', '.join(LOOPS)}.")
        self.remat = bool(remat)
        self.loop = loop

    def forward(self, x, labels=None):
        return self.run_steps(x, labels, inverse=False)

    def inverse(self, y, labels=None):
        return self.run_steps(y, labels, inverse=True)

    @property
    def looped(self):
        """Whether a call runs the steps as one loop (it cannot while they hold Python state).

        With `remat`, "auto" loops on every backend and device. Unrolled,
        XLA on a CPU drops the barriers that `jax.checkpoint` puts around
        each recomputed step and merges the recomputation with the forward
        pass, so JAX's unrolled step keeps every activation: its compiled
        step needs more scratch memory with remat than without. Inside the
        loop the backward pass is a loop of its own and the recomputation
        stays. On TensorFlow's CPU the loop with remat measured faster, with
        less memory and a shorter warm-up than the unrolled steps with it
        (docs/performance.md).
        """
        if len(self.bijectors) < 2 or not self.stateless:
            return False
        if self.loop == "auto":
            return self.remat or loops_by_default()
        return self.loop == "loop"

    @property
    def stateless(self):
        """Whether each step is a function of its variables alone, as the loop and remat need.

        Not while `Glow.initialize` assigns the ActNorms from data, nor while
        the 1x1 convolutions hold constants computed from their weights
        (`constant_decompositions`, for an export).
        """
        return not any(getattr(layer, "data_init", False)
                       or getattr(layer, "holds_constants", False)
                       for layer in layers_within(self))

    def run_steps(self, x, labels, inverse):
        remat = self.remat and self.stateless
        if self.looped:
            return self.run_as_loop(x, labels, inverse, remat)
        logdet = 0.0
        for step in (reversed(self.bijectors) if inverse else self.bijectors):
            # A new function each call, not the layer: jax.checkpoint caches
            # its trace per function, and a cached trace of the layer holds
            # the variable values of the transformation it was traced in.
            call = lambda h, step=step: step(h, inverse=inverse, labels=labels)  # noqa: E731
            x, term = (keras.remat(call) if remat else call)(x)
            logdet = logdet + term
        return x, logdet

    def run_as_loop(self, x, labels, inverse, remat):
        template = self.bijectors[0]
        weights = (_stacked(step.trainable_variables for step in self.bijectors),
                   _stacked(step.non_trainable_variables for step in self.bijectors))

        def one_step(h, step_weights):
            (h, term), _ = template.stateless_call(*step_weights, h, inverse=inverse,
                                                   labels=labels)
            return h, term

        one_step = keras.remat(one_step) if remat else one_step

        def body(carry, step_weights):
            h, logdet = carry
            h, term = one_step(h, step_weights)
            return (h, logdet + term), None

        start = (x, ops.zeros(ops.shape(x)[:1], "float32"))
        (y, logdet), _ = ops.scan(body, start, weights, reverse=inverse)
        return y, logdet

    def get_config(self):
        return {**super().get_config(), "remat": self.remat, "loop": self.loop}


def loops_by_default():
    """Whether `loop="auto"` runs a level's steps as one loop on this backend and device.

    On a CPU, no: the loop's training step took longer than the unrolled
    steps' on both backends (1.14x on TensorFlow and 1.26x on JAX at the
    paper's size, 1.7x on TensorFlow at the digits preset), while its
    shorter trace saves half a minute once: a run of more than about a
    hundred steps gains more from the step. On an accelerator, yes: the
    trace K times shorter. (docs/performance.md has the measurements.)
    """
    return not on_cpu()


def _stacked(variables_per_step):
    """One tensor per variable of a step: that variable of every step, stacked on axis 0."""
    return [ops.stack([v.value for v in same]) for same in zip(*variables_per_step)]
