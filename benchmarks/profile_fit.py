"""Where the wall-clock time of a training run goes, callback by callback (TensorFlow).

    python -m benchmarks.profile_fit --epochs 4

Trains the digits preset (or --dataset's) into a scratch run folder through
`glow_tf.tf.training.train_and_evaluate`, exactly as main.py does, with every
callback hook and checkpoint write wrapped in a timer. Prints, per epoch,
the wall time and the seconds spent in each part; what is left over is the
training steps themselves and Keras' own bookkeeping. The first epoch also
pays for tracing the training, test and summary functions. Compare the rows
of one run with each other; the machine's load moves them all.
"""

import argparse
import collections
import functools
import shutil
import tempfile
import time

import keras

from glow_tf.cli import settings
from glow_tf.runs import files
from glow_tf.tf import callbacks, summaries, training

# (owner, attribute, label): the hooks and writes that are timed.
_TIMED = (
    (files, "save_weights", "save_weights"),
    (callbacks, "_copy", "copy"),
    (summaries.GlowSummaries, "on_epoch_end", "summaries"),
    (keras.callbacks.TensorBoard, "on_epoch_end", "tensorboard"),
    (callbacks.StopOnDivergence, "on_epoch_end", "divergence"),
)


def _timed(function, label, totals):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start

    return wrapper


class _EpochTable(keras.callbacks.Callback):
    """Prints one row per epoch: its wall time and the parts' seconds in it."""

    def __init__(self, totals, labels):
        super().__init__()
        self.totals, self.labels = totals, labels
        self._validation_start = None
        print(f"{'epoch':>5} {'wall':>7} " + " ".join(f"{label:>12}" for label in labels))

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._before = time.perf_counter(), dict(self.totals)

    def on_test_begin(self, logs=None):
        self._validation_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.totals["validation"] += time.perf_counter() - self._validation_start

    def on_epoch_end(self, epoch, logs=None):
        # Runs last of the callbacks, so the epoch's writes are in.
        wall = time.perf_counter() - self._start
        parts = [self.totals[label] - self._before.get(label, 0.0) for label in self.labels]
        print(f"{epoch + 1:>5} {wall:>7.1f} " + " ".join(f"{p:>12.2f}" for p in parts), flush=True)


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_fit")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    totals = collections.defaultdict(float)
    for owner, attribute, label in _TIMED:
        setattr(owner, attribute, _timed(getattr(owner, attribute), label, totals))
    labels = ["validation"] + [label for _, _, label in _TIMED]
    folder = tempfile.mkdtemp(prefix="profile_fit_")
    try:
        configs = settings.configs_for(args.dataset, epochs=args.epochs)  # main.py's path
        start = time.perf_counter()
        training.train_and_evaluate(
            *configs, folder, callbacks=[_EpochTable(totals, labels)], verbose=0
        )
        print(f"total {time.perf_counter() - start:.1f} s for {args.epochs} epochs")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
