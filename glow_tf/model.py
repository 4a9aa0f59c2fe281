"""Glow: the multi-scale stack of flow steps (Kingma & Dhariwal 2018, figure 2)."""

import math
import warnings

import keras
import numpy as np
from keras import ops

from glow_tf import checks, quantization
from glow_tf.compiled import Compiled
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
# Images that `Glow.sample` decodes at once. The memory of one decode grows
# with its batch (the coupling networks' activations), so a large n is
# decoded in batches of this size.
SAMPLE_BATCH_SIZE = 1024


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

    A class-conditional model (`config.num_classes > 0`, the paper's
    conditional CIFAR-10 model) has a top prior that depends on the label
    and a linear classifier on the spatially averaged top latent. Its
    inputs are `{"images": uint8, "labels": int}` dicts, every density
    method takes `labels`, and its loss adds `weight_y` times the
    classifier's cross-entropy in bits.

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
        self.top_prior = LearnedPrior(
            num_classes=config.num_classes, log_scale_factor=config.log_scale_factor,
            dtype=FLOW_DTYPE, name="top_prior",
        )
        if config.num_classes:
            # Zero-initialised, so the classifier starts at the uniform guess.
            self.classifier = keras.layers.Dense(
                config.num_classes, kernel_initializer="zeros", dtype=FLOW_DTYPE,
                name="classifier",
            )
        self.seed_generator = keras.random.SeedGenerator(config.seed)
        self._compiled_functions = {}
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
        self.top_prior.build(shape)
        if self.config.num_classes:
            self.classifier.build((None, shape[-1]))
        latent_shapes.append(tuple(shape[1:]))
        self.latent_shapes = tuple(latent_shapes)

    # ---- the bijection x <-> (eps_1, ..., eps_L) ----

    def encode(self, x, labels=None):
        """x (N, H, W, C) floats -> ([eps per level], logdet of shape (N,)).

        On concrete inputs it runs as one compiled function (glow_tf.compiled),
        traced at the first call; inside a traced function, op by op.
        """
        self._check_image_shape(x, "x")
        labels = _as_labels(labels)
        self._check_labels(labels, x)
        if checks.is_symbolic(x):
            zs, logdet, _ = self._encode(x, labels)
            return zs, logdet
        x = ops.cast(x, FLOW_DTYPE)
        encode = self._compiled("encode")
        return encode(x) if labels is None else encode(x, ops.cast(labels, "int32"))

    def _encode(self, x, labels):
        """`encode`, plus the top latent before its prior (the classifier's input)."""
        self._check_image_shape(x, "x")
        labels = _as_labels(labels)
        self._check_labels(labels, x)
        h, logdet = ops.cast(x, FLOW_DTYPE), 0.0
        zs = []
        for layer in self.flow:
            h, layer_logdet = layer(h)
            logdet = logdet + layer_logdet
            if isinstance(layer, SplitPrior):
                h, z = layer.split(h)
                zs.append(z)
        eps, prior_logdet = self.top_prior(h, labels=labels)
        zs.append(eps)
        return zs, logdet + prior_logdet, h

    def decode_with_logdet(self, zs, labels=None):
        """[eps per level] -> (x, log|det dx/d eps| of shape (N,)).

        Compiled like `encode` (and so are `decode` and `sample`, which call it).
        """
        if len(zs) != len(self.latent_shapes):
            raise ValueError(
                f"Got {len(zs)} latents; this model has {len(self.latent_shapes)} "
                f"levels with latent shapes {self.latent_shapes}."
            )
        labels = _as_labels(labels)
        self._check_labels(labels, zs[0])
        zs = [ops.cast(z, FLOW_DTYPE) for z in zs]
        if checks.is_symbolic(zs[0]):
            return self._decode(zs, labels)
        decode = self._compiled("decode")
        return decode(zs) if labels is None else decode(zs, ops.cast(labels, "int32"))

    def _decode(self, zs, labels):
        zs = list(zs)
        h, logdet = self.top_prior(zs.pop(), inverse=True, labels=labels)
        for layer in reversed(self.flow):
            if isinstance(layer, SplitPrior):
                h = layer.merge(h, zs.pop())
            h, layer_logdet = layer(h, inverse=True)
            logdet = logdet + layer_logdet
        return h, logdet

    def decode(self, zs, labels=None):
        """The exact inverse of `encode`: [eps per level] -> x."""
        return self.decode_with_logdet(zs, labels)[0]

    # ---- densities ----

    def log_prob(self, x, labels=None):
        """Continuous log-density of x in nats, shape (N,); p(x | y) given labels.

        Raises ValueError on NaN or inf in x (checked on concrete inputs
        only, not inside a traced function: see glow_tf.checks).
        """
        self._check_image_shape(x, "x")
        checks.check_finite(x, "x", "log_prob")
        return _log_density(*self.encode(x, labels))

    def bits_per_dim(self, images, labels=None, seed=None):
        """Bits/dim of uint8 images (N, H, W, C): the discrete NLL, shape (N,).

        Each call draws fresh dequantisation noise (from `seed`, an int, or
        the model's own generator when None). Raises ValueError for images
        of a non-integer dtype, and for integer values outside 0..255
        (checked on concrete inputs only, see glow_tf.checks).
        """
        self._check_image_shape(images, "images")
        checks.check_images(images, "images", "bits_per_dim")
        if checks.is_symbolic(images):
            return self._bits_per_dim(images, _as_labels(labels), seed)[0]
        return self._encode_images(images, labels, seed)[2]

    def encode_images(self, images, labels=None, seed=None):
        """Dequantises uint8 images and encodes them: (x, [eps per level], bits/dim).

        x is the dequantised input (N, H, W, C) in [-0.5, 0.5), the latents
        are `encode(x)`'s and the bits/dim (N,) `bits_per_dim(images)`'s: one
        pass of the compiled `encode` gives all three. `seed` as in
        `bits_per_dim`; concrete inputs only.
        """
        self._check_image_shape(images, "images")
        checks.check_images(images, "images", "encode_images")
        return self._encode_images(images, labels, seed)

    def _encode_images(self, images, labels, seed):
        x = quantization.dequantize(
            images, self.config.n_bits, seed=self.seed_generator if seed is None else seed
        )
        zs, logdet = self.encode(x, labels)
        bpd = quantization.bits_per_dim(
            _log_density(zs, logdet), self.config.num_dims, self.config.n_bits
        )
        return x, zs, bpd

    def _bits_per_dim(self, images, labels, seed):
        self._check_image_shape(images, "images")
        checks.check_image_dtype(images, "images", "Glow")
        x = quantization.dequantize(
            images, self.config.n_bits, seed=self.seed_generator if seed is None else seed
        )
        zs, logdet, top = self._encode(x, labels)
        bpd = quantization.bits_per_dim(
            _log_density(zs, logdet), self.config.num_dims, self.config.n_bits
        )
        return bpd, top

    def class_logits(self, x):
        """The classifier's logits (N, num_classes) for x; conditional models only."""
        if not self.config.num_classes:
            raise ValueError("class_logits needs a class-conditional model (num_classes > 0).")
        return self._class_logits(self._encode_to_top(x))

    def _class_logits(self, top):
        return self.classifier(ops.mean(top, axis=(1, 2)))

    def _encode_to_top(self, x):
        # The top latent does not depend on the label; only its prior does.
        labels = ops.zeros(ops.shape(x)[:1], "int32") if self.config.num_classes else None
        return self._encode(x, labels)[2]

    def call(self, inputs, training=False):
        """Per-image bits/dim of uint8 images, or of {"images", "labels"} dicts.

        For a class-conditional model, the classifier's weighted cross-entropy
        (bits per image, averaged over the batch) is added with `add_loss`.
        """
        if isinstance(inputs, dict):
            images, labels = inputs["images"], inputs["labels"]
        else:
            images, labels = inputs, None
        bpd, top = self._bits_per_dim(images, labels, None)
        if self.config.num_classes:
            cross_entropy = keras.losses.sparse_categorical_crossentropy(
                labels, self._class_logits(top), from_logits=True
            )
            self.add_loss(self.config.weight_y * ops.mean(cross_entropy) / math.log(2.0))
        return bpd

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean bits/dim of the batch: the per-image values `call` returned."""
        per_image = y_pred
        for extra in self.losses:  # add_loss terms: the classifier, regularisers
            # One value for the whole batch; adding it to every image before
            # the (weighted) mean adds it once, and lets Keras' reduction
            # scale it per replica like the bits/dim.
            per_image = per_image + ops.sum(extra)
        # A likelihood has no target; the loss reads y_pred only.
        return _MEAN_OVER_REPLICA_BATCH(per_image, per_image, sample_weight)

    # ---- sampling ----

    def sample(self, n, temperature=1.0, seed=None, labels=None, batch_size=None):
        """n images from the model, as floats in [-0.5, 0.5].

        Latents are drawn from N(0, temperature^2 I) in the standardised
        space (the paper's reduced-temperature sampling); temperature 0
        decodes the priors' means. A class-conditional model samples the
        classes in `labels` (an int for all n, or n ints); without labels it
        cycles through the classes 0, 1, ..., so a grid shows every class.

        The latents of all n images are drawn first, as one call with the
        same seed would, then decoded `batch_size` at a time (default
        SAMPLE_BATCH_SIZE; the last batch padded to that size, so the
        compiled decode sees one shape). So the images do not depend on the
        batch size, and the memory that decoding takes does not grow with n:
        only the latents and the images do.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r}: expected a number of samples >= 1.")
        if not temperature >= 0:  # also rejects NaN
            raise ValueError(f"temperature={temperature!r}: expected a value >= 0.")
        if batch_size is None:
            batch_size = SAMPLE_BATCH_SIZE
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: expected an integer >= 1.")
        if self.config.num_classes:
            if labels is None:
                labels = np.arange(n) % self.config.num_classes
            labels = np.broadcast_to(np.asarray(labels, np.int32), (n,))
        generator = keras.random.SeedGenerator(seed)
        zs = [
            temperature * keras.random.normal((n, *shape), seed=generator)
            for shape in self.latent_shapes
        ]
        if n <= batch_size:
            return ops.clip(self.decode(zs, labels), -0.5, 0.5)
        batches = []
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = [_padded(z[start:stop], batch_size) for z in zs]
            batch_labels = None if labels is None else _padded(labels[start:stop], batch_size)
            batches.append(ops.clip(self.decode(batch, batch_labels), -0.5, 0.5)[:stop - start])
        return ops.concatenate(batches, axis=0)

    # ---- data-dependent initialisation ----

    def initialize(self, images):
        """Sets every ActNorm from one eager pass over uint8 `images`.

        Use a few hundred training images; the pass runs in one batch. (No
        labels: ActNorms sit below the top prior, the only part they touch.)
        """
        self._check_image_shape(images, "images")
        # NaN images would set every ActNorm to NaN, and the run with them.
        checks.check_images(images, "images", "initialize")
        actnorms = [layer for layer in self._flatten_layers() if isinstance(layer, ActNorm)]
        for layer in actnorms:
            layer.data_init = True
        try:
            self._encode_to_top(
                quantization.dequantize(images, self.config.n_bits, seed=self.seed_generator)
            )
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

    def fit(self, x=None, *args, **kwargs):
        _check_input_dtype(x, "fit")
        if not self.initialized:
            warnings.warn(
                "Glow.fit() on a model whose ActNorm layers were never "
                "initialised; call model.initialize(images) on a few hundred "
                "training images first (or load weights that were).",
                stacklevel=2,
            )
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        _check_input_dtype(x, "evaluate")
        return super().evaluate(x, *args, **kwargs)

    # ---- compiled functions ----

    def _compiled(self, name):
        """The compiled `encode` or `decode` of this model, made at its first use."""
        if name not in self._compiled_functions:
            batch = lambda shape: (None, *shape)  # noqa: E731  (any batch size)
            conditional = self.config.num_classes > 0
            labels = [((None,), "int32")] if conditional else []
            if name == "encode":
                function = lambda x, labels=None: self._encode(x, labels)[:2]  # noqa: E731
                specs = [(batch(self.config.image_shape), FLOW_DTYPE), *labels]
            else:
                function = self._decode
                if not conditional:
                    function = lambda zs: self._decode(zs, None)  # noqa: E731
                specs = [[(batch(s), FLOW_DTYPE) for s in self.latent_shapes], *labels]
            self._compiled_functions[name] = Compiled(self, function, specs, name)
        return self._compiled_functions[name]

    @property
    def traces(self):
        """{name: how often it was traced} of the compiled encode and decode."""
        return {name: f.traces for name, f in self._compiled_functions.items()}

    # ---- helpers ----

    def _check_image_shape(self, x, name):
        shape = tuple(x.shape[1:])
        if len(x.shape) != 4 or shape != self.config.image_shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; this model expects "
                f"(batch, {', '.join(map(str, self.config.image_shape))}) "
                "(GlowConfig.image_shape, height x width x channels)."
            )

    def _check_labels(self, labels, x):
        """Labels are required by, and only by, a class-conditional model."""
        num_classes = self.config.num_classes
        if not num_classes:
            if labels is not None:
                raise ValueError(
                    "labels were given, but this model is unconditional "
                    "(GlowConfig.num_classes=0)."
                )
            return
        if labels is None:
            raise ValueError(
                f"This model is class-conditional (num_classes={num_classes}): "
                f"pass labels, one integer in 0..{num_classes - 1} per image."
            )
        if tuple(labels.shape) != tuple(x.shape[:1]) and None not in labels.shape:
            raise ValueError(
                f"labels has shape {tuple(labels.shape)}; expected one label per "
                f"image, shape ({x.shape[0]},)."
            )
        if not checks.is_symbolic(labels) and int(np.prod(labels.shape)):
            # Only concrete labels can be checked (NumPy arrays and eager
            # tensors alike); an out-of-range index would silently wrap or
            # clamp in the embedding lookup.
            values = np.asarray(ops.convert_to_numpy(labels))
            low, high = values.min(), values.max()
            if low < 0 or high >= num_classes:
                bad = low if low < 0 else high
                raise ValueError(
                    f"label {bad} is out of range: expected integers in "
                    f"0..{num_classes - 1} (num_classes={num_classes})."
                )

    def get_config(self):
        return {"name": self.name, "config": self.config.to_dict(), "remat": self.remat}


