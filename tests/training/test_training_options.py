"""main.py's speed options (--jit --mixed_precision --remat --strategy
--steps_per_execution): they reach build_and_fit, bad values are named, and
which of them a resumed run may change."""

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from glow_tf import Glow, TrainingConfig  # noqa: E402
from glow_tf.cli import settings, train  # noqa: E402
from glow_tf.layers.base import layers_within  # noqa: E402
from glow_tf.layers.networks import CouplingNetwork  # noqa: E402
from glow_tf.runs import RunDir, RunDirMismatchError  # noqa: E402
from glow_tf.tf import distribute, training  # noqa: E402

TINY = ["--k_glow=1", "--l_glow=2", "--hidden_channels=4", "--epochs=1"]


@pytest.fixture
def flag_values():
    from absl import flags

    values = flags.FlagValues()
    train.define_flags(values)
    return values


def test_the_flags_reach_the_training_config(tmp_path, flag_values, monkeypatch):
    seen = {}

    def record(model_config, data_config, training_config, run_dir):
        seen["config"] = training_config  # the config train_and_evaluate hands build_and_fit
        return training.TrainingResult(None, {}, "Not trained.")

    monkeypatch.setattr(training, "train_and_evaluate", record)
    flag_values(["main.py", "--remat", "--jit", "--steps_per_execution=2",
                 "--mixed_precision=float16", "--strategy=mirrored", "--batch_size=32",
                 "--polyak", "--polyak_epochs=2.5", "--loop=unrolled",
                 "--run_dir", str(tmp_path / "run")])
    train.main(["main.py"], flag_values)
    config = seen["config"]
    assert (config.remat, config.jit, config.steps_per_execution) == (True, True, 2)
    assert config.loop == "unrolled"
    assert (config.mixed_precision, config.strategy) == ("float16", "mirrored")
    assert (config.polyak, config.polyak_epochs) == (True, 2.5)


@pytest.mark.slow
def test_build_and_fit_applies_the_options(monkeypatch):
    compiled = {}
    real_compile = Glow.compile

    def compile_without_xla(self, **kwargs):
        # Records what build_and_fit asks for; XLA itself is left out to keep
        # this test seconds long (test_scale.py trains through XLA).
        compiled.update(kwargs)
        real_compile(self, **{**kwargs, "jit_compile": False})

    monkeypatch.setattr(Glow, "compile", compile_without_xla)
    model_config, _, config = settings.configs_for(
        "digits", k_glow=1, l_glow=2, hidden_channels=4, batch_size=8, epochs=1, warmup=0.0,
        remat=True, jit=True, steps_per_execution=2, mixed_precision="float16", loop="unrolled",
    )
    images = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 1), dtype=np.uint8)
    train = tf.data.Dataset.from_tensor_slices(images).batch(8)
    model, history = training.build_and_fit(
        model_config, config, train, None, init_images=images, callbacks=[],
        steps_per_epoch=4, verbose=0,
    )
    assert compiled["jit_compile"] is True and compiled["steps_per_execution"] == 2
    assert model.remat and model.steps_per_execution == 2 and model.loop == "unrolled"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    networks = [l for l in layers_within(model) if isinstance(l, CouplingNetwork)]
    assert networks and all(l.compute_dtype == "float16" for l in networks)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert int(model.optimizer.iterations.numpy()) == 4
    assert np.isfinite(history.history["loss"][-1])


def test_defaults_change_nothing(flag_values):
    flag_values(["main.py"])
    _, _, config = settings.configs_from(settings.settings_from_flags(flag_values))
    assert (config.jit, config.remat, config.steps_per_execution) == (False, False, 1)
    assert (config.mixed_precision, config.strategy) == ("none", "none")


def test_float16_scales_the_loss():
    config = TrainingConfig(mixed_precision="float16")
    optimizer = training.make_optimizer(config, steps_per_epoch=10)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adamax)
    for mode in ("none", "bfloat16"):
        config = TrainingConfig(mixed_precision=mode)
        assert isinstance(training.make_optimizer(config, 10), keras.optimizers.Adamax)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"mixed_precision": "fp16"}, "mixed_precision='fp16': expected one of none, bfloat16, float16"),
        ({"strategy": "mirorred"}, "strategy='mirorred': expected one of none, mirrored"),
        ({"steps_per_execution": 0}, "steps_per_execution=0: expected an integer >= 1"),
        ({"jit": "yes"}, "jit='yes': expected True or False"),
        ({"remat": 1}, "remat=1: expected True or False"),
        ({"loop": "scan"}, "loop='scan': expected one of auto, loop, unrolled"),
    ],
)
def test_bad_values_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**fields)


def test_bad_flag_values_are_refused(flag_values):
    from absl import flags

    for bad in ("--strategy=mirorred", "--mixed_precision=fp16", "--steps_per_execution=x"):
        with pytest.raises(flags.IllegalFlagValueError, match=bad.split("=")[1]):
            flag_values(["main.py", bad])


def test_a_strategy_that_cannot_run_here_is_a_user_error(tmp_path, capsys, flag_values, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for flag, message in (
        ("--strategy=multi_worker", "TF_CONFIG environment variable, which is not set"),
        ("--strategy=data_parallel", "needs the JAX backend"),
    ):
        flag_values(["main.py", *TINY, flag, "--run_dir", str(tmp_path / "run")])
        with pytest.raises(SystemExit) as exit_info:
            train.main(["main.py"], flag_values)
        assert exit_info.value.code == 1
        error = capsys.readouterr().err
        assert error.startswith("main.py: error: ") and message in error, error
        assert "Traceback" not in error
        assert not (tmp_path / "run").exists()


def test_the_batch_must_split_over_the_replicas():
    two = distribute.Distribution("mirrored", 2)
    two.check_global_batch(64)
    with pytest.raises(distribute.DistributionError, match="batch_size=63 .* multiple of 2"):
        two.check_global_batch(63)


def test_how_to_compute_may_change_on_resume_but_precision_may_not(tmp_path):
    def config(**fields):
        return {"training": TrainingConfig(**fields).to_dict()}

    run = RunDir(tmp_path)
    run.prepare(config())
    run.prepare(config(jit=True, remat=True, steps_per_execution=4, strategy="mirrored"))
    with pytest.raises(RunDirMismatchError, match="training.mixed_precision: 'none' in the run folder, 'bfloat16' now"):
        run.prepare(config(mixed_precision="bfloat16"))


def test_the_loop_with_xla_on_tensorflow_is_refused_in_one_line(flag_values, tmp_path, capsys):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("XLA's limit on TensorFlow's loop")
    flag_values(["main.py", "--jit", "--loop=loop", "--run_dir", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_info:
        train.main(["main.py"], flag_values)
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error == ("main.py: error: --loop=loop with --jit on TensorFlow: XLA cannot "
                     "differentiate TensorFlow's loop; use --loop=auto or --loop=unrolled.\n")
    assert not (tmp_path / "run").exists()
