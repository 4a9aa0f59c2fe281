"""export.py on bad input: a one-line error, exit status 1, and nothing written."""

import shutil
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

from glow_tf import Glow, GlowConfig, cli  # noqa: E402
from glow_tf.cli import export  # noqa: E402
from glow_tf.tf import export as export_lib  # noqa: E402
from tests.commands import flag_values, program_of  # noqa: E402
from tests.processes import HANG, ROOT  # noqa: E402
from tests.tiny_runs import make_run  # noqa: E402

# What TensorFlow's C++ side writes to stderr when it loads, whatever the tool does.
NATIVE_LOG = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "W0000 ", "E0000 ")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An initialised (untrained) run folder."""
    path = tmp_path_factory.mktemp("runs") / "tiny"
    make_run(path, epochs=0)
    return path


def snapshot(folder):
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*")
    }


def one_line_error(stderr, message):
    """The tool's error is stderr's one line of its own (TensorFlow's native log lines aside)."""
    own = [line for line in stderr.splitlines() if not line.startswith(NATIVE_LOG)]
    assert len(own) == 1 and own[0].startswith(f"{program_of(export)}: error: "), stderr
    assert message in own[0], stderr


def test_bad_run_folders_and_out_folders(run, tmp_path, capsys):
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(run / "config.json", no_weights)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("kept")
    (tmp_path / "file").write_text("kept")
    new = str(tmp_path / "new")
    cases = [
        (["--run_dir", str(no_weights), "--out", new],
         f"run_dir='{no_weights}' holds no newest weights yet"),
        (["--run_dir", str(run), "--which", "best", "--out", new],
         f"run_dir='{run}' holds no best weights yet"),
        (["--run_dir", str(tmp_path / "missing"), "--out", new], "no config.json there"),
        (["--run_dir", str(run), "--out", str(tmp_path / "full")],
         f"--out='{tmp_path / 'full'}' is a folder that is not empty"),
        (["--run_dir", str(run), "--out", str(tmp_path / "file")],
         f"--out='{tmp_path / 'file'}' is a file"),
    ]
    for args, message in cases:
        before = snapshot(tmp_path)
        with pytest.raises(SystemExit) as exit_info:
            export.main([program_of(export)], flag_values(export, *args))
        assert exit_info.value.code == 1
        captured = capsys.readouterr()
        one_line_error(captured.err, message)
        assert captured.out == ""
        assert snapshot(tmp_path) == before, args


@pytest.mark.slow  # starts a process
def test_bad_flag_values_get_one_line(run, tmp_path, capsys):
    result = subprocess.run(
        [sys.executable, "export.py", "--run_dir", str(run), "--which", "newset",
         "--out", str(tmp_path / "new")],
        cwd=ROOT, capture_output=True, text=True, timeout=HANG,
        env={"PATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 1
    one_line_error(result.stderr, "flag --which=newset: value should be one of <newest|best>")
    # --out is required; in this process, through the same parser.
    values = export.flags.FlagValues()
    export.define_flags(values)
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_flags([program_of(export), "--run_dir", str(run)], values)
    assert exit_info.value.code == 1
    one_line_error(capsys.readouterr().err, "--out")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_nothing(tmp_path, monkeypatch):
    model = Glow(GlowConfig(image_shape=(8, 8, 1), k_glow=1, l_glow=2, hidden_channels=8,
                            n_bits=4, seed=0))

    def killed(model, path, verbose):
        with open(f"{path}/saved_model.pb", "wb") as half:
            half.write(b"half of it")
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(export_lib, "_write", killed)
    # Folders it made on the way go too; a folder that was there stays.
    with pytest.raises(RuntimeError, match="killed"):
        export_lib.export_saved_model(model, tmp_path / "exports" / "glow")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "glow").mkdir()
    with pytest.raises(RuntimeError, match="killed"):
        export_lib.export_saved_model(model, tmp_path / "glow")
    assert [path.name for path in tmp_path.iterdir()] == ["glow"]
    assert list((tmp_path / "glow").iterdir()) == []
