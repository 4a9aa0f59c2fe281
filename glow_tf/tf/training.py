"""Training a Glow through Keras `fit`, into one run folder.

`train_and_evaluate` is what `main.py` calls: it prepares the run folder
(glow_tf.runs), builds the data pipelines (glow_tf.tf.pipelines), initialises and
compiles the model, fits it with the callbacks that keep the folder current,
and evaluates the final weights on the test split.
"""

import json
import os
import shutil
import tempfile
import warnings
import zlib

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from glow_tf import phases
from glow_tf import precision as precision_lib
from glow_tf.layers.base import weight_name
from glow_tf.model import Glow
from glow_tf.runs import RunDir, load_model, state
from glow_tf.runs.files import save_weights
from glow_tf.tf import distribute, faults, optimizers, polyak
from glow_tf.tf import pipelines
from glow_tf.tf.callbacks import (
    HostWeights,
    ReportFirstStep,
    RunCheckpoint,
    StopOnDivergence,
    UseAverages,
    check_backup,
)
from glow_tf.tf.schedules import LinearWarmup
from glow_tf.tf.summaries import GlowSummaries
from glow_tf.tf.test_pass import TestPass


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite."""


def make_optimizer(config, steps_per_epoch, model=None):
    """The optimizer with its linear-warmup schedule, and loss scaling for float16.

    Adam or Adamax with a fused update on TensorFlow (glow_tf.tf.optimizers),
    keeping the Polyak average of the weights with `config.polyak`
    (glow_tf.tf.polyak).

    Weight decay needs the model, whose convolution kernels it decays.
    """
    schedule = LinearWarmup(config.lr, round(config.warmup * steps_per_epoch))
    optimizer = optimizers.OPTIMIZERS[config.optimizer](
        learning_rate=schedule, clipnorm=config.clipnorm or None,
        weight_decay=config.weight_decay or None, use_ema=config.polyak,
        ema_momentum=polyak.ema_momentum(config.polyak_epochs, steps_per_epoch),
    )
    if config.weight_decay:
        if model is None:
            raise ValueError("weight_decay needs the model: make_optimizer(..., model=model).")
        optimizer.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if not _is_kernel(v)]
        )
    return precision_lib.with_loss_scaling(optimizer, config.precision)


def describe_model(config):
    """'a Glow of L=3 levels x K=32 steps, width 512, affine coupling, 32x32x3 images'."""
    height, width, channels = config.image_shape
    return (f"a Glow of L={config.l_glow} levels x K={config.k_glow} steps, width "
            f"{config.hidden_channels}, {config.coupling} coupling, {height}x{width}x{channels} "
            "images")


def _is_kernel(variable):
    return weight_name(variable) == "kernel"


def build_and_fit(model_config, training_config, train, test, *, init_images, callbacks,
                  steps_per_epoch, verbose="auto", distribution=None):
    """Creates, initialises, compiles and fits the model; returns (model, history).

    The one place where the model meets the optimizer and `fit`: the
    distribution's scope encloses all four, the precision policy the model's
    creation, and XLA and steps_per_execution are compile arguments.

    Args:
        test: `fit`'s validation data, or None (train_and_evaluate scores
            the test split in its own callback, glow_tf.tf.test_pass).
        init_images: uint8 training images for `Glow.initialize`, or None
            when resuming (the restored weights hold the initialisation).
        callbacks: passed to `fit`.
        distribution: a `glow_tf.tf.distribute.Distribution`; None makes the
            one `training_config.strategy` names.

    Raises:
        DistributionError: the strategy cannot run here, or the batch does
            not split evenly over its replicas.
    """
    if distribution is None:
        distribution = distribute.get_distribution(training_config.strategy)
    distribution.check_global_batch(training_config.batch_size)
    train = distribution.prepare_dataset(train)
    with distribution.scope():
        phases.report(f"Building the model: {describe_model(model_config)} ...")
        with precision_lib.precision_scope(training_config.precision):
            model = Glow(model_config, remat=training_config.remat, loop=training_config.loop)
        if init_images is not None:
            phases.report(f"Initialising the ActNorm layers from {len(init_images)} training "
                          "images (one pass, not compiled) ...")
            model.initialize(init_images)
        model.compile(
            optimizer=make_optimizer(training_config, steps_per_epoch, model),
            jit_compile=True if training_config.jit else "auto",
            steps_per_execution=training_config.steps_per_execution,
        )
        distribution.prepare_model(model)
        with warnings.catch_warnings():
            if init_images is None:
                # BackupAndRestore loads the initialised weights when fit starts,
                # after Glow.fit has looked at the fresh ones.
                warnings.filterwarnings("ignore", message=r"Glow\.fit\(\) on a model whose ActNorm")
            history = model.fit(
                train, validation_data=test, epochs=training_config.epochs,
                callbacks=callbacks, verbose=verbose, shuffle=False,
            )
    return model, history


class TrainingResult:
    """What `train_and_evaluate` returns: the model, its metrics, and how the run ended.

    Unpacks as `model, metrics = train_and_evaluate(...)`.

    Attributes:
        model: the trained model; None on a worker other than the chief
            when the run was finished already.
        metrics: what metrics.json holds (a worker other than the chief:
            {"steps": its step count}, or {}).
        summary: one line saying how the run ended, which main.py prints
            last ("Test bits/dim: 3.4520 (run folder: ...)").
    """

    def __init__(self, model, metrics, summary):
        self.model = model
        self.metrics = metrics
        self.summary = summary

    def __iter__(self):
        return iter((self.model, self.metrics))


def train_and_evaluate(model_config, data_config, training_config, run_dir, *,
                       callbacks=(), verbose="auto", distribution=None):
    """Trains in `run_dir` (resuming what is there); returns a TrainingResult.

    A new folder starts a run. A folder holding an interrupted run with the
    same hyperparameters resumes it from its last backup, without repeating
    the initialisation; other hyperparameters raise RunDirMismatchError. A
    finished run is not trained again: its stored metrics are returned, unless
    more epochs are asked for, which continue it.

    Args:
        callbacks: more Keras callbacks, run after the run folder's own.
        verbose: `fit`'s verbosity ("auto": a progress bar).
        distribution: a `glow_tf.tf.distribute.Distribution` to train with
            (say, mirrored over chosen devices); None makes the one
            `training_config.strategy` names.

    With `training_config.strategy` "multi_worker", every worker of the
    cluster calls it with the same arguments; only the chief writes in
    `run_dir` (see glow_tf.tf.distribute).

    Returns:
        a TrainingResult, which unpacks as (model, metrics): the trained
        model and the metrics written to metrics.json, whose
        "test_bits_per_dim" is the final weights' test bits/dim (the test
        pass of glow_tf.tf.test_pass: dequantisation noise of seed
        `training_config.seed`, the same in every epoch). A worker other
        than the chief returns its model (None if the run was finished
        already) and {"steps": its step count}.
    """
    _check_shapes_agree(model_config, data_config)
    # Before any other TensorFlow op: MultiWorkerMirroredStrategy requires it.
    if distribution is None:
        distribution = distribute.get_distribution(training_config.strategy)
    distribution.check_global_batch(training_config.batch_size)
    config = {"model": model_config.to_dict(), "data": data_config.to_dict(),
              "training": training_config.to_dict()}
    # Only the chief (the one process, or worker 0 of several) writes in
    # run_dir. Every other worker runs the same code in a scratch folder of
    # its own, deleted at the end: the same callbacks reading the same
    # variables at the same steps, so that each takes part in every
    # collective (creating a variable under the strategy is one). They learn
    # from the chief whether the run goes on, and take its weights when fit
    # starts (RunCheckpoint's share_state), so they need not see run_dir.
    writer = distribution.is_chief
    scratch = None if writer else tempfile.mkdtemp(prefix="glow-worker-")
    run = RunDir(run_dir if writer else scratch)
    try:
        # A Ctrl-C or a failed write from here on ends with what the folder kept.
        with faults.reported(run) as progress:
            return _train(model_config, data_config, training_config, run, config,
                          distribution, progress, callbacks, verbose)
    except tf.errors.UnavailableError as error:
        if not distribution.multi_worker:
            raise
        raise _worker_lost(error, run_dir if writer else None) from None
    finally:
        run.unlock()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _check_shapes_agree(model_config, data_config):
    if model_config.image_shape != data_config.image_shape:
        raise ValueError(
            f"The model expects images of shape {model_config.image_shape} but the "
            f"data config gives {data_config.image_shape}."
        )
    if model_config.n_bits != data_config.n_bits:
        raise ValueError(
            f"n_bits differs: {model_config.n_bits} in the model config, "
            f"{data_config.n_bits} in the data config."
        )


def _worker_lost(error, run_dir):
    """The DistributionError for a collective that another worker left; run_dir: the chief's."""
    # TensorFlow's message starts "Graph execution error:"; its cause follows.
    lines = [line.strip() for line in str(error.message).splitlines() if line.strip()]
    reason = next((line for line in lines if "unhealthy" in line), lines[-1] if lines else "")
    return distribute.DistributionError(
        f"Another worker of the cluster stopped or cannot be reached ({reason}). Stop "
        "every worker, then start the same commands again: they resume from the chief's "
        + (f"backup in {run_dir}." if run_dir is not None else "backup.")
    )


