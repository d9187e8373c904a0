"""The Hugging Face Hub (the base layer): single files by id and revision, offline or online; the
manifest of the files the course reads (``hub_files.json``); the workshop's offline cache
(``python -m animatelcm_helpers download``); and the one error a user sees when weights are
neither on this machine nor reachable.

The manifest lists, for every repository of ``config.HUB``, every file it holds on the Hub and
which ``config.HUB`` entries read it (``used_by``). :func:`download` fetches exactly the used
files into the Hugging Face cache (``HF_HUB_CACHE``), so afterwards every full-world path runs
with ``HF_HUB_OFFLINE=1``; the tests' fake Hub serves every listed file, so a loader that asks
for more than the manifest says fails a test.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

from . import config
from .config import UserError, Weights

MANIFEST = Path(__file__).resolve().parent / "hub_files.json"


class MissingWeightsError(UserError):
    """Weights that are neither on this machine nor reachable on the Hub."""


@lru_cache(maxsize=1)
def manifest() -> dict:
    """``hub_files.json``: {"repos": {repo_id: {"files": [...], ...}}, "bundles": {...}}."""
    return json.loads(MANIFEST.read_text())


def keys_of(repo_id: str) -> list[str]:
    """The ``config.HUB`` entries that live in repository ``repo_id``."""
    return [k for k, w in config.HUB.items() if w.repo_id == repo_id]


def missing_weights(weights: Weights, what: str) -> MissingWeightsError:
    """The error for weights that are not cached here and cannot be fetched (it says how to get them)."""
    offline = " (HF_HUB_OFFLINE is set)" if config._truthy(os.environ.get("HF_HUB_OFFLINE")) else ""
    keys = keys_of(weights.repo_id)
    fetch = (f"`python -m animatelcm_helpers download {' '.join(keys)}` (only the files the course reads)"
             if keys else f"`hf download {weights.repo_id} --revision {weights.revision}`")
    return MissingWeightsError(
        f"the {what} {weights.describe()} is not on this machine and could not be fetched from the "
        f"Hugging Face Hub{offline}. On a machine with internet, run {fetch}; it fills the Hugging Face "
        "cache (HF_HOME). Or use the toy world (world='toy', or ANIMATELCM_WORLD=toy), which needs no download."
    )


def hub_file(weights: Weights, what: str, filename: str | None = None) -> str:
    """The local path of one file of ``weights``' repository (default ``weights.weight_name``),
    from the Hugging Face cache, downloaded first when the Hub is reachable."""
    try:
        return hf_hub_download(
            weights.repo_id,
            filename or weights.weight_name,
            subfolder=weights.subfolder,
            revision=weights.revision,
            local_files_only=not config.hub_reachable(),
        )
    except (OSError, EntryNotFoundError):
        raise missing_weights(weights, what) from None


# ------------------------------------------------------------------------------------------
# The workshop's offline cache
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubFile:
    """One file the course reads: ``config.HUB[key]``'s repository, its path there, its size."""

    key: str
    repo_id: str
    revision: str | None
    path: str
    size: int | None  # bytes, where the Hub's pointer gave them
    size_mb: float | None  # the Hub page's rounded figure otherwise


def files_for(key: str) -> list[HubFile]:
    """The files ``config.HUB[key]`` reads, from the manifest."""
    if key not in config.HUB:
        raise UserError(f"unknown model part {key!r}; see `python -m animatelcm_helpers download --list`")
    weights = config.HUB[key]
    repo = manifest()["repos"].get(weights.repo_id)
    if repo is None:
        raise UserError(f"hub_files.json lists no files for {weights.repo_id} ({key}); add them (see its 'about')")
    return [HubFile(key, weights.repo_id, weights.revision, f["path"], f.get("size"), f.get("size_mb"))
            for f in repo["files"] if key in f["used_by"]]


def expand(names) -> list[str]:
    """``config.HUB`` keys for names that are keys, bundles (``t2v``, ``svd``, ``control``, ...) or "all"."""
    bundles = manifest()["bundles"]
    keys: list[str] = []
    for name in names:
        if name == "all":
            group = list(config.HUB)
        elif name in bundles:
            group = bundles[name]
        elif name in config.HUB:
            group = [name]
        else:
            raise UserError(f"unknown name {name!r}: give a bundle ({', '.join(bundles)}), 'all', or a part: "
                            f"{', '.join(config.HUB)}")
        keys += [k for k in group if k not in keys]
    return keys


def size_of(files: list[HubFile]) -> float:
    """Total megabytes (bytes where known, the Hub's rounded figures otherwise; configs count 0)."""
    return sum((f.size / 1e6) if f.size is not None else (f.size_mb or 0.0) for f in files)


def download(names, progress=print) -> list[tuple[HubFile, str]]:
    """Fetch every file the course reads for ``names`` (see :func:`expand`) into the Hugging Face
    cache, at the revision ``config.HUB`` pins; returns (file, local path) pairs. Files already in
    the cache are not fetched again. Needs the Hub (it refuses with HF_HUB_OFFLINE set)."""
    if config._truthy(os.environ.get("HF_HUB_OFFLINE")):
        raise UserError("HF_HUB_OFFLINE is set: unset it to download (the download is what makes offline work later)")
    out = []
    for key in expand(names):
        files = files_for(key)
        progress(f"{key}: {config.HUB[key].describe()}, {len(files)} files, {size_of(files):,.0f} MB")
        for f in files:
            try:
                path = hf_hub_download(f.repo_id, f.path, revision=f.revision)
            except (OSError, EntryNotFoundError) as err:
                raise UserError(f"could not download {f.repo_id}/{f.path}@{f.revision}: {str(err).splitlines()[0]}") from None
            out.append((f, path))
    return out
