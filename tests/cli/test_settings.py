"""main.py's flags: made from the configs' fields, with the dataset's preset, then the command line."""

import dataclasses

import pytest
from absl import flags

import common_definitions as defs
from glow_tf import DataConfig, GlowConfig, TrainingConfig
from glow_tf.cli import reference, settings, train
from tests.processes import ROOT


@pytest.fixture
def flag_values():
    values = flags.FlagValues()
    train.define_flags(values)
    return values


def test_no_flags_give_the_digits_preset(flag_values):
    flag_values(["main.py"])
    values = settings.settings_from_flags(flag_values)
    assert values == settings.settings_for("digits")
    model, data, _ = settings.configs_from(values)
    assert model.image_shape == (8, 8, 1) and (model.n_bits, data.n_bits) == (4, 4)
    assert (model.k_glow, model.hidden_channels) == (32, 16)
    assert settings.run_dir_of(values) == "checkpoints/digits"


def test_an_explicit_flag_beats_the_preset(flag_values):
    # 512 is also the global default: given explicitly, it still wins.
    flag_values(["main.py", "--hidden_channels", "512", "--epochs", "3"])
    values = settings.settings_from_flags(flag_values)
    assert values["hidden_channels"] == 512 and values["epochs"] == 3
    assert values["k_glow"] == defs.PRESETS["digits"]["k_glow"]


def test_cifar10_gets_the_papers_model(flag_values):
    flag_values(["main.py", "--dataset", "cifar10"])
    model, data_config, training_config = settings.configs_from(
        settings.settings_from_flags(flag_values)
    )
    assert (model.k_glow, model.l_glow, model.hidden_channels, model.n_bits) == (32, 3, 512, 8)
    assert model.image_shape == (32, 32, 3) and data_config.dataset == "cifar10"
    assert training_config.optimizer == "adamax" and training_config.clipnorm == 0.0
    assert model == GlowConfig(seed=0) and training_config == TrainingConfig()


def test_each_flag_is_its_fields_default_and_help(flag_values):
    fields = [
        f for config in (DataConfig, GlowConfig, TrainingConfig)
        for f in dataclasses.fields(config) if f.metadata["flag"]
    ]
    assert [f.name for f in fields] == list(settings.FIELDS)
    for field in fields:
        flag = flag_values[field.name]
        assert flag.default == field.default, field.name
        assert field.metadata["help"] in flag.help, field.name
    assert set(flag_values) >= {*settings.FIELDS, "y_condition", "run_dir"}
    # The presets set flags that exist.
    for preset in defs.PRESETS.values():
        assert set(preset) <= set(settings.NAMES)


def test_a_run_config_gives_back_its_architecture_flags():
    configs = settings.configs_for("digits", y_condition=True, k_glow=3, img_size=16)
    stored = {"model": configs.model.to_dict(), "data": configs.data.to_dict()}
    expected = {name: value for name, value in settings.settings_for(
        "digits", y_condition=True, k_glow=3, img_size=16).items() if name in settings.ARCHITECTURE}
    assert settings.architecture_of(stored) == {**expected, "channel_size": 1, "n_bits": 4}


def test_docs_cli_reference_is_generated_from_the_flags():
    written = (ROOT / "docs" / "cli.md").read_text()
    assert written == reference.render(), (
        "docs/cli.md is out of date: python -m glow_tf.cli.reference > docs/cli.md"
    )


def test_the_cli_reports_a_user_error_without_a_traceback(tmp_path, capsys, flag_values):
    flag_values(["main.py", "--l_glow", "4", "--run_dir", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_info:
        train.main(["main.py"], flag_values)
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("main.py: error: image_shape=(8, 8, 1)") and "Traceback" not in error
    assert not (tmp_path / "run").exists()
