"""The parts of glow_tf that need TensorFlow installed.

`pipelines` (tf.data), `training` (Keras `fit` into a run folder) with its
`callbacks` and `schedules`, `summaries` (TensorBoard), `distribute`
(tf.distribute, and keras.distribution on JAX), `tfp` (TensorFlow
Probability) and `export` (a trained model as a SavedModel). Import the
module you need; this package imports nothing.
"""
