"""Time every notebook and measure its kernel's peak memory (the figures README quotes).

    ANIMATELCM_TEST_MODE=1 python scripts/benchmark_notebooks.py notebooks/*.ipynb

Each notebook runs in a fresh kernel (a child process of this one); peak memory is the
kernel's maximum resident set size, read from the operating system when the kernel exits.
The notebooks are not modified.
"""

import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
"""


def main(paths: list[str]) -> None:
    print(f"{'notebook':<40} {'seconds':>8} {'peak kernel MB':>15}")
    for name in paths:
        path = Path(name)
        # one runner process per notebook, so RUSAGE_CHILDREN of that runner is its kernel's peak
        start = time.perf_counter()
        code = (
            CHILD
            + "import resource\nprint(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(path), str(path.parent)],
            capture_output=True, text=True,
        )
        seconds = time.perf_counter() - start
        if out.returncode:
            print(f"{path.name:<40} FAILED\n{out.stderr[-2000:]}")
            continue
        peak_mb = int(out.stdout.strip().splitlines()[-1]) / 1024
        print(f"{path.name:<40} {seconds:8.0f} {peak_mb:15.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
