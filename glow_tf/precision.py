"""Mixed precision for Glow: which Keras dtype policy, and loss scaling for float16.

Glow's bijectors are pinned to float32 (`glow_tf.model.FLOW_DTYPE`), so the
log-determinants, the priors and the loss stay float32 whatever the global
policy. Only the coupling networks (`glow_tf.layers.networks.CouplingNetwork`)
follow the global policy: under "bfloat16" or "float16" they compute in that
type and keep float32 weights. That is where the FLOPs are.

Backend-agnostic: Keras only, so it runs on JAX without TensorFlow. Keras
is imported where it is used, so that the configs (which name the
precisions) import without it: the command-line tools choose the backend
before Keras starts.

Example:
    >>> from glow_tf import precision
    >>> precision.set_precision("bfloat16")    # before building the model
    >>> model = Glow(config)
    >>> model.compile(precision.with_loss_scaling(keras.optimizers.Adamax(1e-3), "bfloat16"))
"""

import contextlib

# Names users pick (the --mixed_precision flag) -> Keras dtype policies.
POLICIES = {
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
}
PRECISIONS = tuple(POLICIES)
# main.py's --mixed_precision choices; "none" is float32.
MIXED_PRECISIONS = ("none", "bfloat16", "float16")


def from_mixed_precision(mixed_precision):
    """The precision for a --mixed_precision value ("none" -> "float32")."""
    if mixed_precision not in MIXED_PRECISIONS:
        raise ValueError(
            f"mixed_precision={mixed_precision!r}: expected one of "
            f"{', '.join(MIXED_PRECISIONS)}."
        )
    return "float32" if mixed_precision == "none" else mixed_precision


def policy_name(precision):
    """The Keras dtype policy for `precision` ("float32", "bfloat16" or "float16")."""
    if precision not in POLICIES:
        raise ValueError(
            f"precision={precision!r}: expected one of {', '.join(PRECISIONS)} "
            "(bfloat16 and float16 run the coupling networks in that type; "
            "log-dets and priors stay float32)."
        )
    return POLICIES[precision]


def set_precision(precision):
    """Sets the global dtype policy; call it before the model is built."""
    import keras

    keras.mixed_precision.set_global_policy(policy_name(precision))


@contextlib.contextmanager
def precision_scope(precision):
    """Builds models under `precision`, then restores the previous global policy.

    Only construction needs the scope: a layer keeps the policy it was built
    with, so the model may be compiled and trained after the scope closes.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    set_precision(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def with_loss_scaling(optimizer, precision):
    """Wraps `optimizer` in dynamic loss scaling when `precision` is "float16".

    float16's narrow exponent range flushes small gradients to zero; the
    `LossScaleOptimizer` multiplies the loss by a large factor before the
    backward pass, divides the gradients by it again, and skips (and lowers
    the factor on) steps whose gradients overflow. bfloat16 has float32's
    exponent range and needs none, so other precisions return `optimizer`
    unchanged.
    """
    import keras

    policy_name(precision)
    if precision != "float16" or isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer
    ):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)
