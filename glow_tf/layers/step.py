"""One step of flow, and the K steps of a level (Glow, section 3 and figure 2a)."""

import contextlib

import keras
import numpy as np
from keras import ops

from glow_tf.config import LOOPS, is_wide
from glow_tf.layers.actnorm import ActNorm
from glow_tf.layers.base import (Bijector, Hidden, jit_on_jax, layers_within, on_cpu,
                                  on_jax_cpu)
from glow_tf.layers.chain import Chain
from glow_tf.layers.coupling import Coupling
from glow_tf.layers.invertible_conv import Invertible1x1Conv
from glow_tf.layers.permutation import Permute
from glow_tf.layers.recompute import recomputed

# Permutations that are a learned 1x1 convolution; the others are fixed (Permute).
CONVOLUTIONS = {"lu": True, "conv": False}

# From this width of the coupling network, the loop that recomputes unasked
# keeps each network's hidden convolution output (`FlowSteps.keeps_hidden`).
# The loss and gradients of a 32x32 Glow, K=8, batch 16, on JAX's CPU
# (benchmarks.xla_ops, loop-keep-hidden over loop-remat, twice each): 0.85x
# and 0.90x at width 512, 0.90x and 0.92x at 384, 0.96x and 0.97x at 256,
# 0.99x to 1.03x at 128 and 64; 1.04x and 1.05x at the digits preset's 16.
KEEP_HIDDEN_FROM_WIDTH = 256


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

    def arguments(self):
        """The arguments that make this step again: its config without Keras' serialiser
        (which imports TensorFlow, and a JAX process need not)."""
        return {
            "hidden_channels": self.hidden_channels,
            "coupling": self.coupling,
            "permutation": self.permutation,
            "log_scale_factor": self.log_scale_factor,
            "permutation_seed": self.permutation_seed,
            "coupling_seed": self.coupling_seed,
            "name": self.name,
            "dtype": self.dtype_policy.name,
        }

    def get_config(self):
        # Keras' own entries (name, dtype policy, trainable) as Keras serialises them.
        return {**self.arguments(), **Bijector.get_config(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="glow_tf")
class FlowSteps(Bijector):
    """The K steps of flow of one level, applied in order, with their weights stacked.

    A block of its own so that how the steps run is its business alone:
    the level around it, the flow and their callers see one bijector,
    whether the steps run one after the other or as one loop.

    The steps' weights are stored stacked: one variable per weight of a
    step, of shape (K, ...), its row k step k's weight. One step, the
    template, does the math of every step on its row of each variable
    (`call_step`, a `keras.StatelessScope` over the template's variables).
    So the optimizer updates K times fewer variables (50 instead of 1,352
    at the paper's size, whose Adam updates were most of what JAX spent
    compiling its training step and the peak of its memory), and a loop
    (`keras.ops.scan`: `tf.while_loop` on TensorFlow, `lax.scan` on JAX)
    runs over the variables as they are: its trace holds one step instead
    of K. `loop="auto"` picks the loop or
    the unrolled steps by what measured better for the backend and device
    (`loops_by_default`), and always the loop with `remat`: see `looped`.
    On JAX's CPU, "auto" also recomputes each step in the loop's backward
    pass, as `remat` does, keeping a wide coupling network's hidden
    convolution output: see `recomputes` and `keeps_hidden`.

    The template's own variables only hold the first step's initial
    values: read a step's weights with `step_weights(k)`.

    Args:
        bijectors: the K `FlowStep` layers, in the data -> latent order,
            alike but for their seeds. Their initial weights become the rows of
            the stacked variables; the first is kept as the template.
        remat: recompute each step's activations in the backward pass
            (per-step checkpointing): the backward pass keeps only each
            step's input, and recomputes one step at a time.
        loop: "auto", "loop" or "unrolled".
    """

    def __init__(self, bijectors=(), remat=False, loop="auto", **kwargs):
        super().__init__(**kwargs)
        if loop not in LOOPS:
            raise ValueError(f"loop={loop!r}: expected one of {', '.join(LOOPS)}.")
        steps = list(bijectors)
        if not steps:
            raise ValueError("FlowSteps needs at least one FlowStep.")
        self.num_steps = len(steps)
        # To make the steps again (`unstacked`, `get_config`).
        self.step_arguments = [step.arguments() for step in steps]
        # Not tracked by Keras: their variables are not weights of the model.
        self.steps = Hidden(steps)
        self.remat = bool(remat)
        self.loop = loop
        # Per step, (W^-1, log|det W|) of each 1x1 convolution, while
        # `constant_decompositions` holds them.
        self._constants = None

    def template(self):
        """The step whose math runs every step (its own variables are not the model's).

        A method, not a property: Keras' weights files walk a layer's
        properties, and would write the template's variables too.
        """
        return self.steps.layers[0]

    def build(self, input_shape):
        steps = self.steps.layers
        for step in steps:
            if not step.built:
                step.build(input_shape)
        template = steps[0]
        self.step_input_shape = tuple(input_shape)
        prefix = template.path + "/"
        self.stacked = []
        for i, variable in enumerate(self.template_variables):
            rows = np.stack([ops.convert_to_numpy(step_variables(step)[i]) for step in steps])
            self.stacked.append(self.add_weight(
                name=variable.path.removeprefix(prefix).replace("/", "."),
                shape=rows.shape, dtype=variable.dtype, trainable=variable.trainable,
                initializer=lambda shape, dtype, rows=rows: ops.cast(rows, dtype),
            ))
        # The other steps' values live in the stacks now.
        self.steps = Hidden([template])

    @property
    def template_variables(self):
        """The template's variables, in the order of the stacked ones."""
        return step_variables(self.template())

    def step_weights(self, k):
        """{name: value} of step k's weights, by their names within the template."""
        return {v.name: ops.convert_to_numpy(v)[k] for v in self.stacked}

    def forward(self, x, labels=None):
        if self.initializing:
            return self.initialize_steps(x, labels)
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
        if self.num_steps < 2 or not self.stateless:
            return False
        if self.loop == "auto":
            return self.remat or loops_by_default(self.step_arguments[0]["hidden_channels"])
        return self.loop == "loop"

    @property
    def recomputes(self):
        """Whether the backward pass recomputes each step instead of keeping its activations.

        With `remat`, always. With `loop="auto"` on JAX's CPU too: there the
        loop keeps a step's activations by writing them into buffers of K
        rows, which XLA fills with zeros first, and the filling and writing
        took longer than the forward pass they save. Recomputing, the loss
        and gradients of the photos32 model took 184 ms against 252, the
        paper's 2.75 s against 2.93 with a 27th of the scratch memory, and
        the digits preset's step 22 ms against 25 (docs/performance.md).
        """
        if not self.stateless:
            return False
        if self.remat:
            return True
        return self.loop == "auto" and self.looped and recomputes_by_default()

    @property
    def keeps_hidden(self):
        """Whether the recomputing backward pass keeps each coupling network's hidden
        convolution output (glow_tf.layers.recompute), and recomputes the rest.

        When the loop recomputes unasked (`recomputes` without `remat`) and
        the network is at least KEEP_HIDDEN_FROM_WIDTH wide. That output is
        width numbers a pixel, and recomputing it width x width
        multiply-adds: at the paper's size the loss and gradients took 2.45
        s keeping it, against 2.61 recomputing everything, for 364 MiB of
        scratch memory against 67 (docs/performance.md). `remat` keeps
        nothing: it is asked for memory.
        """
        return (self.recomputes and not self.remat
                and self.step_arguments[0]["hidden_channels"] >= KEEP_HIDDEN_FROM_WIDTH)

    @property
    def initializing(self):
        """Whether `Glow.initialize` is assigning the ActNorms from data (an eager pass)."""
        return any(getattr(layer, "data_init", False) for layer in layers_within(self.template()))

    @property
    def holds_constants(self):
        """Whether the 1x1 convolutions' W^-1 and log|det W| are constants (for an export)."""
        return self._constants is not None

    @property
    def stateless(self):
        """Whether each step is a function of its weights alone, as the loop and remat need."""
        return not (self.initializing or self.holds_constants)

    def as_step(self, weights):
        """A scope in which the template's variables read one step's `weights`
        (in `template_variables` order); what the template assigns stays in it."""
        return keras.StatelessScope(state_mapping=list(zip(self.template_variables, weights)))

    def call_step(self, h, weights, inverse=False, labels=None, constants=None):
        """The template's math on one step's `weights` (in `template_variables` order)."""
        with self.as_step(weights), _held(self.template(), constants):
            return self.template()(h, inverse=inverse, labels=labels)

    def rows(self):
        """Each step's weights: K lists in `template_variables` order.

        By a split of each stacked variable, whose gradient is one
        concatenation (base.split_channels says why not slices).
        """
        parts = [ops.split(v.value, self.num_steps, axis=0) for v in self.stacked]
        return [[ops.squeeze(part[k], axis=0) for part in parts] for k in range(self.num_steps)]

    def run_steps(self, x, labels, inverse):
        remat, keep_hidden = self.recomputes, self.keeps_hidden
        if self.looped:
            return self.run_as_loop(x, labels, inverse, remat, keep_hidden)

        def step(k):
            # A new function each call: jax.checkpoint caches its trace per
            # function. The weights go in as arguments, which is how
            # TensorFlow's recompute_grad gives them gradients.
            constants = None if self._constants is None else self._constants[k]
            return lambda h, *weights: self.call_step(h, weights, inverse, labels, constants)

        logdet = 0.0
        rows = self.rows()
        for k in (reversed(range(self.num_steps)) if inverse else range(self.num_steps)):
            call = step(k)
            x, term = (recomputed(call, keep_hidden) if remat else call)(x, *rows[k])
            logdet = logdet + term
        return x, logdet

    def run_as_loop(self, x, labels, inverse, remat, keep_hidden):
        def one_step(h, *weights):
            return self.call_step(h, weights, inverse, labels)

        one_step = recomputed(one_step, keep_hidden) if remat else one_step

        def body(carry, weights):
            h, logdet = carry
            h, term = one_step(h, *weights)
            return (h, logdet + term), None

        start = (x, ops.zeros(ops.shape(x)[:1], "float32"))
        (y, logdet), _ = ops.scan(body, start, [v.value for v in self.stacked],
                                  reverse=inverse)
        return y, logdet

    def initialize_steps(self, x, labels):
        """The eager pass of `Glow.initialize`: each step's ActNorms set from its input.

        Step k's pass is a function of its input, the stacks of weights and
        k, which returns step k's weights as its ActNorms set them. On JAX it
        is compiled once for a level's K steps (base.jit_on_jax), k among its
        arguments, and takes its weights from the stacks itself: an eager
        split would compile a program for every row. Elsewhere each stack is
        unstacked once, and step k takes the k-th of each.
        """
        def initialize_step(x, labels, stacks, k):
            with self.as_step([stack[k] for stack in stacks]) as scope:
                x, term = self.template()(x, labels=labels)
            return x, term, [scope.get_current_value(v) for v in self.template_variables]

        stacks = [v.value for v in self.stacked]
        if keras.backend.backend() != "jax":
            stacks = [ops.unstack(stack) for stack in stacks]
        initialize_step = jit_on_jax(initialize_step)
        logdet, rows = 0.0, []
        for k in range(self.num_steps):
            x, term, values = initialize_step(x, labels, stacks, k)
            rows.append(values)
            logdet = logdet + term
        for variable, value in zip(self.stacked, jit_on_jax(stack_rows)(rows)):
            variable.assign(value)
        return x, logdet

    @contextlib.contextmanager
    def constant_decompositions(self):
        """Within it, each step's W^-1 and log|det W| are constants, computed on entry.

        As `Invertible1x1Conv.constant_decompositions`, for every step: for
        functions traced to serve fixed weights (glow_tf.tf.export).
        """
        convolutions = _convolutions(self.template())
        constants = []
        for weights in self.rows():
            with self.as_step(weights):
                constants.append([c.decompositions() for c in convolutions])
        self._constants = constants
        try:
            yield
        finally:
            self._constants = None

    def unstacked(self):
        """K new `FlowStep` layers, built, holding the steps' weights: the layout before
        the stacking (glow_tf.runs.convert)."""
        stacked = [ops.convert_to_numpy(v) for v in self.stacked]
        steps = self.new_steps()
        for k, step in enumerate(steps):
            step.build(self.step_input_shape)
            for variable, value in zip(step_variables(step), stacked):
                variable.assign(value[k])
        return steps

    def stack_from(self, steps):
        """Sets the stacked variables from K built `FlowStep` layers (`unstacked`'s inverse)."""
        for i, variable in enumerate(self.stacked):
            variable.assign(np.stack([ops.convert_to_numpy(step_variables(s)[i]) for s in steps]))

    def new_steps(self):
        """K new, unbuilt steps of the configurations this level was made of."""
        return [FlowStep(**arguments) for arguments in self.step_arguments]

    def get_config(self):
        return {
            **super().get_config(),
            "bijectors": [keras.saving.serialize_keras_object(s) for s in self.new_steps()],
            "remat": self.remat,
            "loop": self.loop,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["bijectors"] = [keras.saving.deserialize_keras_object(b)
                               for b in config["bijectors"]]
        return cls(**config)


def loops_by_default(hidden_channels):
    """Whether `loop="auto"` runs a level's steps as one loop on this backend and device,
    for coupling networks `hidden_channels` wide.

    On an accelerator, yes: a trace K times shorter. On JAX's CPU, yes: at
    the paper's size the unrolled steps, each on its slices of the stacked
    weights, took XLA 117 s to compile (against 15 s for the loop) and 5.75
    GiB at its peak (3.90 GiB), for a step 11% shorter; at the digits
    preset the two steps took about the same time. On TensorFlow's CPU,
    from WIDE_WIDTH: at the paper's size (width 512) the loop's
    training step, its encode and its decode took 8.8 s to trace and
    compile against 36.5 s, and its step 2.61 GiB at its peak against 2.84,
    for a step 1.13 times as long (`--loop unrolled` is the faster choice
    for a long run there); at width 256, 5.9 s against 33.9 s, for a step
    1.14 times as long. Narrower, the unrolled steps are the default: the
    loop's step took 1.15 times as long at width 64 (K=8, whose unrolled
    steps warm up in 8 s) and 2.1 times at the digits preset's 16.
    (docs/performance.md has the measurements.)
    """
    if not on_cpu() or keras.backend.backend() == "jax":
        return True
    return is_wide(hidden_channels)


def recomputes_by_default():
    """Whether `loop="auto"` also recomputes each step in the loop's backward pass:
    on JAX's CPU (`FlowSteps.recomputes` says why)."""
    return on_jax_cpu()


def stack_rows(rows):
    """K rows of step weights (lists in one order) as one stack of each weight."""
    return [ops.stack(values) for values in zip(*rows)]


def step_variables(step):
    """A step's variables in the order the stacked ones follow: trainable first."""
    return [*step.trainable_variables, *step.non_trainable_variables]


@contextlib.contextmanager
def _held(step, constants):
    """Within it, the 1x1 convolutions of `step` hold `constants` (None: nothing to hold)."""
    with contextlib.ExitStack() as stack:
        if constants is not None:
            for convolution, held in zip(_convolutions(step), constants):
                stack.enter_context(convolution.holding(held))
        yield


def _convolutions(step):
    return [layer for layer in layers_within(step) if isinstance(layer, Invertible1x1Conv)]
