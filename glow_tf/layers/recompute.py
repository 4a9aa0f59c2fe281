"""Recomputing a step of flow in the backward pass, and the one activation it may keep.

Per-step checkpointing keeps each step's input and recomputes the rest of
the step when the backward pass reaches it: one more forward pass. In a
wide coupling network most of that forward pass is the hidden 1x1
convolution, width x width multiply-adds at every pixel for an output of
width numbers a pixel. Keeping that output and recomputing the rest costs
a fraction of the memory of keeping everything and most of the time of
recomputing everything (`FlowSteps.keeps_hidden` says when it is chosen).
"""

import keras

# The name the coupling network gives its hidden convolution's output.
HIDDEN = "coupling_hidden"


def mark_hidden(h):
    """h, named as the coupling network's hidden output for `recomputed(keep_hidden=True)`.

    On JAX a named identity (`checkpoint_name`), which only a `jax.checkpoint`
    with a policy that names it looks at; on the other backends h itself.
    """
    if keras.backend.backend() != "jax":
        return h
    from jax.ad_checkpoint import checkpoint_name

    return checkpoint_name(h, HIDDEN)


def recomputed(f, keep_hidden=False):
    """f, recomputed in the backward pass: `keras.remat(f)`, keeping nothing
    but f's inputs; with `keep_hidden` (JAX only), keeping what `mark_hidden`
    marked too."""
    if not keep_hidden:
        return keras.remat(f)
    if keras.backend.backend() != "jax":
        raise ValueError(f"keep_hidden needs the JAX backend, not {keras.backend.backend()!r}.")
    import jax

    return jax.checkpoint(f, policy=jax.checkpoint_policies.save_only_these_names(HIDDEN))
