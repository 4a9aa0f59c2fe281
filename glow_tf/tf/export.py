"""A trained Glow as a TensorFlow SavedModel that scores and samples without glow_tf.

    export_saved_model(model, "/tmp/glow-export")

    export = tf.saved_model.load("/tmp/glow-export")     # needs TensorFlow only
    bpd = export.bits_per_dim(images=images, seed=0)["bits_per_dim"]

The signatures (in `export.signatures`, and callable as `export.<name>`),
each with a dynamic batch dimension N and a dict of named outputs:

    bits_per_dim(images uint8 [N,H,W,C], seed int32)        -> bits_per_dim [N]
    log_prob(x float32 [N,H,W,C])                           -> log_prob [N]
    encode(x float32 [N,H,W,C])                             -> latent_0 ... latent_{L-1}
    decode(latent_0, ..., latent_{L-1})                     -> x [N,H,W,C]
    sample(n int32, temperature float32, seed int32)        -> images uint8 [n,H,W,C]

Each computes the `Glow` method of its name: `bits_per_dim` with the
dequantisation noise of `Glow.bits_per_dim(images, seed=seed)`, `sample`
with the noise of `Glow.sample(n, temperature, seed=seed)` and its floats
made uint8 by `glow_tf.quantization.to_uint8`. `bits_per_dim`, the anomaly
score, is also `serving_default`. A class-conditional model's signatures
take `labels` (int32 [N]) as well; its `sample` takes labels in place of n
and draws one image per label.

Built with Keras' `ExportArchive` on either backend: on TensorFlow the
functions are traced as `tf.function`s; on JAX, jax2tf converts them, with
the batch dimension symbolic. jax2tf's shapes follow the inputs' shapes,
not their values, so `sample` is a TensorFlow function that turns n into
the shape of a tensor and calls converted parts.
"""

import inspect
import os
import shutil
import uuid

import keras
import tensorflow as tf
from keras import ops

from glow_tf import interrupts, quantization, sampling
from glow_tf.keras_internals import TensorSeed
from glow_tf.layers.invertible_conv import constant_decompositions_within
from glow_tf.runs.files import TEMP_MARK

def export_saved_model(model, directory, verbose=False):
    """Writes `model` (a Glow) as a SavedModel into `directory`; returns its path.

    The export is written into a temporary folder beside `directory` and
    renamed into place when complete, so a failure leaves nothing behind.

    Args:
        model: a `Glow` with its trained weights.
        directory: a folder that does not exist yet, or an empty one.
        verbose: print Keras' listing of the endpoints.

    Raises:
        ValueError: `directory` is a file or a folder that is not empty.
    """
    check_export_dir(directory)
    directory = os.path.abspath(directory)
    parent, name = os.path.split(directory)
    created = _first_missing(parent)
    temp = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:8]}{TEMP_MARK}")
    try:  # from the first folder made, so that a Ctrl-C anywhere leaves none behind
        os.makedirs(parent, exist_ok=True)
        os.mkdir(temp)
        _write(model, temp, verbose)
        interrupts.check()  # after a Ctrl-C, nothing new is put in place
        os.replace(temp, directory)
    except BaseException:
        shutil.rmtree(created or temp, ignore_errors=True)
        raise
    return directory


def check_export_dir(directory, name="directory"):
    """ValueError unless `directory` is a new or empty folder; `name` is the option's name."""
    if os.path.isdir(directory):
        if os.listdir(directory):
            raise ValueError(
                f"{name}={directory!r} is a folder that is not empty; expected a new or "
                "empty folder for the export (remove it, or choose another)."
            )
    elif os.path.exists(directory):
        raise ValueError(f"{name}={directory!r} is a file; expected a folder for the export.")


def _first_missing(folder):
    """The outermost folder on the way to `folder` that does not exist (None: all do)."""
    missing = None
    while folder and not os.path.exists(folder):
        missing, folder = folder, os.path.dirname(folder)
    return missing


def _write(model, path, verbose):
    archive = keras.export.ExportArchive()
    if keras.backend.backend() == "jax":
        # jax2tf needs the variables listed. TensorFlow saves those the
        # functions capture, and tracking the model there would also trace
        # its call() for a default signature, which a conditional model's
        # dict inputs refuse.
        archive.track(model)
    functions = _Functions(model)
    # The 1x1 convolutions' W^-1 and log|det W| as constants while the export is traced.
    with constant_decompositions_within(model.flow):
        # The first endpoint is also serving_default.
        endpoints = {
            name: archive.add_endpoint(name, *functions.endpoint(name))
            for name in ("bits_per_dim", "log_prob", "encode", "decode")
        }
        archive.add_endpoint("sample", functions.sample(endpoints["decode"]))
        archive.write_out(path, verbose=verbose)


