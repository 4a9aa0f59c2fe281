"""A trained Glow for TensorFlow Probability: a bijector and a distribution.

TensorFlow only: TFP works on TensorFlow tensors, so this module refuses to
import on another Keras backend. `import glow_tf` never imports it.

Shapes. The bijector's forward maps base noise to images:

    eps, shape (..., D)  ->  x, shape (..., H, W, C),   D = H * W * C

eps is the model's standardised latents of all levels, each flattened
row-major (height, width, channel) and concatenated in the order of
`model.latent_shapes` (the first split's latent first, the top latent last).
Since the learned priors are themselves bijectors of the model, eps is
N(0, I) under it and `log p(x) = log N(eps; 0, I) + log|det d eps/dx|`:
exactly `Glow.log_prob`. So `forward_min_event_ndims = 1` and
`inverse_min_event_ndims = 3`; any leading dimensions are batch dimensions.
"""

import math
import numbers

import keras

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "glow_tf.tf.tfp needs Keras' TensorFlow backend, because TensorFlow "
        "Probability works on TensorFlow tensors; the active Keras backend is "
        f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow before "
        "Keras is first imported."
    )

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

from glow_tf.model import Glow

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["GlowBijector", "as_distribution"]

_BASE = "base event (forward input)"
_IMAGE = "image (inverse input)"


class GlowBijector(tfb.Bijector):
    """A Glow as a TFP bijector from standard-normal noise to images.

    forward:  eps (..., D)  ->  x (..., H, W, C)    (`Glow.decode`)
    inverse:  x (..., H, W, C)  ->  eps (..., D)    (`Glow.encode`)

    x is the model's continuous input space, [-0.5, 0.5) for images the
    model has seen; forward does not clip, so that it stays a bijection of
    R^D (unlike `Glow.sample`). The log-det-Jacobians are the model's own
    exact ones: forward log|det dx/d eps|, inverse log|det d eps/dx|.

    Each direction computes its value and log-det in one pass through the
    model and hands both to TFP's cache, so a `TransformedDistribution`'s
    `log_prob` (which asks for the inverse and its log-det) encodes once.

    The bijector has no variables of its own; its `trainable_variables`
    (and those of a distribution built on it) are the model's, so a TFP
    objective can fine-tune the Glow.

    Args:
        model: a built `glow_tf.Glow` (load or train its weights first).
        validate_args: TFP's flag; when True, inputs are checked to be finite.
        name: the bijector's name.

    Example:
        >>> bijector = GlowBijector(model)
        >>> eps = tf.random.normal([5, bijector.num_dims])
        >>> x = bijector.forward(eps)                        # (5, H, W, C)
        >>> bijector.inverse_log_det_jacobian(x)             # (5,)
    """

    # Fused value-and-log-det passes, stored in TFP's cache (as TFP's FFJORD does).
    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="augmented_forward", inverse_name="augmented_inverse"
    )

    def __init__(self, model, validate_args=False, name="glow"):
        if not isinstance(model, Glow):
            raise TypeError(f"model={model!r}: expected a glow_tf.Glow.")
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._model = model
            self._image_shape = tuple(model.config.image_shape)
            self._latent_shapes = tuple(tuple(s) for s in model.latent_shapes)
            self._num_dims = sum(math.prod(s) for s in self._latent_shapes)
            # The tf.Variables behind the model's Keras variables, held where
            # tf.Module looks, so `trainable_variables` of the bijector (and of
            # any distribution built on it) are the model's.
            self._model_variables = tuple(v.value for v in model.variables)
            super().__init__(
                forward_min_event_ndims=1,
                inverse_min_event_ndims=3,
                is_constant_jacobian=False,
                validate_args=validate_args,
                dtype=tf.float32,
                parameters=parameters,
                name=name,
            )

    @property
    def model(self):
        return self._model

    @property
    def num_dims(self):
        """D = H * W * C, the size of the flat base event."""
        return self._num_dims

    @classmethod
    def _parameter_properties(cls, dtype):
        # The model is not a batchable tensor parameter: no batch shape.
        return {}

    # ---- the two passes: value and log-det together ----

    def augmented_forward(self, eps):
        eps = self.checked(eps, (self._num_dims,), _BASE)
        batch_shape = tf.shape(eps)[:-1]
        flat = tf.reshape(eps, [-1, self._num_dims])
        x, logdet = self._model.decode_with_logdet(self.split_levels(flat))
        x = tf.reshape(x, tf.concat([batch_shape, self._image_shape], axis=0))
        fldj = tf.reshape(logdet, batch_shape)
        return x, {"fldj": fldj, "ildj": -fldj}

    def augmented_inverse(self, x):
        x = self.checked(x, self._image_shape, _IMAGE)
        batch_shape = tf.shape(x)[:-3]
        zs, logdet = self._model.encode(tf.reshape(x, [-1, *self._image_shape]))
        flat = tf.concat([tf.reshape(z, [tf.shape(z)[0], -1]) for z in zs], axis=1)
        eps = tf.reshape(flat, tf.concat([batch_shape, [self._num_dims]], axis=0))
        ildj = tf.reshape(logdet, batch_shape)
        return eps, {"ildj": ildj, "fldj": -ildj}

    def _forward(self, eps):
        return self.augmented_forward(eps)[0]

    def _inverse(self, x):
        return self.augmented_inverse(x)[0]

    # TFP asks for these only when its cache holds no log-det for the tensor;
    # running the pass through the cache stores the value and both log-dets.
    def _forward_log_det_jacobian(self, eps):
        self._cache.forward(eps)
        return self._cache.forward_attributes(eps)["fldj"]

    def _inverse_log_det_jacobian(self, x):
        self._cache.inverse(x)
        return self._cache.inverse_attributes(x)["ildj"]

    # ---- event shapes ----

    # TFP passes the event shape with any extra event dimensions in front.
    def _forward_event_shape(self, input_shape):
        self.check_event_shape(input_shape, (self._num_dims,), _BASE)
        if input_shape.rank is None:
            return tf.TensorShape(None)
        return input_shape[:-1].concatenate(self._image_shape)

    def _inverse_event_shape(self, output_shape):
        self.check_event_shape(output_shape, self._image_shape, _IMAGE)
        if output_shape.rank is None:
            return tf.TensorShape(None)
        return output_shape[:-3].concatenate([self._num_dims])

    def _forward_event_shape_tensor(self, input_shape):
        return tf.concat([input_shape[:-1], self._image_shape], axis=0)

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.concat([output_shape[:-3], [self._num_dims]], axis=0)

    # ---- helpers ----

    def split_levels(self, flat):
        """(N, D) -> one (N, *latent_shape) tensor per level."""
        sizes = [math.prod(s) for s in self._latent_shapes]
        return [
            tf.reshape(part, [-1, *shape])
            for part, shape in zip(tf.split(flat, sizes, axis=1), self._latent_shapes)
        ]

    def checked(self, t, expected, what):
        """t, after the static event-shape check (and, with validate_args, a finiteness check)."""
        self.check_event_shape(t.shape, expected, what)
        if self.validate_args:
            t = tf.debugging.assert_all_finite(t, f"{self.name}: non-finite {what}")
        return t

    def check_event_shape(self, shape, expected, what):
        shape = tf.TensorShape(shape)
        if shape.rank is None:
            return
        if shape.rank < len(expected) or not shape[-len(expected):].is_compatible_with(expected):
            raise ValueError(
                f"{self.name}: the {what} has shape {shape}; expected (..., "
                f"{', '.join(map(str, expected))}) for this Glow "
                f"(image_shape={self._image_shape}, D = {self._num_dims})."
            )


