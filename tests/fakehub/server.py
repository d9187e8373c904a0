"""A fake Hugging Face Hub: a local HTTP server that the real huggingface_hub (2.4.0) and diffusers (0.42.1)
download from as they would from huggingface.co, writing a genuine cache
(``HF_HUB_CACHE/models--owner--name/{blobs, snapshots/<commit>, refs/main, trees/<commit>.json, .no_exist}``).

    repo = Repo.from_folder("owner/name", folder)          # or Repo("owner/name", {"unet/config.json": path})
    with serve([repo]) as hub, use_endpoint(hub.endpoint, cache_dir, offline=False):
        UNet2DConditionModel.from_pretrained("owner/name", subfolder="unet", use_safetensors=True)
    assert ("owner/name", "unet/diffusion_pytorch_model.bin") not in hub.downloads

Endpoints (what the client reads; huggingface_hub 2.4.0 line numbers):

- ``HEAD|GET /{repo_id}/resolve/{revision}/{path}``: the URL of ``constants.HUGGINGFACE_CO_URL_TEMPLATE``
  (``hf_hub_url``, file_download.py:289; revision quoted with ``safe=""``). ``get_hf_file_metadata``
  (file_download.py:1676-1690) reads ``X-Repo-Commit`` (required, else ``FileMetadataError``, :1790),
  ``X-Linked-Etag`` or ``ETag`` (the blob's file name in the cache, quotes stripped by ``_normalize_etag``) and
  ``X-Linked-Size`` or ``Content-Length`` (the expected size, checked after the GET, :490). As on the Hub, an
  LFS file (``LFS_SUFFIXES``) has ``ETag`` = git id of its LFS pointer and ``X-Linked-Etag`` = its sha256, so
  its blob is named by the sha256; a text file has ``ETag`` = its git blob sha1. Files are served directly
  (no redirect to a CDN) and without any ``X-Xet-*`` header, so the client downloads over plain HTTP
  (``parse_xet_file_data_from_response`` returns None). ``GET`` honours one ``Range: bytes=a-b`` (206 +
  ``Content-Range``): ``http_get`` sends it when it resumes a download (file_download.py:378).
- ``GET /api/models/{repo_id}[/revision/{revision}]``: ``HfApi.model_info`` (hf_api.py:3202-3217) used by
  ``repo_info``/``resolve_revision`` (``sha``, hf_api.py:3639), ``snapshot_download`` (``sha``,
  _snapshot_download.py:279), ``DiffusionPipeline.download`` (``siblings``, pipeline_utils.py:1621/1637) and
  diffusers' ``_best_guess_weight_name`` for ``load_lora_weights(weight_name=None)`` (lora_base.py:301).
  ``ModelInfo.__init__`` (hf_api.py:913) needs ``id``; the others are optional but filled as on the Hub.
  With ``?blobs=true`` siblings also carry ``size``, ``blobId`` and ``lfs``.
- ``GET /api/models/{repo_id}/tree/{revision}[/{path}]?recursive=..``: ``list_repo_tree``
  (hf_api.py:4023), used by ``snapshot_download`` (recursive, written to ``trees/<commit>.json``, which
  ``DiffusionPipeline.download`` reads back offline through ``get_cached_repo_tree``) and by transformers'
  tokenizer loading (``list_repo_files`` and ``additional_chat_templates/``, missing => 404
  ``EntryNotFound``). One page: no ``Link`` header, so ``_paginate_pages`` stops.
- ``GET /api/agent-harnesses``: asked once per process by ``build_hf_headers`` -> ``detect_agent``
  (utils/_detect_agent.py:189-198) when telemetry is on; answered 404 so nothing is cached in ``HF_HOME``.
- Errors carry ``X-Error-Code`` so ``hf_raise_for_status`` (utils/_http.py:871-953) raises the library's own
  classes: unknown repo -> 401 ``RepoNotFound`` (``RepositoryNotFoundError``), unknown revision -> 404
  ``RevisionNotFound`` (``RevisionNotFoundError``), unknown file/folder -> 404 ``EntryNotFound``
  (``RemoteEntryNotFoundError``, a subclass of ``EntryNotFoundError``) with ``X-Repo-Commit``, which
  ``_get_metadata_or_catch_error`` uses to cache the miss under ``.no_exist/<commit>/`` (file_download.py:1774-1777).

Connections are HTTP/1.0 (closed after each answer): a stopped server cannot keep answering over a kept-alive
connection, so "offline after stop" really is offline.

``use_endpoint(endpoint, cache_dir, offline)`` points the already imported libraries at a Hub and a cache and
switches offline mode at run time; it restores everything on exit and can be nested. It patches:

- ``huggingface_hub.constants.{ENDPOINT, HUGGINGFACE_CO_URL_TEMPLATE, HF_HUB_CACHE, HF_HUB_OFFLINE}``: read
  at call time by hf_hub_download/snapshot_download/hf_hub_url and by ``constants.is_offline_mode()``, which
  the request hook (utils/_http.py:293) and transformers (``is_offline_mode``) ask;
- every copy of those names (and diffusers' ``HUGGINGFACE_CO_RESOLVE_ENDPOINT``) made by ``from .. import``
  in a loaded module of huggingface_hub, diffusers, transformers, peft, controlnet_aux (found by name in each
  module's ``__dict__``). In these versions: ``diffusers.loaders.lora_base.HF_HUB_OFFLINE`` (decides whether
  ``load_lora_weights(weight_name=None)`` may call model_info: True at import under the tests' HF_HUB_OFFLINE=1,
  so without this patch it raises "When using the offline mode, you must specify a `weight_name`" online),
  ``diffusers.utils.hub_utils.HF_HUB_OFFLINE`` (user agent), ``diffusers.models.attention_dispatch.HF_HUB_OFFLINE``
  (kernel download), ``diffusers.{utils, utils.constants, utils.hub_utils, configuration_utils}
  .HUGGINGFACE_CO_RESOLVE_ENDPOINT`` (error messages only) and, when loaded,
  ``huggingface_hub.utils._cache_manager.HF_HUB_CACHE`` (``scan_cache_dir``) and
  ``huggingface_hub.utils._git_credential.ENDPOINT``. transformers 5 and peft read ``huggingface_hub.constants``
  at call time and hold no copy. Copies made by modules imported inside the block are reset on exit;
- ``huggingface_hub.hf_api.api.endpoint``: the module-level ``HfApi()`` behind ``huggingface_hub.model_info``,
  ``repo_info``, ``list_repo_tree``, ``resolve_revision`` copies ``constants.ENDPOINT`` when it is created;
- ``transformers.utils.hub._hf_api``: transformers' lazily created shared ``HfApi`` (same reason), set to None;
- the shared httpx2 client is closed (``huggingface_hub.close_session``) on entry and exit, so no pooled
  connection outlives a server;
- ``os.environ`` ``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` ("1"/"0"), for code that reads the
  environment (the project's ``config.hub_reachable``) and for subprocesses.
Not patched: ``constants.HF_URL_HOSTS`` and ``utils._http._HUB_ORIGINS`` (only used to follow redirects and
forward auth; this server never redirects).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")
DATE = "2024-01-01T00:00:00.000Z"
CHUNK = 1 << 20


@dataclass
class Repo:
    """One model repository at one commit: ``files`` maps each repo path (``unet/config.json``) to a local file.
    ``commit`` defaults to a sha1 of the repo id; ``branches`` (always with ``main``) all resolve to it."""

    repo_id: str
    files: dict[str, Path]
    commit: str = ""
    branches: tuple[str, ...] = ("main",)
    library_name: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self):
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", self.repo_id):
            raise ValueError(f"repo_id must look like 'owner/name', got {self.repo_id!r}")
        self.commit = self.commit or hashlib.sha1(self.repo_id.encode()).hexdigest()
        if not re.fullmatch(r"[0-9a-f]{40}", self.commit):
            raise ValueError(f"commit must be 40 lowercase hex digits, got {self.commit!r}")
        self.branches = tuple(dict.fromkeys(("main", *self.branches)))
        self.files = {name.strip("/"): Path(path) for name, path in self.files.items()}

    @classmethod
    def from_folder(cls, repo_id: str, folder: str | Path, **kwargs) -> Repo:
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        return cls(repo_id, files, **kwargs)


@dataclass(frozen=True)
class Blob:
    """What the Hub knows of a file: size, git object id (of the content, or of the LFS pointer) and sha256."""

    path: Path
    size: int
    oid: str
    sha256: str | None = None
    pointer_size: int | None = None

    @classmethod
    def of(cls, rfilename: str, path: Path) -> Blob:
        size = path.stat().st_size
        sha1, sha256 = hashlib.sha1(b"blob %d\0" % size), hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                sha1.update(chunk)
                sha256.update(chunk)
        if not rfilename.endswith(LFS_SUFFIXES):
            return cls(path, size, sha1.hexdigest())
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256.hexdigest()}\nsize {size}\n"
        pointer_oid = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer.encode()).hexdigest()
        return cls(path, size, pointer_oid, sha256.hexdigest(), len(pointer))


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    file: tuple[Path, int, int] | None = None  # (path, start, length)
    download: tuple[str, str] | None = None  # (repo_id, rfilename) when a file body is sent


def _json(data, status: int = 200) -> Answer:
    return Answer(status, {"Content-Type": "application/json"}, json.dumps(data).encode())


def _flag(query: dict, name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() in ("1", "true")


@dataclass
class FakeHub:
    """The served repositories, the endpoint, and a thread-safe log of what was asked."""

    repos: dict[str, Repo]
    endpoint: str = ""
    _blobs: dict[tuple[str, str], Blob] = field(default_factory=dict)
    _log: list[tuple[str, str]] = field(default_factory=list)
    _downloads: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        for repo in self.repos.values():
            for name, path in repo.files.items():
                self._blobs[repo.repo_id, name] = Blob.of(name, path)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request as (method, decoded path without query), in arrival order."""
        with self._lock:
            return list(self._log)

    @property
    def downloads(self) -> list[tuple[str, str]]:
        """(repo_id, rfilename) of every file body sent (GET on /resolve/), recorded as its sending starts, so
        a file is listed by the time its download returns."""
        with self._lock:
            return list(self._downloads)

    def record(self, kind: str, item: tuple[str, str]) -> None:
        with self._lock:
            (self._log if kind == "request" else self._downloads).append(item)

    def answer(self, method: str, parts: list[str], query: dict, range_header: str | None) -> Answer:
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo, rest = self._repo("/".join(parts[2:4])), parts[4:]
            if not rest:
                return self._info(repo, "main", query)
            if rest[0] == "revision" and len(rest) == 2:
                return self._info(repo, rest[1], query)
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo, rest[1], "/".join(rest[2:]).strip("/"), query)
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(self._repo("/".join(parts[:2])), parts[3], "/".join(parts[4:]), range_header)
        raise HubError(404, None, f"Sorry, we can't find the page you are looking for: /{'/'.join(parts)}")

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(401, "RepoNotFound", "Repository not found")
        return self.repos[repo_id]

    def _commit(self, repo: Repo, revision: str) -> str:
        if revision != repo.commit and revision not in repo.branches:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo.commit

    def _info(self, repo: Repo, revision: str, query: dict) -> Answer:
        commit, blobs = self._commit(repo, revision), _flag(query, "blobs")
        siblings = [self._sibling(repo, name, blobs) for name in sorted(repo.files)]
        owner = repo.repo_id.split("/")[0]
        return _json({
            "_id": repo.commit[:24], "id": repo.repo_id, "modelId": repo.repo_id, "author": owner,
            "sha": commit, "lastModified": DATE, "createdAt": DATE, "private": False, "disabled": False,
            "gated": False, "downloads": 0, "likes": 0, "tags": list(repo.tags),
            "library_name": repo.library_name, "siblings": siblings, "spaces": [],
            "usedStorage": sum(self._blobs[repo.repo_id, n].size for n in repo.files),
        })  # fmt: skip

    def _sibling(self, repo: Repo, name: str, blobs: bool) -> dict:
        if not blobs:
            return {"rfilename": name}
        blob = self._blobs[repo.repo_id, name]
        lfs = {"sha256": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size} if blob.sha256 else None
        return {"rfilename": name, "size": blob.size, "blobId": blob.oid, **({"lfs": lfs} if lfs else {})}

    def _tree(self, repo: Repo, revision: str, path: str, query: dict) -> Answer:
        commit, recursive = self._commit(repo, revision), _flag(query, "recursive")
        prefix = f"{path}/" if path else ""
        names = sorted(n for n in repo.files if n.startswith(prefix))
        if path and not names:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {revision!r}", commit)
        folders, files = {}, []
        for name in names:
            rel = name[len(prefix) :].split("/")
            for depth in range(1, len(rel) if recursive else min(len(rel), 2)):
                folder = prefix + "/".join(rel[:depth])
                folders[folder] = {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                   "size": 0, "path": folder}  # fmt: skip
            if recursive or len(rel) == 1:
                blob = self._blobs[repo.repo_id, name]
                entry = {"type": "file", "oid": blob.oid, "size": blob.size, "path": name}
                if blob.sha256:
                    entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
                files.append(entry)
        return _json([*folders.values(), *files])

    def _resolve(self, repo: Repo, revision: str, name: str, range_header: str | None) -> Answer:
        commit = self._commit(repo, revision)
        blob = self._blobs.get((repo.repo_id, name))
        if blob is None:
            raise HubError(404, "EntryNotFound", f"{name} does not exist on {revision!r}", commit)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{blob.oid}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}  # fmt: skip
        if blob.sha256:
            headers |= {"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size)}
        start, end, status = 0, blob.size - 1, 200
        if range_header:
            match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header)
            if not match or not any(match.groups()):
                raise HubError(416, None, f"Unsupported range {range_header!r}")
            first, last = match.groups()
            start, end = (int(first), int(last or end)) if first else (max(blob.size - int(last), 0), end)
            if start > end or start >= blob.size:
                raise HubError(416, None, f"Range {range_header!r} outside 0-{blob.size - 1}")
            end, status = min(end, blob.size - 1), 206
            headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        headers["Content-Length"] = str(end - start + 1)
        return Answer(status, headers, file=(blob.path, start, end - start + 1), download=(repo.repo_id, name))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one answer per connection: nothing outlives the server

    def log_message(self, format, *args):  # quiet
        pass

    def do_HEAD(self):
        self._reply()

    def do_GET(self):
        self._reply()

    def _reply(self):
        hub: FakeHub = self.server.hub
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:] if p]
        hub.record("request", (self.command, "/" + "/".join(parts)))
        try:
            answer = hub.answer(self.command, parts, parse_qs(url.query), self.headers.get("Range"))
        except HubError as e:
            answer = _json({"error": e.message}, e.status)
            answer.headers |= {"X-Error-Message": e.message}
            answer.headers |= {"X-Error-Code": e.code} if e.code else {}
            answer.headers |= {"X-Repo-Commit": e.commit} if e.commit else {}
        self.send_response(answer.status)
        if answer.file is None:
            answer.headers["Content-Length"] = str(len(answer.body))
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if answer.file is None:
            self.wfile.write(answer.body)
            return
        # Recorded before the body goes out: the client returns as soon as it has the last byte, and a record made
        # after the write loop could come later than the caller's look at hub.downloads (a race: seen once, in a fresh-clone run of .ci/run).
        hub.record("download", answer.download)
        path, start, length = answer.file
        with path.open("rb") as f:
            f.seek(start)
            while length > 0 and (chunk := f.read(min(CHUNK, length))):
                self.wfile.write(chunk)
                length -= len(chunk)


