"""Scores a trained Glow: test bits/dim, and optionally an out-of-distribution report.

    glow-evaluate                                   # the newest run, on its test split
    glow-evaluate --ood_dataset digits --ood_transform invert     # offline OOD report
    glow-evaluate --run_dir checkpoints/cifar10 --ood_dataset svhn  # Nalisnick et al. 2019

Prints the test bits/dim as mean +- standard error over the test images (one
draw of dequantisation noise each, as main.py reports it). With
--ood_dataset, also scores that dataset's test split (at the model's image
size, channels and bits), writes both per-image histograms to a PNG and the
numbers to a JSON beside it, and prints the AUROC of bits/dim as an OOD
detector. Defaults live in common_definitions.py.
"""

import os

from absl import app, flags

import common_definitions as defs
from glow_tf import cli, interrupts
from glow_tf.cli import model_flags

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    model_flags.define_model_flags(flag_values)
    flags.DEFINE_integer("batch_size", defs.EVAL_BATCH_SIZE, "Images per evaluation batch.",
                         flag_values=flag_values)
    flags.DEFINE_integer("eval_seed", defs.EVAL_SEED, "Seed of the dequantisation noise.",
                         flag_values=flag_values)
    flags.DEFINE_integer("max_images", None,
                         "Score at most this many images of each test split (default all).",
                         flag_values=flag_values)
    flags.DEFINE_enum("ood_dataset", None, defs.DATASETS,
                      "Out-of-distribution dataset whose test split is compared with the "
                      "model's own (none: no OOD report).", flag_values=flag_values)
    flags.DEFINE_string("ood_data_dir", None,
                        "data_dir of the OOD dataset (its folder for --ood_dataset folder).",
                        flag_values=flag_values)
    flags.DEFINE_enum("ood_transform", "none", defs.OOD_TRANSFORMS,
                      "Transform of the OOD images: invert swaps ink and background, "
                      "vflip turns them upside down.", flag_values=flag_values)
    flags.DEFINE_string("out", None,
                        f"The OOD histogram PNG (default {defs.EVALUATION_DIR}/"
                        "ood_<dataset>_vs_<ood_dataset>.png); the JSON goes beside it.",
                        flag_values=flag_values)


def check_options(flag_values):
    for name in ("batch_size", "max_images"):
        value = flag_values[name].value
        if value is not None and value < 1:
            raise ValueError(f"--{name}={value}: expected an integer >= 1.")
    if flag_values.out is not None:
        if flag_values.ood_dataset is None:
            raise ValueError("--out names the OOD report's PNG; give --ood_dataset too.")
        if not flag_values.out.lower().endswith(".png"):
            raise ValueError(f"--out={flag_values.out!r}: expected a file name ending in .png.")
    if flag_values.ood_dataset is None and (
        flag_values.ood_transform != "none" or flag_values.ood_data_dir
    ):
        raise ValueError("--ood_transform and --ood_data_dir need --ood_dataset.")


def transform(images, name):
    """An OOD variant of uint8 images (N, H, W, C); see OOD_TRANSFORMS."""
    if name == "none":
        return images
    if name == "invert":
        return 255 - images
    if name == "vflip":
        return images[:, ::-1]
    raise ValueError(f"transform={name!r}: expected one of {', '.join(defs.OOD_TRANSFORMS)}.")


def test_batches(data_config, batch_size, with_labels, max_images=None, transform_name="none"):
    """(images, labels or None) numpy batches of a dataset's test split."""
    from glow_tf.tf import pipelines

    split = pipelines.load_split(data_config, "test", labels=with_labels)
    if max_images:
        split = split.take(max_images)
    for batch in split.batch(batch_size).as_numpy_iterator():
        images, labels = (batch["images"], batch["labels"]) if with_labels else (batch, None)
        yield transform(images, transform_name), labels


def ood_report(model, data_config, ood_config, transform_name="none", batch_size=256,
               seed=0, max_images=None, in_bpd=None):
    """(in bits/dim, OOD bits/dim, AUROC with the OOD images as positives).

    A class-conditional model scores p(x) with the labels summed out on both
    sets, since OOD images have none. `in_bpd`: the in-distribution scores of
    an unconditional model, when already computed with the same seed.
    """
    from glow_tf.analysis import scores

    marginal = model.config.num_classes > 0

    def score(config, how):
        batches = test_batches(config, batch_size, False, max_images, how)
        return scores.per_image_bits_per_dim(model, batches, seed, marginal)

    if in_bpd is None or marginal:
        in_bpd = score(data_config, "none")
    ood_bpd = score(ood_config, transform_name)
    return in_bpd, ood_bpd, scores.auroc(in_bpd, ood_bpd)


def reported_bits_per_dim(run_dir, weights):
    """(which, value): the test bits/dim main.py stored for `weights`, or None.

    Only for the run's own newest or best weights file: weights from
    elsewhere scored beside a run folder are not the weights it reported on.
    """
    from glow_tf.runs import RunDir

    if run_dir is None:
        return None
    run = RunDir(run_dir)
    keys = {"newest": "test_bits_per_dim", "best": "best_test_bits_per_dim"}
    for which, key in keys.items():
        path = run.weights(which)
        if os.path.isfile(path) and os.path.samefile(path, weights):
            value = run.read_metrics().get(key)
            return None if value is None else (which, value)
    return None