def _train(model_config, data_config, training_config, run, config, distribution, progress,
           callbacks, verbose):
    """train_and_evaluate in `run` (run_dir, or a worker's scratch folder)."""
    start, metrics, train, test = _how_to_start(
        model_config, data_config, training_config, run, config, distribution, progress
    )
    if start == _FINISHED:
        progress.finished = True
        return _already_finished(run, model_config, metrics, distribution.is_chief)
    if distribution.num_replicas > 1:
        index, count = distribution.worker
        phases.report(
            f"Training with strategy {distribution.name}: {distribution.num_replicas} replicas "
            f"of {training_config.batch_size // distribution.num_replicas} images each"
            + (f"; this is worker {index} of {count}." if count > 1 else ".")
        )
    resuming = start == _RESUME
    steps_per_epoch = progress.steps_per_epoch
    init_images = None if resuming else pipelines.take_images(train, training_config.n_init)
    weights = HostWeights()  # the host copy of the weights that the callbacks share
    divergence = StopOnDivergence(weights)
    test_pass = TestPass(test, training_config.batch_size, weights, seed=training_config.seed)
    checkpoint = RunCheckpoint(
        run, training_config.epochs, training_config.backup_every, steps_per_epoch, weights,
        resume=resuming,
        share_state=distribution.share_chief_state if distribution.multi_worker else None,
    )
    all_callbacks = _callbacks_in_order(run, training_config, weights, divergence, test_pass,
                                        checkpoint, callbacks)
    model, _ = build_and_fit(
        model_config, training_config, train, None,
        init_images=init_images, callbacks=all_callbacks, steps_per_epoch=steps_per_epoch,
        verbose=verbose, distribution=distribution,
    )
    _check_converged(divergence, checkpoint, run, distribution.is_chief)
    result = _final_test(model, run, test_pass, distribution)
    progress.finished = True
    return result


