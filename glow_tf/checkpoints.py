"""The callback that keeps a run folder's checkpoints current (backend-agnostic).

Keras' ModelCheckpoint and BackupAndRestore write their files in place, so a
crash during a write can leave a torn file where a good one stood. Every file
here is written to a temp file beside the target and moved over it with
`os.replace`.
"""

import math
import os
import shutil

import keras
from keras import ops

from glow_tf import run_dir as run_dir_lib


class RunCheckpoint(keras.callbacks.BackupAndRestore):
    """Writes a run folder's weights, backup and metrics; resumes from the backup.

    - Every `backup_every` training steps: the backup (model weights with the
      optimizer's state, so the step count and the learning-rate schedule
      continue, plus the epoch) that an interrupted run resumes from.
    - After every epoch: newest.weights.h5, best.weights.h5 when the test
      bits/dim (`val_loss`) is the lowest so far, metrics.json, and the
      backup. The weights are serialised once and copied, since saving a
      deep Glow costs seconds.

    When `fit` starts, Keras' BackupAndRestore restores the backup: the
    weights and the epoch, not the position inside the epoch, so a run
    killed mid-epoch resumes with the weights and step count of its last
    backup and runs that epoch's pass over the data again. A resumed run
    reads the best test bits/dim so far back from metrics.json. A step or
    epoch whose loss is not finite (TerminateOnNaN stops there) writes
    nothing, so the files keep the last good state.

    Args:
        run: the `run_dir.RunDir`.
        epochs: the epochs this run is asked for (recorded in metrics.json).
        backup_every: training steps between backups.
        resume: whether this continues the run whose files are there.
    """

    def __init__(self, run, epochs, backup_every, resume=False):
        super().__init__(run.backup_dir, save_freq=backup_every, delete_checkpoint=False)
        self.run = run
        self.epochs = epochs
        previous = run.read_metrics() if resume else {}
        self.best = previous.get("best_test_bits_per_dim", math.inf)
        self.best_epoch = previous.get("best_epoch")

    def on_train_begin(self, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        super().on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        # Keras sets this only at the end of an epoch, so the backups taken
        # inside the first epoch of a resumed run would name epoch 0.
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if _finite((logs or {}).get("loss")):
            super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not _finite(logs.get("loss")):
            return
        newest = self.run.weights("newest")
        run_dir_lib.save_weights(self.model, newest)
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

    def _save_model(self):
        """A mid-epoch backup (Keras calls this every `save_freq` steps)."""
        run_dir_lib.save_weights(self.model, self._weights_path)
        self._write_metadata()

    def _write_metadata(self):
        # The weights file is replaced before the metadata that names the
        # epoch, so a crash between the two resumes from newer weights at the
        # older epoch: some steps again, never a torn file.
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        run_dir_lib.write_json(self._training_metadata_path, metadata)


def _copy(source, target):
    run_dir_lib.atomic_write(target, lambda temp: shutil.copyfile(source, temp))


def _finite(value):
    return value is not None and math.isfinite(float(value))


def _float(value):
    return None if value is None else float(value)
