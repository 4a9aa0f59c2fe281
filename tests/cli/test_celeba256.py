"""The celeba256 settings of common_definitions: flags that exist, and a model they build."""

from absl import flags

import common_definitions as defs
from glow_tf.cli import settings, train


def test_the_celeba256_settings_are_flags_that_build_the_papers_256_model(tmp_path):
    values = flags.FlagValues()
    train.define_flags(values)
    assert set(defs.CELEBA256) <= set(settings.NAMES)
    argv = ["main.py", "--dataset=folder", f"--data_dir={tmp_path}"]
    argv += [f"--{name}" if value is True else f"--{name}={value}"
             for name, value in defs.CELEBA256.items()]
    values(argv)
    model, data, training = settings.configs_from(settings.settings_from_flags(values))
    assert model.image_shape == (256, 256, 3) and data.n_bits == model.n_bits == 5
    assert (model.k_glow, model.l_glow, model.hidden_channels) == (32, 6, 512)
    assert training.remat
    # Larger accelerators take larger batches.
    batches = [defs.CELEBA256_BATCH_BY_MEMORY_GIB[g] for g in (16, 40, 80)]
    assert batches == sorted(batches) and batches[0] >= 1
