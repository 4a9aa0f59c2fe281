"""Glow: the multi-scale stack of flow steps (Kingma & Dhariwal 2018, figure 2)."""

import math
import warnings

import keras
from keras import ops

from glow_tf import preprocessing
from glow_tf.config import GlowConfig
from glow_tf.layers import (
    ActNorm,
    Coupling,
    Invertible1x1Conv,
    LearnedPrior,
    Permute,
    SplitPrior,
    Squeeze,
)

# Bijector math (log-dets, priors) stays float32 under a mixed-precision
# policy; only the coupling networks follow the global policy.
FLOW_DTYPE = "float32"
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@keras.saving.register_keras_serializable(package="glow_tf")
class Glow(keras.Model):
    """Glow, a normalizing flow with invertible 1x1 convolutions.

    For each of L levels: squeeze, then K steps of flow (ActNorm, invertible
    1x1 conv, coupling), then, except at the last level, split off half the
    channels as that level's latent. The latents are returned standardised,
    eps = (z - mu) / sigma under the learned priors, so that

        log p(x) = sum_levels log N(eps; 0, I) + logdet(x -> eps).

    Calling the model on uint8 images returns their bits/dim under uniform
    dequantisation, one value per image; `compute_loss` averages it, so
    `compile(optimizer)` and `fit(images)` train by maximum likelihood.

    Args:
        config: a `GlowConfig` (or its dict); None for the paper's CIFAR-10
            model.
        remat: recompute the coupling networks in the backward pass instead
            of storing their activations (gradient checkpointing), for less
            memory at the cost of about one more forward pass of them. A way
            of computing, not part of the architecture: the function, the
            gradients and the weights file are the same either way.

    Example:
        >>> model = Glow(GlowConfig(image_shape=(32, 32, 3)))
        >>> model.initialize(images[:256])          # uint8 (N, H, W, C)
        >>> model.compile(keras.optimizers.Adamax(1e-3))
        >>> model.fit(images, batch_size=64)
        >>> x = model.sample(16, temperature=0.7)   # floats in [-0.5, 0.5]

    Reference:
        Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1
        Convolutions", NeurIPS 2018, arXiv:1807.03039.
    """

    def __init__(self, config=None, remat=False, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = GlowConfig()
        elif isinstance(config, dict):
            config = GlowConfig.from_dict(config)
        elif not isinstance(config, GlowConfig):
            raise TypeError(f"config={config!r}: expected a GlowConfig or its dict.")
        self.config = config
        self.remat = bool(remat)
        self.flow = _make_flow(config, self.remat)
        self.seed_generator = keras.random.SeedGenerator(config.seed)
        self.build((None, *config.image_shape))

    def build(self, input_shape):
        shape = tuple(input_shape)
        latent_shapes = []
        for layer in self.flow:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
            if isinstance(layer, SplitPrior):
                latent_shapes.append((*shape[1:-1], layer.channels_b))
                shape = (*shape[:-1], layer.channels_a)
        latent_shapes.append(tuple(shape[1:]))
        self.latent_shapes = tuple(latent_shapes)

    # ---- the bijection x <-> (eps_1, ..., eps_L) ----

    def encode(self, x):
        """x (N, H, W, C) floats -> ([eps per level], logdet of shape (N,))."""
        self._check_image_shape(x, "x")
        h, logdet = ops.cast(x, FLOW_DTYPE), 0.0
        zs = []
        for layer in self.flow:
            h, layer_logdet = layer(h)
            logdet = logdet + layer_logdet
            if isinstance(layer, SplitPrior):
                h, z = layer.split(h)
                zs.append(z)
        zs.append(h)
        return zs, logdet

    def decode_with_logdet(self, zs):
        """[eps per level] -> (x, log|det dx/d eps| of shape (N,))."""
        if len(zs) != len(self.latent_shapes):
            raise ValueError(
                f"Got {len(zs)} latents; this model has {len(self.latent_shapes)} "
                f"levels with latent shapes {self.latent_shapes}."
            )
        zs = [ops.cast(z, FLOW_DTYPE) for z in zs]
        h, logdet = zs.pop(), 0.0
        for layer in reversed(self.flow):
            if isinstance(layer, SplitPrior):
                h = layer.merge(h, zs.pop())
            h, layer_logdet = layer(h, inverse=True)
            logdet = logdet + layer_logdet
        return h, logdet

    def decode(self, zs):
        """The exact inverse of `encode`: [eps per level] -> x."""
        return self.decode_with_logdet(zs)[0]

    # ---- densities ----

    def log_prob(self, x):
        """Continuous log-density of x in nats, shape (N,)."""
        zs, logdet = self.encode(x)
        return sum(_standard_normal_log_prob(z) for z in zs) + logdet

    def bits_per_dim(self, images, seed=None):
        """Bits/dim of uint8 images (N, H, W, C): the discrete NLL, shape (N,).

        Each call draws fresh dequantisation noise (from `seed`, an int, or
        the model's own generator when None).
        """
        self._check_image_shape(images, "images")
        x = preprocessing.dequantize(
            images, self.config.n_bits, seed=self.seed_generator if seed is None else seed
        )
        return preprocessing.bits_per_dim(
            self.log_prob(x), self.config.num_dims, self.config.n_bits
        )

    def call(self, images, training=False):
        return self.bits_per_dim(images)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean bits/dim of the batch: the per-image values `call` returned."""
        per_image = y_pred
        if self.losses:  # add_loss / regularisers: the same for every image
            per_image = per_image + ops.sum(self.losses)
        # A likelihood has no target; the loss reads y_pred only.
        return _MEAN_OVER_REPLICA_BATCH(per_image, per_image, sample_weight)

    # ---- sampling ----

    def sample(self, n, temperature=1.0, seed=None):
        """n images from the model, as floats in [-0.5, 0.5].

        Latents are drawn from N(0, temperature^2 I) in the standardised
        space (the paper's reduced-temperature sampling); temperature 0
        decodes the priors' means.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r}: expected a number of samples >= 1.")
        if not temperature >= 0:  # also rejects NaN
            raise ValueError(f"temperature={temperature!r}: expected a value >= 0.")
        generator = keras.random.SeedGenerator(seed)
        zs = [
            temperature * keras.random.normal((n, *shape), seed=generator)
            for shape in self.latent_shapes
        ]
        return ops.clip(self.decode(zs), -0.5, 0.5)

    # ---- data-dependent initialisation ----

    def initialize(self, images):
        """Sets every ActNorm from one eager pass over uint8 `images`.

        Use a few hundred training images; the pass runs in one batch.
        """
        self._check_image_shape(images, "images")
        actnorms = [layer for layer in self._flatten_layers() if isinstance(layer, ActNorm)]
        for layer in actnorms:
            layer.data_init = True
        try:
            self.encode(preprocessing.dequantize(images, self.config.n_bits, seed=self.seed_generator))
        finally:
            for layer in actnorms:
                layer.data_init = False

    @property
    def initialized(self):
        """Whether `initialize` ran (as recorded in the weights)."""
        return all(
            float(ops.convert_to_numpy(layer.initialized)) == 1.0
            for layer in self._flatten_layers()
            if isinstance(layer, ActNorm)
        )

    def fit(self, *args, **kwargs):
        if not self.initialized:
            warnings.warn(
                "Glow.fit() on a model whose ActNorm layers were never "
                "initialised; call model.initialize(images) on a few hundred "
                "training images first (or load weights that were).",
                stacklevel=2,
            )
        return super().fit(*args, **kwargs)

    # ---- helpers ----

    def _check_image_shape(self, x, name):
        shape = tuple(x.shape[1:])
        if len(x.shape) != 4 or shape != self.config.image_shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; this model expects "
                f"(batch, {', '.join(map(str, self.config.image_shape))}) "
                "(GlowConfig.image_shape, height x width x channels)."
            )

    def get_config(self):
        return {"name": self.name, "config": self.config.to_dict(), "remat": self.remat}


def _make_flow(config, remat=False):
    """The bijectors in data -> latent order: per level, squeeze -> K steps -> split."""
    flow = []
    seed = config.seed
    for level in range(config.l_glow):
        flow.append(Squeeze(dtype=FLOW_DTYPE, name=f"squeeze_{level}"))
        for step in range(config.k_glow):
            name = f"{level}_{step}"
            step_seed = None if seed is None else seed + 1000 * level + step
            flow += [
                ActNorm(dtype=FLOW_DTYPE, name=f"actnorm_{name}"),
                _make_permutation(config.permutation, step_seed, name),
                Coupling(
                    config.hidden_channels, affine=config.coupling == "affine",
                    remat=remat, dtype=FLOW_DTYPE, name=f"coupling_{name}",
                ),
            ]
        if level < config.l_glow - 1:
            flow.append(SplitPrior(dtype=FLOW_DTYPE, name=f"split_{level}"))
    flow.append(LearnedPrior(dtype=FLOW_DTYPE, name="top_prior"))
    return flow


def _make_permutation(kind, seed, name):
    if kind in ("lu", "conv"):
        return Invertible1x1Conv(
            lu_decomposed=kind == "lu", seed=seed, dtype=FLOW_DTYPE,
            name=f"invconv_{name}",
        )
    return Permute(kind, seed=seed, dtype=FLOW_DTYPE, name=f"permute_{name}")


class _MeanLoss(keras.losses.Loss):
    """The (sample-weighted) mean of per-image losses, through Keras' reduction.

    Not `ops.mean`: under tf.distribute each replica sees part of the batch
    and Keras sums the replicas' gradients, so a replica's loss must be its
    mean divided by the number of replicas. Keras' reduction does that (and
    nothing more on one device or on JAX, where the batch is one array).
    """

    def __init__(self):
        super().__init__(name="bits_per_dim", reduction="mean_with_sample_weight")

    def call(self, y_true, y_pred):
        return y_pred


_MEAN_OVER_REPLICA_BATCH = _MeanLoss()


def _standard_normal_log_prob(z):
    return -ops.sum(0.5 * ops.square(z) + _HALF_LOG_2PI, axis=(1, 2, 3))
