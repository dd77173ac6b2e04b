"""A small in-memory Hugging Face Hub served over loopback HTTP, for tests.

The real ``huggingface_hub`` client talks to it exactly as it talks to huggingface.co: nothing in the
HTTP client library is mocked.  Standard library only.

Usage::

    with HubServer() as hub:                        # binds 127.0.0.1 on a random free port
        hub.create_repo("tester/tiny")
        sha = hub.put_files("tester/tiny", {"config.json": b"{}"})
        path = hf_hub_download("tester/tiny", "config.json", endpoint=hub.url, cache_dir=tmp_path)
        assert ("GET", "/tester/tiny/resolve/main/config.json") in hub.requests

Pass ``endpoint=hub.url`` to ``HfApi``/``hf_hub_download``/``snapshot_download``: huggingface_hub reads
``HF_ENDPOINT`` once, at import time.

Model of the store: repos are keyed by ``(repo_type, "ns/name")``.  Each repo has branches (``main`` is
created with an initial empty commit) and an append-only list of commits.  A commit holds the full file map
``path -> bytes`` and a 40-hex sha derived from its parent and content.  Tags and pull requests are not
modelled.  Every file is a regular (non-LFS, non-Xet) git blob: ``preupload`` answers ``uploadMode:
"regular"`` for everything, so uploads carry their bytes inline in the commit call, and downloads are plain
``GET``\\s of ``/resolve/`` URLs.

Routes (``{type}s`` is ``models``, ``datasets`` or ``spaces``; resolve URLs take a ``datasets/`` or
``spaces/`` prefix for non-model repos)::

    HEAD|GET /[{type}s/]{ns}/{name}/resolve/{revision}/{path}
    GET  /api/{type}s/{ns}/{name}[/revision/{revision}]
    GET  /api/{type}s/{ns}/{name}/tree/{revision}[/{path}]?recursive=&expand=&cursor=
    GET  /api/{type}s/{ns}/{name}/refs
    GET  /api/{type}s/{ns}/{name}/commits/{revision}
    POST /api/{type}s/{ns}/{name}/preupload/{revision}
    POST /api/{type}s/{ns}/{name}/commit/{revision}          (application/x-ndjson)
    POST /api/{type}s/{ns}/{name}/branch/{branch}
    POST /api/repos/create
    POST /api/validate-yaml
    GET  /api/whoami-v2

Anything else answers 404 (no ``X-Error-Code``) and is recorded in ``unknown_requests`` and printed to
stderr, so a test author can see which route a new client version wants.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["DEFAULT_USER", "HubServer", "git_blob_sha"]

DEFAULT_USER = "tester"
REPO_TYPES = ("model", "dataset", "space")
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_EMPTY_SHA = "0" * 40


def git_blob_sha(data: bytes) -> str:
    """The git object id of a blob: what the Hub sends (quoted) as ``ETag`` for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class _Commit:
    sha: str
    parent: str | None
    files: dict[str, bytes]
    title: str
    message: str
    date: str


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    created_at: str = field(default_factory=_now)
    branches: dict[str, str] = field(default_factory=dict)
    commits: list[_Commit] = field(default_factory=list)
    by_sha: dict[str, _Commit] = field(default_factory=dict)


class _HttpError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}  # more fields for the JSON error body


