"""The callbacks of a training run: its checkpoints, and stopping when it diverges.

`RunCheckpoint` keeps a run folder's files current. Every file is written
to a temp file beside the target and moved over it with `os.replace`
(glow_tf.runs.files), so a crash during a write never leaves a torn file
where a good one stood.

`UseAverages` and `UseRawWeights` bracket the callbacks that should see
the Polyak-averaged weights (glow_tf.tf.polyak) at an epoch's end.

`StopOnDivergence` stops a run whose loss or weights stop being finite. A
NaN or inf loss usually follows an update that put NaN or inf into the
weights: the step's own loss was computed before the update and is finite,
the next one is not. So training stops at the first non-finite loss, or at
an epoch's end whose weights are not finite, and every checkpoint write
first checks the weights (`weights_are_finite`), which keeps the files on
disk at the last finite state.

`ReportFirstStep` says, as a run's first step starts, that it includes
tracing and compiling the training step, and then how long it took.

All are backend-agnostic Keras callbacks. On JAX, Keras keeps the
weights apart from the model during an epoch and reattaches them when a
callback reads `self.model`, so the per-step hooks here read only the logs
and a Python step count, and touch the model when they write.
"""

import math
import os
import shutil
import time
import weakref

import keras
import numpy as np
from keras import ops

from glow_tf import phases
from glow_tf.runs import files, state
from glow_tf.runs.folder import BEST_STATE, LEGACY_BACKUP_WEIGHTS
from glow_tf.tf import polyak

# Seconds between two writes of newest.weights.h5 and best.weights.h5 while
# a run trains (they are always written when it ends): Keras takes about a
# second for a deep Glow's file, against seconds per epoch of the digits
# model, and the backup (glow_tf.runs.state) is what a resumed run reads.
KERAS_WEIGHTS_EVERY = 60.0


