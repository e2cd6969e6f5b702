"""The code base stays ruff-clean."""

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is part of the dev extra")
def test_ruff_is_clean():
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(["ruff", "check", "gzoo", "tests", "benchmarks"], cwd=root, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
