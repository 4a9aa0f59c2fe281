"""The callbacks of a training run: its checkpoints, and stopping when it diverges.

`RunCheckpoint` keeps a run folder's files current. Keras' ModelCheckpoint
and BackupAndRestore write their files in place, so a crash during a write
can leave a torn file where a good one stood; every file here is written to
a temp file beside the target and moved over it with `os.replace`.

`StopOnDivergence` stops a run whose loss or weights stop being finite. A
NaN or inf loss usually follows an update that put NaN or inf into the
weights: the step's own loss was computed before the update and is finite,
the next one is not. So training stops at the first non-finite loss, or at
an epoch's end whose weights are not finite, and every checkpoint write
first checks the weights (`weights_are_finite`), which keeps the files on
disk at the last finite state.

Both are backend-agnostic Keras callbacks.
"""

import math
import os
import shutil

import keras
import numpy as np
from keras import ops

from glow_tf.runs import files


class RunCheckpoint(keras.callbacks.BackupAndRestore):
    """Writes a run folder's weights, backup and metrics; resumes from the backup.

    - Every `backup_every` training steps: the backup (model weights with the
      optimizer's state, so the step count and the learning-rate schedule
      continue, plus the epoch) that an interrupted run resumes from; not
      on an epoch's last step, whose end writes it anyway.
    - After every epoch: newest.weights.h5, best.weights.h5 when the test
      bits/dim (`val_loss`) is the lowest so far, metrics.json, and the
      backup. The weights are serialised once and copied, since saving a
      deep Glow costs seconds.

    When `fit` starts, Keras' BackupAndRestore restores the backup's
    weights and optimizer state. Where the run stood is read from the
    restored step count s (which lives in the same file, so it always
    matches the weights): epoch s // steps_per_epoch, with
    s % steps_per_epoch of its steps done. A run killed mid-epoch goes on
    with the rest of that epoch, as many steps as it had left (on a fresh
    shuffle of the data: the data pipeline's position is not saved), so a
    run's step count is always epochs x steps_per_epoch however often it
    was interrupted. A resumed run reads the best test bits/dim so far back
    from metrics.json. Nothing is written while the loss or the weights are
    not finite, so the files keep the last finite state.

    Args:
        run: the `glow_tf.runs.RunDir`.
        epochs: the epochs this run is asked for (recorded in metrics.json).
        backup_every: training steps between backups.
        steps_per_epoch: training steps in one epoch.
        resume: whether this continues the run whose files are there.
    """

    def __init__(self, run, epochs, backup_every, steps_per_epoch, resume=False):
        super().__init__(run.backup_dir, save_freq=backup_every, delete_checkpoint=False)
        self.run = run
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        # The step count of the newest backup on disk (0: none yet).
        self.backup_step = 0
        self._ending_epoch_early = False
        previous = run.read_metrics() if resume else {}
        self.best = previous.get("best_test_bits_per_dim", math.inf)
        self.best_epoch = previous.get("best_epoch")

    def on_train_begin(self, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        super().on_train_begin(logs)
        self.backup_step = self._step()
        epoch = self.backup_step // self.steps_per_epoch
        # Overrides the epoch Keras read from training_metadata.json, which
        # is written after the weights and may lag behind them.
        self.model._initial_epoch = self._current_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        # Keras sets this only at the end of an epoch, so the backups taken
        # inside the first epoch of a resumed run would name epoch 0.
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if _finite((logs or {}).get("loss")):
            super().on_train_batch_end(batch, logs)
        # A resumed epoch ends when the epoch's steps are done, before the
        # data runs out; on_epoch_end lets training go on.
        epoch_end_step = (self._current_epoch + 1) * self.steps_per_epoch
        early = batch + 1 < self.steps_per_epoch
        if early and self._step() >= epoch_end_step and not self.model.stop_training:
            self._ending_epoch_early = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not (_finite(logs.get("loss")) and weights_are_finite(self.model)):
            return
        if self._ending_epoch_early:
            self.model.stop_training = self._ending_epoch_early = False
        newest = self.run.weights("newest")
        files.save_weights(self.model, newest)
        test = logs.get("val_loss")
        if _finite(test) and test < self.best:
            _copy(newest, self.run.weights("best"))
            self.best, self.best_epoch = float(test), epoch + 1
        self.run.write_metrics(
            {
                "epochs": self.epochs,
                "epochs_completed": epoch + 1,
                "steps": int(ops.convert_to_numpy(self.model.optimizer.iterations)),
                "train_bits_per_dim": float(logs["loss"]),
                "test_bits_per_dim": _float(test),
                "best_test_bits_per_dim": _float(self.best),
                "best_epoch": self.best_epoch,
                "finished": False,
            }
        )
        # Last: a crash before this point reruns the epoch, never skips it.
        self._current_epoch, self._last_batch_seen = epoch + 1, 0
        self._batches_seen_since_last_saving = 0
        _copy(newest, self._weights_path)
        self._write_metadata()
        self.backup_step = self._step()

    def _save_model(self):
        """A mid-epoch backup (Keras calls this every `save_freq` steps)."""
        if self._step() >= (self._current_epoch + 1) * self.steps_per_epoch:
            return  # the epoch's last step: on_epoch_end writes the backup
        if not weights_are_finite(self.model):
            return
        files.save_weights(self.model, self._weights_path)
        self._write_metadata()
        self.backup_step = self._step()

    def _step(self):
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _write_metadata(self):
        # Keras' format, kept for tools that read it. It is replaced after
        # the weights, so a crash between the two leaves it behind them; a
        # resumed run reads its epoch from the weights' step count instead.
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        files.write_json(self._training_metadata_path, metadata)


def _copy(source, target):
    files.atomic_write(target, lambda temp: shutil.copyfile(source, temp))


def _finite(value):
    return value is not None and math.isfinite(float(value))


def _float(value):
    return None if value is None else float(value)


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
            self.step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
            self.epoch, self.reason = self._epoch + 1, reason
        self.model.stop_training = True


def weights_are_finite(model):
    """Whether every weight of the model (optimizer state excluded) is finite."""
    # On the host: three eager backend ops per variable cost 0.5 s for the
    # ~1,300 variables of the digits Glow, a copy to NumPy 0.2 s.
    return all(
        np.isfinite(ops.convert_to_numpy(v)).all() for v in model.weights if "float" in v.dtype
    )
