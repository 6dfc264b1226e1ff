"""A local stand-in for the Hugging Face hub's HTTP API, for tests that push and pull without internet.

    python -m tests.hub_server            # serves on a free 127.0.0.1 port until Ctrl-C; prints HF_ENDPOINT

It implements only the endpoints huggingface_hub 2.4.0 calls for create_repo, create_branch, upload_folder
(preupload + one NDJSON commit), model_info/space_info/dataset_info/repo_info (file sizes with files_metadata),
list_repo_tree (one level, or every level with recursive: as HfFileSystem walks a repo for datasets 5.2.0's
load_dataset), hf_hub_download/snapshot_download (resolve with ETag, X-Repo-Commit, Content-Length) and card YAML
validation,
for model repos, for Spaces (`repo_type="space"`: kept apart in `spaces`, created with their SDK) and for
datasets (`repo_type="dataset"`: kept apart in `datasets`).
Pushed files are kept per repo and per commit under a folder. Files go inline as "regular" ones, or, from
`lfs_min_bytes` up, through the git LFS batch API and a basic PUT, as the hub takes large files (the client must
then have Xet off, HF_HUB_DISABLE_XET=1: the stand-in has no Xet storage). Repos in `gated` serve their files only
to users who accepted their terms (none here). Faults can be injected: the next N write calls answer a 5xx or
hang, every write call answers 401, or the next N calls of one endpoint (`fail_at["preupload"]`,
`fail_at["commit"]`) answer `fail_status`, after the repo exists. Hand-written because no library ships a hub double.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import yaml

REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
REV = r"(?P<rev>[^/]+)"
KIND = r"(?P<kind>models|spaces|datasets)"  # the API path segment of a repo type
SPACE_SDKS = {"gradio", "streamlit", "docker", "static"}
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
SHORT_DESCRIPTION_MAX = 60


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a file, which the hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, str]  # path in repo -> git blob sha1 (content stored under blobs/)


@dataclass
class Repo:
    private: bool
    sdk: str | None = None  # Spaces only
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: list[Commit] = field(default_factory=list)

    def commit(self, rev: str) -> Commit | None:
        oid = self.branches.get(rev, rev)
        return next((c for c in self.commits if c.oid == oid), None)


class HubStandIn:
    """The hub's state plus the fault switches tests flip; `url` is what HF_ENDPOINT must be set to."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="hub-stand-in-"))
        self.repos: dict[str, Repo] = {}  # model repos
        self.spaces: dict[str, Repo] = {}
        self.datasets: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.fail_writes = 0  # the next N write calls answer `fail_status`
        self.fail_status = 503
        self.hang_writes = 0  # the next N write calls wait `hang_s` before answering
        self.hang_s = 5.0
        self.deny_writes = False  # every write call answers 401
        self.fail_at: dict[str, int] = {}  # endpoint ("preupload", "commit") -> how many of its next calls fail
        self.lfs_min_bytes: int | None = None  # files this large go through git LFS (None: every file inline)
        self.gated: set[str] = set()  # repo ids whose files answer 403 GatedRepo
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubStandIn:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def store(self, kind: str | None) -> dict[str, Repo]:
        """The repos of an API path's kind: "spaces", "datasets", else models."""
        return {"spaces": self.spaces, "datasets": self.datasets}.get(kind, self.repos)

    def file(self, repo_id: str, path: str, rev: str = "main", *, kind: str = "models") -> bytes:
        """The content of `path` at `rev` in `repo_id` (what a download would get)."""
        commit = self.store(kind)[repo_id].commit(rev)
        return (self.root / "blobs" / commit.files[path]).read_bytes()

    def commit_messages(self, repo_id: str, *, kind: str = "models") -> list[str]:
        return [c.message for c in self.store(kind)[repo_id].commits]

    # --- state changes, called by the handler under the lock ---

    def create_repo(self, repo_id: str, private: bool, *, kind: str = "models", sdk: str | None = None) -> bool:
        store = self.store(kind)
        if repo_id in store:
            return False
        repo = store[repo_id] = Repo(private=private, sdk=sdk)
        self.add_commit(
            repo,
            "main",
            "initial commit",
            {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
            [],
        )
        return True

    def add_commit(self, repo: Repo, branch: str, message: str, added: dict[str, bytes], deleted: list[str]) -> Commit:
        parent = repo.commit(branch)
        files = dict(parent.files) if parent else {}
        for path in deleted:
            files.pop(path, None)
        for path, content in added.items():
            blob = self.root / "blobs" / git_blob_sha1(content)
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(content)
            files[path] = blob.name
        oid = hashlib.sha1(f"{len(repo.commits)}{message}{sorted(files.items())}{time.time_ns()}".encode()).hexdigest()
        commit = Commit(oid=oid, message=message, files=files)
        repo.commits.append(commit)
        repo.branches[branch] = oid
        return commit


def _validate_card(content: str) -> list[str]:
    """The hub's checks on README.md metadata that a push from this project could trip."""
    match = re.match(r"^---\n(.*?)\n---", content, re.DOTALL)
    if not match:
        return []
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as err:
        return [f"YAML does not parse: {err}"]
    errors = []
    hub_id = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
    for key in ("base_model", "datasets"):
        values = meta.get(key) or []
        for value in [values] if isinstance(values, str) else values:
            if not hub_id.match(str(value)):
                errors.append(f'"{key}" must be hub ids, got "{value}"')
    for entry in meta.get("model-index") or []:
        for result in entry.get("results", []):
            if "task" not in result or "dataset" not in result or "metrics" not in result:
                errors.append('"model-index" results need task, dataset and metrics')
    return errors


def _validate_space_card(content: str) -> list[str]:
    """The hub's checks on a Space's README.md header (https://huggingface.co/docs/hub/spaces-config-reference)."""
    match = re.match(r"^---\n(.*?)\n---", content, re.DOTALL)
    if not match:
        return ["a Space's README.md needs a YAML header"]
    meta = yaml.safe_load(match.group(1)) or {}
    errors = []
    if meta.get("sdk") not in SPACE_SDKS:
        errors.append(f'"sdk" must be one of {sorted(SPACE_SDKS)}, got "{meta.get("sdk")}"')
    for key in ("colorFrom", "colorTo"):
        if key in meta and meta[key] not in SPACE_COLORS:
            errors.append(f'"{key}" must be one of {sorted(SPACE_COLORS)}, got "{meta[key]}"')
    if len(str(meta.get("short_description", ""))) > SHORT_DESCRIPTION_MAX:
        errors.append(f'"short_description" must be at most {SHORT_DESCRIPTION_MAX} characters')
    hub_id = re.compile(r"^[\w.-]+/[\w.-]+$")
    for model in meta.get("models") or []:
        if not hub_id.match(str(model)):
            errors.append(f'"models" must be hub ids, got "{model}"')
    for entry in meta.get("preload_from_hub") or []:
        if not isinstance(entry, str) or not hub_id.match(entry.split(" ")[0]):
            errors.append(f'"preload_from_hub" entries are "repo_id [files [revision]]" strings, got "{entry}"')
    return errors


def _handler_for(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        # --- plumbing ---

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, *, head: bool = False) -> None:
            try:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client timed out on a hung answer and left

        def _json(self, status: int, payload, headers: dict | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str | None, message: str, *, head: bool = False) -> None:
            headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
            self._send(
                status,
                json.dumps({"error": message}).encode(),
                {"Content-Type": "application/json", **headers},
                head=head,
            )

        def _authorized(self) -> bool:
            return self.headers.get("Authorization", "").startswith("Bearer ")

        def _readable(self, repo_id: str, kind: str | None = None) -> Repo | None:
            repo = hub.store(kind).get(repo_id)
            if repo is None or (repo.private and not self._authorized()):
                return None
            return repo

        def _write_fault(self, endpoint: str) -> bool:
            """Apply an injected fault to a write call to `endpoint`; True when it has been answered."""
            with hub.lock:
                if hub.deny_writes:
                    self._error(401, None, "Invalid credentials in Authorization header")
                    return True
                if hub.fail_at.get(endpoint, 0) > 0:
                    hub.fail_at[endpoint] -= 1
                    self._error(hub.fail_status, None, f"injected fault at {endpoint}")
                    return True
                hang = hub.hang_writes > 0
                hub.hang_writes -= hang
                fail = not hang and hub.fail_writes > 0
                hub.fail_writes -= fail
            if hang:
                time.sleep(hub.hang_s)
            if fail or hang:
                self._error(hub.fail_status if fail else 504, None, "injected fault")
                return True
            return False

        # --- routing ---

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            with hub.lock:
                hub.requests.append((method, path))
            routes = [
                ("POST", r"/api/repos/create", self.create_repo),
                ("POST", r"/api/validate-yaml", self.validate_yaml),
                ("POST", rf"/api/{KIND}/{REPO}/preupload/{REV}", self.preupload),
                ("POST", rf"/api/{KIND}/{REPO}/commit/{REV}", self.commit),
                ("POST", rf"/api/{KIND}/{REPO}/branch/{REV}", self.create_branch),
                ("POST", rf"/(?:(?P<kind>spaces|datasets)/)?{REPO}\.git/info/lfs/objects/batch", self.lfs_batch),
                ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})", self.lfs_upload),
                ("POST", r"/lfs-verify", self.lfs_verify),
                ("GET", rf"/api/{KIND}/{REPO}(?:/revision/{REV})?", self.model_info),
                ("GET", rf"/api/{KIND}/{REPO}/tree/{REV}(?:/(?P<sub>.*))?", self.tree),
                ("GET", rf"/(?:(?P<kind>spaces|datasets)/)?{REPO}/resolve/{REV}/(?P<file>.+)", self.resolve),
                ("HEAD", rf"/(?:(?P<kind>spaces|datasets)/)?{REPO}/resolve/{REV}/(?P<file>.+)", self.resolve),
            ]
            for verb, pattern, handler in routes:
                match = re.fullmatch(pattern, path)
                if verb == method and match:
                    if method == "POST" and path != "/api/validate-yaml" and self._write_fault(handler.__name__):
                        self._body()
                        return
                    handler(head=method == "HEAD", query=parse_qs(url.query), **match.groupdict())
                    return
            # A HEAD answer has no body: one sent anyway would be read as the next answer on a kept-alive connection
            self._error(404, None, f"stand-in has no route for {method} {path}", head=method == "HEAD")

        # --- endpoints ---

        def create_repo(self, **_) -> None:
            payload = json.loads(self._body())
            repo_id = f"{payload['organization']}/{payload['name']}"
            kind = f"{payload.get('type') or 'model'}s"
            if kind == "spaces" and payload.get("sdk") not in SPACE_SDKS:
                return self._error(400, None, f"a Space needs an sdk, one of {sorted(SPACE_SDKS)}")
            with hub.lock:
                created = hub.create_repo(
                    repo_id, private=payload.get("visibility") == "private", kind=kind, sdk=payload.get("sdk")
                )
            if not created:
                self._json(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"})
            else:
                self._json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})

        def create_branch(self, repo: str, rev: str, kind: str, **_) -> None:
            payload = json.loads(self._body() or b"{}")
            with hub.lock:
                target = hub.store(kind).get(repo)
                if target is None:
                    return self._error(404, "RepoNotFound", "Repository not found")
                if rev in target.branches:
                    return self._error(409, None, "Branch already exists")
                target.branches[rev] = target.commit(payload.get("startingPoint") or "main").oid
            self._json(200, {})

        def validate_yaml(self, **_) -> None:
            payload = json.loads(self._body())
            validate = _validate_space_card if payload.get("repoType") == "space" else _validate_card
            errors = validate(payload["content"])
            self._json(400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})

        def preupload(self, repo: str, rev: str, kind: str, **_) -> None:
            payload = json.loads(self._body())
            target = hub.store(kind).get(repo)
            if target is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            commit = target.commit(rev)
            existing = commit.files if commit else {}
            files = [
                {
                    "path": f["path"],
                    "uploadMode": self._upload_mode(f["size"]),
                    "shouldIgnore": False,
                    "oid": existing.get(f["path"]),
                }
                for f in payload["files"]
            ]
            self._json(200, {"files": files, "commitOid": commit.oid if commit else None})

        def commit(self, repo: str, rev: str, kind: str, **_) -> None:
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            header = next(line["value"] for line in lines if line["key"] == "header")
            added = {
                line["value"]["path"]: base64.b64decode(line["value"]["content"])
                for line in lines
                if line["key"] == "file"
            }
            deleted = [line["value"]["path"] for line in lines if line["key"] == "deletedFile"]
            for line in lines:
                if line["key"] == "lfsFile":  # uploaded before the commit, through lfs_batch and lfs_upload
                    stored = hub.root / "lfs" / line["value"]["oid"]
                    if not stored.is_file():
                        return self._error(400, None, f"the LFS object of {line['value']['path']} was never uploaded")
                    added[line["value"]["path"]] = stored.read_bytes()
            with hub.lock:
                target = hub.store(kind).get(repo)
                if target is None:
                    return self._error(404, "RepoNotFound", "Repository not found")
                if rev not in target.branches:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                commit = hub.add_commit(target, rev, header["summary"], added, deleted)
            self._json(
                200, {"success": True, "commitOid": commit.oid, "commitUrl": f"{hub.url}/{repo}/commit/{commit.oid}"}
            )

        def _upload_mode(self, size: int) -> str:
            return "lfs" if hub.lfs_min_bytes is not None and size >= hub.lfs_min_bytes else "regular"

        def lfs_batch(self, repo: str, kind: str | None = None, **_) -> None:
            payload = json.loads(self._body())
            if hub.store(kind).get(repo) is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            objects = []
            for obj in payload["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if not (hub.root / "lfs" / obj["oid"]).is_file():  # an object already stored needs no upload
                    entry["actions"] = {
                        "upload": {"href": f"{hub.url}/lfs-objects/{obj['oid']}"},
                        "verify": {"href": f"{hub.url}/lfs-verify"},
                    }
                objects.append(entry)
            self._json(200, {"transfer": "basic", "objects": objects})

        def lfs_upload(self, oid: str, **_) -> None:
            content = self._body()
            if hashlib.sha256(content).hexdigest() != oid:
                return self._error(400, None, "the uploaded content does not match its sha256")
            stored = hub.root / "lfs" / oid
            stored.parent.mkdir(parents=True, exist_ok=True)
            stored.write_bytes(content)
            self._send(200)

        def lfs_verify(self, **_) -> None:
            payload = json.loads(self._body())
            stored = hub.root / "lfs" / payload["oid"]
            if not stored.is_file() or stored.stat().st_size != payload["size"]:
                return self._error(404, None, "LFS object not found")
            self._json(200, {})

        def model_info(self, repo: str, kind: str, query: dict, rev: str | None = None, **_) -> None:
            """A repo's info; with `blobs=true` (`files_metadata=True`) its files' sizes too."""
            target = self._readable(repo, kind)
            if target is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            commit = target.commit(rev or "main")
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            self._json(
                200,
                {
                    "id": repo,
                    "modelId": repo,
                    "sha": commit.oid,
                    "private": target.private,
                    "gated": "auto" if repo in hub.gated else False,
                    "siblings": [
                        {"rfilename": name, **({"size": self._size(blob)} if query.get("blobs") == ["true"] else {})}
                        for name, blob in sorted(commit.files.items())
                    ],
                    **({"sdk": target.sdk} if kind == "spaces" else {}),
                },
            )

        def _size(self, blob: str) -> int:
            return (hub.root / "blobs" / blob).stat().st_size

        def tree(self, repo: str, rev: str, kind: str, query: dict, sub: str | None = None, **_) -> None:
            """The files under `sub`, and its folders: every level with `recursive=true`, else the first only (as
            HfFileSystem, which `datasets` lists a repo with, walks it)."""
            target = self._readable(repo, kind)
            if target is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            commit = target.commit(rev)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            prefix = f"{sub.strip('/')}/" if sub else ""
            recursive = query.get("recursive") == ["true"]
            entries, folders = [], set()
            for name, blob in sorted(commit.files.items()):
                if not name.startswith(prefix):
                    continue
                parts = name[len(prefix) :].split("/")
                if recursive:
                    folders |= {prefix + "/".join(parts[:depth]) for depth in range(1, len(parts))}
                elif len(parts) > 1:
                    folders.add(prefix + parts[0])
                    continue
                entries.append({"type": "file", "path": name, "oid": blob, "size": self._size(blob)})
            entries += [{"type": "directory", "path": path, "oid": git_blob_sha1(path.encode())} for path in folders]
            self._json(200, sorted(entries, key=lambda entry: entry["path"]))

        def resolve(self, repo: str, rev: str, file: str, kind: str | None = None, head: bool = False, **_) -> None:
            target = self._readable(repo, kind)
            if target is None:
                return self._error(
                    401 if repo in hub.store(kind) else 404, "RepoNotFound", "Repository not found", head=head
                )
            if repo in hub.gated:  # the hub shows a gated repo's info to anyone, its files only after accepting
                return self._error(403, "GatedRepo", f"Access to model {repo} is restricted", head=head)
            commit = target.commit(rev)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head=head)
            if file not in commit.files:
                return self._error(404, "EntryNotFound", f"{file} does not exist at {rev}", head=head)
            blob = commit.files[file]
            content = (hub.root / "blobs" / blob).read_bytes()
            headers = {"ETag": f'"{blob}"', "X-Repo-Commit": commit.oid, "Content-Type": "application/octet-stream"}
            self._send(200, content, headers, head=head)

    return Handler


if __name__ == "__main__":
    stand_in = HubStandIn().start()
    print(f"HF_ENDPOINT={stand_in.url}  (files under {stand_in.root}; Ctrl-C to stop)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stand_in.stop()
        shutil.rmtree(stand_in.root, ignore_errors=True)
