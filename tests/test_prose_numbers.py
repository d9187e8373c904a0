"""Numbers in the notebooks' prose come from their outputs.

A measured number written in a markdown cell (one with a decimal point, or a percentage) must be
one the notebook computes: it appears, to the digits the prose gives, in the notebook's outputs
(printed tables, rendered ``Markdown`` from computed values), in its code (an input the reader can
change: ``mu = 0.95``), or in the paper's figures the package keeps (``results.PAPER``). Inline
code, LaTeX and links are not prose. So a sentence cannot say 0.93 beside an output of 0.84, and a
re-measured table that moves a number breaks the test until the prose follows (or renders it).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+|\d+(?=\s?%))(\s?%)?(?![\w.]*\d)")
NOT_PROSE = re.compile(r"`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\[([^\]]*)\]\([^)]*\)|https?://\S+|<[^>]+>", re.S)


def prose(markdown: str) -> str:
    """Markdown without inline code, LaTeX, link targets and HTML tags (link texts stay)."""
    return NOT_PROSE.sub(lambda m: m.group(1) or " ", markdown)


def numbers_in(text: str) -> list[tuple[str, float, int, bool]]:
    """(as written, value, decimals, percent?) for every number with a decimal point or a % sign."""
    out = []
    for m in NUMBER.finditer(text):
        written = m.group(1)
        decimals = len(written.split(".")[1]) if "." in written else 0
        out.append((written + (m.group(2) or ""), float(written), decimals, bool(m.group(2))))
    return out


def haystack_values(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text.replace(",", ""))]


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            parts.append(cell.source)
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    parts.append(out.get("text", ""))
                for kind in ("text/plain", "text/markdown", "text/html"):
                    if kind in out.get("data", {}):
                        parts.append(str(out["data"][kind]))
    return "\n".join(parts)


def paper_text() -> str:
    from animatelcm_helpers import results

    return repr(getattr(results, "PAPER", ""))


def present(value: float, decimals: int, percent: bool, values: list[float]) -> bool:
    """``value`` (as the prose rounds it) is one of ``values``, rounded the same way (a percentage
    may be a fraction in the outputs: 16.0 % is 0.160)."""
    scale = (1.0, 100.0) if percent else (1.0,)
    return any(abs(round(v * s, decimals) - value) < 0.5 * 10**-decimals + 1e-12 for v in values for s in scale)


def unbacked(nb, extra: str = "") -> list[str]:
    values = haystack_values(outputs_text(nb) + "\n" + extra)
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for written, value, decimals, percent in numbers_in(prose(cell.source)):
            if not present(value, decimals, percent, values):
                missing.append(f"cell {i}: {written}")
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_number_in_the_prose_is_in_the_outputs(path):
    nb = nbformat.read(path, as_version=4)
    missing = unbacked(nb, paper_text())
    assert not missing, (f"{path.name}: numbers in the prose that no output, code or paper figure gives "
                         f"(render them from the computed value, or correct them): {', '.join(missing)}")


def test_the_check_goes_red_on_a_wrong_number():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print(round(0.8412, 3))")
    code.outputs = [nbformat.v4.new_output("stream", text="0.841\nFrechet 27.1\n")]
    nb.cells = [code, nbformat.v4.new_markdown_cell("The student reads 0.84 and Frechet 27.1 (16 %, `mu = 0.95`).")]
    assert unbacked(nb) == ["cell 1: 16 %"]
    nb.cells[1].source = "The student reads 0.93 at 4 steps, $x_t = 0.5$, [v0.42.1](https://x.org/0.77)."
    assert unbacked(nb) == ["cell 1: 0.93"]
    nb.cells[1].source = "84.1 % of the videos"  # a fraction in the output, a percentage in the prose
    assert unbacked(nb) == []
