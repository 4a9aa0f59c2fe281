"""A training run that stops early: what its folder kept, and how to go on.

An interruption (Ctrl-C) or a file that cannot be written (a full disk, a
folder made read-only) stops `train_and_evaluate` wherever it happens: in
a step, a callback, a write. `reported` turns either into one exception
whose message names the cause (the file, for a write), the backup that the
run folder keeps, and that the same command resumes from it. Every write
is atomic (glow_tf.runs.files), so the files are those of before the
failed write.

A Ctrl-C is whatever glow_tf.interrupts recorded, whether its
KeyboardInterrupt arrived or some code dropped it: `StopOnInterrupt`
raises it again between steps, and `reported` when training ends.
"""

import contextlib
import errno
import os
import re

import keras
import tensorflow as tf

from glow_tf import interrupts
from glow_tf.runs import files, state


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training; the message says what the run folder kept."""


class TrainingWriteError(OSError):
    """A file of the run folder could not be written; the message names it and what was kept."""

    def __init__(self, error, message):
        super().__init__(error.errno, message, error.filename)
        self.message = message

    def __str__(self):
        return self.message


class Progress:
    """What `reported` needs to know of the run, filled in as it is known."""

    steps_per_epoch = None
    finished = False  # metrics.json says the run is finished: nothing is left to do


class StopOnInterrupt(keras.callbacks.Callback):
    """Raises a recorded Ctrl-C at every step's and epoch's boundary in `fit`.

    For a KeyboardInterrupt that code inside `fit` caught and dropped
    (glow_tf.interrupts raises one that a finalizer dropped at once).
    Backend-agnostic; it reads nothing of the model.
    """

    def on_train_begin(self, logs=None):
        interrupts.check()

    def on_epoch_begin(self, epoch, logs=None):
        interrupts.check()

    def on_train_batch_end(self, batch, logs=None):
        interrupts.check()

    def on_epoch_end(self, epoch, logs=None):
        interrupts.check()

    def on_train_end(self, logs=None):
        interrupts.check()


@contextlib.contextmanager
def reported(run):
    """Raises TrainingInterrupted or TrainingWriteError for what stops the run within.

    Yields a `Progress`, whose `steps_per_epoch` (once set) lets the
    message say which epoch the backup belongs to.
    """
    progress = Progress()
    try:
        yield progress
        interrupts.check()  # one that some code dropped after the last check
    except BaseException as error:
        if isinstance(error, TrainingInterrupted):
            raise
        if interrupts.caused(error):
            raise interruption(run, progress.steps_per_epoch, progress.finished) from None
        if not isinstance(error, (OSError, tf.errors.OpError)):
            raise
        error = as_write_error(error, run)
        if error is None:
            raise
        action = "free some space" if error.no_space else "make it writable"
        raise TrainingWriteError(
            error, f"{error} {kept(run, progress.steps_per_epoch)}: {action}, then the same "
                   f"command {_goes_on(run)}."
        ) from None


def interruption(run, steps_per_epoch=None, finished=False):
    """The TrainingInterrupted that says what the run folder kept, and how to go on."""
    if finished:
        return TrainingInterrupted(
            f"interrupted as training ended; {run.path} holds the finished run.")
    return TrainingInterrupted(
        f"interrupted. {kept(run, steps_per_epoch)}; the same command {_goes_on(run)}.")


def kept(run, steps_per_epoch=None):
    """'<run> keeps its backup of step 27 (5 steps into epoch 2)', or that it has none."""
    path = run.backup()
    if not os.path.exists(path):
        return f"{run.path} has no backup yet"
    try:
        step = state.read_step(path)
    except state.StateError as error:
        return f"{run.path} keeps no readable backup ({error})"
    where = ""
    if steps_per_epoch:
        epochs, steps = divmod(step, steps_per_epoch)
        where = f" ({steps} steps into epoch {epochs + 1})" if steps else \
            f" (the end of epoch {epochs})"
    return f"{run.path} keeps its backup of step {step}{where}"


def _goes_on(run):
    return "resumes from it" if os.path.exists(run.backup()) else "starts the run again"


# Errors of a write that the user can fix: a full disk, a folder made read-only.
_WRITE_ERRNOS = {*files.NO_SPACE, errno.EACCES, errno.EPERM, errno.EROFS}


def as_write_error(error, run):
    """A files.WriteError for an error of writing the run folder; None for any other error.

    The run folder's files are written by glow_tf.runs.files, which raises
    WriteError; its folders are made by Keras and this package, and
    TensorBoard's event files are written by TensorFlow.
    """
    if isinstance(error, files.WriteError):
        return error
    if isinstance(error, tf.errors.OpError):
        return summary_write_error(error, run.log_dir)
    if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
        path = os.fspath(error.filename) if error.filename else None
        # Only the run folder is written: a data file that may not be read is another error.
        inside = path is not None and os.path.abspath(path).startswith(
            os.path.join(os.path.abspath(run.path), ""))
        if inside or (path is None and error.errno in files.NO_SPACE):
            return files.WriteError(path or run.path, error, kept="")
    return None


# TensorFlow's event file writer reports a failed write as an OpError whose
# message holds the file's path and the C library's words for the cause.
_EVENT_FILE = re.compile(r"(\S*events\.out\.tfevents\S*?)[;:,]?\s")


def summary_write_error(error, log_dir):
    """A files.WriteError for TensorFlow's OpError of a full disk, or None for any other."""
    message = error.message or ""
    for code in files.NO_SPACE:
        if os.strerror(code) in message:
            found = _EVENT_FILE.search(message)
            path = found.group(1) if found else os.path.join(log_dir, "events.out.tfevents.*")
            return files.WriteError(path, OSError(code, os.strerror(code)),
                                    kept="the events written before it are kept")
    return None
