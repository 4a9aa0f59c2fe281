"""Training a Glow through Keras `fit`, into one run folder.

`train_and_evaluate` is what `main.py` calls: it prepares the run folder
(glow_tf.runs), builds the data pipelines (glow_tf.tf.pipelines), initialises and
compiles the model, fits it with the callbacks that keep the folder current,
and evaluates the final weights on the test split.
"""

import warnings

import keras
from keras import ops

from glow_tf import precision as precision_lib
from glow_tf.model import Glow
from glow_tf.runs import RunDir, load_model
from glow_tf.tf import distribute, optimizers, polyak
from glow_tf.tf import pipelines
from glow_tf.tf.callbacks import RunCheckpoint, StopOnDivergence, UseAverages
from glow_tf.tf.schedules import LinearWarmup
from glow_tf.tf.summaries import GlowSummaries
from glow_tf.tf.test_pass import TestPass

SAMPLE_TEMPERATURE = 0.7


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


def _is_kernel(variable):
    return variable.path.split("/")[-1] == "kernel"


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
    with distribution.scope():
        with precision_lib.precision_scope(training_config.precision):
            model = Glow(model_config, remat=training_config.remat)
        if init_images is not None:
            model.initialize(init_images)
        model.compile(
            optimizer=make_optimizer(training_config, steps_per_epoch, model),
            jit_compile=True if training_config.jit else "auto",
            steps_per_execution=training_config.steps_per_execution,
        )
        # The optimizer's slots made here, not inside the first traced step:
        # a tf.function whose first trace creates variables traces the step
        # a second time. On a 2-core CPU the first step of the 64-step digits
        # Glow took 167 s that way, 52 s with the slots made beforehand.
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
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


def train_and_evaluate(model_config, data_config, training_config, run_dir, *,
                       callbacks=(), verbose="auto"):
    """Trains in `run_dir` (resuming what is there); returns (model, metrics).

    A new folder starts a run. A folder holding an interrupted run with the
    same hyperparameters resumes it from its last backup, without repeating
    the initialisation; other hyperparameters raise RunDirMismatchError. A
    finished run is not trained again: its stored metrics are returned, unless
    more epochs are asked for, which continue it.

    Args:
        callbacks: more Keras callbacks, run after the run folder's own.
        verbose: `fit`'s verbosity ("auto": a progress bar).

    Returns:
        the trained model and the metrics written to metrics.json, whose
        "test_bits_per_dim" is the final weights' test bits/dim (the test
        pass of glow_tf.tf.test_pass: dequantisation noise of seed
        `training_config.seed`, the same in every epoch).
    """
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
    # Before any other TensorFlow op: MultiWorkerMirroredStrategy requires it.
    distribution = distribute.get_distribution(training_config.strategy)
    distribution.check_global_batch(training_config.batch_size)
    run = RunDir(run_dir)
    config = {
        "model": model_config.to_dict(),
        "data": data_config.to_dict(),
        "training": training_config.to_dict(),
    }
    # Everything that can refuse the run (the folder, then the data) is
    # checked before anything is written, so a refused run leaves no trace.
    run.check(config)
    metrics = run.read_metrics()
    if metrics.get("finished") and metrics.get("epochs_completed", 0) >= training_config.epochs:
        print(
            f"{run.path} finished {metrics['epochs_completed']} epochs already: "
            f"test bits/dim {metrics['test_bits_per_dim']:.4f}. Nothing to do."
        )
        return load_model(run.path).model, metrics

    keras.utils.set_random_seed(training_config.seed)
    train, test = pipelines.make_datasets(
        data_config, training_config.batch_size, seed=training_config.seed,
        labels=model_config.num_classes > 0,
    )
    steps_per_epoch = pipelines.num_examples(train)
    run.prepare(config)
    resuming = run.has_backup()
    init_images = None if resuming else pipelines.take_images(train, training_config.n_init)

    divergence = StopOnDivergence()
    test_pass = TestPass(test, training_config.batch_size, seed=training_config.seed)
    checkpoint = RunCheckpoint(
        run, training_config.epochs, training_config.backup_every, steps_per_epoch,
        resume=resuming,
    )
    # In this order: each epoch's test pass puts val_loss in the logs that
    # the summaries, TensorBoard and the checkpoint read; the test pass and
    # the summaries see the Polyak averages, if any.
    use_averages, use_raw_weights = UseAverages.pair()
    all_callbacks = [
        divergence,
        use_averages,
        test_pass,
        GlowSummaries(
            f"{run.log_dir}/glow", test_pass, temperature=SAMPLE_TEMPERATURE,
            seed=training_config.seed,
        ),
        use_raw_weights,
        # No graph: it would serialise the training step's tens of
        # thousands of nodes into the event file.
        keras.callbacks.TensorBoard(run.log_dir, write_graph=False),
        checkpoint,
        *callbacks,
    ]
    model, _ = build_and_fit(
        model_config, training_config, train, None,
        init_images=init_images, callbacks=all_callbacks, steps_per_epoch=steps_per_epoch,
        verbose=verbose, distribution=distribution,
    )

    if divergence.step is not None:
        raise TrainingDiverged(_diverged_message(divergence, checkpoint.backup_step, run))
    metrics = run.read_metrics()
    steps = int(ops.convert_to_numpy(model.optimizer.iterations))
    # The last epoch's test pass scored these weights already, unless no
    # epoch ran (a run resumed from the backup of its last step).
    if test_pass.step != steps:
        test_pass.run(model)
    metrics.update(test_bits_per_dim=test_pass.bits_per_dim, steps=steps, finished=True)
    run.write_metrics(metrics)
    print(f"Test bits/dim: {test_pass.bits_per_dim:.4f} (run folder: {run.path})")
    return model, metrics


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
