"""The named presets: --preset celeba256 builds the paper's 256x256 model, photos32 the CPU recipe."""

import pytest
from absl import flags

import common_definitions as defs
from glow_tf.cli import settings, train


def configs(argv):
    values = flags.FlagValues()
    train.define_flags(values)
    values(["main.py", *argv])
    return settings.configs_from(settings.settings_from_flags(values))


def test_the_celeba256_preset_builds_the_papers_256_model(tmp_path):
    model, data, training = configs(["--dataset=folder", f"--data_dir={tmp_path}",
                                     "--preset=celeba256"])
    assert model.image_shape == (256, 256, 3) and data.n_bits == model.n_bits == 5
    assert (model.k_glow, model.l_glow, model.hidden_channels) == (32, 6, 512)
    assert training.remat and training.batch_size == defs.CELEBA256_BATCH_BY_MEMORY_GIB[16]
    # Larger accelerators take larger batches.
    batches = [defs.CELEBA256_BATCH_BY_MEMORY_GIB[g] for g in (16, 40, 80)]
    assert batches == sorted(batches) and batches[0] >= 1


def test_a_flag_given_beats_the_named_preset_which_beats_the_datasets(tmp_path):
    model, _, training = configs(["--dataset=digits", "--preset=photos32", "--batch_size=8"])
    assert training.batch_size == 8  # the flag
    assert (model.k_glow, model.hidden_channels) == (8, 64)  # the named preset
    assert model.image_shape == (32, 32, 3)
    assert training.weight_decay == defs.PRESETS["digits"]["weight_decay"]  # the dataset's


def test_an_unknown_preset_is_refused_with_the_known_ones():
    with pytest.raises(flags.IllegalFlagValueError, match="celeba256"):
        configs(["--preset=celeba512"])
    with pytest.raises(ValueError, match=r"preset='celeba512'.*photos32"):
        settings.settings_for("digits", preset="celeba512")
