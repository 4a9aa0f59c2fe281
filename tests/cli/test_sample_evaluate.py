"""sample.py's pictures, evaluate.py's numbers, weights files and conditional Glow in the CLIs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

import common_definitions as defs  # noqa: E402
from glow_tf import DataConfig, Glow, GlowConfig, quantization  # noqa: E402
from glow_tf.analysis import pictures as sampling  # noqa: E402
from glow_tf.analysis import scores as evaluation  # noqa: E402
from glow_tf.cli import evaluate, sample  # noqa: E402
from glow_tf.cli.settings import configs_for  # noqa: E402
from glow_tf.datasets import DatasetError, num_classes  # noqa: E402
from glow_tf.runs import load_model, newest_run  # noqa: E402
from glow_tf.tf import pipelines as data  # noqa: E402
from tests.bijector_checks import randomize_weights, to_numpy  # noqa: E402
from tests.commands import run_cli  # noqa: E402
from tests.tiny_runs import make_run  # noqa: E402

DIGITS = DataConfig("digits")


def read_png(path):
    return np.asarray(Image.open(path))


# ---- sample.py: each mode writes its picture ----

# The 8x8 digits are enlarged 4x (SAMPLE_CELL_PIXELS = 32), with 4 pixels between cells.
CELL, GAP = 32, 4


def grid_size(rows, columns):
    return rows * (CELL + GAP) - GAP, columns * (CELL + GAP) - GAP


@pytest.mark.parametrize("mode, n, rows, columns", [
    ("samples", 10, 3, 4),
    ("temperatures", 5, len(sampling.TEMPERATURES), 5),
    ("interpolate", 3, 3, defs.INTERPOLATION_STEPS),
    ("reconstruct", 4, 2, 4),  # 4 pairs: 2 rows of 2 pairs
])
def test_each_mode_writes_its_grid(tiny_run, tmp_path, monkeypatch, capsys, mode, n, rows, columns):
    out = tmp_path / "pictures" / f"{mode}.png"
    run_cli(sample, "--run_dir", str(tiny_run[0]), "--mode", mode, "--n", str(n),
            "--out", str(out))
    # The path is the last line: the lines before say what was compiled.
    assert capsys.readouterr().out.splitlines()[-1] == str(out)
    picture = read_png(out)
    assert picture.shape == grid_size(rows, columns) and picture.dtype == np.uint8
    assert picture.std() > 0
    assert [p.name for p in out.parent.iterdir()] == [out.name], "a temp file was left"


def test_default_run_is_the_newest_and_default_out_is_in_samples(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    older = tmp_path / "checkpoints" / "older"
    older.mkdir(parents=True)
    for name in ("config.json", "newest.weights.h5"):
        (older / name).write_bytes((tiny_run[0] / name).read_bytes())
    (tmp_path / "checkpoints" / "no-weights").mkdir()
    (tmp_path / "checkpoints" / "no-weights" / "config.json").write_text("{}")
    newer = tmp_path / "checkpoints" / "newer"
    newer.mkdir()
    for name in ("config.json", "newest.weights.h5"):
        (newer / name).write_bytes((tiny_run[0] / name).read_bytes())
    assert newest_run("checkpoints") == "checkpoints/newer"
    import os
    os.utime(older / "newest.weights.h5")  # written last now
    assert newest_run("checkpoints") == "checkpoints/older"
    run_cli(sample, "--temp", "0.7")
    assert capsys.readouterr().out.splitlines()[-1] == "samples/samples.png"
    assert read_png(tmp_path / "samples" / "samples.png").shape == grid_size(8, 8)


def test_temperature_zero_rows_are_identical_across_seeds(tiny_run):
    _, model = tiny_run
    rows = [sampling.temperature_rows(model, 3, temperatures=(0.0, 0.7), seed=seed) for seed in (0, 1)]
    np.testing.assert_array_equal(rows[0][0], rows[1][0])
    # Every sample of a T = 0 row is the same image: the priors' means.
    np.testing.assert_array_equal(rows[0][0][0], rows[0][0][2])
    assert np.abs(rows[0][1] - rows[1][1]).max() > 0.01, "the T = 0.7 rows should differ"


def test_interpolation_ends_are_the_encoded_images(tiny_run):
    _, model = tiny_run
    images = data.take_images(data.load_split(DIGITS, "test"), 4)
    x, latents = sampling.interpolate(model, images[:2], images[2:], steps=5)
    assert x.shape == (2, 5, 8, 8, 1) and len(latents) == 5
    for end, ends in ((0, images[:2]), (-1, images[2:])):
        zs, _ = model.encode(sampling.bin_centres(ends, 4))
        assert len(latents[end]) == len(zs) == 2
        for z_path, z in zip(latents[end], zs):
            np.testing.assert_array_equal(z_path, to_numpy(z))
        # Decoded and rounded, each end is its image again.
        np.testing.assert_array_equal(
            to_numpy(quantization.to_uint8(x[:, end], 4)),
            to_numpy(quantization.to_uint8(quantization.quantize(ends, 4) + 1 / 32, 4)),
        )
    assert np.abs(x[:, 2] - x[:, 0]).max() > 0.05, "the middle should differ from the ends"


def test_reconstructions_match_their_images(tiny_run):
    _, model = tiny_run
    images = data.take_images(data.load_split(DIGITS, "test"), 6)
    x, reconstructed = sampling.reconstruct(model, images)
    np.testing.assert_allclose(reconstructed, x, atol=1e-4)


def manipulation_run(tiny_run, tmp_path):
    """A copy of the tiny run, so that its stored directions are this test's own."""
    import shutil

    return shutil.copytree(tiny_run[0], tmp_path / "run")


