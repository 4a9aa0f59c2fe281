"""Adam and Adamax whose TensorFlow update is one fused kernel per weight (TensorFlow only).

Keras' optimizers update each weight with about ten element-wise ops, and
recompute the learning rate and the bias corrections for every weight. A
Glow has many small weights (901 trainable ones, 1,802 optimizer slots in
the digits preset), so on TensorFlow those ops were 60% of the training
step's graph (32,000 of its 55,000 nodes): an executor cost per op at run
time, and seconds of tracing and graph optimisation at its start. These
subclasses compute the step's shared scalars once and update each weight
with TensorFlow's fused training kernel, `ResourceApplyAdam` or
`ResourceApplyAdaMax`, which compute Keras' formulas (Keras took them from
TensorFlow); decoupled weight decay becomes one `ResourceApplyGradientDescent`
per decayed kernel.

Their variables, their names and their config are Keras' own, so their
state saves and restores like Keras' optimizers'. Under a `tf.distribute`
strategy, or with Adam's `amsgrad`, they update the way Keras does.
"""

import keras
import tensorflow as tf

from glow_tf.keras_internals import FusedUpdate


class _FusedKernels(FusedUpdate):
    """The fused TensorFlow update; the optimizer class after it supplies the rest."""

    def fused(self):
        return keras.backend.backend() == "tensorflow" and not tf.distribute.has_strategy()

    def fused_step(self, grads, trainable_variables, learning_rate):
        shared = self.shared_scalars(tf.cast(learning_rate, "float32"))
        for gradient, variable in zip(grads, trainable_variables):
            dtype = variable.dtype
            if isinstance(gradient, tf.IndexedSlices):  # a gather's (the class prior's)
                gradient = tf.convert_to_tensor(gradient)
            self.apply_fused(
                variable, tf.cast(gradient, dtype),
                {name: tf.cast(value, dtype) for name, value in shared.items()},
            )

    def fused_weight_decay(self, variables):
        # Keras: w <- w - w * weight_decay * lr, for every decayed weight.
        rate = tf.cast(self.learning_rate, "float32") * self.weight_decay
        for variable in variables:
            if self.decays(variable):
                tf.raw_ops.ResourceApplyGradientDescent(
                    var=_handle(variable), alpha=tf.cast(rate, variable.dtype),
                    delta=tf.convert_to_tensor(variable.value),
                )

    def step_power(self, beta):
        return tf.pow(tf.constant(beta, "float32"), tf.cast(self.iterations + 1, "float32"))


@keras.saving.register_keras_serializable(package="glow_tf")
class Adam(_FusedKernels, keras.optimizers.Adam):
    """`keras.optimizers.Adam`, with one fused TensorFlow kernel per weight (see the module)."""

    def fused(self):
        return not self.amsgrad and super().fused()

    def shared_scalars(self, lr):
        return {
            "lr": lr, "beta1_power": self.step_power(self.beta_1),
            "beta2_power": self.step_power(self.beta_2),
            "beta1": _constant(self.beta_1), "beta2": _constant(self.beta_2),
            "epsilon": _constant(self.epsilon),
        }

    def apply_fused(self, variable, gradient, shared):
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self.slot("momentums", variable)),
            v=_handle(self.slot("velocities", variable)), grad=gradient, **shared,
        )


@keras.saving.register_keras_serializable(package="glow_tf")
class Adamax(_FusedKernels, keras.optimizers.Adamax):
    """`keras.optimizers.Adamax`, with one fused TensorFlow kernel per weight (see the module)."""

    def shared_scalars(self, lr):
        return {
            "lr": lr, "beta1_power": self.step_power(self.beta_1),
            "beta1": _constant(self.beta_1), "beta2": _constant(self.beta_2),
            "epsilon": _constant(self.epsilon),
        }

    def apply_fused(self, variable, gradient, shared):
        tf.raw_ops.ResourceApplyAdaMax(
            var=_handle(variable), m=_handle(self.slot("m", variable)),
            v=_handle(self.slot("u", variable)), grad=gradient, **shared,
        )


OPTIMIZERS = {"adam": Adam, "adamax": Adamax}


def _constant(value):
    return tf.constant(value, "float32")


def _handle(variable):
    """The resource handle of a Keras variable's tf.Variable."""
    return variable.value.handle