def ood_name(config, transform_name):
    return config.dataset + ("" if transform_name == "none" else f"_{transform_name}")


def main(argv, flag_values=FLAGS):
    program = cli.program(argv)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from glow_tf.datasets import DatasetError

    cli.show_phases()
    written = []  # the files of the OOD report, each written whole or not at all
    try:
        check_options(flag_values)
        model_flags.prepare_runtime(flag_values)  # before Keras starts
        model, data_config, run_dir, weights = model_flags.load_model(flag_values)
        ood_config = checked_ood_config(flag_values, data_config)
        # Read before any output, so that a damaged metrics.json fails first.
        reported = reported_bits_per_dim(run_dir, weights)
        bpd = score_test_split(model, data_config, flag_values)
        print_test_bits_per_dim(bpd, data_config, reported, run_dir)
        if ood_config is None:
            interrupts.finish()
            return
        in_bpd, ood_bpd, area = ood_report(
            model, data_config, ood_config, flag_values.ood_transform, flag_values.batch_size,
            flag_values.eval_seed, flag_values.max_images, in_bpd=bpd,
        )
        ood = ood_name(ood_config, flag_values.ood_transform)
        out = flag_values.out or os.path.join(
            defs.EVALUATION_DIR, f"ood_{data_config.dataset}_vs_{ood}.png"
        )
        write_ood_report(out, (data_config.dataset, in_bpd), (ood, ood_bpd), area, written)
        interrupts.finish()
    except BaseException as error:
        cli.stop(program, error, (ValueError, DatasetError, OSError), cli.written([], written))
    print_ood_report(ood, ood_bpd, area, out)


def checked_ood_config(flag_values, data_config):
    """The DataConfig of --ood_dataset at the model's image size, or None; its split loads."""
    from glow_tf.datasets import DataConfig
    from glow_tf.tf.pipelines import load_split

    if not flag_values.ood_dataset:
        return None
    ood_config = DataConfig(
        dataset=flag_values.ood_dataset, img_size=data_config.img_size,
        channel_size=data_config.channel_size, n_bits=data_config.n_bits,
        data_dir=flag_values.ood_data_dir,
    )
    load_split(ood_config, "test")  # a bad OOD dataset fails now, before any output
    return ood_config


def score_test_split(model, data_config, flag_values):
    """The bits/dim of each test image, one draw of noise of seed --eval_seed each."""
    from glow_tf.analysis import scores

    conditional = model.config.num_classes > 0
    return scores.per_image_bits_per_dim(
        model,
        test_batches(data_config, flag_values.batch_size, conditional, flag_values.max_images),
        flag_values.eval_seed,
    )


def print_test_bits_per_dim(bpd, data_config, reported, run_dir):
    """The test bits/dim as mean +- standard error, and what main.py reported, if it did."""
    from glow_tf.analysis import scores

    mean, error = scores.mean_and_standard_error(bpd)
    print(f"Test bits/dim on {data_config.dataset} ({bpd.size} images): "
          f"{mean:.4f} +- {error:.4f} (standard error)")
    if reported is not None:
        which, value = reported
        print(f"main.py reported {value:.4f} for these weights (the {which} of {run_dir}).")


def print_ood_report(ood, ood_bpd, area, out):
    """The OOD images' bits/dim, the AUROC, and the PNG's path."""
    from glow_tf.analysis import scores

    mean, error = scores.mean_and_standard_error(ood_bpd)
    print(f"OOD ({ood}): {mean:.4f} +- {error:.4f} bits/dim; "
          f"AUROC of bits/dim as OOD score: {area:.4f} (1: separates, 0.5: chance, "
          "< 0.5: the model prefers the OOD images)")
    print(out)


def write_ood_report(out, ins, oods, area, written):
    """The histograms PNG `out` and the JSON of its numbers beside it, each added to `written`.

    `ins`, `oods`: (name, bits/dim of each image) of the test split and of the OOD images.
    """
    from glow_tf.analysis import plots, scores
    from glow_tf.analysis.images import write_png
    from glow_tf.runs.files import write_json

    (in_name, in_bpd), (ood, ood_bpd) = ins, oods
    picture = plots.histograms(
        {f"{in_name} (in)": in_bpd, f"{ood} (OOD)": ood_bpd},
        title=f"bits/dim per test image; AUROC {area:.3f}",
    )
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    write_png(out, picture)
    written.append(out)

    def summary(values):
        mean, error = scores.mean_and_standard_error(values)
        return {"mean": mean, "standard_error": error, "n": int(values.size)}

    numbers = os.path.splitext(out)[0] + ".json"
    write_json(numbers, {
        "in_dataset": in_name, "ood_dataset": ood, "auroc": area,
        "in_bits_per_dim": summary(in_bpd), "ood_bits_per_dim": summary(ood_bpd),
    })
    written.append(numbers)


def run():
    """The glow-evaluate console script."""
    cli.run_main(define_flags, main)