def test_manipulate_writes_rows_of_test_images_moved_along_the_attribute(tiny_run, tmp_path):
    run = manipulation_run(tiny_run, tmp_path)
    out = tmp_path / "manipulate.png"
    run_cli(sample, "--run_dir", str(run), "--mode", "manipulate", "--attribute", "digit_0",
            "--scales=-1,0,0.5,1", "--n", "3", "--out", str(out))
    picture = read_png(out)
    assert picture.shape == grid_size(3, 4)
    # Column 1 is scale 0: each test image itself, enlarged 4x. The rows are
    # spread over the test split: images 0, 120 and 240 of its 360.
    images = data.take_images(data.load_split(DIGITS, "test"), 360)[::120]
    levels = to_numpy(quantization.to_uint8(quantization.quantize(images, 4) + 1 / 32, 4))
    for row in range(3):
        top, left = row * (CELL + GAP), CELL + GAP
        cell = picture[top:top + CELL, left:left + CELL]
        np.testing.assert_array_equal(cell, levels[row, :, :, 0].repeat(4, 0).repeat(4, 1))
    assert (run / "directions" / "digits.npz").is_file()


@pytest.mark.slow
def test_directions_are_computed_once_per_weights_file(tiny_run, tmp_path, monkeypatch):
    from glow_tf.analysis import manipulation
    from glow_tf.runs.files import save_weights

    run = manipulation_run(tiny_run, tmp_path)
    calls = []
    compute = manipulation.attribute_directions
    monkeypatch.setattr(manipulation, "attribute_directions",
                        lambda *a, **k: calls.append(1) or compute(*a, **k))
    args = ["--run_dir", str(run), "--mode", "manipulate", "--n", "1", "--out",
            str(tmp_path / "m.png")]
    run_cli(sample, *args, "--attribute", "digit_0")
    run_cli(sample, *args, "--attribute", "digit_7")
    assert calls == [1], "the second attribute should come from the stored directions"
    # New weights make the stored directions stale.
    model = load_model(run).model
    model.trainable_variables[0].assign(model.trainable_variables[0] + 0.01)
    save_weights(model, run / "newest.weights.h5")
    run_cli(sample, *args, "--attribute", "digit_7")
    assert calls == [1, 1]


