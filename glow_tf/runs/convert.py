"""Weights files of earlier layouts, read into a Glow and rewritten in the current one.

Keras writes a weights file in the shape of the model's object graph, so
the file's layout changed twice while the values did not:

- glow_tf 0.2 kept the flow as one list of bijectors: `flow/act_norm`,
  `flow/act_norm_1`, ... for the steps and splits in order, and the top
  prior under `layers/` (the list layout).
- Then the flow became one bijector of levels, and each level's K steps of
  flow were layers of their own: `flow/levels/chain/bijectors/flow_steps/
  bijectors/flow_step_3/...` (the per-step layout).
- Now a level keeps each weight of its steps as one variable stacked over
  the K steps (glow_tf.layers.step.FlowSteps): `.../flow_steps/vars/0`.

Each earlier layout is read through a model of that layout's shape whose
layers are new FlowStep layers (for the steps) and the model's own (for
the rest), so Keras' own loader does the reading; the steps' values are
then stacked into the model. `load_earlier_layout` does it in memory (the
loader reads per-step files as they are), `convert_weights` writes the
file again. `python -m glow_tf.cli.convert` is its command.
"""

import os

import keras

from glow_tf.runs import files
from glow_tf.runs.files import read_json
from glow_tf.runs.folder import CONFIG, WEIGHTS

# A top-level group of the list layout that the later ones lack.
LIST_LAYOUT_MARK = "flow/squeeze"
# A group that only the per-step layout has: the first level's steps as layers.
STEP_LAYOUT_MARK = "flow/levels/chain/bijectors/flow_steps/bijectors"


def layout_of(path):
    """"list", "per-step" or "stacked": the layout of the weights file at `path`."""
    import h5py

    with h5py.File(path, "r") as f:
        if LIST_LAYOUT_MARK in f:
            return "list"
        return "per-step" if STEP_LAYOUT_MARK in f else "stacked"


def is_list_layout(path):
    """Whether the weights file at `path` is in glow_tf 0.2's one-list layout."""
    return layout_of(path) == "list"


class _Steps:
    """A Glow's layers with each level's K steps as FlowStep layers of their own."""

    def __init__(self, model):
        self.model = model
        self.levels = []
        for level in model.flow.levels:
            squeeze, steps, *split = level.bijectors
            self.levels.append((squeeze, steps, steps.unstacked(), split))

    def stack(self):
        """Copies the steps' values into the model's stacked variables."""
        for _, steps, step_layers, _ in self.levels:
            steps.stack_from(step_layers)


def _layer_named(class_name, **attributes):
    """A plain layer whose class has `class_name`: Keras names a file's list items by it."""
    layer = type(class_name, (keras.layers.Layer,), {})()
    for name, value in attributes.items():
        setattr(layer, name, value)
    layer.built = True
    return layer


class _StepLayout(keras.Model):
    """A Glow's layers in the per-step layout's shape: what Keras' loader walks to read it."""

    def __init__(self, parts):
        model = parts.model
        super().__init__(name=model.name)
        levels = [
            _layer_named("Chain", bijectors=[squeeze, _layer_named("FlowSteps", bijectors=steps),
                                             *split])
            for squeeze, _, steps, split in parts.levels
        ]
        if model.config.num_classes:
            self.classifier = model.classifier
        self.flow = _layer_named("GlowFlow", levels=levels, prior=model.flow.prior)
        self.built = True  # its layers are built


class _ListLayout(keras.Model):
    """A Glow's layers in glow_tf 0.2's shape: what Keras' loader walks to read that file.

    The attribute names and the order of the list are that layout's.
    """

    def __init__(self, parts):
        model = parts.model
        super().__init__(name=model.name)
        flow = []
        for squeeze, _, steps, split in parts.levels:
            flow.append(squeeze)
            for step in steps:
                flow.extend(step.bijectors)
            flow.extend(split)
        if model.config.num_classes:
            self.classifier = model.classifier
        self.flow = flow
        self.top_prior = model.flow.prior
        self.built = True  # its layers are built


LAYOUTS = {"list": _ListLayout, "per-step": _StepLayout}


def load_earlier_layout(model, path, layout):
    """Loads a weights file of an earlier layout ("list" or "per-step") into `model`."""
    parts = _Steps(model)
    LAYOUTS[layout](parts).load_weights(path)
    parts.stack()


def convert_weights(path, model_config, target=None):
    """Rewrites a weights file of an earlier layout in the current one.

    Args:
        path: the weights file (`*.weights.h5`).
        model_config: its architecture (a GlowConfig).
        target: where to write; None writes over `path` (atomically).

    Returns:
        the path written.
    """
    from glow_tf.model import Glow

    model = Glow(model_config)
    load_earlier_layout(model, path, layout_of(path))
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
        if os.path.isfile(path) and layout_of(path) != "stacked":
            converted.append(convert_weights(path, config))
    return converted