class RunCheckpoint(keras.callbacks.Callback):
    """Writes a run folder's backup, weights and metrics; resumes from the backup.

    - After every epoch, and `backup_every` training steps after the last
      backup: the backup
      (backup/state.npz: the weights with the optimizer's state, so the step
      count and the learning-rate schedule continue). Not on an epoch's last
      step, whose end writes it anyway.
    - After every epoch: metrics.json, and backup/best.npz when the test
      bits/dim (`val_loss`) is the lowest so far.
    - With Polyak averaging, the newest and best weights are the averaged
      ones (glow_tf.tf.polyak), and the backup holds the raw weights with
      the optimizer's averages.
    - newest.weights.h5 and best.weights.h5 (Keras' format, what
      `glow_tf.runs.load_model` reads): when training ends, and after an
      epoch when `keras_weights_every` seconds have passed since they were
      last written. A run that stops on a non-finite loss leaves them at
      its last finite state.

    When `fit` starts, the backup's weights and optimizer state are restored
    (a backup of an older version, Keras' backup/latest.weights.h5, too).
    Where the run stood is read from the restored step count s: epoch
    s // steps_per_epoch, with s % steps_per_epoch of its steps done. A run
    killed mid-epoch goes on with the rest of that epoch, as many steps as
    it had left (on a fresh shuffle of the data: the data pipeline's
    position is not saved), so a run's step count is always epochs x
    steps_per_epoch however often it was interrupted. A resumed run reads
    the best test bits/dim so far back from metrics.json and its weights
    from backup/best.npz.

    Args:
        run: the `glow_tf.runs.RunDir`.
        epochs: the epochs this run is asked for (recorded in metrics.json).
        backup_every: training steps between backups.
        steps_per_epoch: training steps in one epoch.
        resume: whether this continues the run whose files are there.
        keras_weights_every: seconds between writes of the Keras weights
            files during training (0: after every epoch; None:
            KERAS_WEIGHTS_EVERY).
        share_state: None, or for training on several workers a function
            that makes every worker's variables the chief's (such as
            `Distribution.share_chief_state`); called on the weights and the
            optimizer's variables after the restore, before the step count
            is read, on every worker.
    """

    def __init__(self, run, epochs, backup_every, steps_per_epoch, resume=False,
                 keras_weights_every=None, share_state=None):
        super().__init__()
        self.run = run
        self.share_state = share_state
        self.epochs = epochs
        self.backup_every = backup_every
        self.steps_per_epoch = steps_per_epoch
        self.keras_weights_every = (
            KERAS_WEIGHTS_EVERY if keras_weights_every is None else keras_weights_every)
        # The step count of the newest backup on disk (0: none yet).
        self.backup_step = 0
        self._step = self._epoch = 0
        self._steps_per_call = 1
        self._ending_epoch_early = False
        previous = run.read_metrics() if resume else {}
        self.best = previous.get("best_test_bits_per_dim", math.inf)
        self.best_epoch = previous.get("best_epoch")
        self._best_values = None
        # The weights of the last epoch's end, which newest.weights.h5 holds
        # once written; and whether the Keras files hold the latest.
        self._newest_values = None
        self._keras_files_current = True
        self._keras_written_at = time.monotonic()

    # ---- resuming ----

    def on_train_begin(self, logs=None):
        os.makedirs(self.run.backup_dir, exist_ok=True)
        model = self.model
        backup = self.run.backup()
        legacy = self.run.backup(LEGACY_BACKUP_WEIGHTS)
        try:
            if os.path.exists(backup):
                state.restore(backup, model, model.optimizer)
            elif os.path.exists(legacy):
                try:
                    model.load_weights(legacy)
                except (OSError, ValueError, KeyError) as error:
                    raise state.StateError(f"{legacy} cannot be read ({error}).") from None
        except state.StateError as error:
            raise _unusable_backup(error) from None
        if self.share_state is not None:
            self.share_state([*model.weights, *model.optimizer.variables])
        _forget_host_copy()
        best = self.run.backup(BEST_STATE)
        if self.best_epoch is not None and os.path.exists(best):
            try:
                self._best_values = state.read(best)[1]
            except state.StateError as error:
                raise state.StateError(
                    f"{error} It holds the weights of the best epoch so far: move it away, "
                    "and the same command resumes the run without them (best.weights.h5 "
                    "keeps the best weights written before)."
                ) from None
        self._step = self.backup_step = _step(model)
        self._steps_per_call = getattr(model, "steps_per_execution", 1) or 1
        self._epoch = self._step // self.steps_per_epoch
        model._initial_epoch = self._epoch
        if self._step and self._step % self.steps_per_epoch == 0:
            # Backed up at an epoch's end: the newest weights. A run stopped
            # after that backup, before the Keras files were written, writes
            # them when it ends, even if no epoch is left to run.
            self._newest_values, self._newest_step = _weight_values(model), self._step
            self._keras_files_current = False

    # ---- every step ----

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._steps_per_call == 1:
            self._step += 1
        else:
            # Keras calls this once per call of several steps, the last of
            # which may have run fewer: the optimizer counts them.
            self._step = _step(self.model)
        epoch_end_step = (self._epoch + 1) * self.steps_per_epoch
        if (self._step - self.backup_step >= self.backup_every and self._step < epoch_end_step
                and _finite((logs or {}).get("loss"))):
            self._write_backup()
        # A resumed epoch ends when the epoch's steps are done, before the
        # data runs out; on_epoch_end lets training go on.
        early = batch + 1 < self.steps_per_epoch
        if early and self._step >= epoch_end_step:
            self._ending_epoch_early = True
            self.model.stop_training = True

    # ---- every epoch ----

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not (_finite(logs.get("loss")) and weights_are_finite(self.model)):
            return
        if self._ending_epoch_early:
            self.model.stop_training = self._ending_epoch_early = False
        values = _weight_values(self.model)
        optimizer_values = state.host_values(self.model.optimizer.variables)
        scored = polyak.averaged_values(self.model, values, optimizer_values)
        test = logs.get("val_loss")
        if _finite(test) and test < self.best:
            self.best, self.best_epoch, self._best_values = float(test), epoch + 1, scored
            state.write(self.run.backup(BEST_STATE), self.model, scored, self._step)
        self.run.write_metrics(
            {
                "epochs": self.epochs,
                "epochs_completed": epoch + 1,
                "steps": self._step,
                "train_bits_per_dim": float(logs["loss"]),
                "test_bits_per_dim": _float(test),
                "best_test_bits_per_dim": _float(self.best),
                "best_epoch": self.best_epoch,
                "backend": keras.backend.backend(),
                "finished": False,
            }
        )
        # Last: a crash before this point reruns the epoch, never skips it.
        self._write_backup(values, optimizer_values)
        self._newest_values = scored
        self._keras_files_current = False
        if time.monotonic() - self._keras_written_at >= self.keras_weights_every:
            self._write_keras_weights()

    def on_train_end(self, logs=None):
        # fit's end may have changed the weights at the same step count
        # (Keras puts the Polyak averages into the model).
        _forget_host_copy()
        if self._newest_values is not None and not self._keras_files_current:
            self._write_keras_weights()

    # ---- writing ----

    def _write_backup(self, values=None, optimizer_values=None):
        model = self.model
        if values is None:
            if not weights_are_finite(model):
                return
            values = _weight_values(model)
        if optimizer_values is None:
            optimizer_values = state.host_values(model.optimizer.variables)
        state.write(self.run.backup(), model, values, self._step, model.optimizer,
                    optimizer_values)
        self.backup_step = self._step

    def _write_keras_weights(self):
        """newest.weights.h5 and best.weights.h5, from the weights they stand for.

        The model's own weights may differ from them: later ones (a run
        that diverged after its last epoch), earlier ones (for best), or
        the raw ones beside the Polyak averages. Such weights are assigned
        for the write, and the model's put back after it.
        """
        model = self.model
        current = held = _weight_values(model)
        if held is not self._newest_values:
            state.assign(model.weights, self._newest_values)
            held = self._newest_values
        newest = self.run.weights("newest")
        files.save_weights(model, newest)
        if self._best_values is self._newest_values:
            _copy(newest, self.run.weights("best"))
        elif self._best_values is not None:
            state.assign(model.weights, self._best_values)
            held = self._best_values
            files.save_weights(model, self.run.weights("best"))
        if held is not current:
            state.assign(model.weights, current)
        _forget_host_copy()
        self._keras_files_current = True
        self._keras_written_at = time.monotonic()


