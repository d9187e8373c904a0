"""Measured result tables that ship with the package (``animatelcm_helpers/results/*.json``).

``scripts/tables.py`` and ``scripts/ablation_stage2.py`` measure the toy zoo and write them; the
notebooks show them next to their own smaller live runs (which test mode keeps short), so a
reader on the web sees the full numbers and a learner can rerun any row.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from .config import UserError
from .toy import metrics

FOLDER = Path(__file__).resolve().parent / "results"


def stamp() -> dict:
    """Where and when a table was measured (times depend on the machine)."""
    return {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "torch_threads": torch.get_num_threads()}


def save(name: str, data: dict, folder: Path = FOLDER) -> Path:
    """Write ``<folder>/<name>.json`` atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, folder / f"{name}.json")
    return folder / f"{name}.json"


def load(name: str, folder: Path = FOLDER) -> dict:
    path = folder / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []
        raise UserError(f"no result table {name!r} (have: {', '.join(known) or 'none'}); "
                        f"measure it with `python scripts/tables.py {name}`")
    return json.loads(path.read_text())


def rows(name: str, **where) -> list[dict]:
    """The rows of table ``name`` whose fields equal ``where`` (e.g. ``scheduler="lcm"``)."""
    return [r for r in load(name)["rows"] if all(r.get(k) == v for k, v in where.items())]


def interval(row: dict, key: str) -> metrics.Interval | None:
    """The 95 % interval of ``row[key]`` over the row's ``videos``: the stored bootstrap interval
    (``row["intervals"]``, which evaluation.evaluate records) when the row has one, else, for a
    fraction (digit, direction, style), the bootstrap of its 0/1 outcomes from the fraction and the
    count (``metrics.proportion_interval``); None when neither is possible (a Frechet distance
    measured before intervals were stored)."""
    value, n = row.get(key), row.get("videos")
    if value is None or not n:
        return None
    stored = (row.get("intervals") or {}).get(key)
    if stored is not None:
        return metrics.Interval(float(value), float(stored[0]), float(stored[1]), int(n))
    if key in ("digit", "direction", "both", "style") and 0.0 <= value <= 1.0:
        return metrics.proportion_interval(float(value), int(n))
    return None



LOWER_IS_BETTER = ("frechet",)


def shown(row: dict, key: str, digits: int = 2) -> str:
    """``row[key]`` with its 95 % interval (:func:`interval`) as "value [low, high]", or the bare
    value and "(no interval stored)" when the row cannot give one."""
    i = interval(row, key)
    return f"{row[key]:.{digits}f} (no interval stored)" if i is None else i.format(digits)


def verdict(a: dict, b: dict, key: str, lower_is_better: bool | None = None) -> str:
    """The course's rule for row ``a`` against row ``b`` on ``key`` (:func:`toy.metrics.compare`):
    "win" or "loss" when the 95 % intervals separate, "tie" when they overlap, and
    "not called (no interval stored)" when either row has none. Lower is better for the keys in
    :data:`LOWER_IS_BETTER` (a Frechet distance) unless ``lower_is_better`` says otherwise."""
    ia, ib = interval(a, key), interval(b, key)
    if ia is None or ib is None:
        return "not called (no interval stored)"
    lower = key in LOWER_IS_BETTER if lower_is_better is None else lower_is_better
    return metrics.compare(ia, ib, higher_is_better=not lower)

# The paper's table 1 (AnimateLCM, arXiv 2402.00769 v3): UCF-101 zero-shot, 16 frames, 512x512;
# DDIM and DPM++ with CFG 7.5, AnimateLCM without CFG. Columns: 1 / 2 / 4 / 8 steps.
PAPER_TABLE1 = {
    "DDIM": {"FVD": (4940.83, 3218.74, 1944.82, 1209.88), "CLIPSIM": (4.43, 5.26, 14.87, 24.38)},
    "DPM++": {"FVD": (2731.37, 2093.47, 1043.82, 932.43), "CLIPSIM": (10.48, 18.04, 26.82, 29.50)},
    "AnimateLCM": {"FVD": (1256.50, 1081.26, 925.71, 910.34), "CLIPSIM": (22.16, 25.99, 28.89, 30.03)},
}


# AnimateLCM and two successors measured on ONE benchmark (MCM's project page, Zhai et al. 2024: WebVid mini, the
# AnimateDiff SD1.5 family). Columns: 1 / 2 / 4 / 8 steps.
PEERS = {
    "AnimateLCM": {"FVD": (1575, 1333, 998, 946), "CLIPSIM": (24.65, 27.43, 28.98, 28.77)},
    "AnimateDiff-Lightning": {"FVD": (1288, 1289, 1283, 1355), "CLIPSIM": (28.29, 29.07, 30.01, 29.69)},
    "MCM (AnimateDiff teacher)": {"FVD": (1025, 948, 827, 821), "CLIPSIM": (30.36, 30.70, 30.85, 29.88)},
}


def peers_table(steps=(1, 2, 4, 8)) -> str:
    """:data:`PEERS` as markdown: FVD and CLIPSIM per method at 1 / 2 / 4 / 8 steps."""
    head = " | ".join(f"{n} step{'s' if n > 1 else ''}" for n in steps)
    lines = [f"| method | FVD: {head} | CLIPSIM: {head} |", "|---|" + "---|" * (2 * len(steps))]
    for name, m in PEERS.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:g}" for v in m["FVD"]) + " | "
                     + " | ".join(f"{v:.2f}" for v in m["CLIPSIM"]) + " |")
    return "\n".join(lines)


def side_by_side(table_rows: list[dict], steps=(1, 2, 4, 8)) -> str:
    """The paper's table 1 next to ours, as markdown: per method and step count, the paper's FVD
    and CLIPSIM beside our Frechet distance and faithfulness (digit / direction)."""
    ours = {"DDIM": ("teacher", "ddim"), "DPM++": ("teacher", "dpm++"), "AnimateLCM": (None, "lcm")}
    lines = ["| method | steps | paper FVD | ours: Frechet | paper CLIPSIM | ours: digit / direction |",
             "|---|---:|---:|---:|---:|---|"]
    for method, (label, sched) in ours.items():
        for i, n in enumerate(steps):
            row = next((r for r in table_rows if r["scheduler"] == sched and r["steps"] == n
                        and (label is None or r["label"] == label)), None)
            mine = ("-", "-") if row is None else (f"{row['frechet']:.1f}", f"{row['digit']:.2f} / {row['direction']:.2f}")
            lines.append(f"| {method} | {n} | {PAPER_TABLE1[method]['FVD'][i]:.1f} | {mine[0]} | "
                         f"{PAPER_TABLE1[method]['CLIPSIM'][i]:.2f} | {mine[1]} |")
    return "\n".join(lines)