def _check_input_dtype(x, method):
    """The images' dtype of fit's or evaluate's input, before Keras traces anything.

    `call` checks it too, at trace time; checking first also keeps a failed
    first step from leaving the model half set up on the JAX backend.
    """
    images = x.get("images") if isinstance(x, dict) else x
    spec = getattr(images, "element_spec", None)  # a tf.data.Dataset
    if isinstance(spec, dict):
        spec = spec.get("images")
    if isinstance(spec, tuple):  # (images, ...) pairs
        spec = spec[0]
    images = spec if spec is not None else images
    if hasattr(images, "dtype"):
        checks.check_image_dtype(images, "images", f"Glow.{method}")


def _make_flow(config, remat=False):
    """The bijectors in data -> latent order: per level, squeeze -> K steps -> split.

    The top prior follows them (`Glow.top_prior`); it is kept apart because
    it alone may take labels.
    """
    flow = []
    seed_for = _seed_source(config.seed)
    for level in range(config.l_glow):
        flow.append(Squeeze(dtype=FLOW_DTYPE, name=f"squeeze_{level}"))
        for step in range(config.k_glow):
            name = f"{level}_{step}"
            flow += [
                ActNorm(log_scale_factor=config.log_scale_factor, dtype=FLOW_DTYPE,
                        name=f"actnorm_{name}"),
                _make_permutation(config.permutation, seed_for(level, step, 0), name),
                Coupling(
                    config.hidden_channels, affine=config.coupling == "affine",
                    remat=remat, seed=seed_for(level, step, 1),
                    log_scale_factor=config.log_scale_factor, dtype=FLOW_DTYPE,
                    name=f"coupling_{name}",
                ),
            ]
        if level < config.l_glow - 1:
            flow.append(SplitPrior(dtype=FLOW_DTYPE, name=f"split_{level}"))
    return flow


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


def _padded(rows, size):
    """`rows` with its last row repeated up to `size` rows (a backend tensor or NumPy array)."""
    missing = size - int(rows.shape[0])
    if missing <= 0:
        return rows
    return ops.concatenate([rows, ops.repeat(rows[-1:], missing, axis=0)], axis=0)


def _as_labels(labels):
    """Python ints and sequences as a NumPy array; arrays and tensors as they are."""
    return np.asarray(labels) if isinstance(labels, (int, list, tuple)) else labels


def _log_density(zs, logdet):
    """log p(x) = sum_levels log N(eps; 0, I) + log|det d eps / dx|."""
    return sum(_standard_normal_log_prob(z) for z in zs) + logdet


def _standard_normal_log_prob(z):
    return -ops.sum(0.5 * ops.square(z) + _HALF_LOG_2PI, axis=(1, 2, 3))
