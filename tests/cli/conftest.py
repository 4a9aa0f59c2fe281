"""Fixtures of the command-line tests: a tiny trained run folder, made once for the tests
that only read it."""

import pytest


@pytest.fixture(scope="package")
def tiny_run(tmp_path_factory):
    """(path, model): a run folder of a tiny digits Glow trained for one epoch by plain `fit`
    (tests.tiny_runs.make_run)."""
    pytest.importorskip("tensorflow")
    from tests.tiny_runs import make_run

    path = tmp_path_factory.mktemp("runs") / "tiny"
    return path, make_run(path)
