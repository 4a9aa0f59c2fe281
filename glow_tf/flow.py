"""Glow's multi-scale flow as one bijector: images x <-> one standardised latent per level."""

import keras
import numpy as np

from glow_tf.config import GlowConfig
from glow_tf.layers import Bijector, Chain, FlowStep, FlowSteps, LearnedPrior, SplitPrior, Squeeze

# Bijector math (log-dets, priors) stays float32 under a mixed-precision
# policy; only the coupling networks follow the global policy.
FLOW_DTYPE = "float32"


@keras.saving.register_keras_serializable(package="glow_tf")
class GlowFlow(Bijector):
    """x (N, H, W, C) <-> [eps_1, ..., eps_L], with the log-determinant of the whole map.

    The multi-scale architecture (Glow, figure 2b), read top to bottom:

        level l < L:  squeeze -> K steps of flow -> split      h -> (h, eps_l)
        level L:      squeeze -> K steps of flow               h -> top
        top prior:                                             top -> eps_L

    Every eps is standardised under its learned prior, so under the model
    the latents are N(0, I) and log p(x) = sum_l log N(eps_l; 0, I) + logdet.
    `labels` (a class-conditional model's) reach every block; only the top
    prior depends on them.

    Args:
        config: a `GlowConfig` (or its dict).
        remat: recompute each step of flow in the backward pass (FlowSteps).
        loop: how each level runs its K steps: "auto", "loop" or "unrolled"
            (FlowSteps).

    Example:
        >>> flow = GlowFlow(GlowConfig(image_shape=(32, 32, 3)))
        >>> flow.build((None, 32, 32, 3))
        >>> latents, logdet = flow(x)
        >>> x_again, minus_logdet = flow(latents, inverse=True)
    """

    def __init__(self, config=None, remat=False, loop="auto", **kwargs):
        kwargs.setdefault("dtype", FLOW_DTYPE)
        super().__init__(**kwargs)
        config = GlowConfig.from_dict(config) if isinstance(config, dict) else config
        self.config = config or GlowConfig()
        self.remat = bool(remat)
        self.loop = loop
        seed_for = _seed_source(self.config.seed)
        self.levels = [
            _make_level(self.config, level, self.remat, loop, seed_for)
            for level in range(self.config.l_glow)
        ]
        self.prior = LearnedPrior(
            num_classes=self.config.num_classes, log_scale_factor=self.config.log_scale_factor,
            dtype=FLOW_DTYPE, name="top_prior",
        )

    def build(self, input_shape):
        shape, latent_shapes = tuple(input_shape), []
        for level in self.levels[:-1]:
            level.build(shape)
            shape, latent = level.compute_output_shape(shape)
            latent_shapes.append(tuple(latent[1:]))
        self.levels[-1].build(shape)
        shape = self.levels[-1].compute_output_shape(shape)
        self.prior.build(shape)
        self.latent_shapes = (*latent_shapes, tuple(shape[1:]))

    def forward(self, x, labels=None):
        latents, logdet, _ = self.forward_and_top(x, labels)
        return latents, logdet

    def forward_and_top(self, x, labels=None):
        """`forward`, and the top latent before its prior (what a classifier may read)."""
        h, latents, logdet = x, [], 0.0
        for level in self.levels[:-1]:
            (h, eps), term = level(h, labels=labels)
            latents.append(eps)
            logdet = logdet + term
        top, term = self.levels[-1](h, labels=labels)
        eps, prior_term = self.prior(top, labels=labels)
        return [*latents, eps], logdet + term + prior_term, top

    def inverse(self, latents, labels=None):
        *factored, eps = latents
        h, logdet = self.prior(eps, inverse=True, labels=labels)
        h, term = self.levels[-1](h, inverse=True, labels=labels)
        logdet = logdet + term
        for level, eps in zip(reversed(self.levels[:-1]), reversed(factored)):
            h, term = level((h, eps), inverse=True, labels=labels)
            logdet = logdet + term
        return h, logdet

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], *shape) for shape in self.latent_shapes]

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "remat": self.remat,
                "loop": self.loop}


def _make_level(config, level, remat, loop, seed_for):
    """squeeze -> K steps -> split; the last level ends with its steps."""
    steps = FlowSteps([
        FlowStep(
            config.hidden_channels, config.coupling, config.permutation,
            log_scale_factor=config.log_scale_factor,
            permutation_seed=seed_for(level, step, 0), coupling_seed=seed_for(level, step, 1),
            dtype=FLOW_DTYPE, name=f"step_{level}_{step}",
        )
        for step in range(config.k_glow)
    ], remat=remat, loop=loop, dtype=FLOW_DTYPE, name=f"steps_{level}")
    blocks = [Squeeze(dtype=FLOW_DTYPE, name=f"squeeze_{level}"), steps]
    if level < config.l_glow - 1:
        blocks.append(SplitPrior(dtype=FLOW_DTYPE, name=f"split_{level}"))
    return Chain(blocks, dtype=FLOW_DTYPE, name=f"level_{level}")


def _seed_source(seed):
    """seed_for(level, step, role): an int seed for each random initialiser.

    Derived from GlowConfig.seed by NumPy's SeedSequence, so every kernel
    draws from a stream of its own and the same seed builds the same model;
    seed None draws the root entropy once, at random.
    """
    root = np.random.SeedSequence(seed).entropy

    def seed_for(*key):
        state = np.random.SeedSequence(root, spawn_key=key).generate_state(1)[0]
        return int(state % 2**31)

    return seed_for
