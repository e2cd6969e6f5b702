"""A Hugging Face Hub on 127.0.0.1 for tests: olah (a Hub mirror server) serving local git repositories offline.

Tests talk to it with the real ``huggingface_hub`` client over HTTP; nothing leaves the loopback interface:
olah runs with ``offline = true`` and its upstream is pointed at a closed loopback port as a second guard.

olah runs from its own virtual environment, ``<repo>/.olah-venv`` (git-ignored), so its dependencies never mix
with the project's. The first test that needs it creates that venv (``python -m venv`` + ``pip install``, about
30 s, needs PyPI); later runs reuse it.

Usage (importing the fixture function makes pytest offer the ``loopback_hub`` fixture in that module)::

    from loopback_hub import loopback_hub_fixture  # noqa: F401

    def test_download(loopback_hub):
        sha = loopback_hub.add_repo("org/model", {"weights.bin": b"..."})
        path = hf_hub_download("org/model", "weights.bin")  # the fixture points huggingface_hub at the server

Behaviour of olah 0.5.4 worth knowing:
  * a missing file in an existing repo answers 401 "Repository not found" (olah falls back to its upstream
    resolver, which offline knows no repo), so ``huggingface_hub`` raises ``RepositoryNotFoundError``, not the
    ``EntryNotFoundError`` the real Hub gives;
  * a repo must have a ``main`` branch (``add_repo`` makes one);
  * files of 121-149 bytes are sniffed as git-lfs pointers by decoding them as UTF-8, so a non-UTF-8 (binary) file
    of that size makes olah answer 500 for it and for the repo's file listing; ``add_repo`` refuses such files.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

OLAH_VERSION = "0.5.4"
REPO_ROOT = Path(__file__).resolve().parents[1]
OLAH_VENV = REPO_ROOT / ".olah-venv"
OLAH_CLI = OLAH_VENV / "bin" / "olah-cli"

# git with a fixed identity and no user/system config, so commits work the same on a fresh CI machine.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "gzoo tests",
    "GIT_AUTHOR_EMAIL": "tests@gzoo.invalid",
    "GIT_COMMITTER_NAME": "gzoo tests",
    "GIT_COMMITTER_EMAIL": "tests@gzoo.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}

# No proxy may ever see loopback traffic (the olah subprocess and gzoo's CLI subprocesses inherit this).
_NO_PROXY = "127.0.0.1,localhost"


def ensure_olah() -> Path:
    """Return the path of ``olah-cli``, installing olah into ``.olah-venv`` first if it is missing or outdated."""
    installed = OLAH_CLI.exists() and any(OLAH_VENV.glob(f"lib/python*/site-packages/olah-{OLAH_VERSION}.dist-info"))
    if installed:
        return OLAH_CLI
    # A lock, so that two test runs on a fresh clone don't both install at once.
    lock_path = Path(tempfile.gettempdir()) / "gzoo-olah-venv.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not any(OLAH_VENV.glob(f"lib/python*/site-packages/olah-{OLAH_VERSION}.dist-info")):
            steps = [
                [sys.executable, "-m", "venv", str(OLAH_VENV)],
                [str(OLAH_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 f"olah=={OLAH_VERSION}"],
            ]
            for cmd in steps:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    pytest.fail(f"installing olah failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return OLAH_CLI


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackHub:
    """An olah server on 127.0.0.1 serving the git repositories under ``root/mirrors``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mirrors_dir = root / "mirrors"  # olah looks up <mirrors>/models/<org>/<name>
        self.log_path = root / "olah.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_repo(self, repo_id: str, files: Mapping[str, bytes], message: str = "add files") -> str:
        """Commit ``files`` ({path_in_repo: bytes}) to model repo ``repo_id`` on branch main; return the commit sha.

        Creates the repository on first use; later calls add a commit on top (overwriting the given paths).
        Works while the server runs: olah reads the repositories on every request.
        """
        org, sep, name = repo_id.partition("/")
        if not (sep and org and name) or "/" in name:
            raise ValueError(f"repo_id must be 'org/name', got {repo_id!r}")
        repo_dir = self.mirrors_dir / "models" / org / name
        targets = {}
        for path_in_repo, data in files.items():
            if 120 < len(data) < 150 and not _is_utf8(data):
                raise ValueError(f"{path_in_repo}: olah 0.5.4 cannot serve binary files of 121-149 bytes")
            target = (repo_dir / path_in_repo).resolve()
            if repo_dir.resolve() not in target.parents:
                raise ValueError(f"path escapes the repository: {path_in_repo!r}")
            targets[target] = data
        if not (repo_dir / ".git").exists():
            repo_dir.mkdir(parents=True)
            self._git(repo_dir, "init", "--quiet")
            self._git(repo_dir, "symbolic-ref", "HEAD", "refs/heads/main")  # works on gits older than --initial-branch
        for target, data in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self._git(repo_dir, "add", "--all")
        self._git(repo_dir, "commit", "--quiet", "--allow-empty", "-m", message)
        return self._git(repo_dir, "rev-parse", "HEAD").strip()

    def start(self, timeout: float = 30.0) -> None:
        """Start olah on a free port and wait until it answers HTTP; fail with its log if it doesn't."""
        olah_cli = ensure_olah()
        self.mirrors_dir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):  # another process may grab the free port before olah binds it
            self.port = _free_port()
            config = self._write_config()
            with open(self.log_path, "wb") as log:
                env = {**os.environ, "NO_PROXY": _NO_PROXY, "no_proxy": _NO_PROXY}
                self._proc = subprocess.Popen(
                    [str(olah_cli), "-c", str(config), "--log-path", str(self.root / "olah-logs")],
                    cwd=self.root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                )
            if self._wait_ready(timeout):
                return
            exit_code = self._proc.poll()
            self.stop()
            if exit_code is None or "address already in use" not in self.log.lower():
                break
        why = f"exited with code {exit_code}" if exit_code is not None else f"gave no answer within {timeout:.0f} s"
        raise RuntimeError(f"olah on {self.endpoint} {why}; its log ({self.log_path}):\n{self.log}")

    def stop(self) -> None:
        """Terminate the server (idempotent). Files already downloaded stay in the client's cache."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _write_config(self) -> Path:
        netloc = f"127.0.0.1:{self.port}"
        q = json.dumps  # a JSON string is a valid TOML basic string
        lines = [
            "[basic]",
            'host = "127.0.0.1"',
            f"port = {self.port}",
            f"repos-path = {q(str(self.root / 'olah-cache'))}",
            f"mirrors-path = [{q(str(self.mirrors_dir))}]",
            'mirror-scheme = "http"',
            f"mirror-netloc = {q(netloc)}",
            f"mirror-lfs-netloc = {q(netloc)}",
            # Upstream "huggingface.co" replaced by a closed loopback port: offline mode never calls it anyway.
            'hf-scheme = "http"',
            'hf-netloc = "127.0.0.1:9"',
            'hf-lfs-netloc = "127.0.0.1:9"',
            "",
            "[accessibility]",
            "offline = true",
        ]
        path = self.root / "olah.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _wait_ready(self, timeout: float) -> bool:
        """Poll until the server answers any HTTP response; False if the process exits or time runs out."""
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        probe = f"{self.endpoint}/api/models/loopback/probe/revision/main"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                no_proxy.open(probe, timeout=2).close()
                return True
            except urllib.error.HTTPError:
                return True  # a 401/404 is an answer: the server is up
            except OSError:
                time.sleep(0.05)
        return False

    @staticmethod
    def _git(repo_dir: Path, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo_dir, env={**os.environ, **_GIT_ENV}, capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed in {repo_dir}:\n{done.stdout}{done.stderr}")
        return done.stdout


def point_hf_hub_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: Path) -> None:
    """Make ``huggingface_hub`` (this process and child processes) use ``endpoint`` and a cache under ``hf_home``.

    huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_HUB_DISABLE_TELEMETRY once, at
    import, into ``huggingface_hub.constants`` (checked for 2.4.0), and test modules import it before any fixture
    runs. So we set the environment variables (for subprocesses such as ``python -m gzoo``) AND monkeypatch the
    constants (for this process), rather than passing ``endpoint=`` to each call: that way code under test that
    calls ``hf_hub_download(repo, file)`` plainly is covered too. Note ``huggingface_hub.utils._cache_manager``
    copied HF_HUB_CACHE at import: give ``scan_cache_dir`` its ``cache_dir`` explicitly.
    """
    from huggingface_hub import constants

    cache = hf_home / "hub"
    for name, value in {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": _NO_PROXY,
        "no_proxy": _NO_PROXY,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)

    overrides = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(cache),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
    }
    if hasattr(constants, "HF_URL_HOSTS"):  # hosts whose redirects the client follows (e.g. olah's 307s)
        overrides["HF_URL_HOSTS"] = constants.HF_URL_HOSTS | {"127.0.0.1"}
    for name, value in overrides.items():
        if hasattr(constants, name):  # older huggingface_hub versions lack some of these
            monkeypatch.setattr(constants, name, value)


def set_hf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn on huggingface_hub's offline mode (HF_HUB_OFFLINE=1) for this process and its children."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(name="loopback_hub")
def loopback_hub_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    """A fresh olah server (about 1.5 s to start) with no repos, and huggingface_hub pointed at it.

    Function-scoped so that every test gets its own repositories, its own empty HF cache, and may ``stop()`` it.
    The client's cache is ``tmp_path / "hf-home" / "hub"``.
    """
    hub = LoopbackHub(tmp_path / "loopback-hub")
    hub.root.mkdir()
    hub.start()
    try:
        point_hf_hub_at(monkeypatch, hub.endpoint, tmp_path / "hf-home")
        yield hub
    finally:
        hub.stop()
