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
