"""`Dataset.map` without AutoGraph: every map function of the pipelines is traced as written.

tf.data hands each map function to AutoGraph, which reads the source of the
function and of every function it calls, and rewrites Python `if`s and
loops over tensors into graph ops. Ours branch on Python values only (a
config, a static shape, a dict's keys), so the rewrite changes nothing:
it only cost time, 0.18 s of the 0.27 s in which a digits run built its two
pipelines on a 2-core CPU (docs/performance.md, "Starting a tool"). A map
function that did branch on a tensor would fail as it is traced, by name.
"""

import tensorflow as tf


def map_as_written(dataset, fn, **kwargs):
    """`dataset.map(fn, **kwargs)`, with `fn` traced as written (no AutoGraph rewrite)."""
    return dataset.map(tf.autograph.experimental.do_not_convert(fn), **kwargs)
