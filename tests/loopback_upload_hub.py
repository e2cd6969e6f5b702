"""The smallest Hugging Face Hub that takes uploads, on 127.0.0.1, for testing ``gzoo push`` with the real client.

olah (tests/loopback_hub.py) is a read-only mirror, so this server implements the write side of the Hub API the
way ``huggingface_hub`` (checked for 2.4.0) calls it from ``create_repo``, ``create_branch`` and ``upload_folder``:

* ``POST /api/validate-yaml`` ({"content", "repoType"}), which the client calls before committing a README.md:
  400 {"errors": [...]} unless the front matter is a YAML mapping whose ``model-index`` huggingface_hub's own
  parser reads and whose ``license`` is one of ``LICENSES`` (a few of the Hub's license ids), else 200;
* ``POST /api/repos/create`` ({"name", "organization", "visibility", "type"}): 200 {"url"}, or 409 if it exists
  (the client's ``exist_ok=True`` accepts that);
* ``POST /api/models/{repo}/branch/{branch}``: creates a branch (409 if it exists);
* ``POST /api/models/{repo}/preupload/{revision}``: answers ``uploadMode: "regular"`` for every file, so the
  client sends the contents inline (base64) in the commit and never uses LFS or Xet;
* ``POST /api/models/{repo}/commit/{revision}``: an NDJSON header line, then one ``file`` line per file; the files
  are stored under ``root/<repo>/<revision>/`` and the answer is {"commitOid", "commitUrl"}.

A repository or revision that does not exist answers 404 with the Hub's ``X-Error-Code`` header, which the client
turns into ``RepositoryNotFoundError`` / ``RevisionNotFoundError``. With ``token`` set, a request without
``Authorization: Bearer <token>`` answers 401 as the Hub does for bad credentials. Anything else answers 404 and is
logged in ``unknown``, so a client that starts calling a new endpoint shows up in the failing test.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from huggingface_hub.repocard_data import model_index_to_eval_results
from loopback_hub import point_hf_hub_at

LICENSES = ("apache-2.0", "bsd-2-clause", "bsd-3-clause", "cc-by-4.0", "cc-by-nc-4.0", "mit", "other")
ROUTE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<action>preupload|commit|branch)/(?P<revision>[^/?]+)")


class UploadHub:
    """In-memory repositories (name -> set of branches) with the committed files on disk under ``root``."""

    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root = root
        self.token = token
        self.repos: dict[str, dict] = {}  # repo id -> {"visibility": ..., "branches": {name, ...}}
        self.commits: list[dict] = []  # {"repo", "revision", "summary", "files", "oid"}
        self.requests: list[str] = []  # "METHOD path", in order
        self.unknown: list[str] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Every file committed to ``repo_id`` at ``revision``: {path in repo: bytes}."""
        folder = self.root / repo_id / revision
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the API, one method per endpoint: each returns (status, JSON body, extra headers) ---------------------

    def create_repo(self, payload: dict) -> tuple[int, dict, dict]:
        repo_id = f"{payload['organization'] or 'loopback-user'}/{payload['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": self._url(repo_id)}, {}
        self.repos[repo_id] = {"visibility": payload.get("visibility"), "branches": {"main"}}
        return 200, {"url": self._url(repo_id), "name": repo_id}, {}

    def validate_yaml(self, payload: dict) -> tuple[int, dict, dict]:
        try:
            metadata = yaml.safe_load(payload["content"].split("---\n")[1])
            if "model-index" in metadata:
                model_index_to_eval_results(metadata["model-index"])
            if metadata.get("license") not in (None, *LICENSES):
                raise ValueError(f'"license" must be one of [{", ".join(LICENSES)}]')
        except (IndexError, AttributeError, KeyError, TypeError, ValueError, yaml.YAMLError) as err:
            return 400, {"errors": [{"message": str(err) or type(err).__name__}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def create_branch(self, repo_id: str, branch: str) -> tuple[int, dict, dict]:
        if branch in self.repos[repo_id]["branches"]:
            return 409, {"error": f"Reference refs/heads/{branch} already exists"}, {}
        self.repos[repo_id]["branches"].add(branch)
        return 200, {}, {}

    def preupload(self, payload: dict) -> tuple[int, dict, dict]:
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                 for f in payload["files"]]
        return 200, {"files": files}, {}

    def commit(self, repo_id: str, revision: str, body: bytes) -> tuple[int, dict, dict]:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header, operations = lines[0], lines[1:]
        if header["key"] != "header" or any(op["key"] != "file" for op in operations):
            return 422, {"error": "this loopback Hub takes only inline (regular) files"}, {}
        folder = (self.root / repo_id / revision).resolve()
        written = []
        for op in operations:
            target = (folder / op["value"]["path"]).resolve()
            if folder not in target.parents:
                return 400, {"error": f"invalid path {op['value']['path']!r}"}, {}
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(op["value"]["content"]))
            written.append(op["value"]["path"])
        oid = hashlib.sha1(body).hexdigest()  # a stand-in commit id, 40 hex digits like git's
        self.commits.append({"repo": repo_id, "revision": revision, "summary": header["value"]["summary"],
                             "files": written, "oid": oid})
        return 200, {"success": True, "commitOid": oid, "commitUrl": f"{self._url(repo_id)}/commit/{oid}"}, {}

    def _url(self, repo_id: str) -> str:
        return f"{self.endpoint}/{repo_id}"


def _handler(hub: UploadHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

        def do_POST(self) -> None:  # noqa: N802  (the http.server API)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(*self._route(body))

        def do_GET(self) -> None:  # noqa: N802
            self._answer(*self._route(b""))

        def _route(self, body: bytes) -> tuple[int, dict, dict]:
            hub.requests.append(f"{self.command} {self.path}")
            if hub.token is not None and self.headers.get("Authorization") != f"Bearer {hub.token}":
                return 401, {"error": "Invalid credentials in Authorization header"}, {}
            if self.command == "POST" and self.path == "/api/repos/create":
                return hub.create_repo(json.loads(body))
            if self.command == "POST" and self.path == "/api/validate-yaml":
                return hub.validate_yaml(json.loads(body))
            route = ROUTE.match(self.path) if self.command == "POST" else None
            if route is None:
                hub.unknown.append(f"{self.command} {self.path}")
                return 404, {"error": "not implemented by the loopback upload Hub"}, {}
            repo_id, action, revision = route["repo"], route["action"], route["revision"]
            if repo_id not in hub.repos:
                return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
            if action == "branch":
                return hub.create_branch(repo_id, revision)
            if revision not in hub.repos[repo_id]["branches"]:
                return 404, {"error": f"Invalid rev id: {revision}"}, {"X-Error-Code": "RevisionNotFound"}
            return hub.preupload(json.loads(body)) if action == "preupload" else hub.commit(repo_id, revision, body)

        def _answer(self, status: int, document: dict, headers: dict) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                                **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass  # requests are kept in hub.requests instead

    return Handler


TOKEN = "hf_loopback"


@pytest.fixture(name="upload_hub")
def upload_hub_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UploadHub]:
    """A fresh upload Hub on a free port, huggingface_hub pointed at it (this process and its children) with the
    token it accepts in HF_TOKEN; stopped after the test."""
    hub = UploadHub(tmp_path / "upload-hub", token=TOKEN)
    hub.start()
    try:
        point_hf_hub_at(monkeypatch, hub.endpoint, tmp_path / "hf-home")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield hub
    finally:
        hub.stop()
