"""Polyak averaging: the optimizer's moving average of the weights, and where a run uses it.

The average is Keras' own (`use_ema=True`): each step the optimizer updates
its "average" variables, m <- momentum * m + (1 - momentum) * w, after the
weights (after the fused update of glow_tf.tf.optimizers too), and `fit`
puts the averages into the model when it ends (`finalize_variable_values`).
Training always goes on from the raw weights w; the averages are optimizer
variables, so a run's backup (glow_tf.runs.state) holds them beside w and a
resumed run continues the same average.

Where a run scores or shows its model, it uses the averages: the test pass
and the summaries run while `glow_tf.tf.callbacks.UseAverages` has put them
into the model, and the checkpoint writes `averaged_values` as the newest
and best weights.
"""

from glow_tf import keras_internals


def ema_momentum(polyak_epochs, steps_per_epoch):
    """The momentum of an average over `polyak_epochs` epochs: 1 - 1/(epochs * steps)."""
    return max(0.0, 1.0 - 1.0 / (polyak_epochs * steps_per_epoch))


def averaging(optimizer):
    """The optimizer that keeps the average (inside a loss-scaling wrapper), or None."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return optimizer if getattr(optimizer, "use_ema", False) else None


def pairs(model):
    """(weight, its average) for each weight the model's optimizer averages; [] without."""
    optimizer = averaging(getattr(model, "optimizer", None))
    return [] if optimizer is None else keras_internals.averaged_weights(optimizer)


def averaged_values(model, values, optimizer_values):
    """`values` with each averaged weight's value replaced by its average.

    Args:
        values: `state.host_values(model.weights)`, the raw weights.
        optimizer_values: `state.host_values(model.optimizer.variables)`,
            which hold the averages.

    Returns `values` itself when the optimizer keeps no average.
    """
    averaged_pairs = pairs(model)
    if not averaged_pairs:
        return values
    weight_index = _index(model.weights)
    optimizer_index = _index(model.optimizer.variables)
    averaged = list(values)
    for weight, average in averaged_pairs:
        averaged[weight_index[id(weight)]] = optimizer_values[optimizer_index[id(average)]]
    return averaged


def _index(variables):
    return {id(v): i for i, v in enumerate(variables)}
