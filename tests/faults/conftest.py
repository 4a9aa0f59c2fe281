"""Fixtures of the fault tests: main.py run in-process, and a finished tiny run folder
trained once for the tests that damage a copy of it."""

import shutil

import pytest


@pytest.fixture(scope="package")
def finished(tmp_path_factory):
    """A finished one-epoch run folder (tests.tiny_runs.TRAIN_TINY), as main.py leaves it."""
    pytest.importorskip("tensorflow")
    from tests.tiny_runs import train_run

    return train_run(tmp_path_factory.mktemp("finished") / "run")


@pytest.fixture
def run(finished, tmp_path, monkeypatch):
    """A copy of the finished run to damage or fill up; the working folder is tmp_path."""
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    (copy / ".lock").unlink()
    return copy


@pytest.fixture
def run_main(tmp_path, monkeypatch, capsys):
    """Runs main.py's main on argv in tmp_path; returns (exit status, stderr)."""
    pytest.importorskip("tensorflow")
    from glow_tf.cli import train
    from tests.commands import run_cli

    monkeypatch.chdir(tmp_path)  # the default run folder would land here

    def run(*argv):
        capsys.readouterr()
        try:
            run_cli(train, *argv)
        except SystemExit as exit_info:
            return exit_info.code, capsys.readouterr().err
        return 0, capsys.readouterr().err

    return run
