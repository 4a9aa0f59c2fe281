"""A finished tiny run folder, trained once for the fault tests that damage a copy of it."""

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
