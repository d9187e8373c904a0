"""`pyproject.toml`'s lower bounds are the versions `make test-min-deps` installs and tests.

`requirements/min.txt` pins every runtime dependency at exactly its `>=` bound in pyproject (plus the
transitive pins that make those bounds install and run, each with a comment saying why). These tests read
both files as text (no packaging library, no min venv needed): a bound raised or lowered in one file
and not the other fails here. Under `make test-min-deps` one more test checks that .venv-min runs exactly
the pinned versions.
"""

import os
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
MIN_TXT = ROOT / "requirements" / "min.txt"

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")
SPECIFIER = re.compile(r"^(==|>=|<=|!=|~=|<|>)\s*([0-9][A-Za-z0-9.+!*-]*)$")


def normalize(name):
    """PEP 503: case, '-', '_' and '.' do not matter in a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version):
    """'2.6' and '2.6.0' are the same release (PEP 440 pads with zeros)."""
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def specifiers(text):
    """'>=0.5,<0.8' -> [('>=', '0.5'), ('<', '0.8')]."""
    found = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        match = SPECIFIER.match(item)
        assert match, f"cannot read the version specifier {item!r}"
        found.append(match.groups())
    return found


def lower_bounds(pyproject_text):
    """{name: (lower bound, [all specifiers])} of [project].dependencies."""
    bounds = {}
    for requirement in tomllib.loads(pyproject_text)["project"]["dependencies"]:
        name, _extras, spec = REQUIREMENT.match(requirement.split(";")[0]).groups()
        specs = specifiers(spec)
        lows = [v for op, v in specs if op == ">="]
        bounds[normalize(name)] = (lows[0] if len(lows) == 1 else None, specs)
    return bounds


def pins(min_text):
    """{name: (version, inline comment)} of min.txt's `name==version  # why` lines."""
    found = {}
    for line in min_text.splitlines():
        body, _, comment = line.partition("#")
        if not body.strip():
            continue
        name, _extras, spec = REQUIREMENT.match(body).groups()
        specs = specifiers(spec)
        assert len(specs) == 1 and specs[0][0] == "==", f"min.txt pins with == only: {line!r}"
        assert normalize(name) not in found, f"{name} is pinned twice in min.txt"
        found[normalize(name)] = (specs[0][1], comment.strip())
    return found


def admits(version, specs):
    """Whether a version satisfies every (op, bound) of a requirement (release numbers only)."""
    v = release(version)
    tests = {">=": v.__ge__, "<=": v.__le__, ">": v.__gt__, "<": v.__lt__, "==": v.__eq__, "!=": v.__ne__}
    return all(tests[op](release(bound)) for op, bound in specs)


def mismatches(pyproject_text, min_text):
    """One line per dependency whose min.txt pin is not its pyproject lower bound."""
    bounds, pinned = lower_bounds(pyproject_text), pins(min_text)
    problems = []
    for name, (low, specs) in bounds.items():
        if low is None:
            problems.append(f"{name}: pyproject has no single >= lower bound ({specs})")
        elif name not in pinned:
            problems.append(f"{name}: pyproject says >={low}, min.txt has no pin")
        elif release(pinned[name][0]) != release(low):
            problems.append(f"{name}: pyproject says >={low}, min.txt pins =={pinned[name][0]}")
        elif not admits(pinned[name][0], specs):
            problems.append(f"{name}: min.txt's =={pinned[name][0]} is outside pyproject's {specs}")
    return problems


def test_every_lower_bound_in_pyproject_is_the_pin_in_min_txt():
    assert mismatches(PYPROJECT.read_text(), MIN_TXT.read_text()) == []


def test_every_pin_that_is_not_a_direct_dependency_says_why():
    direct = lower_bounds(PYPROJECT.read_text())
    undocumented = [name for name, (_, why) in pins(MIN_TXT.read_text()).items() if name not in direct and not why]
    assert undocumented == [], f"transitive pins in min.txt need an inline comment: {undocumented}"


@pytest.mark.skipif(os.environ.get("ANIMATELCM_MIN_DEPS") != "1",
                    reason="checks the interpreter of `make test-min-deps` (.venv-min), which sets ANIMATELCM_MIN_DEPS=1")
def test_the_min_venv_runs_exactly_the_pinned_versions():
    installed = {name: metadata.version(name) for name in pins(MIN_TXT.read_text())}
    wrong = {n: (v, installed[n]) for n, (v, _) in pins(MIN_TXT.read_text()).items() if installed[n] != v}
    assert wrong == {}, f"min.txt pin vs installed: {wrong}"


def test_the_check_catches_a_bound_that_moved_in_one_file_only():
    pyproject = '[project]\ndependencies = ["torch>=2.1", "Pillow>=10", "imageio-ffmpeg>=0.5,<0.8", "tqdm"]\n'
    min_txt = "torch==2.6.0  # raised\npillow==10.0.0\nimageio_ffmpeg==0.5\n"
    assert mismatches(pyproject, min_txt) == [
        "torch: pyproject says >=2.1, min.txt pins ==2.6.0",
        "tqdm: pyproject has no single >= lower bound ([])",
    ]
    assert mismatches(pyproject.replace("<0.8", "!=0.5.0").replace("2.1", "2.6"), min_txt)[0] == (
        "imageio-ffmpeg: min.txt's ==0.5 is outside pyproject's [('>=', '0.5'), ('!=', '0.5.0')]"
    )