@pytest.mark.parametrize("args, message", [
    (["--mode", "manipulate"], "--mode manipulate needs --attribute NAME"),
    (["--attribute", "digit_0"], "--attribute needs --mode manipulate"),
    (["--mode", "manipulate", "--attribute", "digit_0", "--scales", "1,x"],
     "--scales='1,x': expected comma-separated finite numbers"),
    (["--mode", "manipulate", "--attribute", "Smiling"],
     "--attribute='Smiling': expected one of digit_0, digit_1"),
])
def test_bad_manipulation_options_are_named(tiny_run, tmp_path, capsys, args, message):
    run = manipulation_run(tiny_run, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(sample, "--run_dir", str(run), "--out", str(tmp_path / "m.png"), *args)
    assert exit_info.value.code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()


# ---- weights files ----


def test_weights_of_the_list_layout_are_refused_until_converted(tmp_path, capsys):
    from glow_tf.cli import convert as convert_cli
    from glow_tf.runs import WeightsError, convert

    config = GlowConfig(image_shape=(8, 8, 1), k_glow=2, l_glow=2, hidden_channels=8, n_bits=4, seed=0)
    trained = Glow(config)
    randomize_weights(trained)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": config.to_dict()}))
    path = run / "newest.weights.h5"
    convert._ListLayout(convert._Steps(trained)).save_weights(str(path))  # as glow_tf 0.2 wrote it
    assert convert.is_list_layout(path)
    with pytest.raises(WeightsError, match=r"layout of glow_tf 0\.2.*python -m glow_tf\.cli\.convert"):
        load_model(str(run))
    convert_cli.main(["convert.py", str(run)])
    assert capsys.readouterr().out.split() == [str(path)]
    x = quantization.dequantize(np.full((2, 8, 8, 1), 128, np.uint8), 4, seed=0)
    loaded = load_model(str(run)).model
    np.testing.assert_array_equal(to_numpy(loaded.log_prob(x)), to_numpy(trained.log_prob(x)))
    convert_cli.main(["convert.py", str(path)])  # the current layout: left as it is
    assert capsys.readouterr().out == ""


# A run folder whose weights the code before each level's steps were stacked wrote (one
# layer per step of flow), and the log-densities, in nats, that it gave the images of
# `per_step_images()`.
PER_STEP_RUN = Path(__file__).parent / "per_step_run"
PER_STEP_LOG_PROB = [-81.49138641357422, -95.6400146484375, -98.4217529296875]


def per_step_images():
    levels = np.random.default_rng(1).integers(0, 16, (3, 8, 8, 1))
    return (levels / 16.0 - 0.5 + 1 / 32).astype(np.float32)


def test_weights_of_the_per_step_layout_load_as_they_are_and_convert(tmp_path, capsys):
    from glow_tf.cli import convert as convert_cli
    from glow_tf.runs import convert

    run = tmp_path / "run"
    shutil.copytree(PER_STEP_RUN, run)
    path = run / "newest.weights.h5"
    assert convert.layout_of(path) == "per-step"
    loaded = load_model(str(run)).model
    np.testing.assert_allclose(to_numpy(loaded.log_prob(per_step_images())), PER_STEP_LOG_PROB,
                               rtol=1e-5)
    convert_cli.main(["convert.py", str(run)])
    assert capsys.readouterr().out.split() == [str(path)]
    assert convert.layout_of(path) == "stacked"
    again = load_model(str(run)).model
    np.testing.assert_allclose(to_numpy(again.log_prob(per_step_images())), PER_STEP_LOG_PROB,
                               rtol=1e-5)


def test_sample_py_reads_a_lone_weights_file_with_the_architecture_from_flags(tmp_path, capsys):
    model = Glow(GlowConfig(image_shape=(8, 8, 1), k_glow=2, l_glow=2, hidden_channels=8, n_bits=4, seed=0))
    model.save_weights(str(tmp_path / "lone.weights.h5"))
    out = tmp_path / "t.png"
    run_cli(sample, "--weights", str(tmp_path / "lone.weights.h5"), "--k_glow", "2",
            "--l_glow", "2", "--hidden_channels", "8", "--mode", "temperatures", "--n", "2",
            "--out", str(out))
    assert read_png(out).shape == grid_size(len(sampling.TEMPERATURES), 2)


# ---- class-conditional Glow from the command line ----


def test_y_condition_flag_makes_a_conditional_model_of_the_datasets_classes():
    model_config, _, _ = configs_for("digits", y_condition=True, weight_y=0.5)
    assert model_config.num_classes == 10 and model_config.weight_y == 0.5
    assert configs_for("digits")[0].num_classes == 0
    with pytest.raises(DatasetError, match="dataset='celeba' has no class labels"):
        configs_for("celeba", y_condition=True)


def test_datasets_yield_labels_when_asked(tmp_path):
    images, labels = data.take_examples(data.load_split(DIGITS, "test", labels=True), 5)
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(labels, load_digits().target[1437:1442])
    assert images.shape == (5, 8, 8, 1)
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(6):
            Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    folder = DataConfig("folder", img_size=4, channel_size=1, n_bits=8, data_dir=str(tmp_path))
    assert num_classes(folder) == 2
    _, train_labels = data.take_examples(data.load_split(folder, "train", labels=True), 20)
    _, test_labels = data.take_examples(data.load_split(folder, "test", labels=True), 20)
    # Sorted paths: cat/0..5 then dog/0..5; the 10th file (dog/3) tests.
    assert list(test_labels) == [1] and list(train_labels) == [0] * 6 + [1] * 5
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match="loose.png is not in a class subfolder"):
        num_classes(folder)


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoints") / "conditional"
    return path, make_run(path, y_condition=True, weight_y=1.0)