def check_backup(run):
    """Raises StateError, saying what to do, if the run's backup is there but cannot be read.

    Reads only the file's description, which a truncated file has lost
    with its end; RunCheckpoint reads the rest when training starts.
    """
    if os.path.exists(run.backup()):
        try:
            state.read_step(run.backup())
        except state.StateError as error:
            raise _unusable_backup(error) from None


def _unusable_backup(error):
    return state.StateError(
        f"{error} It is the state this run resumes from: move it away, and the same command "
        "starts the run over."
    )


def _step(model):
    return int(ops.convert_to_numpy(model.optimizer.iterations))


def _copy(source, target):
    files.atomic_write(target, lambda temp: shutil.copyfile(source, temp))


def _finite(value):
    return value is not None and math.isfinite(float(value))


def _float(value):
    return None if value is None else float(value)


class UseAverages(keras.callbacks.Callback):
    """At an epoch's end, puts the optimizer's Polyak averages into the model's weights.

    The callbacks after it, up to its `UseRawWeights`, score and show the
    averaged model; that one puts the raw weights back, so training (and
    the callbacks after it) go on from them. Without averaging, both do
    nothing. Use `UseAverages.pair()`.

    The raw values are the shared host copy of the weights
    (`weights_are_finite` and RunCheckpoint read it), taken before the
    averages go in, so that copy stays the raw weights for the whole end
    of the epoch.
    """

    def __init__(self):
        super().__init__()
        self.raw = None

    @classmethod
    def pair(cls):
        """(UseAverages, UseRawWeights): the callbacks to put around those that score."""
        use_averages = cls()
        return use_averages, UseRawWeights(use_averages)

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        pairs = polyak.pairs(model)
        if not pairs:
            return
        values = _weight_values(model)
        index = {id(v): i for i, v in enumerate(model.weights)}
        self.raw = [(weight, values[index[id(weight)]]) for weight, _ in pairs]
        for weight, average in pairs:
            weight.assign(average.value)

    def put_back(self):
        if self.raw is not None:
            for weight, value in self.raw:
                weight.assign(value)
            self.raw = None


