"""The real huggingface_hub client against the loopback HubServer (tests/hub_server.py).

Nothing is mocked: every call below goes over HTTP to 127.0.0.1.  huggingface_hub computes
``constants.ENDPOINT``/``HF_HUB_OFFLINE``/``HF_HUB_CACHE`` at import time, so the tests pass
``endpoint=`` and ``cache_dir=`` explicitly and switch offline mode with ``local_files_only=True``,
by patching ``constants.HF_HUB_OFFLINE``, or in a fresh subprocess with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import HubServer, git_blob_sha
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub import errors as hf_errors

RepositoryNotFoundError = hf_errors.RepositoryNotFoundError
RevisionNotFoundError = hf_errors.RevisionNotFoundError
EntryNotFoundError = hf_errors.EntryNotFoundError
# 1.x+ raises RemoteEntryNotFoundError (a subclass of EntryNotFoundError) for a 404 from the server.
RemoteEntryNotFoundError = getattr(hf_errors, "RemoteEntryNotFoundError", EntryNotFoundError)
LocalEntryNotFoundError = hf_errors.LocalEntryNotFoundError
HfHubHTTPError = hf_errors.HfHubHTTPError

REPO = "tester/tiny"
CONFIG = b'{"dim": 8}'
WEIGHTS = b"\x00\x01" * 64


@pytest.fixture(autouse=True)
def _hf_env(monkeypatch, tmp_path):
    # Read at call time by this huggingface_hub version (utils/_auth.py: os.environ["HF_TOKEN"]).
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    # Read at import time: an HF_HUB_OFFLINE=1 in the developer's shell would otherwise break online tests.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.url)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "hub_cache"


def _tiny_repo(hub, files=None):
    hub.create_repo(REPO)
    return hub.put_files(REPO, files or {"config.json": CONFIG, "weights/model.bin": WEIGHTS})


# --------------------------------------------------------------------------- upload


@pytest.mark.parametrize("disable_xet", [False, True], ids=["default", "xet-disabled"])
def test_create_repo_upload_folder_list_files(hub, api, tmp_path, monkeypatch, disable_xet):
    # With hf_xet installed upload_folder takes the pipelined uploader; HF_HUB_DISABLE_XET (import-time
    # constant, patched here) selects the legacy create_commit path.  Both must work against the server.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", disable_xet)
    folder = tmp_path / "export"
    (folder / "sub").mkdir(parents=True)
    files = {
        "README.md": b"---\nlicense: mit\n---\n# tiny\n",
        "config.json": CONFIG,
        "sub/weights.bin": bytes(range(256)) * 4,
    }
    for rel, data in files.items():
        (folder / rel).write_bytes(data)

    url = api.create_repo(REPO)
    assert url == f"{hub.url}/{REPO}" and url.repo_id == REPO
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(REPO)
    assert exc.value.response.status_code == 409
    api.create_repo(REPO, exist_ok=True)

    info = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="export")
    assert info.oid == hub.head(REPO)
    assert len(hub.commits(REPO)) == 2  # initial empty commit + upload
    assert hub.files(REPO) == files
    assert sorted(api.list_repo_files(REPO)) == sorted(files)

    paths = [(m, p) for m, p in hub.requests]
    for expected in [
        ("POST", "/api/repos/create"),
        ("POST", "/api/validate-yaml"),
        ("POST", f"/api/models/{REPO}/preupload/main"),
        ("POST", f"/api/models/{REPO}/commit/main"),
        ("GET", f"/api/models/{REPO}/tree/main"),
    ]:
        assert expected in paths
    commit_req = next(r for r in hub.request_details if r["path"].endswith("/commit/main"))
    assert commit_req["headers"]["authorization"] == "Bearer hf_dummy"
    assert commit_req["headers"]["content-type"] == "application/x-ndjson"
    assert hub.unknown_requests == [] and hub.errors == []

    # Re-uploading identical content: preupload reports the existing oids, the client skips every file
    # and makes no commit (as on the Hub).
    again = api.upload_folder(repo_id=REPO, folder_path=folder)
    assert again.oid == info.oid and len(hub.commits(REPO)) == 2


def test_commit_api_branches_deletes_and_parent_commit(hub, api, cache):
    first = _tiny_repo(hub)
    api.upload_file(path_or_fileobj=b"# card\n", path_in_repo="README.md", repo_id=REPO)
    assert ("POST", "/api/validate-yaml") in hub.requests  # create_commit path validates README.md
    api.delete_file("config.json", repo_id=REPO)
    assert "config.json" not in hub.files(REPO)
    api.delete_folder("weights", repo_id=REPO)
    assert sorted(hub.files(REPO)) == ["README.md"]
    with pytest.raises(EntryNotFoundError):
        api.delete_file("nope.txt", repo_id=REPO)

    # parentCommit is honoured: a stale parent is refused (412).
    with pytest.raises(HfHubHTTPError) as exc:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, parent_commit=first)
    assert exc.value.response.status_code == 412

    api.create_branch(REPO, branch="dev", revision=first)
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=REPO, revision="dev")
    assert "dev.txt" not in hub.files(REPO)
    assert hub.files(REPO, "dev")["dev.txt"] == b"dev only"
    p = hf_hub_download(REPO, "dev.txt", revision="dev", endpoint=hub.url, cache_dir=cache)
    assert Path(p).read_bytes() == b"dev only"
    refs = api.list_repo_refs(REPO)
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [c.commit_id for c in api.list_repo_commits(REPO)] == list(
        reversed(hub.commits(REPO, branch="main"))
    )


# --------------------------------------------------------------------------- download


def test_hf_hub_download_branch_and_pinned_sha(hub, cache):
    hub.create_repo(REPO)
    old = hub.put_files(REPO, {"config.json": b'{"v": 1}'})
    new = hub.put_files(REPO, {"config.json": b'{"v": 2}'})
    assert hub.commits(REPO)[-2:] == [old, new]

    p = hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=cache)
    assert Path(p).read_bytes() == b'{"v": 2}'
    assert hub.requests == [
        ("HEAD", f"/{REPO}/resolve/main/config.json"),
        ("GET", f"/{REPO}/resolve/main/config.json"),
    ]

    storage = cache / "models--tester--tiny"
    assert (storage / "refs" / "main").read_text() == new
    assert Path(p) == storage / "snapshots" / new / "config.json"
    assert (storage / "blobs" / git_blob_sha(b'{"v": 2}')).is_file()

    p_old = hf_hub_download(REPO, "config.json", revision=old, endpoint=hub.url, cache_dir=cache)
    assert Path(p_old).read_bytes() == b'{"v": 1}'
    assert ("GET", f"/{REPO}/resolve/{old}/config.json") in hub.requests

    # Warm cache: a branch still costs one HEAD (to resolve main), a pinned sha costs nothing.
    hub.clear_log()
    hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=cache)
    assert hub.requests == [("HEAD", f"/{REPO}/resolve/main/config.json")]
    hub.clear_log()
    hf_hub_download(REPO, "config.json", revision=old, endpoint=hub.url, cache_dir=cache)
    assert hub.requests == []


def test_snapshot_download_and_tree_pagination(hub, api, cache):
    files = {f"f{i}.txt": f"file {i}".encode() for i in range(3)}
    files["nested/deep/w.bin"] = b"\xff" * 10
    sha = _tiny_repo(hub, files)

    folder = Path(snapshot_download(REPO, endpoint=hub.url, cache_dir=cache))
    assert folder == cache / "models--tester--tiny" / "snapshots" / sha
    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert got == files
    assert hub.requests[:2] == [
        ("GET", f"/api/models/{REPO}/revision/main"),
        ("GET", f"/api/models/{REPO}/tree/{sha}"),
    ]
    assert sorted(p for m, p in hub.requests if m == "GET" and "/resolve/" in p) == sorted(
        f"/{REPO}/resolve/{sha}/{name}" for name in files
    )

    only = Path(
        snapshot_download(
            REPO, endpoint=hub.url, cache_dir=cache / "other", allow_patterns=["*.json", "nested/*"]
        )
    )
    assert [p.relative_to(only).as_posix() for p in only.rglob("*") if p.is_file()] == ["nested/deep/w.bin"]

    hub.clear_log()
    hub.tree_page_size = 2
    assert sorted(api.list_repo_files(REPO)) == sorted(files)
    assert len([p for _, p in hub.requests if "/tree/" in p]) == 3  # 6 entries (4 files + 2 dirs), 2 per page
    top = {(type(e).__name__, e.path) for e in api.list_repo_tree(REPO)}
    assert ("RepoFolder", "nested") in top and ("RepoFile", "f0.txt") in top
    assert [e.path for e in api.list_repo_tree(REPO, path_in_repo="nested/deep")] == ["nested/deep/w.bin"]

    info = api.model_info(REPO)
    assert info.sha == sha and sorted(s.rfilename for s in info.siblings) == sorted(files)


def test_dataset_repo(hub, api, cache):
    api.create_repo("tester/data", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data.csv", repo_id="tester/data", repo_type="dataset"
    )
    p = hf_hub_download("tester/data", "data.csv", repo_type="dataset", endpoint=hub.url, cache_dir=cache)
    assert Path(p).read_bytes() == b"a,b\n1,2\n"
    assert ("HEAD", "/datasets/tester/data/resolve/main/data.csv") in hub.requests
    folder = snapshot_download("tester/data", repo_type="dataset", endpoint=hub.url, cache_dir=cache)
    assert os.listdir(folder) == ["data.csv"]
    assert not hub.repo_exists("tester/data")  # models and datasets are separate namespaces


# --------------------------------------------------------------------------- errors


def test_error_mapping(hub, api, cache):
    sha = _tiny_repo(hub)
    dl = {"endpoint": hub.url, "cache_dir": cache}

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("tester/missing", "config.json", **dl)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("tester/missing", **dl)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("tester/missing")

    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "nope.json", **dl)
    # The 404 carried X-Repo-Commit, so the client cached the miss.
    assert (cache / "models--tester--tiny" / ".no_exist" / sha / "nope.json").exists()

    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="no-such-branch", **dl)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="f" * 40, **dl)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="no-such-branch", **dl)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="no-such-branch")
    assert hub.unknown_requests == [] and hub.errors == []


def test_file_exists(hub, api):
    old = _tiny_repo(hub)
    hub.put_files(REPO, {"config.json": None})  # delete it on main
    assert api.file_exists(REPO, "weights/model.bin")
    assert not api.file_exists(REPO, "config.json")
    assert api.file_exists(REPO, "config.json", revision=old)
    assert not api.file_exists(REPO, "config.json", revision="no-such-branch")
    assert not api.file_exists("tester/missing", "config.json")
    assert api.repo_exists(REPO) and not api.repo_exists("tester/missing")


# --------------------------------------------------------------------------- offline


def test_offline_warm_cache_and_cold_cache(hub, cache, monkeypatch):
    sha = _tiny_repo(hub)
    hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=cache)
    snapshot_download(REPO, endpoint=hub.url, cache_dir=cache)
    hub.clear_log()

    # (a) per call: local_files_only=True
    p = hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=cache, local_files_only=True)
    assert Path(p).read_bytes() == CONFIG
    folder = snapshot_download(REPO, endpoint=hub.url, cache_dir=cache, local_files_only=True)
    assert Path(folder).name == sha
    # (b) process-wide: the import-time constant, patched (setting HF_HUB_OFFLINE in os.environ now is ignored)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    p = hf_hub_download(REPO, "weights/model.bin", endpoint=hub.url, cache_dir=cache)
    assert Path(p).read_bytes() == WEIGHTS
    assert hub.requests == []

    # Cold cache: fails fast with LocalEntryNotFoundError, still without contacting the server.
    t0 = time.monotonic()
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=cache / "cold")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(
            REPO, "config.json", endpoint=hub.url, cache_dir=cache / "cold", local_files_only=True
        )
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(REPO, endpoint=hub.url, cache_dir=cache / "cold", local_files_only=True)
    assert time.monotonic() - t0 < 5
    assert hub.requests == []


def test_offline_env_var_in_fresh_process(hub, cache, tmp_path):
    _tiny_repo(hub)
    snapshot_download(REPO, endpoint=hub.url, cache_dir=cache)
    hub.clear_log()
    script = textwrap.dedent(
        """
        import json, time
        from huggingface_hub import hf_hub_download, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
        out = {"config": open(hf_hub_download("tester/tiny", "config.json")).read()}
        out["snapshot"] = snapshot_download("tester/tiny")
        t0 = time.monotonic()
        try:
            hf_hub_download("tester/tiny", "config.json", cache_dir=COLD)
        except LocalEntryNotFoundError:
            out["cold_error_s"] = time.monotonic() - t0
        print(json.dumps(out))
        """
    ).replace("COLD", repr(str(tmp_path / "cold")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(cache),
        HF_ENDPOINT=hub.url,
        HF_TOKEN="hf_dummy",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(tmp_path / "hf_home"),
    )
    res = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["config"] == '{"dim": 8}'
    assert Path(out["snapshot"]).parent.parent == cache / "models--tester--tiny"
    assert out["cold_error_s"] < 5
    assert hub.requests == []


# --------------------------------------------------------------------------- corruption + raw contract


def test_corrupt_file_makes_new_commit(hub, cache):
    good = _tiny_repo(hub)
    p_good = hf_hub_download(REPO, "weights/model.bin", endpoint=hub.url, cache_dir=cache)
    bad = hub.corrupt_file(REPO, "weights/model.bin", b"garbage")
    assert bad != good and hub.commits(REPO)[-2:] == [good, bad]
    assert hub.files(REPO)["weights/model.bin"] == b"garbage"
    assert hub.files(REPO, good)["weights/model.bin"] == WEIGHTS
    assert hub.files(REPO)["config.json"] == hub.files(REPO, good)["config.json"]

    p_bad = hf_hub_download(REPO, "weights/model.bin", endpoint=hub.url, cache_dir=cache)
    assert Path(p_bad).read_bytes() == b"garbage" and Path(p_bad).parent.parent.name == bad
    assert Path(p_good).read_bytes() == WEIGHTS  # the old snapshot is untouched
    with pytest.raises(KeyError):
        hub.corrupt_file(REPO, "missing.bin", b"x")


def _raw(url, method="GET", headers=None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_raw_http_contract(hub):
    sha = _tiny_repo(hub)
    url = f"{hub.url}/{REPO}/resolve/main/config.json"
    status, headers, body = _raw(url, "HEAD")
    assert status == 200 and body == b""
    assert headers["X-Repo-Commit"] == sha
    assert headers["ETag"] == f'"{git_blob_sha(CONFIG)}"'

    assert headers["Content-Length"] == str(len(CONFIG))
    assert headers["Content-Type"] == "application/octet-stream"
    assert not any(k.lower().startswith("x-xet") for k in headers)

    status, headers, body = _raw(url, headers={"Range": "bytes=2-"})
    assert status == 206 and body == CONFIG[2:] and headers["Content-Range"] == "bytes 2-9/10"

    status, headers, body = _raw(f"{hub.url}/{REPO}/resolve/main/missing.txt", "GET")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound" and headers["X-Repo-Commit"] == sha
    assert "error" in json.loads(body) and headers["X-Error-Message"]
    assert _raw(f"{hub.url}/tester/missing/resolve/main/x")[1]["X-Error-Code"] == "RepoNotFound"
    assert _raw(f"{hub.url}/{REPO}/resolve/nope/x")[1]["X-Error-Code"] == "RevisionNotFound"

    status, headers, body = _raw(f"{hub.url}/api/spaces-unknown/route")
    assert status == 404 and "X-Error-Code" not in headers and "no route" in json.loads(body)["error"]
    assert hub.unknown_requests == [("GET", "/api/spaces-unknown/route")]
    assert json.loads(_raw(f"{hub.url}/api/whoami-v2")[2])["name"] == "tester"

    hub.stop()
    hub.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
