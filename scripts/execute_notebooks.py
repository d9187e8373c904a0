"""Execute notebooks in place (as they are committed: toy world, normal mode, outputs kept).

    python scripts/execute_notebooks.py notebooks/00_quickstart.ipynb [...]   (make execute-notebooks: all)

Every notebook is a jupytext pair (https://jupytext.readthedocs.io): ``notebooks/NN_name.py`` in the
``py:percent`` format is the source, the file to edit, review and lint; ``notebooks/NN_name.ipynb`` holds the
same cells executed, with outputs, execution counts and widget state. To change a notebook:

    1. edit notebooks/NN_name.py  (or the notebook in `make lab`: jupytext saves both files of the pair)
    2. make execute-notebooks     (or this script on the notebooks you changed)
    3. commit both files          (tests/test_notebook_pairs.py fails in `make test` when they disagree)

Before running a notebook this script syncs its pair (``jupytext --sync``, also ``make sync-notebooks``), so an
edited ``.py`` is what runs: jupytext takes the cells from the more recently modified file of the two and the
outputs from the ``.ipynb`` only. Syncing rather than refusing keeps the workflow one command, with the same rule
that JupyterLab's jupytext and the jupytext command line apply, not a second one of ours. (If you edited both
files since they last agreed, the older edit loses: sync by hand first and look at the diff.) After syncing it
checks that the two files hold the same cells and refuses to run the notebook if not.

Runs each notebook from its own folder with a fresh kernel; stops at the first error. A ``.py`` path is also
accepted (a new notebook: write the ``.py`` with the header of an existing one and run this script on it).
"""

import sys
import time
from pathlib import Path

import jupytext
import nbformat
from jupytext.cli import jupytext as jupytext_cli
from nbclient import NotebookClient

FORMATS = "ipynb,py:percent"


def cells(nb) -> list[tuple[str, str, list[str]]]:
    """What a pair must agree on: each cell's type, source and tags."""
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def sync(path: Path) -> Path:
    """Sync the pair of ``path`` (a ``.ipynb`` or its ``.py``); return the ``.ipynb`` once both agree."""
    ipynb, py = path.with_suffix(".ipynb"), path.with_suffix(".py")
    source = py if py.exists() else ipynb
    if not source.exists():
        sys.exit(f"{path}: no such notebook (neither {ipynb.name} nor {py.name})")
    if jupytext.read(source).metadata.get("jupytext", {}).get("formats") != FORMATS:
        sys.exit(f"{source}: not paired; pair it with: jupytext --set-formats {FORMATS} {source}")
    jupytext_cli(["--sync", str(source)])
    if cells(nbformat.read(ipynb, as_version=4)) != cells(jupytext.read(py)):
        sys.exit(f"{ipynb} and {py.name} still differ after jupytext --sync: not running it")
    return ipynb


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(nb, path)
    print(f"{path}: executed in {time.perf_counter() - start:.0f} s")


def main(paths: list[str]) -> None:
    for name in dict.fromkeys(str(Path(p).with_suffix("")) for p in paths):  # a pair named twice runs once
        execute(sync(Path(name)))


if __name__ == "__main__":
    main(sys.argv[1:])
