"""Shared fixtures. The tests run in the toy world, offline, in test mode (the Makefile sets the
same variables; they are set here too so `pytest tests` alone behaves the same)."""

import os
from pathlib import Path

os.environ.setdefault("ANIMATELCM_WORLD", "toy")
os.environ.setdefault("ANIMATELCM_TEST_MODE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault(
    "ANIMATELCM_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "animatelcm_helpers")
)
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def toy_settings():
    from animatelcm_helpers import config

    return config.setup(world="toy", test_mode=True)


@pytest.fixture(scope="session")
def lcm_pipe(toy_settings):
    from animatelcm_helpers import pipelines

    return pipelines.load_t2v("animatelcm")


@pytest.fixture(scope="session")
def teacher_pipe(toy_settings):
    from animatelcm_helpers import pipelines

    return pipelines.load_t2v("teacher")


# ------------------------------------------------------------------------------------------
# The full world, offline: a fake Hub laid out as the real repositories (tests/fakehub)
# ------------------------------------------------------------------------------------------


def _remote_key() -> str:
    """What the fake repositories depend on: the manifest, the builders, the libraries' versions."""
    import hashlib

    import diffusers
    import torch
    import transformers

    h = hashlib.sha256()
    for path in (ROOT / "animatelcm_helpers" / "hub_files.json", ROOT / "tests" / "fakehub" / "repos.py",
                 ROOT / "tests" / "fakehub" / "annotators.py"):
        h.update(path.read_bytes())
    h.update(f"{diffusers.__version__} {transformers.__version__} {torch.__version__}".encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def fake_remote():
    """{repo_id: folder} of every repository in hub_files.json, tiny weights in the real layout; kept
    in .cache/fakehub between runs (about 1.1 GB: the Annotators' detectors are full size)."""
    from fakehub import repos

    return repos.build_remote(ROOT / ".cache" / "fakehub" / f"remote-{_remote_key()}")


@pytest.fixture(scope="session")
def fake_hub(fake_remote):
    """The fake Hub serving every repository (``.endpoint``, ``.requests``, ``.downloads``)."""
    from fakehub import repos
    from fakehub.server import serve

    with serve(repos.hub_repos(fake_remote)) as hub:
        yield hub


@pytest.fixture(scope="session")
def workshop_cache(fake_hub, tmp_path_factory):
    """A workshop's offline cache: ``download all`` run once against the fake Hub.
    Returns (cache folder, what download returned, the files the server sent for it)."""
    from fakehub.server import use_endpoint

    from animatelcm_helpers import hub

    cache = tmp_path_factory.mktemp("hf-cache")
    before = len(fake_hub.downloads)
    with use_endpoint(fake_hub.endpoint, cache, offline=False):
        got = hub.download(["all"], progress=lambda line: None)
    return cache, got, fake_hub.downloads[before:]


@pytest.fixture(scope="module")
def full_offline(workshop_cache):
    """The full world on the CPU, offline (HF_HUB_OFFLINE=1), from the workshop's cache only."""
    from fakehub.server import use_endpoint

    from animatelcm_helpers import config

    with use_endpoint(None, workshop_cache[0], offline=True):
        yield config.setup(world="full", device="cpu", test_mode=True)
    config.setup(world="toy", test_mode=True)


# ------------------------------------------------------------------------------------------
# `make test-min-deps` (ANIMATELCM_MIN_DEPS=1): the lower bounds of the libraries, not the project's own files
# ------------------------------------------------------------------------------------------

# Left out of the lower-bounds run (listed as deselected), each for a reason that no library version changes:
MIN_DEPS_SKIP = {
    # the project's own files, checked with the dev tools, which are the same versions in both venvs
    "test_notebook_pairs.py": "jupytext pairs and ruff over the notebooks",
    "test_prose_numbers.py": "numbers in the notebooks' prose against their committed outputs",
    "test_project_files.py": "README, Makefile, CI, conventions",
    "test_layers.py": "the package's import layers (ast only)",
    "test_results_page.py": "RESULTS.md against the result files",
    "test_lab.py": "make lab serves the notebooks (JupyterLab, a dev tool)",
    # end-to-end runs whose every library call a faster test makes too
    "test_zoo_build.py": "every stage's training calls run in test_distill, test_training, test_adapters, test_svd, "
                         "test_i2v_training, test_successors",
    "test_kill_resume.py": "SIGKILL and resume of training.fit in a subprocess; the same checkpoint and resume code runs "
                           "in every *_resume_is_bit_identical test",
}


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ANIMATELCM_MIN_DEPS") != "1":
        return
    keep = [item for item in items if Path(str(item.fspath)).name not in MIN_DEPS_SKIP]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