class _Functions:
    """The signatures' functions of one model, written with Keras ops."""

    def __init__(self, model):
        self.model = model
        config = model.config
        self.conditional = config.num_classes > 0
        self.latent_names = [f"latent_{level}" for level in range(len(model.latent_shapes))]
        inputs = {
            "images": ((None, *config.image_shape), tf.uint8),
            "x": ((None, *config.image_shape), tf.float32),
            "labels": ((None,), tf.int32),
            "seed": ((), tf.int32),
            "n": ((), tf.int32),
            "temperature": ((), tf.float32),
            **{
                name: ((None, *shape), tf.float32)
                for name, shape in zip(self.latent_names, model.latent_shapes)
            },
        }
        # Named, so that the signatures' inputs are.
        self.specs = {
            name: tf.TensorSpec(shape, dtype, name=name) for name, (shape, dtype) in inputs.items()
        }
        # The dtype of a seed on this backend (int64 on TensorFlow, uint32 on JAX).
        self.seed_dtype = keras.random.SeedGenerator(0).state.dtype

    def endpoint(self, name):
        """(function, input signature) of the endpoint `name`."""
        inputs = {
            "bits_per_dim": ["images", "seed"],
            "log_prob": ["x"],
            "encode": ["x"],
            "decode": self.latent_names,
        }[name]
        if self.conditional:
            inputs = [*inputs, "labels"]
        return self.named(getattr(self, f"_{name}"), inputs)

    def named(self, compute, inputs):
        """compute(*tensors), with parameters (the signature's input names) `inputs`."""

        def function(*tensors):
            return compute(*tensors)

        function.__name__ = compute.__name__.lstrip("_")
        function.__signature__ = _parameters(inputs)
        return function, [self.specs[name] for name in inputs]

    def _bits_per_dim(self, images, seed, labels=None):
        noise_seed = TensorSeed(seed, self.seed_dtype)
        return {"bits_per_dim": self.model.bits_per_dim(images, labels, seed=noise_seed)}

    def _log_prob(self, x, labels=None):
        return {"log_prob": self.model.log_prob(x, labels)}

    def _encode(self, x, labels=None):
        latents, _ = self.model.encode(x, labels)
        return dict(zip(self.latent_names, latents))

    def _decode(self, *latents):
        labels = latents[-1] if self.conditional else None
        latents = latents[:-1] if self.conditional else latents
        return {"x": self.model.decode(list(latents), labels)}

    def _draw_latents(self, batch, temperature, seed):
        """The latents of Glow.sample (glow_tf.sampling); N = len(batch)."""
        latents = sampling.draw_latents(self.model.latent_shapes, ops.shape(batch)[0],
                                        temperature, TensorSeed(seed, self.seed_dtype))
        return dict(zip(self.latent_names, latents))

    def _to_images(self, x):
        x = ops.clip(x, -0.5, 0.5)
        return {"images": quantization.to_uint8(x, self.model.config.n_bits)}

    def sample(self, decode):
        """The `sample` tf.function: latents drawn, `decode` (the endpoint), uint8 images.

        Its first input is n, or a conditional model's labels; either gives
        the batch as the shape of a tensor for the parts that need it static.
        """
        draw = _convert(self._draw_latents, [
            tf.TensorSpec((None, 0), tf.float32), self.specs["temperature"], self.specs["seed"],
        ])
        to_images = _convert(self._to_images, [self.specs["x"]])
        inputs = ["labels" if self.conditional else "n", "temperature", "seed"]

        def sample(first_input, temperature, seed):
            n = tf.shape(first_input)[0] if self.conditional else first_input
            latents = draw(tf.zeros((n, 0)), temperature, seed)
            decode_inputs = [latents[name] for name in self.latent_names]
            if self.conditional:
                decode_inputs.append(first_input)
            return to_images(decode(*decode_inputs)["x"])

        sample.__signature__ = _parameters(inputs)
        function = tf.function(
            sample, input_signature=[self.specs[name] for name in inputs], autograph=False
        )
        function.get_concrete_function()  # Keras adds traced tf.functions only.
        return function


def _parameters(names):
    """A signature of positional parameters `names`: the names a SavedModel's inputs get."""
    return inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
    )


def _convert(function, input_signature):
    """A function of Keras ops without model variables, as a tf.function.

    On JAX through jax2tf, with the batch dimension (None) symbolic.
    """
    if keras.backend.backend() == "jax":
        from jax.experimental import jax2tf

        shapes = [
            "(" + ", ".join("batch" if d is None else str(d) for d in spec.shape) + ")"
            for spec in input_signature
        ]
        function = jax2tf.convert(function, polymorphic_shapes=shapes)
    return tf.function(function, input_signature=input_signature, autograph=False)