class HubServer:
    """In-memory Hub on ``http://127.0.0.1:<random port>``; see the module docstring.

    Attributes:
        url: the endpoint (``None`` until started).
        requests: ``(method, path)`` of every request, in arrival order; ``path`` is the raw
            (percent-encoded, as sent) path without the query string.
        request_details: one dict per request: ``method``, ``path``, ``query`` (raw string), ``status``,
            ``headers`` (request headers, lower-cased names).
        unknown_requests: ``(method, path?query)`` of requests no route matched.
        errors: tracebacks of server-side exceptions (answered with 500).
        user: the name ``whoami-v2`` reports and the namespace used when ``create_repo`` gets none.
        tree_page_size: entries per ``/tree`` page before a ``Link: <...>; rel="next"`` header.
        report_existing_oids: ``preupload`` returns the ``oid`` of files already on the branch, as the Hub
            does, so the client drops unchanged files (and makes no commit when nothing changed).
    """

    def __init__(self, user: str = DEFAULT_USER) -> None:
        self.user = user
        self.url: str | None = None
        self.requests: list[tuple[str, str]] = []
        self.request_details: list[dict[str, Any]] = []
        self.unknown_requests: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.tree_page_size = 1000
        self.report_existing_oids = True
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Bind 127.0.0.1 on a free port, serve in a daemon thread, return the endpoint URL."""
        if self._httpd is not None:
            return self.url  # type: ignore[return-value]
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.hub = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="HubServer", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent).  ``url`` keeps its value so a test can show
        that a stopped server is no longer contacted."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.request_details.clear()
            self.unknown_requests.clear()

    # ------------------------------------------------------------------ store helpers for tests

    def create_repo(
        self, repo_id: str, repo_type: str = "model", private: bool = False, exist_ok: bool = False
    ) -> str:
        """Create a repo with branch ``main`` at an initial empty commit; return its URL."""
        repo_id = self._full_id(repo_id)
        if repo_type not in REPO_TYPES:
            raise ValueError(f"repo_type must be one of {REPO_TYPES}, got {repo_type!r}")
        with self._lock:
            key = (repo_type, repo_id)
            if key in self._repos:
                if not exist_ok:
                    raise ValueError(f"{repo_type} repo {repo_id} already exists")
            else:
                repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=private)
                self._repos[key] = repo
                self._add_commit(repo, None, {}, "initial commit", "")
                repo.branches["main"] = repo.commits[-1].sha
        return self._repo_url(repo_type, repo_id)

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, self._full_id(repo_id)) in self._repos

    def put_files(
        self,
        repo_id: str,
        files: dict[str, bytes | None],
        branch: str = "main",
        message: str = "Update files (server-side)",
        repo_type: str = "model",
    ) -> str:
        """Commit ``files`` on ``branch`` directly (a ``None`` value deletes that path); return the new sha.

        A missing branch is created from the head of ``main``."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            if branch not in repo.branches:
                repo.branches[branch] = repo.branches["main"]
            head = repo.by_sha[repo.branches[branch]]
            new_files = dict(head.files)
            for path, data in files.items():
                path = path.strip("/")
                if data is None:
                    new_files.pop(path, None)
                else:
                    new_files[path] = bytes(data)
            commit = self._add_commit(repo, head.sha, new_files, message, "")
            repo.branches[branch] = commit.sha
            return commit.sha

    def corrupt_file(
        self, repo_id: str, path: str, data: bytes, branch: str = "main", repo_type: str = "model"
    ) -> str:
        """Make a new commit on ``branch`` replacing the content of the existing file ``path``; return its sha."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            if path not in repo.by_sha[repo.branches[branch]].files:
                raise KeyError(f"{path!r} is not in {repo_id}@{branch}")
            return self.put_files(
                repo_id, {path: data}, branch=branch, message=f"Corrupt {path}", repo_type=repo_type
            )

    def create_branch(
        self, repo_id: str, branch: str, from_revision: str = "main", repo_type: str = "model"
    ) -> str:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            commit = self._resolve(repo, from_revision)
            if commit is None:
                raise KeyError(f"unknown revision {from_revision!r} in {repo_id}")
            repo.branches[branch] = commit.sha
            return commit.sha

    def head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> str:
        with self._lock:
            return self._get_repo(repo_type, repo_id).branches[branch]

    def commits(self, repo_id: str, repo_type: str = "model", branch: str | None = None) -> list[str]:
        """Shas oldest first: every commit of the repo, or only the history of ``branch`` if given."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            if branch is None:
                return [c.sha for c in repo.commits]
            return [c.sha for c in reversed(self._history(repo, repo.by_sha[repo.branches[branch]]))]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The file map at ``revision`` (branch name or full sha)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            commit = self._resolve(repo, revision)
            if commit is None:
                raise KeyError(f"unknown revision {revision!r} in {repo_id}")
            return dict(commit.files)

    # ------------------------------------------------------------------ internals (store)

    def _full_id(self, repo_id: str) -> str:
        repo_id = repo_id.strip("/")
        return repo_id if "/" in repo_id else f"{self.user}/{repo_id}"

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.url}/{_TYPE_PREFIX[repo_type]}{repo_id}"

    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        try:
            return self._repos[(repo_type, self._full_id(repo_id))]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on the HubServer") from None

    def _add_commit(
        self, repo: _Repo, parent: str | None, files: dict[str, bytes], title: str, message: str
    ) -> _Commit:
        h = hashlib.sha1()
        h.update(
            f"{repo.repo_type}/{repo.repo_id}\nparent {parent or _EMPTY_SHA}\nseq {len(repo.commits)}\n".encode()
        )
        h.update(f"{title}\n{message}\n".encode())
        for path in sorted(files):
            h.update(f"{path}\0{git_blob_sha(files[path])}\n".encode())
        commit = _Commit(
            sha=h.hexdigest(), parent=parent, files=files, title=title, message=message, date=_now()
        )
        repo.commits.append(commit)
        repo.by_sha[commit.sha] = commit
        return commit

    @staticmethod
    def _resolve(repo: _Repo, revision: str) -> _Commit | None:
        revision = revision.removeprefix("refs/heads/")
        if revision in repo.branches:
            return repo.by_sha[repo.branches[revision]]
        if _SHA_RE.match(revision):
            return repo.by_sha.get(revision)
        return None

    @staticmethod
    def _history(repo: _Repo, commit: _Commit) -> list[_Commit]:
        """``commit`` and its ancestors, newest first."""
        out = [commit]
        while out[-1].parent is not None:
            out.append(repo.by_sha[out[-1].parent])
        return out

    # ------------------------------------------------------------------ HTTP dispatch

    def _lookup_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HttpError(
                404, f"Repository Not Found: {repo_type} {repo_id} does not exist", "RepoNotFound"
            )
        return repo

    def _lookup_revision(self, repo: _Repo, revision: str) -> _Commit:
        commit = self._resolve(repo, revision)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _dispatch(self, h: _Handler, method: str, raw_path: str, query: dict[str, list[str]]) -> None:
        segs = raw_path[1:].split("/") if raw_path.startswith("/") else raw_path.split("/")
        if segs and segs[-1] == "" and len(segs) > 1:
            segs = segs[:-1]
        if segs[0] == "api":
            return self._dispatch_api(h, method, segs[1:], query)
        repo_type = "model"
        if segs[0] in ("datasets", "spaces") and len(segs) > 1:
            repo_type, segs = segs[0][:-1], segs[1:]
        if len(segs) >= 4 and segs[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id = f"{unquote(segs[0])}/{unquote(segs[1])}"
            return self._resolve_file(h, method, repo_type, repo_id, segs[3:])
        raise _Unknown()

    def _dispatch_api(self, h: _Handler, method: str, segs: list[str], query: dict[str, list[str]]) -> None:
        if segs == ["whoami-v2"] and method == "GET":
            return h.send_json(200, self._whoami())
        if segs == ["repos", "create"] and method == "POST":
            return self._api_create_repo(h, h.read_json())
        if segs == ["validate-yaml"] and method == "POST":
            h.read_body()
            return h.send_json(200, {"errors": [], "warnings": []})
        if len(segs) >= 3 and segs[0] in ("models", "datasets", "spaces"):
            repo_type = segs[0][:-1]
            repo_id = f"{unquote(segs[1])}/{unquote(segs[2])}"
            rest = segs[3:]
            with self._lock:
                if method == "GET" and not rest:
                    return self._api_info(h, repo_type, repo_id, "main", query)
                if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                    return self._api_info(h, repo_type, repo_id, unquote(rest[1]), query)
                if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                    path = "/".join(unquote(s) for s in rest[2:])
                    return self._api_tree(h, repo_type, repo_id, unquote(rest[1]), path, query)
                if method == "GET" and rest == ["refs"]:
                    return self._api_refs(h, repo_type, repo_id)
                if method == "GET" and len(rest) == 2 and rest[0] == "commits":
                    return self._api_commits(h, repo_type, repo_id, unquote(rest[1]))
                if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
                    return self._api_preupload(h, repo_type, repo_id, unquote(rest[1]), h.read_json())
                if method == "POST" and len(rest) == 2 and rest[0] == "commit":
                    return self._api_commit(h, repo_type, repo_id, unquote(rest[1]), h.read_body(), query)
                if method == "POST" and len(rest) == 2 and rest[0] == "branch":
                    return self._api_branch(h, repo_type, repo_id, unquote(rest[1]), h.read_json())
        raise _Unknown()

    # ------------------------------------------------------------------ routes

    def _resolve_file(self, h: _Handler, method: str, repo_type: str, repo_id: str, rest: list[str]) -> None:
        with self._lock:
            repo = self._lookup_repo(repo_type, repo_id)
            parts = [unquote(s) for s in rest]
            commit = self._resolve(repo, parts[0])
            path = "/".join(parts[1:])
            if commit is None:
                # Branch names containing '/' sent unencoded: take the longest prefix naming a branch.
                for i in range(len(parts) - 1, 1, -1):
                    commit = self._resolve(repo, "/".join(parts[:i]))
                    if commit is not None:
                        path = "/".join(parts[i:])
                        break
            if commit is None:
                raise _HttpError(404, f"Invalid rev id: {parts[0]}", "RevisionNotFound")
            data = commit.files.get(path)
            if data is None:
                raise _HttpError(
                    404,
                    f"Entry not found: {path} does not exist at {commit.sha}",
                    "EntryNotFound",
                    {"X-Repo-Commit": commit.sha},
                )
        headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{git_blob_sha(data)}"',
            "Accept-Ranges": "bytes",
        }
        status, body = 200, data
        rng = h.headers.get("Range")
        if rng:
            span = _parse_range(rng, len(data))
            if span == "unsatisfiable":
                raise _HttpError(
                    416, f"Range not satisfiable: {rng}", None, {"Content-Range": f"bytes */{len(data)}"}
                )
            if span is not None:
                start, end = span
                status, body = 206, data[start : end + 1]
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        h.send_bytes(status, body, "application/octet-stream", headers, head_only=method == "HEAD")

    def _whoami(self) -> dict:
        return {
            "type": "user",
            "id": hashlib.sha1(self.user.encode()).hexdigest()[:24],
            "name": self.user,
            "fullname": self.user.capitalize(),
            "email": f"{self.user}@example.invalid",
            "emailVerified": True,
            "canPay": False,
            "isPro": False,
            "avatarUrl": "",
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "dummy", "role": "write"}},
        }

    def _api_create_repo(self, h: _Handler, payload: dict) -> None:
        name = payload.get("name")
        if not isinstance(name, str) or not name:
            raise _HttpError(400, "Missing repo name")
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise _HttpError(400, f"Invalid repo type: {repo_type}")
        ns = payload.get("organization") or self.user
        repo_id = f"{ns}/{name}"
        private = bool(payload.get("private")) or payload.get("visibility") in ("private", "protected")
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # The Hub puts the repo URL in the 409 body; create_repo(exist_ok=True) reads it.
                raise _HttpError(
                    409,
                    f"You already created this {repo_type} repo",
                    None,
                    extra={"url": self._repo_url(repo_type, repo_id)},
                )
            url = self.create_repo(repo_id, repo_type=repo_type, private=private)
        h.send_json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _api_info(self, h: _Handler, repo_type: str, repo_id: str, revision: str, query: dict) -> None:
        repo = self._lookup_repo(repo_type, repo_id)
        commit = self._lookup_revision(repo, revision)
        blobs = query.get("blobs", [""])[-1].lower() in ("1", "true")
        siblings = []
        for path in sorted(commit.files):
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib.update(size=len(commit.files[path]), blobId=git_blob_sha(commit.files[path]))
            siblings.append(sib)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(v) for v in commit.files.values()),
        }
        if repo_type == "model":
            info.update(modelId=repo_id, spaces=[])
        h.send_json(200, info)

    def _api_tree(
        self, h: _Handler, repo_type: str, repo_id: str, revision: str, path: str, query: dict
    ) -> None:
        repo = self._lookup_repo(repo_type, repo_id)
        commit = self._lookup_revision(repo, revision)
        path = path.strip("/")
        recursive = query.get("recursive", [""])[-1].lower() in ("1", "true")
        expand = query.get("expand", [""])[-1].lower() in ("1", "true")
        prefix = f"{path}/" if path else ""
        under = {p: d for p, d in commit.files.items() if p.startswith(prefix)}
        if path and not under:
            raise _HttpError(
                404,
                f"Entry not found: directory {path} does not exist at {commit.sha}",
                "EntryNotFound",
                {"X-Repo-Commit": commit.sha},
            )
        dirs: set[str] = set()
        files: list[str] = []
        for p in under:
            rel_parts = p[len(prefix) :].split("/")
            depth = len(rel_parts) if recursive else 1
            for i in range(1, min(depth, len(rel_parts) - 1) + 1):
                dirs.add(prefix + "/".join(rel_parts[:i]))
            if recursive or len(rel_parts) == 1:
                files.append(p)
        entries: list[dict[str, Any]] = []
        for d in dirs:
            entries.append({"type": "directory", "oid": _tree_oid(commit.files, d), "size": 0, "path": d})
        for p in files:
            entries.append(
                {
                    "type": "file",
                    "oid": git_blob_sha(commit.files[p]),
                    "size": len(commit.files[p]),
                    "path": p,
                }
            )
        entries.sort(key=lambda e: e["path"])
        if expand:
            for e in entries:
                last = self._last_commit(repo, commit, e["path"], e["type"] == "directory")
                e["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}
        try:
            start = int(query.get("cursor", ["0"])[-1])
        except ValueError:
            raise _HttpError(400, "Invalid cursor") from None
        page_size = max(1, int(self.tree_page_size))
        page = entries[start : start + page_size]
        headers = {}
        if start + page_size < len(entries):
            q = f"recursive={str(recursive).lower()}&expand={str(expand).lower()}&cursor={start + page_size}"
            headers["Link"] = f'<{self.url}{h.raw_path}?{q}>; rel="next"'
        h.send_json(200, page, headers)

    def _last_commit(self, repo: _Repo, commit: _Commit, path: str, is_dir: bool) -> _Commit:
        def snap(c: _Commit) -> Any:
            if is_dir:
                return _tree_oid(c.files, path)
            d = c.files.get(path)
            return None if d is None else git_blob_sha(d)

        current = snap(commit)
        last = commit
        for c in self._history(repo, commit)[1:]:
            if snap(c) != current:
                break
            last = c
        return last

    def _api_refs(self, h: _Handler, repo_type: str, repo_id: str) -> None:
        repo = self._lookup_repo(repo_type, repo_id)
        branches = [
            {"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
            for b, sha in sorted(repo.branches.items())
        ]
        h.send_json(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def _api_commits(self, h: _Handler, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._lookup_repo(repo_type, repo_id)
        commit = self._lookup_revision(repo, revision)
        out = [
            {
                "id": c.sha,
                "title": c.title,
                "message": c.message,
                "authors": [{"user": self.user}],
                "date": c.date,
            }
            for c in self._history(repo, commit)
        ]
        h.send_json(200, out)

    def _api_preupload(self, h: _Handler, repo_type: str, repo_id: str, revision: str, payload: dict) -> None:
        repo = self._lookup_repo(repo_type, repo_id)
        commit = self._lookup_revision(repo, revision)
        files = payload.get("files")
        if not isinstance(files, list):
            raise _HttpError(400, "Invalid preupload payload: 'files' must be a list")
        out = []
        for f in files:
            entry: dict[str, Any] = {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
            existing = commit.files.get(f["path"])
            if self.report_existing_oids and existing is not None:
                entry["oid"] = git_blob_sha(existing)
            out.append(entry)
        h.send_json(200, {"files": out, "commitOid": commit.sha})

    def _api_commit(
        self, h: _Handler, repo_type: str, repo_id: str, branch: str, body: bytes, query: dict
    ) -> None:
        repo = self._lookup_repo(repo_type, repo_id)
        if query.get("create_pr", ["0"])[-1] not in ("0", "", "false"):
            raise _HttpError(400, "HubServer does not support pull requests (create_pr)")
        branch = branch.removeprefix("refs/heads/")
        if branch not in repo.branches:
            raise _HttpError(
                404, f"Invalid rev id: {branch} (commits go to an existing branch)", "RevisionNotFound"
            )
        head = repo.by_sha[repo.branches[branch]]
        try:
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _HttpError(400, f"Invalid ndjson commit payload: {e}") from None
        header: dict = {}
        new_files = dict(head.files)
        for item in lines:
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                header = value
            elif key == "file":
                content = value.get("content", "")
                if value.get("encoding", "base64") == "base64":
                    data = base64.b64decode(content)
                else:
                    data = content.encode()
                new_files[value["path"].strip("/")] = data
            elif key == "deletedFile":
                path = value["path"].strip("/")
                if path not in new_files:
                    raise _HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del new_files[path]
            elif key == "deletedFolder":
                folder = value["path"].strip("/") + "/"
                doomed = [p for p in new_files if p.startswith(folder) or folder == "/"]
                if not doomed:
                    raise _HttpError(404, f"A folder with this name doesn't exist: {folder}", "EntryNotFound")
                for p in doomed:
                    del new_files[p]
            elif key == "lfsFile":
                raise _HttpError(400, "HubServer stores regular files only (preupload never asks for LFS)")
            else:
                raise _HttpError(400, f"Unsupported commit operation key: {key!r}")
        parent = header.get("parentCommit")
        if parent is not None and parent != head.sha:
            raise _HttpError(
                412, f"A commit has happened since. Please refresh and try again. (head is {head.sha})"
            )
        commit = self._add_commit(
            repo, head.sha, new_files, header.get("summary") or "Commit", header.get("description") or ""
        )
        repo.branches[branch] = commit.sha
        url = f"{self._repo_url(repo_type, repo_id)}/commit/{commit.sha}"
        h.send_json(200, {"success": True, "commitOid": commit.sha, "commitUrl": url, "pullRequestUrl": None})

    def _api_branch(self, h: _Handler, repo_type: str, repo_id: str, branch: str, payload: dict) -> None:
        repo = self._lookup_repo(repo_type, repo_id)
        if branch in repo.branches:
            raise _HttpError(409, f"Reference already exists: refs/heads/{branch}")
        start = self._lookup_revision(repo, payload.get("startingPoint") or "main")
        repo.branches[branch] = start.sha
        h.send_json(200, {})


def _tree_oid(files: dict[str, bytes], directory: str) -> str:
    prefix = directory.strip("/") + "/"
    h = hashlib.sha1(b"tree\0")
    for p in sorted(files):
        if p.startswith(prefix):
            h.update(f"{p[len(prefix) :]}\0{git_blob_sha(files[p])}\n".encode())
    return h.hexdigest()


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """Parse a single ``bytes=`` range; ``None`` means ignore it (serve 200)."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix range: last N bytes
        n = int(m.group(2))
        return (max(size - n, 0), size - 1) if size and n else "unsatisfiable"
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


class _Unknown(Exception):
    pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # snapshot_download opens up to 8 connections at once (one request each)


class _Handler(BaseHTTPRequestHandler):
    server_version = "HubServer/1.0"
    protocol_version = "HTTP/1.0"  # one request per connection: no stale keep-alive sockets after stop()

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- request body -------------------------------------------------------------

    def read_body(self) -> bytes:
        if getattr(self, "_body", None) is not None:
            return self._body
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self._body = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length) if length else b""
        return self._body

    def read_json(self) -> dict:
        body = self.read_body()
        try:
            data = json.loads(body or b"{}")
        except json.JSONDecodeError as e:
            raise _HttpError(400, f"Invalid JSON body: {e}") from None
        if not isinstance(data, dict):
            raise _HttpError(400, "JSON body must be an object")
        return data

    # -- responses ---------------------------------------------------------------------

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict | None = None,
        head_only: bool = False,
    ) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json; charset=utf-8", headers)

    def send_error_json(self, err: _HttpError, head_only: bool) -> None:
        headers = dict(err.headers)
        headers["X-Error-Message"] = (
            err.message.encode("ascii", "backslashreplace").decode().replace("\n", " ")
        )
        if err.code:
            headers["X-Error-Code"] = err.code
        body = json.dumps({"error": err.message, **err.extra}).encode()
        self.send_bytes(err.status, body, "application/json; charset=utf-8", headers, head_only=head_only)

    # -- entry points ------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        self._body = None
        self._status = 0
        split = urlsplit(self.path)
        self.raw_path = split.path
        hub = self.hub
        with hub._lock:
            hub.requests.append((method, split.path))
            detail = {
                "method": method,
                "path": split.path,
                "query": split.query,
                "status": None,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
            hub.request_details.append(detail)
        query = parse_qs(split.query, keep_blank_values=True)
        head_only = method == "HEAD"
        try:
            hub._dispatch(self, method, split.path, query)
        except _HttpError as err:
            self.send_error_json(err, head_only)
        except _Unknown:
            target = self.path
            with hub._lock:
                hub.unknown_requests.append((method, target))
            print(f"HubServer: no route for {method} {target} -> 404", file=sys.stderr)
            self.send_error_json(_HttpError(404, f"HubServer: no route for {method} {split.path}"), head_only)
        except Exception:  # noqa: BLE001 - any server bug becomes a 500 the test can see
            tb = traceback.format_exc()
            with hub._lock:
                hub.errors.append(tb)
            print(f"HubServer: error while serving {method} {self.path}\n{tb}", file=sys.stderr)
            try:
                self.send_error_json(
                    _HttpError(500, "HubServer internal error (see HubServer.errors)"), head_only
                )
            except OSError:
                pass
        detail["status"] = self._status

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
