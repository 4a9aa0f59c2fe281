"""Weights files of glow_tf 0.2 (one list of layers) rewritten in the layout of `GlowFlow`.

glow_tf 0.2 kept the flow as one list of bijectors, and Keras wrote its
weights file in that shape: `flow/act_norm`, `flow/act_norm_1`, ... for
the steps and splits in order, and the top prior under `layers/`. The flow
is now one bijector of levels, steps and splits, and Keras writes it in
that shape. The values are the same, variable for variable; only where
the file keeps them differs. `convert_weights` reads the first layout
through a model that holds the same layers in the first shape, so Keras'
own loader does the reading, and writes the second. `python -m
glow_tf.cli.convert` is its command.
"""

import os

import keras

from glow_tf.runs import files
from glow_tf.runs.folder import CONFIG, WEIGHTS
from glow_tf.runs.files import read_json

# A top-level group of the list layout that the flow's own layout lacks.
LIST_LAYOUT_MARK = "flow/squeeze"


def is_list_layout(path):
    """Whether the weights file at `path` is in glow_tf 0.2's one-list layout."""
    import h5py

    with h5py.File(path, "r") as f:
        return LIST_LAYOUT_MARK in f


class _ListLayout(keras.Model):
    """A Glow's layers in glow_tf 0.2's shape: what Keras' loader walks to read that file.

    The attribute names and the order of the list are that layout's; the
    layers are the new model's own, so loading this loads that model.
    """

    def __init__(self, model):
        super().__init__(name=model.name)
        flow = []
        for level in model.flow.levels:
            squeeze, steps, *split = level.bijectors
            flow.append(squeeze)
            for step in steps.bijectors:
                flow.extend(step.bijectors)
            flow.extend(split)
        if model.config.num_classes:
            self.classifier = model.classifier
        self.flow = flow
        self.top_prior = model.flow.prior
        self.built = True  # its layers are the built model's


def convert_weights(path, model_config, target=None):
    """Rewrites a weights file of the list layout in the current one.

    Args:
        path: the weights file (`*.weights.h5`).
        model_config: its architecture (a GlowConfig).
        target: where to write; None writes over `path` (atomically).

    Returns:
        the path written.
    """
    from glow_tf.model import Glow

    model = Glow(model_config)
    _ListLayout(model).load_weights(path)
    target = target or path
    files.save_weights(model, target)
    return target


def convert_run(run_dir):
    """Converts the newest and best weights of a run folder in place; returns the files converted."""
    from glow_tf.config import GlowConfig

    config = GlowConfig.from_dict(read_json(os.path.join(run_dir, CONFIG))["model"])
    converted = []
    for name in WEIGHTS.values():
        path = os.path.join(run_dir, name)
        if os.path.isfile(path) and is_list_layout(path):
            converted.append(convert_weights(path, config))
    return converted