def _how_to_start(model_config, data_config, training_config, run, config, distribution,
                  progress):
    """(start, metrics, train, test): how the run starts, as the chief decided.

    Everything that can refuse the run (the folder, then the data) is
    checked before anything is written, so a refused run leaves no trace.
    A finished run loads no data: its train and test are None.
    """
    writer = distribution.is_chief
    train = test = None
    try:
        run.check(config)
        metrics = run.read_metrics()
        if metrics.get("finished") and metrics.get("epochs_completed", 0) >= training_config.epochs:
            start = _FINISHED
        else:
            keras.utils.set_random_seed(training_config.seed)
            train, test = pipelines.make_datasets(
                data_config, training_config.batch_size, seed=training_config.seed,
                labels=model_config.num_classes > 0,
            )
            progress.steps_per_epoch = pipelines.num_examples(train)
            check_backup(run)  # before the folder is touched
            run.prepare(config)  # from here on this process holds the folder's lock
            start = _RESUME if run.has_backup() else _START_TRAINING
    except BaseException:
        if writer:  # the other workers wait for its word
            _tell_workers(distribution, _CHIEF_FAILED, config)
        raise
    start = _tell_workers(distribution, start, config)
    if start == _CHIEF_FAILED:
        raise distribute.DistributionError(
            "The chief (worker 0) stopped before training; its output says why."
        )
    return start, metrics, train, test


def _already_finished(run, model_config, metrics, writer):
    """The TrainingResult of a run that was finished before this call."""
    if not writer:
        return TrainingResult(None, {}, "The chief's run is finished; nothing to do.")
    return TrainingResult(
        _finished_model(run, model_config), metrics,
        f"{run.path} finished {metrics['epochs_completed']} epochs already: "
        f"test bits/dim {metrics['test_bits_per_dim']:.4f}. Nothing to do.",
    )