@contextmanager
def serve(repos):
    """Serve ``repos`` on 127.0.0.1 (a free port) from a daemon thread; yield the FakeHub; stop on exit."""
    hub = FakeHub({repo.repo_id: repo for repo in repos})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.hub = hub
    hub.endpoint = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


_PACKAGES = ("huggingface_hub", "diffusers", "transformers", "peft", "controlnet_aux")
_NAMES = ("ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE", "HUGGINGFACE_CO_RESOLVE_ENDPOINT", "HF_HUB_CACHE",
          "HF_HUB_OFFLINE")  # fmt: skip


def _copies():
    """(namespace, name) for each of ``_NAMES`` held by a loaded module of ``_PACKAGES``."""
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name.split(".")[0] not in _PACKAGES:
            continue
        namespace = vars(module)  # not getattr: transformers' lazy modules would import on access
        for name in _NAMES:
            if isinstance(namespace.get(name), (str, bool)):
                yield namespace, name


def _set_transformers_api(api) -> None:
    """transformers keeps one lazily created HfApi (``transformers.utils.hub._hf_api``) bound to an endpoint."""
    module = sys.modules.get("transformers.utils.hub")
    if module is not None:
        module._hf_api = api


@contextmanager
def use_endpoint(endpoint: str | None, cache_dir: str | Path, offline: bool = False):
    """Point the imported huggingface_hub / diffusers / transformers at ``endpoint`` (None: keep the current one)
    and ``cache_dir``, with offline mode on or off; restore everything on exit (see the module docstring)."""
    import huggingface_hub
    from huggingface_hub import constants, hf_api

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    values = {"ENDPOINT": endpoint, "HUGGINGFACE_CO_URL_TEMPLATE": template, "HF_HUB_CACHE": str(cache_dir),
              "HUGGINGFACE_CO_RESOLVE_ENDPOINT": endpoint, "HF_HUB_OFFLINE": bool(offline)}  # fmt: skip
    env = {"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1" if offline else "0"}
    saved_env = {key: os.environ.get(key) for key in env}
    saved = [(namespace, name, namespace[name]) for namespace, name in _copies()]
    saved_ids = {(id(namespace), name) for namespace, name, _ in saved}
    saved_api = (hf_api.api.endpoint, getattr(sys.modules.get("transformers.utils.hub"), "_hf_api", None))
    huggingface_hub.close_session()
    try:
        os.environ.update(env)
        for namespace, name, _ in saved:
            namespace[name] = values[name]
        hf_api.api.endpoint = endpoint
        _set_transformers_api(None)
        yield
    finally:
        huggingface_hub.close_session()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for namespace, name, value in saved:
            namespace[name] = value
        hf_api.api.endpoint = saved_api[0]
        _set_transformers_api(saved_api[1])  # None too when transformers was imported inside the block
        for namespace, name in _copies():  # copied by a module imported inside the block
            if (id(namespace), name) not in saved_ids and namespace[name] == values[name]:
                original = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
                namespace[name] = getattr(constants, name, original)