def as_distribution(model, temperature=1.0, validate_args=False, name="glow"):
    """The Glow as a TFP distribution over images x of shape (H, W, C).

    A `tfd.TransformedDistribution` of the base N(0, temperature^2 I) on R^D
    through `GlowBijector(model)`. At temperature 1 its `log_prob` is
    `model.log_prob`; `sample` draws from the base at that temperature, the
    paper's reduced-temperature sampling (without `Glow.sample`'s clipping).

    Args:
        model: a built `glow_tf.Glow`.
        temperature: a real number > 0, the base's standard deviation.
        validate_args: passed to the base and the bijector.
        name: the distribution's name.

    Example:
        >>> glow = as_distribution(model, temperature=0.7)
        >>> x = glow.sample(4, seed=0)     # (4, H, W, C)
        >>> glow.log_prob(x)               # (4,) nats
    """
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not 0 < temperature < math.inf  # also rejects NaN
    ):
        raise ValueError(
            f"temperature={temperature!r}: expected a finite real number > 0, "
            "the base distribution's standard deviation. (Temperature 0 has "
            "no density; model.sample(n, temperature=0) decodes the priors' "
            "means.)"
        )
    bijector = GlowBijector(model, validate_args=validate_args)
    base = tfd.Sample(
        tfd.Normal(loc=tf.constant(0.0), scale=tf.constant(float(temperature))),
        sample_shape=[bijector.num_dims],
        validate_args=validate_args,
        name="base",
    )
    return tfd.TransformedDistribution(
        distribution=base, bijector=bijector, validate_args=validate_args, name=name
    )
