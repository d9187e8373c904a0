"""Each notebook is a jupytext pair that agrees, and the notebooks' code passes pyflakes (ruff).

``notebooks/NN_name.py`` (py:percent) is the source one edits; ``notebooks/NN_name.ipynb`` holds the same cells,
executed (scripts/execute_notebooks.py describes the workflow). No kernel runs here.
"""

import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
# Pyflakes (F: undefined names, unused imports and variables, redefinitions...) and syntax errors (E9). Not
# selected, because a notebook legitimately does them: E402 (imports in a later cell) and B018 (a bare
# expression on a cell's last line, to display it). Magics are comments in the .py files (`# %matplotlib inline`).
RUFF = [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "F,E9",
        "--target-version", "py311", "--output-format", "concise"]


def cells(nb):
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def first_difference(name, ipynb, py):
    """None when the two notebooks hold the same cells, else a message naming the first cell that differs."""
    a, b = cells(ipynb), cells(py)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            what = next(k for k, u, v in zip(("type", "source", "tags"), x, y) if u != v)
            first = x[1].splitlines()[0] if x[1] else ""
            return f"cell {i} ({x[0]}, starting {first[:60]!r}) differs in its {what}"
    if len(a) != len(b):
        return f"{name}.ipynb has {len(a)} cells, {name}.py {len(b)}"
    return None


def fix_hint(name):
    return (f"fix with: jupytext --sync notebooks/{name}.ipynb (takes the cells of the more recently modified file),"
            " then `make execute-notebooks` if code changed, and commit both files")


def test_every_notebook_has_its_py_and_every_py_its_notebook():
    assert NAMES, "no notebooks"
    pys = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))
    lonely_ipynb, lonely_py = sorted(set(NAMES) - set(pys)), sorted(set(pys) - set(NAMES))
    assert pys == NAMES, (
        f"unpaired: .ipynb without .py {lonely_ipynb}, .py without .ipynb {lonely_py}"
        "; pair with: jupytext --set-formats ipynb,py:percent notebooks/NAME.ipynb"
    )


@pytest.mark.parametrize("name", NAMES)
def test_py_holds_the_same_cells_as_the_notebook(name):
    assert (NOTEBOOKS / f"{name}.py").exists(), f"notebooks/{name}.ipynb has no notebooks/{name}.py beside it"
    ipynb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    py = jupytext.read(NOTEBOOKS / f"{name}.py")
    for nb, suffix in ((ipynb, "ipynb"), (py, "py")):
        formats = nb.metadata.get("jupytext", {}).get("formats")
        assert formats == "ipynb,py:percent", f"{name}.{suffix} is not paired (jupytext formats: {formats!r})"
    diff = first_difference(name, ipynb, py)
    assert diff is None, f"notebooks/{name}.py and notebooks/{name}.ipynb disagree: {diff}; {fix_hint(name)}"


def test_an_edited_py_is_caught_with_the_cell_and_the_fix():
    name = NAMES[0]
    ipynb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    text = (NOTEBOOKS / f"{name}.py").read_text()
    assert first_difference(name, ipynb, jupytext.reads(text, fmt="py:percent")) is None
    index, source = next((i, c.source) for i, c in enumerate(ipynb.cells)
                         if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    edited = jupytext.reads(text.replace(source, source + "\nx = 1", 1), fmt="py:percent")
    assert first_difference(name, ipynb, edited).startswith(f"cell {index} (code, ")
    untagged = jupytext.reads(text.replace('# %% tags=["parameters"]', "# %%", 1), fmt="py:percent")
    assert "differs in its tags" in first_difference(name, ipynb, untagged)
    assert f"jupytext --sync notebooks/{name}.ipynb" in fix_hint(name)


def test_notebook_code_passes_pyflakes():
    run = subprocess.run(RUFF + sorted(str(p.relative_to(ROOT)) for p in NOTEBOOKS.glob("*.py")),
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, f"ruff check on the notebooks' .py files:\n{run.stdout}{run.stderr}"


def test_the_lint_catches_what_pyflakes_catches():
    code = "import json\n\nprint(undefined_name)\n"
    run = subprocess.run(RUFF + ["--stdin-filename", "notebooks/example.py", "-"],
                         input=code, capture_output=True, text=True)
    assert run.returncode == 1 and "F401" in run.stdout and "F821" in run.stdout, run.stdout + run.stderr
