"""Glow, the Keras model: the multi-scale flow (glow_tf.flow) and its objective, bits/dim."""

import contextlib
import math
import warnings

import keras
import numpy as np
from keras import ops

from glow_tf import checks, quantization, sampling
from glow_tf.compiled import Compiled
from glow_tf.config import GlowConfig
from glow_tf.flow import FLOW_DTYPE, GlowFlow
from glow_tf.layers import FlowSteps, actnorm
from glow_tf.layers.base import layers_within
from glow_tf.sampling import SAMPLE_BATCH_SIZE

__all__ = ["FLOW_DTYPE", "SAMPLE_BATCH_SIZE", "Glow"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@keras.saving.register_keras_serializable(package="glow_tf")
class Glow(keras.Model):
    """Glow, a normalizing flow with invertible 1x1 convolutions.

    `flow`, a `GlowFlow`, is the bijection between images x and one
    standardised latent per level, eps = (z - mu) / sigma under the learned
    priors, so that

        log p(x) = sum_levels log N(eps; 0, I) + logdet(x -> eps).

    The model adds what training needs: calling it on uint8 images
    dequantises them and returns their bits/dim, one value per image, and
    `compute_loss` averages it, so `compile(optimizer)` and `fit(images)`
    train by maximum likelihood.

    A class-conditional model (`config.num_classes > 0`, the paper's
    conditional CIFAR-10 model) has a top prior that depends on the label
    and a linear classifier on the spatially averaged top latent. Its
    inputs are `{"images": uint8, "labels": int}` dicts, every density
    method takes `labels`, and its loss adds `weight_y` times the
    classifier's cross-entropy in bits.

    Args:
        config: a `GlowConfig` (or its dict); None for the paper's CIFAR-10
            model.
        remat: recompute each step of flow in the backward pass instead of
            storing its activations (per-step gradient checkpointing): the
            backward pass keeps each step's input only, for much less memory
            at the cost of about one more forward pass. A way of computing,
            not part of the architecture: the function, the gradients and
            the weights file are the same either way.
        loop: how each level runs its K steps of flow: "loop" (one loop over
            their stacked weights: one step to trace and compile instead of
            K), "unrolled" (one after the other), or "auto" (the loop with
            `remat`; otherwise the faster on this backend and device, as
            measured: glow_tf.layers.step). Also a way of computing only: the
            same function and weights file.

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

    def __init__(self, config=None, remat=False, loop="auto", **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = GlowConfig()
        elif isinstance(config, dict):
            config = GlowConfig.from_dict(config)
        elif not isinstance(config, GlowConfig):
            raise TypeError(f"config={config!r}: expected a GlowConfig or its dict.")
        self.config = config
        self.remat = bool(remat)
        self.loop = loop
        self.flow = GlowFlow(config, remat=self.remat, loop=loop, name="flow")
        if config.num_classes:
            # Zero-initialised, so the classifier starts at the uniform guess.
            self.classifier = keras.layers.Dense(
                config.num_classes, kernel_initializer="zeros", dtype=FLOW_DTYPE,
                name="classifier",
            )
        self.seed_generator = keras.random.SeedGenerator(config.seed)
        self.mean_loss = _MeanLoss()
        self.compiled_functions = {}
        self.build((None, *config.image_shape))

    def build(self, input_shape):
        if self.flow.built:
            # Built in __init__, from the config: a second call (a user's, or Keras')
            # may only confirm the shape; building again would add every weight twice.
            if tuple(input_shape[1:]) != tuple(self.config.image_shape):
                raise ValueError(f"Glow.build({tuple(input_shape)}): this model takes images "
                                 f"of shape {tuple(self.config.image_shape)}.")
            return
        self.flow.build(input_shape)
        if self.config.num_classes:
            self.classifier.build((None, self.latent_shapes[-1][-1]))

    @property
    def latent_shapes(self):
        """The shape of each level's latent, without the batch axis."""
        return self.flow.latent_shapes

    # ---- the bijection x <-> (eps_1, ..., eps_L) ----

    def encode(self, x, labels=None):
        """x (N, H, W, C) floats -> ([eps per level], logdet of shape (N,)).

        On concrete inputs it runs as one compiled function (glow_tf.compiled),
        traced at the first call; inside a traced function, op by op.
        """
        checks.check_image_shape(x, "x", self.config.image_shape)
        labels = self.checked_labels(labels, x)
        x = ops.cast(x, FLOW_DTYPE)
        if checks.is_symbolic(x):
            return self.flow(x, labels=labels)
        return _call_compiled(self, "encode", x, labels)

    def decode_with_logdet(self, zs, labels=None):
        """[eps per level] -> (x, log|det dx/d eps| of shape (N,)).

        Compiled like `encode` (and so are `decode` and `sample`, which call it).
        """
        if len(zs) != len(self.latent_shapes):
            raise ValueError(
                f"Got {len(zs)} latents; this model has {len(self.latent_shapes)} "
                f"levels with latent shapes {self.latent_shapes}."
            )
        labels = self.checked_labels(labels, zs[0])
        zs = [ops.cast(z, FLOW_DTYPE) for z in zs]
        if checks.is_symbolic(zs[0]):
            return self.flow(zs, inverse=True, labels=labels)
        return _call_compiled(self, "decode", zs, labels)

    def decode(self, zs, labels=None):
        """The exact inverse of `encode`: [eps per level] -> x."""
        return self.decode_with_logdet(zs, labels)[0]

    # ---- densities ----

    def log_prob(self, x, labels=None):
        """Continuous log-density of x in nats, shape (N,); p(x | y) given labels.

        Raises ValueError on NaN or inf in x (checked on concrete inputs
        only, not inside a traced function: see glow_tf.checks).
        """
        checks.check_finite(x, "x", "log_prob")
        return log_density(*self.encode(x, labels))

    def bits_per_dim(self, images, labels=None, seed=None):
        """Bits/dim of uint8 images (N, H, W, C): the discrete NLL, shape (N,).

        Each call draws fresh dequantisation noise (from `seed`, an int, or
        the model's own generator when None). Raises ValueError for images
        of a non-integer dtype, and for integer values outside 0..255
        (checked on concrete inputs only, see glow_tf.checks).
        """
        return _encode_images(self, images, labels, seed, "bits_per_dim")[2]

    def encode_images(self, images, labels=None, seed=None):
        """Dequantises uint8 images and encodes them: (x, [eps per level], bits/dim).

        x is the dequantised input (N, H, W, C) in [-0.5, 0.5), the latents
        are `encode(x)`'s and the bits/dim (N,) `bits_per_dim(images)`'s: one
        pass of the compiled `encode` gives all three. `seed` as in
        `bits_per_dim`.
        """
        return _encode_images(self, images, labels, seed, "encode_images")

    def to_bits_per_dim(self, log_prob):
        """The discrete NLL in bits/dim of a continuous log-density at dequantised x."""
        return quantization.bits_per_dim(log_prob, self.config.num_dims, self.config.n_bits)

    def class_logits(self, x):
        """The classifier's logits (N, num_classes) for x; conditional models only."""
        if not self.config.num_classes:
            raise ValueError("class_logits needs a class-conditional model (num_classes > 0).")
        return self.classifier(ops.mean(_top_latent(self, x), axis=(1, 2)))

    # ---- training: the objective that fit() minimises ----

    def call(self, inputs, training=False):
        """Per-image bits/dim of uint8 images, or of {"images", "labels"} dicts.

        For a class-conditional model, the classifier's weighted cross-entropy
        (bits per image, averaged over the batch) is added with `add_loss`.
        """
        images, labels = (inputs["images"], inputs["labels"]) if isinstance(inputs, dict) \
            else (inputs, None)
        checks.check_image_shape(images, "images", self.config.image_shape)
        checks.check_image_dtype(images, "images", "Glow")
        x = quantization.dequantize(images, self.config.n_bits, seed=self.seed_generator)
        zs, logdet, top = self.flow.forward_and_top(x, self.checked_labels(labels, x))
        if self.config.num_classes:
            logits = self.classifier(ops.mean(top, axis=(1, 2)))
            cross_entropy = keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True
            )
            self.add_loss(self.config.weight_y * ops.mean(cross_entropy) / math.log(2.0))
        return self.to_bits_per_dim(log_density(zs, logdet))

    def compile(self, *args, **kwargs):
        """Keras' compile; with XLA on TensorFlow, each level's steps run unrolled.

        XLA cannot differentiate TensorFlow's loop of unknown length (the
        `tf.while_loop` under `keras.ops.scan`): its gradient keeps a list
        whose size XLA must know. So `loop="auto"` unrolls under
        `jit_compile=True` on TensorFlow, and `loop="loop"` is refused.
        """
        super().compile(*args, **kwargs)
        if keras.backend.backend() == "tensorflow" and self.jit_compile:
            if self.loop == "loop":
                raise ValueError("loop='loop' with jit_compile=True on TensorFlow: XLA cannot "
                                 "differentiate the loop; use loop='auto' or 'unrolled'.")
            for layer in layers_within(self.flow):
                if isinstance(layer, FlowSteps):
                    layer.loop = "unrolled"

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean bits/dim of the batch: the per-image values `call` returned."""
        per_image = y_pred
        for extra in self.losses:  # add_loss terms: the classifier, regularisers
            # One value for the whole batch; adding it to every image before
            # the (weighted) mean adds it once, and lets Keras' reduction
            # scale it per replica like the bits/dim.
            per_image = per_image + ops.sum(extra)
        # A likelihood has no target; the loss reads y_pred only.
        return self.mean_loss(per_image, per_image, sample_weight)

    def fit(self, x=None, *args, **kwargs):
        _check_input_dtype(x, "fit")
        if not self.initialized:
            warnings.warn(
                "Glow.fit() on a model whose ActNorm layers were never "
                "initialised; call model.initialize(images) on a few hundred "
                "training images first (or load weights that were).",
                stacklevel=2,
            )
        self._build_optimizer()
        return super().fit(x, *args, **kwargs)

    def _build_optimizer(self):
        """The optimizer's slots made before the first traced step, not inside it.

        On TensorFlow without a distribution strategy, Keras builds the
        optimizer in the first trace of the training step, and a tf.function
        whose first trace creates variables traces the step a second time.
        On one core of a 2-core CPU, a one-batch fit of the README's
        Quickstart model (K=8, L=2) took 6.3 s that way and 3.8 s with the
        slots made here; the first step of the 64-step digits Glow, 167 s
        against 52 s. Under a strategy (TensorFlow's trainer has one), the
        slots are made in its scope, as Keras would.
        """
        if self.optimizer is None or self.optimizer.built:
            return
        strategy = getattr(self, "distribute_strategy", None)  # TensorFlow's trainer only
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            self.optimizer.build(self.trainable_variables)

    def evaluate(self, x=None, *args, **kwargs):
        _check_input_dtype(x, "evaluate")
        return super().evaluate(x, *args, **kwargs)

    # ---- sampling and initialisation ----

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
        batch_size = SAMPLE_BATCH_SIZE if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: expected an integer >= 1.")
        if self.config.num_classes:
            labels = np.arange(n) % self.config.num_classes if labels is None else labels
            labels = np.broadcast_to(np.asarray(labels, np.int32), (n,))
        zs = sampling.draw_latents(self.latent_shapes, n, temperature, seed)
        return sampling.decode_in_batches(self.decode, zs, labels, batch_size)

    def initialize(self, images):
        """Sets every ActNorm from one eager pass over uint8 `images`.

        Use a few hundred training images; the pass runs in one batch. (No
        labels: ActNorms sit below the top prior, the only part they touch.)
        """
        checks.check_image_shape(images, "images", self.config.image_shape)
        # NaN images would set every ActNorm to NaN, and the run with them.
        checks.check_images(images, "images", "initialize")
        with actnorm.data_initialization(self.flow):
            _top_latent(self, quantization.dequantize(
                images, self.config.n_bits, seed=self.seed_generator))

    @property
    def initialized(self):
        """Whether `initialize` ran (as recorded in the weights)."""
        return actnorm.all_initialized(self.flow)

    @property
    def traces(self):
        """{name: how often it was traced} of the compiled encode and decode."""
        return {name: f.traces for name, f in self.compiled_functions.items()}

    def checked_labels(self, labels, x):
        """`labels` as an array, after checking they suit this model and the batch x."""
        labels = checks.as_labels(labels)
        checks.check_labels(labels, x, self.config.num_classes)
        return labels

    def get_config(self):
        return {"name": self.name, "config": self.config.to_dict(), "remat": self.remat,
                "loop": self.loop}


def log_density(zs, logdet):
    """log p(x) = sum_levels log N(eps; 0, I) + log|det d eps / dx|."""
    return sum(-ops.sum(0.5 * ops.square(z) + _HALF_LOG_2PI, axis=(1, 2, 3)) for z in zs) + logdet


def _encode_images(model, images, labels, seed, method):
    checks.check_image_shape(images, "images", model.config.image_shape)
    checks.check_images(images, "images", method)
    x = quantization.dequantize(
        images, model.config.n_bits, seed=model.seed_generator if seed is None else seed
    )
    zs, logdet = model.encode(x, labels)
    return x, zs, model.to_bits_per_dim(log_density(zs, logdet))


def _top_latent(model, x):
    # The top latent does not depend on the label; only its prior does.
    labels = ops.zeros(ops.shape(x)[:1], "int32") if model.config.num_classes else None
    return model.flow.forward_and_top(ops.cast(x, FLOW_DTYPE), labels)[2]


def _call_compiled(model, name, inputs, labels):
    """The model's compiled encode or decode (glow_tf.compiled), made at its first use."""
    if name not in model.compiled_functions:
        labels_spec = [((None,), "int32")] if model.config.num_classes else []
        if name == "encode":
            function = lambda x, labels=None: model.flow(x, labels=labels)  # noqa: E731
            specs = [((None, *model.config.image_shape), FLOW_DTYPE), *labels_spec]
        else:
            function = lambda zs, labels=None: model.flow(  # noqa: E731
                zs, inverse=True, labels=labels)
            specs = [[((None, *s), FLOW_DTYPE) for s in model.latent_shapes], *labels_spec]
        model.compiled_functions[name] = Compiled(model, function, specs, name)
    compiled = model.compiled_functions[name]
    return compiled(inputs) if labels is None else compiled(inputs, ops.cast(labels, "int32"))


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
