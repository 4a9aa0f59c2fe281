"""Reading a run's TensorBoard event files back, for the tests that check what was logged."""

import os

import tensorflow as tf


def read_events(folder):
    """{tag: [(step, value)]} of every event file under folder; images as uint8 arrays."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if not name.startswith("events.out.tfevents"):
                continue
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                for value in event.summary.value:
                    tensor = tf.make_ndarray(value.tensor)
                    if value.metadata.plugin_data.plugin_name == "images":
                        # [width, height, PNG...]
                        tensor = tf.io.decode_png(tensor[2]).numpy()
                    tag = f"{os.path.relpath(root, folder)}/{value.tag}"
                    found.setdefault(tag, []).append((event.step, tensor))
    return found
