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


class _FusedUpdate:
    """The fused TensorFlow update; the optimizer class after it supplies the rest."""

    def _fused(self):
        return keras.backend.backend() == "tensorflow" and not tf.distribute.has_strategy()

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._fused():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        shared = self._shared_scalars(tf.cast(learning_rate, "float32"))
        for gradient, variable in zip(grads, trainable_variables):
            index = self._get_variable_index(variable)
            dtype = variable.dtype
            if isinstance(gradient, tf.IndexedSlices):  # a gather's (the class prior's)
                gradient = tf.convert_to_tensor(gradient)
            self._apply_fused(
                _handle(variable), index, tf.cast(gradient, dtype),
                {name: tf.cast(value, dtype) for name, value in shared.items()},
            )

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None or not self._fused():
            return super()._apply_weight_decay(variables)
        # Keras: w <- w - w * weight_decay * lr, for every decayed weight.
        rate = tf.cast(self.learning_rate, "float32") * self.weight_decay
        for variable in variables:
            if self._use_weight_decay(variable):
                tf.raw_ops.ResourceApplyGradientDescent(
                    var=_handle(variable), alpha=tf.cast(rate, variable.dtype),
                    delta=tf.convert_to_tensor(variable.value),
                )

    def _step_power(self, beta):
        return tf.pow(tf.constant(beta, "float32"), tf.cast(self.iterations + 1, "float32"))

    def _constant(self, value):
        return tf.constant(value, "float32")


@keras.saving.register_keras_serializable(package="glow_tf")
class Adam(_FusedUpdate, keras.optimizers.Adam):
    """`keras.optimizers.Adam`, with one fused TensorFlow kernel per weight (see the module)."""

    def _fused(self):
        return not self.amsgrad and super()._fused()

    def _shared_scalars(self, lr):
        return {
            "lr": lr, "beta1_power": self._step_power(self.beta_1),
            "beta2_power": self._step_power(self.beta_2),
            "beta1": self._constant(self.beta_1), "beta2": self._constant(self.beta_2),
            "epsilon": self._constant(self.epsilon),
        }

    def _apply_fused(self, handle, index, gradient, shared):
        tf.raw_ops.ResourceApplyAdam(
            var=handle, m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]), grad=gradient, **shared,
        )


@keras.saving.register_keras_serializable(package="glow_tf")
class Adamax(_FusedUpdate, keras.optimizers.Adamax):
    """`keras.optimizers.Adamax`, with one fused TensorFlow kernel per weight (see the module)."""

    def _shared_scalars(self, lr):
        return {
            "lr": lr, "beta1_power": self._step_power(self.beta_1),
            "beta1": self._constant(self.beta_1), "beta2": self._constant(self.beta_2),
            "epsilon": self._constant(self.epsilon),
        }

    def _apply_fused(self, handle, index, gradient, shared):
        tf.raw_ops.ResourceApplyAdaMax(
            var=handle, m=_handle(self._m[index]), v=_handle(self._u[index]),
            grad=gradient, **shared,
        )


OPTIMIZERS = {"adam": Adam, "adamax": Adamax}


def _handle(variable):
    """The resource handle of a Keras variable's tf.Variable."""
    return variable.value.handle
