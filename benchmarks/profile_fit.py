"""Where the wall-clock time of a training run goes, callback by callback (TensorFlow).

    python -m benchmarks.profile_fit --epochs 4

Trains the digits preset (or --dataset's) into a scratch run folder through
`glow_tf.tf.training.train_and_evaluate`, exactly as main.py does, with every
callback hook and checkpoint write wrapped in a timer. Prints, per epoch,
the wall time and the seconds spent in each part; what is left over is the
training steps themselves and Keras' own bookkeeping. The first epoch also
pays for tracing the training step and the compiled encode (test pass) and
decode (summaries). Compare the rows
of one run with each other; the machine's load moves them all.
"""

import argparse
import collections
import functools
import shutil
import tempfile
import time

from glow_tf.cli import runtime, settings


def _timed_parts():
    """(owner, attribute, label): the hooks and writes that are timed."""
    import keras

    from glow_tf.runs import files, state
    from glow_tf.tf import callbacks, summaries, test_pass

    return (
        (test_pass.TestPass, "on_epoch_end", "test_pass"),
        (summaries.GlowSummaries, "on_epoch_end", "summaries"),
        (keras.callbacks.TensorBoard, "on_epoch_end", "tensorboard"),
        (callbacks.StopOnDivergence, "on_epoch_end", "divergence"),
        (state, "write", "backups"),
        (files, "save_weights", "keras_weights"),
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


def _epoch_table(totals, labels):
    """A callback printing one row per epoch: its wall time and the parts' seconds in it."""
    import keras

    class EpochTable(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            print(f"{'epoch':>5} {'wall':>7} " + " ".join(f"{label:>13}" for label in labels))

        def on_epoch_begin(self, epoch, logs=None):
            self._start, self._before = time.perf_counter(), dict(totals)

        def on_epoch_end(self, epoch, logs=None):
            # Runs last of the callbacks, so the epoch's writes are in.
            wall = time.perf_counter() - self._start
            parts = [totals[label] - self._before.get(label, 0.0) for label in labels]
            print(f"{epoch + 1:>5} {wall:>7.1f} " + " ".join(f"{p:>13.2f}" for p in parts),
                  flush=True)

    return EpochTable()


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_fit")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    configs = settings.configs_for(args.dataset, epochs=args.epochs)  # main.py's path
    # As main.py does, before TensorFlow runs: threads per op, Grappler.
    runtime.tune_tensorflow(configs.training.threads_per_op, configs.model.hidden_channels)
    from glow_tf.tf import training

    totals = collections.defaultdict(float)
    parts = _timed_parts()
    for owner, attribute, label in parts:
        setattr(owner, attribute, _timed(getattr(owner, attribute), label, totals))
    labels = [label for _, _, label in parts]
    folder = tempfile.mkdtemp(prefix="profile_fit_")
    try:
        start = time.perf_counter()
        training.train_and_evaluate(
            *configs, folder, callbacks=[_epoch_table(totals, labels)], verbose=0
        )
        print(f"total {time.perf_counter() - start:.1f} s for {args.epochs} epochs")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
