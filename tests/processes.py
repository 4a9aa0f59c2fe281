"""Running the project's modules in their own processes, from any test folder."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_module(module, args=(), env=None, timeout=600):
    """`python -m module args` in the repository root; its stdout, or a failed assert."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout
