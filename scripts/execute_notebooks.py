"""Execute notebooks in place (as they are committed: toy world, normal mode, outputs kept).

    python scripts/execute_notebooks.py notebooks/00_quickstart.ipynb [...]

Runs each notebook from its own folder with a fresh kernel; stops at the first error.
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(nb, path)
        print(f"{path}: executed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
