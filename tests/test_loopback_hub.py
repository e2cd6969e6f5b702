"""The real huggingface_hub client against the loopback Hub (olah on 127.0.0.1 serving local git repositories)."""

import random
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import constants, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

# Importing the fixture function registers the `loopback_hub` fixture in this module.
from loopback_hub import LoopbackHub, loopback_hub_fixture, set_hf_offline  # noqa: F401

REPO = "gzoo-test/tiny-gan"
WEIGHTS = random.Random(0).randbytes(4096)  # small binary payload: the suite stays fast
CONFIG = b'{"in_channels": 3, "out_channels": 3}\n'


def _cache_dir() -> Path:
    return Path(constants.HF_HUB_CACHE)


def test_client_is_pointed_at_the_loopback_server(loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    assert loopback_hub.endpoint.startswith("http://127.0.0.1:")
    assert constants.ENDPOINT == loopback_hub.endpoint
    assert hf_hub_url(REPO, "weights.bin").startswith(loopback_hub.endpoint + "/")
    assert _cache_dir().is_relative_to(tmp_path)


def test_hf_hub_download_returns_the_bytes(loopback_hub: LoopbackHub) -> None:
    sha = loopback_hub.add_repo(REPO, {"weights.bin": WEIGHTS, "config.json": CONFIG})

    path = Path(hf_hub_download(REPO, "weights.bin"))

    assert path.read_bytes() == WEIGHTS
    assert path.parent.name == sha  # .../snapshots/<commit sha>/weights.bin
    assert path.is_relative_to(_cache_dir())


def test_snapshot_download_fetches_the_whole_repo(loopback_hub: LoopbackHub) -> None:
    files = {"weights.bin": WEIGHTS, "config.json": CONFIG, "sub/extra.bin": WEIGHTS[::-1]}
    sha = loopback_hub.add_repo(REPO, files)

    folder = Path(snapshot_download(REPO))

    assert folder.name == sha
    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert got == files


def test_cache_serves_files_after_server_is_gone(loopback_hub: LoopbackHub, monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_hub.add_repo(REPO, {"weights.bin": WEIGHTS, "config.json": CONFIG})
    hf_hub_download(REPO, "weights.bin")

    loopback_hub.stop()
    with pytest.raises(urllib.error.URLError):  # nothing listens any more
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(loopback_hub.endpoint, timeout=2)

    assert Path(hf_hub_download(REPO, "weights.bin", local_files_only=True)).read_bytes() == WEIGHTS
    with pytest.raises(LocalEntryNotFoundError):  # never downloaded, so not in the cache
        hf_hub_download(REPO, "config.json", local_files_only=True)

    set_hf_offline(monkeypatch)
    assert Path(hf_hub_download(REPO, "weights.bin")).read_bytes() == WEIGHTS


def test_missing_file_raises_repository_not_found(loopback_hub: LoopbackHub) -> None:
    # The real Hub answers 404 EntryNotFound here; olah 0.5.4 offline answers 401 "Repository not found".
    loopback_hub.add_repo(REPO, {"weights.bin": WEIGHTS})

    with pytest.raises(RepositoryNotFoundError) as missing_file:
        hf_hub_download(REPO, "no-such-file.bin")
    assert not isinstance(missing_file.value, EntryNotFoundError)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("gzoo-test/no-such-repo", "weights.bin")


def test_download_of_a_specific_commit(loopback_hub: LoopbackHub) -> None:
    old = loopback_hub.add_repo(REPO, {"weights.bin": WEIGHTS}, message="v1")
    new = loopback_hub.add_repo(REPO, {"weights.bin": WEIGHTS[:1000]}, message="v2")
    assert old != new

    old_path = Path(hf_hub_download(REPO, "weights.bin", revision=old))
    new_path = Path(hf_hub_download(REPO, "weights.bin"))

    assert old_path.read_bytes() == WEIGHTS and old_path.parent.name == old
    assert new_path.read_bytes() == WEIGHTS[:1000] and new_path.parent.name == new


def test_subprocesses_inherit_the_loopback_hub(loopback_hub: LoopbackHub) -> None:
    # CLI tests run `python -m gzoo` in a child process: it must see the server through the environment alone.
    loopback_hub.add_repo(REPO, {"weights.bin": WEIGHTS})
    code = f"from huggingface_hub import hf_hub_download; print(hf_hub_download({REPO!r}, 'weights.bin'))"

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.read_bytes() == WEIGHTS
    assert path.is_relative_to(_cache_dir())


def test_add_repo_rejects_what_olah_cannot_serve(tmp_path: Path) -> None:
    hub = LoopbackHub(tmp_path)  # not started: add_repo only writes git repositories
    with pytest.raises(ValueError, match="org/name"):
        hub.add_repo("no-org", {"a.bin": b"x"})
    with pytest.raises(ValueError, match="121-149"):
        hub.add_repo("org/name", {"a.bin": b"\xff" * 130})
    with pytest.raises(ValueError, match="escapes"):
        hub.add_repo("org/name", {"../a.bin": b"x"})
