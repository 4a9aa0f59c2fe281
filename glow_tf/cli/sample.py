"""Pictures from a trained Glow: a PNG grid, whose path is printed.

    glow-sample --temp 0.7                        # samples from the newest run's weights
    glow-sample --mode temperatures               # one row per temperature, 0 to 1
    glow-sample --mode interpolate                # between test images, in latent space
    glow-sample --mode reconstruct                # test images beside decode(encode(x))
    glow-sample --label 3                         # class 3 of a main.py --y_condition run
    glow-sample --mode manipulate --attribute digit_0 --scales -1,-0.5,0,0.5,1

The weights come from --run_dir (default: the run under checkpoints/ whose
weights were written last) or --weights; the architecture from the
config.json beside them. Defaults live in common_definitions.py.
"""

import math
import os

import numpy as np
from absl import app, flags

import common_definitions as defs
from glow_tf import cli
from glow_tf.cli import model_flags

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    model_flags.define_model_flags(flag_values)
    flags.DEFINE_enum(
        "mode", defs.SAMPLE_MODES[0], defs.SAMPLE_MODES,
        "samples: a grid of samples at --temp; temperatures: one row per temperature "
        "from 0 to 1; interpolate: between pairs of test images through every level's "
        "latent; reconstruct: test images beside decode(encode(x)); manipulate: test "
        "images (rows) moved along an attribute's latent direction (columns: --scales).",
        flag_values=flag_values,
    )
    flags.DEFINE_float("temp", defs.SAMPLE_TEMPERATURE,
                       "Sampling temperature (>= 0; 0 decodes the priors' means).",
                       flag_values=flag_values)
    flags.DEFINE_integer(
        "n", None,
        "Images (>= 1): samples in the grid; per temperature row; interpolation paths; "
        "reconstructed test images. Default per mode: "
        + ", ".join(f"{mode} {n}" for mode, n in defs.SAMPLE_N.items()) + ".",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("seed", defs.SAMPLE_SEED, "Seed of the sampling noise.",
                         flag_values=flag_values)
    flags.DEFINE_integer("label", None,
                         "Class to sample from a class-conditional model (default: every "
                         "class in turn).", flag_values=flag_values)
    flags.DEFINE_string("out", None,
                        f"The PNG to write (default {defs.SAMPLES_DIR}/<mode>.png).",
                        flag_values=flag_values)
    flags.DEFINE_string(
        "attribute", None,
        "With --mode manipulate: the attribute, e.g. digit_3 (digits: each class against the "
        "rest), Smiling (celeba's 40 attributes), a column of the folder's CSV, or else one "
        "of the folder's class folders (cat).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "scales", defs.MANIPULATION_SCALES,
        "With --mode manipulate: comma-separated multiples of the attribute's direction, one "
        "column each; 0 reconstructs the image.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "attributes_csv", None,
        f"With --mode manipulate and a folder dataset: the attribute CSV (default "
        f"<data_dir>/{defs.ATTRIBUTES_CSV} where it exists; else the folder's classes): a "
        "header row, then per image its path relative to "
        "the CSV's folder and 0/1 per attribute.",
        flag_values=flag_values,
    )


def check_options(flag_values):
    """The sampling options' own errors, before anything is loaded."""
    if not flag_values.temp >= 0:  # also rejects NaN
        raise ValueError(f"--temp={flag_values.temp}: expected a temperature >= 0.")
    if flag_values.n is not None and flag_values.n < 1:
        raise ValueError(f"--n={flag_values.n}: expected a number of images >= 1.")
    out = output_path(flag_values)
    if not out.lower().endswith(".png"):
        raise ValueError(f"--out={out!r}: expected a file name ending in .png.")
    if os.path.isdir(out):
        raise ValueError(f"--out={out!r} is a folder; expected the path of a .png file.")
    if flag_values.mode == "manipulate":
        if not flag_values.attribute:
            raise ValueError("--mode manipulate needs --attribute NAME (e.g. digit_3, Smiling).")
        parse_scales(flag_values.scales)
    elif flag_values.attribute:
        raise ValueError(f"--attribute needs --mode manipulate (not {flag_values.mode}).")


def parse_scales(text):
    """'-1,-0.5,0' -> [-1.0, -0.5, 0.0]; ValueError naming the bad value."""
    try:
        scales = [float(part) for part in text.split(",")]
    except ValueError:
        scales = []
    if not scales or not all(math.isfinite(s) for s in scales):
        raise ValueError(
            f"--scales={text!r}: expected comma-separated finite numbers, e.g. "
            f"{defs.MANIPULATION_SCALES}."
        )
    return scales


def output_path(flag_values):
    return flag_values.out or os.path.join(defs.SAMPLES_DIR, f"{flag_values.mode}.png")


def picture(model, data_config, mode, n, temperature=defs.SAMPLE_TEMPERATURE, seed=0,
            label=None):
    """The uint8 grid (H', W', C) that `mode` shows; see the module docstring."""
    from keras import ops

    from glow_tf.analysis import pictures

    conditional = model.config.num_classes > 0
    if label is not None and not conditional:
        raise ValueError(
            f"--label={label}: this model is unconditional; --label needs a model "
            "trained with --y_condition."
        )
    if mode == "samples":
        x = model.sample(n, temperature=temperature, seed=seed, labels=label)
        cells, columns = ops.convert_to_numpy(x), math.ceil(math.sqrt(n))
    elif mode == "temperatures":
        rows = pictures.temperature_rows(model, n, seed=seed, labels=label)
        cells, columns = rows.reshape(-1, *rows.shape[2:]), n
    else:
        images, labels = _test_images(data_config, 2 * n if mode == "interpolate" else n,
                                      conditional)
        if mode == "interpolate":
            if len(images) < 2:
                raise ValueError("interpolate needs at least 2 test images.")
            half = len(images) // 2
            a, b = (None, None) if labels is None else (labels[:half], labels[half:2 * half])
            paths, _ = pictures.interpolate(
                model, images[:half], images[half:2 * half], defs.INTERPOLATION_STEPS, a, b
            )
            cells, columns = paths.reshape(-1, *paths.shape[2:]), defs.INTERPOLATION_STEPS
        else:
            x, reconstructed = pictures.reconstruct(model, images, labels)
            # Each test image, then its reconstruction, pairs in a near-square grid.
            cells = np.stack([x, reconstructed], axis=1).reshape(-1, *x.shape[1:])
            columns = 2 * math.ceil(math.sqrt(len(x)))
    return _grid(model, cells, columns)


def _grid(model, cells, columns):
    """Floats in [-0.5, 0.5] -> a uint8 grid, small images enlarged."""
    from keras import ops

    from glow_tf import quantization
    from glow_tf.analysis.images import grid

    pixels = ops.convert_to_numpy(quantization.to_uint8(cells, model.config.n_bits))
    zoom = max(1, defs.SAMPLE_CELL_PIXELS // model.config.image_shape[0])
    pixels = pixels.repeat(zoom, axis=1).repeat(zoom, axis=2)
    return grid(pixels, columns, padding=zoom)


def manipulation_picture(trained, attribute, scales, n, attributes_csv=None):
    """n test images (rows) moved along `attribute`'s direction by each scale (columns)."""
    from glow_tf.analysis import manipulation
    from glow_tf.tf import attributes as attributes_lib

    model, data = trained.model, trained.data
    if model.config.num_classes:
        raise ValueError(
            "--mode manipulate works on unconditional models; this one is class-conditional."
        )
    csv_path = attributes_csv
    if csv_path is None and data.dataset == "folder":
        # Without its CSV, a folder's attributes are its classes.
        default = os.path.join(data.data_dir, defs.ATTRIBUTES_CSV)
        csv_path = default if os.path.isfile(default) else None
    direction = attribute_direction(trained, attribute, csv_path)
    images, _, _ = attributes_lib.load_attributes(data, "test", csv_path, max_images=n,
                                                  spread=True)
    moved = manipulation.manipulate(model, images, direction, scales)
    return _grid(model, moved.reshape(-1, *moved.shape[2:]), len(scales))


def attribute_direction(trained, attribute, csv_path=None):
    """`attribute`'s direction, read from the run folder or computed (and stored there).

    Directions of every attribute of the dataset are computed together, from
    up to ATTRIBUTE_IMAGES training images, and kept in the run folder for
    these weights (glow_tf.runs.directions); a lone weights file computes them
    each time.
    """
    from glow_tf.analysis import manipulation
    from glow_tf.runs import directions as store
    from glow_tf.tf import attributes as attributes_lib

    key = store.file_digest(trained.weights)
    if csv_path:
        key += ":" + store.file_digest(csv_path)  # a changed CSV makes them stale too
    path = store.directions_file(trained.run_dir, trained.data.dataset) if trained.run_dir else None
    directions = store.read_directions(path, key) if path else None
    if directions is None:
        images, values, names = attributes_lib.load_attributes(
            trained.data, "train", csv_path, max_images=defs.ATTRIBUTE_IMAGES, spread=True
        )
        # Attributes that all or none of these images have give no direction.
        usable = [i for i in range(len(names)) if 0 < values[:, i].sum() < len(values)]
        directions = manipulation.attribute_directions(
            trained.model, images, values[:, usable], [names[i] for i in usable]
        )
        if path:
            store.write_directions(path, directions, key)
    if attribute not in directions:
        raise ValueError(
            f"--attribute={attribute!r}: expected one of {', '.join(directions)} (the "
            f"attributes of {trained.data.dataset} with images that have them and images "
            "that do not)."
        )
    return directions[attribute]


def _test_images(data_config, n, with_labels):
    """The first n test images (and labels for a conditional model)."""
    from glow_tf.tf import pipelines

    return pipelines.take_examples(pipelines.load_split(data_config, "test", labels=with_labels), n)


def main(argv, flag_values=FLAGS):
    program = cli.program(argv)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from glow_tf.analysis.images import write_png
    from glow_tf.datasets import DatasetError

    cli.show_phases()
    try:
        check_options(flag_values)
        model_flags.prepare_runtime(flag_values)  # before Keras starts
        trained = model_flags.load_model(flag_values)
        n = flag_values.n or defs.SAMPLE_N[flag_values.mode]
        if flag_values.mode == "manipulate":
            image = manipulation_picture(trained, flag_values.attribute,
                                         parse_scales(flag_values.scales), n,
                                         flag_values.attributes_csv)
        else:
            image = picture(trained.model, trained.data, flag_values.mode, n, flag_values.temp,
                            flag_values.seed, flag_values.label)
        out = output_path(flag_values)
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        write_png(out, image)
    except (ValueError, DatasetError, OSError) as error:
        cli.fail(program, error)
    print(out)


def run():
    """The glow-sample console script."""
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