def _callbacks_in_order(run, training_config, weights, divergence, test_pass, checkpoint,
                        callbacks):
    """The run's callbacks, in the order `fit` must call them, then the caller's."""
    # In this order: each epoch's test pass puts val_loss in the logs that
    # the summaries, TensorBoard and the checkpoint read; the test pass and
    # the summaries see the Polyak averages, if any.
    use_averages, use_raw_weights = UseAverages.pair(weights)
    return [
        weights,
        ReportFirstStep(),
        faults.StopOnInterrupt(),
        divergence,
        use_averages,
        test_pass,
        GlowSummaries(f"{run.log_dir}/glow", test_pass, weights, seed=training_config.seed),
        use_raw_weights,
        # No graph: it would serialise the training step's tens of
        # thousands of nodes into the event file.
        keras.callbacks.TensorBoard(run.log_dir, write_graph=False),
        checkpoint,
        *callbacks,
    ]


def _check_converged(divergence, checkpoint, run, writer):
    """Raises TrainingDiverged if StopOnDivergence stopped `fit`."""
    if divergence.step is None:
        return
    if not writer:
        raise TrainingDiverged(
            f"Training diverged: {divergence.reason} at step {divergence.step} (epoch "
            f"{divergence.epoch}). The chief (worker 0) says what its run folder kept."
        )
    raise TrainingDiverged(_diverged_message(divergence, checkpoint.backup_step, run))


def _final_test(model, run, test_pass, distribution):
    """Scores the final weights, marks the run finished in metrics.json; the TrainingResult."""
    metrics = run.read_metrics()
    steps = int(ops.convert_to_numpy(model.optimizer.iterations))
    # The last epoch's test pass scored these weights already, unless no
    # epoch ran (a run resumed from the backup of its last step).
    if test_pass.step != steps:
        test_pass.run(model)
    metrics.update(test_bits_per_dim=test_pass.bits_per_dim, steps=steps, finished=True)
    run.write_metrics(metrics)
    if distribution.is_chief:
        summary = f"Test bits/dim: {test_pass.bits_per_dim:.4f} (run folder: {run.path})"
    else:
        index, count = distribution.worker
        summary = (f"Worker {index} of {count} trained {steps} steps, to test bits/dim "
                   f"{test_pass.bits_per_dim:.4f}; the chief (worker 0) holds the run in its "
                   "run folder.")
    return TrainingResult(model, metrics, summary)


# How a run starts, as the chief tells the other workers (_tell_workers).
_START_TRAINING, _RESUME, _FINISHED, _CHIEF_FAILED = range(4)


def _tell_workers(distribution, start, config):
    """The chief's `start` on every worker; one process: `start`.

    Raises DistributionError on a worker whose hyperparameters differ from
    the chief's: every worker must run the same command.
    """
    if not distribution.multi_worker:
        return start
    # Each machine may keep the data in a folder of its own.
    shared = {**config, "data": {k: v for k, v in config["data"].items() if k != "data_dir"}}
    ours = zlib.crc32(json.dumps(shared, sort_keys=True).encode())
    start, chiefs = (int(v) for v in distribution.from_chief([np.array([start, ours])])[0])
    if chiefs != ours:
        raise distribute.DistributionError(
            f"Worker {distribution.worker[0]} runs with other settings than the chief (worker 0): "
            "start every worker with the same command, only TF_CONFIG's task index differing."
        )
    return start


def _finished_model(run, model_config):
    """The finished run's newest weights; rewritten from its backup if they are gone.

    A finished run's backup holds the weights of its last epoch, which
    newest.weights.h5 holds too.
    """
    path = run.weights("newest")
    if not os.path.exists(path) and os.path.exists(run.backup()):
        model = Glow(model_config)
        state.restore(run.backup(), model)
        run.lock()
        try:
            save_weights(model, path)
        finally:
            run.unlock()
        phases.report(f"{path} was missing: written again from {run.backup()}.")
        return model
    # WeightsError for a damaged file says to delete it, which leads here again.
    return load_model(run.path).model


def _diverged_message(divergence, backup_step, run):
    """Where training diverged, what the run folder kept, and how to go on."""
    done = run.read_metrics()
    if done.get("epochs_completed"):
        kept = (
            f"{run.path} keeps the last finite weights: newest of epoch "
            f"{done['epochs_completed']}, best of epoch {done['best_epoch']}"
        )
    else:
        kept = f"{run.path} has no weights of a finished epoch yet"
    if backup_step:
        resume = f"resumes from the backup of step {backup_step}"
    else:
        resume = "starts over (there is no backup yet)"
    return (
        f"Training diverged: {divergence.reason} at step {divergence.step} (epoch "
        f"{divergence.epoch}). {kept}. The same command with a lower --lr or with "
        f"--clipnorm {resume}."
    )
