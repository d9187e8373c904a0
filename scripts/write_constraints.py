"""Write requirements/constraints.txt (exact pins) from the current venv.

Run after changing a dependency: `make constraints`. The tests check that pyproject.toml,
constraints.txt, environment.yml and binder/ agree.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# Exact pins for local and CI installs: pip install -c requirements/constraints.txt -e '.[dev]'
# (the Makefile does this). torch and torchvision are a matched pair; an unpinned controlnet-aux
# install can replace torch, so everything is pinned. Regenerate with: make constraints
"""


def main() -> None:
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    pins = sorted(
        (line for line in freeze if "==" in line and not line.lower().startswith("animatelcm")),
        key=str.lower,
    )
    (ROOT / "requirements" / "constraints.txt").write_text(HEADER + "\n".join(pins) + "\n")
    print(f"wrote {len(pins)} pins to requirements/constraints.txt")


if __name__ == "__main__":
    main()
