"""The set-up files agree: README's commands, .ci/run, exact pins, conda, Binder, notebooks."""

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins():
    out = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def dep_name(req):
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~ \[;]", req, maxsplit=1)[0]).lower()


def test_every_dependency_has_an_exact_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    pinned = pins()
    missing = [d for d in deps if dep_name(d) not in pinned]
    assert not missing, f"no exact pin in requirements/constraints.txt for {missing}"


def test_torch_pair_and_ffmpeg_are_pinned_as_the_stack_needs():
    pinned = pins()
    assert pinned["torch"] == "2.14.1" and pinned["torchvision"] == "0.29.1"
    assert pinned["imageio-ffmpeg"].startswith("0.7")  # 0.8's ffmpeg breaks mediapy's reader
    assert pinned["diffusers"] == "0.42.1"


def test_pyproject_bounds_are_loose():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(d for d in project["dependencies"] if dep_name(d) == "torch")
    assert "==" not in torch_req, "Colab must keep its own torch"


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [l.strip() for l in ci.splitlines() if l.strip() and not l.startswith("#")]
    # README's test command first, then the browser test, then the lower bounds (the slowest, the only one that downloads)
    assert [c for c in commands if c.startswith("make ")] == ["make test", "make test-browser", "make test-min-deps"]
    assert "make test" in readme and "make lab" in readme and "make test-browser" in readme
    assert "pytest tests_browser" in (ROOT / "Makefile").read_text()


def run_ci_with_fake_make(tmp_path, min_free_gb, check=True):
    """.ci/run copied into an empty project with a `make` that only logs its target, pip's cache setting and
    whether .venv is there, and a .venv and .cache to remove or keep."""
    (tmp_path / ".ci").mkdir(parents=True)
    (tmp_path / ".ci" / "run").write_text((ROOT / ".ci" / "run").read_text())
    for folder in (".venv", ".cache/animatelcm_helpers", ".cache/fakehub"):
        (tmp_path / folder).mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text('#!/bin/sh\n'
                                  'echo "$1 PIP_NO_CACHE_DIR=$PIP_NO_CACHE_DIR $(test -d .venv && echo venv || echo no-venv)" '
                                  '>> make.log\n')
    (bin_dir / "make").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MIN_DEPS_FREE_GB": str(min_free_gb)}
    out = subprocess.run(["bash", ".ci/run"], cwd=tmp_path, env=env, capture_output=True, text=True, check=check)
    if not check:
        return out
    return out.stdout, (tmp_path / "make.log").read_text().split("\n")[:-1]


def test_ci_frees_the_main_venv_only_when_the_disk_is_short(tmp_path):
    # Plenty of disk: every step runs, nothing is removed, pip keeps no download cache.
    stdout, made = run_ci_with_fake_make(tmp_path / "roomy", min_free_gb=0)
    assert made == [f"{t} PIP_NO_CACHE_DIR=1 venv" for t in ("test", "test-browser", "test-min-deps")]
    assert (tmp_path / "roomy" / ".venv").is_dir() and "removing" not in stdout
    # Less free than the threshold: .venv and .cache (the test cache, the fake Hub) go before the lower bounds.
    stdout, made = run_ci_with_fake_make(tmp_path / "short", min_free_gb=10**7)
    assert made == ["test PIP_NO_CACHE_DIR=1 venv", "test-browser PIP_NO_CACHE_DIR=1 venv",
                    "test-min-deps PIP_NO_CACHE_DIR=1 no-venv"]
    assert "removing .venv and .cache" in stdout
    assert not (tmp_path / "short" / ".venv").exists() and not (tmp_path / "short" / ".cache").exists()
    assert (tmp_path / "short" / ".ci" / "run").is_file()
    # A threshold that is not a whole number (a typo such as "14GB") stops at once, with what to write, and removes nothing.
    out = run_ci_with_fake_make(tmp_path / "typo", min_free_gb="14GB", check=False)
    assert out.returncode == 2 and "MIN_DEPS_FREE_GB must be a whole number of GB" in out.stderr
    assert (tmp_path / "typo" / ".venv").is_dir() and not (tmp_path / "typo" / "make.log").exists()


def test_conda_and_binder_use_the_same_pins():
    env = (ROOT / "environment.yml").read_text()
    assert "-c requirements/constraints.txt" in env and "python=3.11" in env
    binder = (ROOT / "binder" / "requirements.txt").read_text()
    assert "-c ../requirements/constraints.txt" in binder
    assert "ANIMATELCM_WORLD=toy" in (ROOT / "binder" / "start").read_text()


def test_binder_has_what_the_notebooks_and_the_demo_need():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    binder = {dep_name(l) for l in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
              if l.strip() and not l.startswith(("#", "-"))}
    missing = [d for d in project["dependencies"] if dep_name(d) not in binder]
    assert not missing, f"binder/requirements.txt lacks {missing}"
    assert {"jupyterlab", "ipywidgets", "torchvision"} <= binder
    assert "pip install --no-deps -e ." in (ROOT / "binder" / "postBuild").read_text()


def test_colab_badges_and_install_cells_point_at_the_repository():
    from animatelcm_helpers import config

    repo = config.REPO_URL.removeprefix("https://github.com/")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        badge = f"https://colab.research.google.com/github/{repo}/blob/{config.REPO_BRANCH}/notebooks/{path.name}"
        assert badge in "".join(cells[0]["source"]), path.name
        assert f"git+{config.REPO_URL}" in "".join(cells[1]["source"]), path.name


def test_notebooks_follow_the_course_conventions():
    books = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert books, "no notebooks"
    for path in books:
        nb = json.loads(path.read_text())
        cells = nb["cells"]
        first = "".join(cells[0]["source"])
        assert "colab-badge.svg" in first and f"notebooks/{path.name}" in first, path.name
        assert "What you will learn" in first and "Prerequisites" in first and "Run time" in first
        install = "".join(cells[1]["source"])
        assert 'find_spec("animatelcm_helpers") is None' in install, path.name
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one 'parameters' cell"
        assert all(c.get("execution_count") is not None for c in cells if c["cell_type"] == "code"), (
            f"{path.name} is not committed executed"
        )
        errors = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, f"{path.name} was committed with an error output"
        text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        assert "Exercises" in text and "Summary" in text, path.name