@pytest.mark.slow
def test_conditional_log_prob_depends_on_the_label(conditional_run):
    _, model = conditional_run
    images, labels = data.take_examples(data.load_split(DIGITS, "test", labels=True), 64)
    x = quantization.dequantize(images, 4, seed=0)
    per_class = np.stack([to_numpy(model.log_prob(x, np.full(64, c))) for c in range(10)])
    assert np.ptp(per_class, axis=0).min() > 0, "every image's log p(x|y) should vary with y"
    # One epoch of training already prefers each image's own label on average.
    own = per_class[labels, np.arange(64)]
    assert own.mean() > per_class.mean()


@pytest.mark.slow
def test_sample_label_draws_one_class(conditional_run, tmp_path, monkeypatch):
    _, model = conditional_run
    three = to_numpy(model.sample(2, temperature=0.0, labels=3))
    five = to_numpy(model.sample(2, temperature=0.0, labels=5))
    assert np.abs(three - five).max() > 0
    out = tmp_path / "three.png"
    run_cli(sample, "--run_dir", str(conditional_run[0]), "--label", "3",
            "--temp", "0", "--n", "4", "--out", str(out))
    grid = read_png(out)
    expected = to_numpy(quantization.to_uint8(three[:1], 4))[0, :, :, 0].repeat(4, 0).repeat(4, 1)
    np.testing.assert_array_equal(grid[:32, :32], expected)
    for mode in ("interpolate", "reconstruct"):  # test labels come with the test images
        run_cli(sample, "--run_dir", str(conditional_run[0]), "--mode", mode,
                "--n", "2", "--out", str(tmp_path / f"{mode}.png"))
        assert (tmp_path / f"{mode}.png").exists()


# ---- evaluation ----


def test_evaluation_bits_per_dim_is_the_models_mean(tiny_run, monkeypatch, capsys):
    path, model = tiny_run
    images = data.take_images(data.load_split(DIGITS, "test"), 360)
    import keras

    generator = keras.random.SeedGenerator(7)
    expected = np.concatenate([
        to_numpy(model.bits_per_dim(images[i:i + 100], seed=generator)) for i in range(0, 360, 100)
    ])
    batches = evaluate.test_batches(DIGITS, 100, False)
    scores = evaluation.per_image_bits_per_dim(model, batches, seed=7)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    mean, error = evaluation.mean_and_standard_error(scores)
    assert mean == pytest.approx(expected.mean()) and error == pytest.approx(expected.std(ddof=1) / np.sqrt(360))
    run_cli(evaluate, "--run_dir", str(path), "--batch_size", "100", "--eval_seed", "7")
    assert f"Test bits/dim on digits (360 images): {mean:.4f} +- {error:.4f}" in capsys.readouterr().out


def test_a_runs_reported_figure_is_printed_for_its_own_weights_only(tiny_run, tmp_path, capsys):
    import json
    import shutil

    run_a, run_b = tmp_path / "a", tmp_path / "b"
    for run, value in ((run_a, 1.5), (run_b, 2.5)):
        shutil.copytree(tiny_run[0], run)
        (run / "metrics.json").write_text(json.dumps(
            {"test_bits_per_dim": value, "best_test_bits_per_dim": value - 0.25}))
    args = ["--batch_size", "360", "--max_images", "8"]
    run_cli(evaluate, "--run_dir", str(run_a), *args)
    assert f"main.py reported 1.5000 for these weights (the newest of {run_a})" in capsys.readouterr().out
    shutil.copy(run_a / "newest.weights.h5", run_a / "best.weights.h5")
    run_cli(evaluate, "--run_dir", str(run_a), "--which", "best", *args)
    assert f"main.py reported 1.2500 for these weights (the best of {run_a})" in capsys.readouterr().out
    # Run b's weights scored beside run a: neither run reported on them here.
    run_cli(evaluate, "--run_dir", str(run_a), "--weights", str(run_b / "newest.weights.h5"), *args)
    out = capsys.readouterr().out
    assert "Test bits/dim on digits (8 images)" in out and "main.py reported" not in out


