"""The phases of a run that take a while, each told in one line as it starts.

Reading and checking a folder of photos, building a deep Glow, its ActNorm
initialisation and compiling its step, encode and decode each take seconds
to minutes on a CPU. The library says so through `report`, a line on the
logger "glow_tf.phases" at level INFO, and never prints: a program shows
the lines or not as it configures logging. The command-line tools print
them on stdout (glow_tf.cli.show_phases). No TensorFlow, no Keras.
"""

import logging

LOGGER = logging.getLogger(__name__)


def report(line):
    """Tells one line: a phase that starts ("Building the model ..."), or what was found."""
    LOGGER.info(line)