class UseRawWeights(keras.callbacks.Callback):
    """Puts back the raw weights that its `UseAverages` took out at an epoch's end."""

    def __init__(self, use_averages):
        super().__init__()
        self.use_averages = use_averages

    def on_epoch_end(self, epoch, logs=None):
        self.use_averages.put_back()


class StopOnDivergence(keras.callbacks.Callback):
    """Stops `fit` at the first step whose loss is NaN or inf, and notes where.

    Keras' TerminateOnNaN stops too, but names only the batch of the epoch.
    The logged loss is the running mean of the epoch, so it turns non-finite
    at the first step whose own loss does. At the end of an epoch the
    weights are checked as well (the last update may have broken them).

    Attributes:
        step: the global training step (1-based: the optimizer's step count
            after it) where training stopped; None while all is finite.
        epoch: that step's epoch, 1-based.
        reason: what was not finite, e.g. "the loss became nan".
    """

    def __init__(self):
        super().__init__()
        self.step = self.epoch = self.reason = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(f"the loss became {float(loss)}")

    def on_epoch_end(self, epoch, logs=None):
        if self.step is None and not weights_are_finite(self.model):
            self._stop("the weights became NaN or inf")

    def _stop(self, reason):
        if self.step is None:
            self.step = _step(self.model)
            self.epoch, self.reason = self._epoch + 1, reason
        self.model.stop_training = True


# The host copy of a model's weights at one step count, shared by the
# callbacks that look at the weights at an epoch's end (the divergence
# check, the test pass, the summaries, the checkpoint): one copy, not four.
_HOST_COPY = {"model": lambda: None, "step": None, "values": None}


def _weight_values(model):
    """`state.host_values(model.weights)`, copied once per model and step count."""
    step = _step(model)
    if _HOST_COPY["model"]() is not model or _HOST_COPY["step"] != step:
        _forget_host_copy()
        values = state.host_values(model.weights)
        _HOST_COPY.update(model=weakref.ref(model), step=step, values=values)
    return _HOST_COPY["values"]


def _forget_host_copy():
    """After weights were assigned: the next `_weight_values` copies them anew."""
    _HOST_COPY.update(model=lambda: None, step=None, values=None)


def weights_are_finite(model):
    """Whether every weight of the model (optimizer state excluded) is finite."""
    if getattr(model, "optimizer", None) is None:
        values = state.host_values(model.weights)
    else:
        values = _weight_values(model)
    return all(np.isfinite(v).all() for v in values if v.dtype.kind == "f")


class ReportFirstStep(keras.callbacks.Callback):
    """Reports (glow_tf.phases) the start of fit's first step, which compiles the step, and its time.

    `fit` traces and compiles the training step in its first call (XLA or
    a TensorFlow graph, or jax.jit): for a deep Glow on a CPU, minutes
    before the first step ends. Attribute `seconds`: the first step's wall
    time, compilation included (None before it ends).
    """

    def __init__(self):
        super().__init__()
        self.seconds = None
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._start is None:
            phases.report("Tracing and compiling the training step; the first step "
                          "includes it ...")
            self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds is None and self._start is not None:
            if logs and "loss" in logs:
                _float(logs["loss"])  # waits for the step's result (dispatch is asynchronous)
            self.seconds = time.perf_counter() - self._start
            phases.report(f"First step done in {self.seconds:.1f} s, compiling the step "
                          "included.")