def test_auroc_from_ranks():
    assert evaluation.auroc([1, 2, 3], [4, 5]) == 1.0
    assert evaluation.auroc([4, 5], [1, 2, 3]) == 0.0
    assert evaluation.auroc([1, 1], [1, 1]) == 0.5
    # P(positive > negative) + half the ties: pairs (p, n) over {0, 2} x {1, 2}.
    assert evaluation.auroc([1, 2], [0, 2]) == pytest.approx((0 + 0 + 1 + 0.5) / 4)
    rng = np.random.default_rng(0)
    negatives, positives = rng.normal(size=300), rng.normal(0.5, size=200)
    brute = np.mean((positives[:, None] > negatives[None]) + 0.5 * (positives[:, None] == negatives[None]))
    assert evaluation.auroc(negatives, positives) == pytest.approx(brute)
    with pytest.raises(ValueError, match="both sets"):
        evaluation.auroc([], [1.0])


def test_ood_report_on_two_small_datasets(tiny_run, tmp_path, monkeypatch, capsys):
    path, model = tiny_run
    out = tmp_path / "ood.png"
    # Inverted digits (white background) are clearly different: bits/dim tells them apart.
    run_cli(evaluate, "--run_dir", str(path), "--ood_dataset", "digits",
            "--ood_transform", "invert", "--out", str(out))
    printed = capsys.readouterr().out
    assert printed.strip().endswith(str(out))
    report = json.loads((tmp_path / "ood.json").read_text())
    assert report["ood_dataset"] == "digits_invert" and report["in_bits_per_dim"]["n"] == 360
    assert report["auroc"] > 0.9
    assert f"AUROC of bits/dim as OOD score: {report['auroc']:.4f}" in printed
    picture = read_png(out)
    assert picture.ndim == 3 and picture.shape[-1] == 3 and picture.std() > 0
    # The same images on both sides: no separation.
    in_bpd, ood_bpd, area = evaluate.ood_report(model, DIGITS, DIGITS, "none", seed=3)
    np.testing.assert_array_equal(in_bpd, ood_bpd)
    assert area == 0.5
    # Upside-down digits: same pixel values, other shapes; an AUROC in [0, 1].
    _, _, area = evaluate.ood_report(model, DIGITS, DIGITS, "vflip", max_images=100)
    assert 0.0 <= area <= 1.0


def test_ood_report_of_a_conditional_model_sums_out_the_label(conditional_run):
    _, model = conditional_run
    images = data.take_images(data.load_split(DIGITS, "test"), 8)
    import keras

    # The same noise under every label: one int seed drawn from the generator.
    got = evaluation._marginal_bits_per_dim(model, images, 10, keras.random.SeedGenerator(0))
    seed = int(to_numpy(keras.random.randint((), 0, 2**31 - 1, seed=keras.random.SeedGenerator(0))))
    per_class = np.stack([
        to_numpy(model.bits_per_dim(images, np.full(8, c, np.int32), seed=seed)) for c in range(10)
    ]).astype(np.float64)
    expected = -np.log2(np.mean(np.exp2(-64 * (per_class - per_class.min(0))), axis=0)) / 64 + per_class.min(0)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert np.all(got >= per_class.min(0) - 1e-12) and np.all(got <= per_class.max(0) + 1e-12)


@pytest.mark.slow
def test_main_trains_a_conditional_model_on_labelled_batches(tmp_path):
    from glow_tf.tf import training
    from tests.tiny_runs import TINY

    configs = configs_for("digits", **TINY, y_condition=True)
    model, metrics = training.train_and_evaluate(*configs, tmp_path, verbose=0)
    assert model.config.num_classes == 10 and metrics["finished"]
    # The loss adds weight_y * cross-entropy (bits) to the bits/dim: at most
    # 0.01 * log2(10) = 0.033 over the model's own test bits/dim of p(x | y).
    batches = evaluate.test_batches(DIGITS, 360, True)
    bpd = evaluation.per_image_bits_per_dim(model, batches, seed=0).mean()
    assert bpd < metrics["test_bits_per_dim"] < bpd + 0.05
    assert (tmp_path / "logs" / "glow").is_dir()
