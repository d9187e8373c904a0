"""RESULTS.md, written from the measured tables (``animatelcm_helpers/results/*.json``) and the toy
zoo's manifest, so that README, this page and the notebooks cannot disagree.

    python scripts/results_page.py            # rewrite RESULTS.md
    python scripts/results_page.py --check    # exit 1 when RESULTS.md is not what the files give

Every number on the page comes from a file; a fraction (digit, direction, style) is shown with its
95 % bootstrap interval over the row's videos (``results.interval``), and so is any figure whose
row stores one. ``tests/test_results_page.py`` runs the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from animatelcm_helpers import results
from animatelcm_helpers.toy import zoo

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "RESULTS.md"

# (table, title, the notebook that discusses it); tables not listed come after, by name
ORDER = (
    ("stage1", "Stage 1: image consistency distillation", "03"),
    ("table1", "Our version of the paper's table 1 (stage 2, text-to-video)", "04"),
    ("samplers", "Samplers on the distilled model", "02"),
    ("guidance", "The teacher's guidance", "02"),
    ("motion", "Motion LoRAs", "00, 08"),
    ("styles", "Styles without stylized video", "03, 04"),
    ("ablation", "The decoupled initialization, ablated", "04"),
    ("control", "Teacher-free adaptation and control", "05, 06"),
    ("i2v", "Image-to-video: AnimateLCM-I2V's design (an image encoder) against the keyframe ControlNet", "05, 06, 08"),
    ("svd", "AnimateLCM-SVD-xt at toy size", "07"),
    ("successors", "After AnimateLCM: phased consistency and an adversarial term, side by side", "09"),
)
COMMANDS = {"successors": "python scripts/successors.py"}  # the tables not made by `python scripts/tables.py <name>`
LONG = ("loss_curves", "trials")  # kept in the file (notebook 09 shows them), not printed on the page
# (key, header, format): the columns a table shows, in this order, when its rows have them
COLUMNS = (
    ("label", "model", "{}"), ("mode", "mode", "{}"), ("motion_scale", "motion scale", "{:g}"), ("scheduler", "sampler", "{}"), ("steps", "steps", "{}"),
    ("guidance", "CFG", "{:g}"), ("max_guidance", "max guidance", "{:g}"), ("scale", "scale", "{:g}"),
    ("strength", "strength", "{:g}"), ("videos", "videos", "{}"), ("digit", "digit", "{:.2f}"),
    ("score", "digit p", "{:.3f}"), ("direction", "direction", "{:.2f}"), ("style", "style", "{:.2f}"),
    ("edge_f1", "edge F1", "{:.2f}"), ("first_psnr", "first-frame PSNR (dB)", "{:.1f}"),
    ("frechet", "Frechet", "{:.1f}"), ("floor", "floor", "{:.1f}"), ("unet_evals", "UNet evals", "{}"),
    ("seconds", "s / video", "{:.3f}"),
)


def cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    text = fmt.format(value)
    iv = results.interval(row, key) if key in ("digit", "direction", "style", "frechet", "first_psnr", "edge_f1") else None
    if iv is not None:
        digits = len(text.split(".")[1]) if "." in text else 0
        text += f" [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"
    return text


def table(rows: list[dict]) -> str:
    cols = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in cols) + " |" for r in rows]
    return "\n".join(lines)


def section(name: str, data: dict, title: str, notebooks: str) -> str:
    created = data.get("created", {})
    out = [f"## {title}", "", f"`results/{name}.json`, measured {created.get('date', '?')} on "
           f"{created.get('machine', '?')} (`{COMMANDS.get(name, f'python scripts/tables.py {name}')}`); notebook(s) {notebooks}.", ""]
    if data.get("what"):
        out += [data["what"].strip(), ""]
    if data.get("rows"):
        out += [table(data["rows"]), ""]
    rest = {k: v for k, v in data.items() if k not in ("rows", "what", "created", *LONG)}
    if rest:
        out += ["Other figures in the file:", "", "```json", json.dumps(rest, indent=1), "```", ""]
    return "\n".join(out)


def zoo_section() -> str:
    manifest = json.loads((zoo.SHIPPED / "manifest.json").read_text())
    out = ["## The toy zoo's stages", "", "From `animatelcm_helpers/toy/weights/manifest.json` (wall times depend on what "
           "else the machine ran; `python -m animatelcm_helpers.toy.build` rebuilds the zoo, each stage resumable).", "",
           "| stage | recipe | steps | seconds | measured |", "|---|---|---|---|---|"]
    for name, stage in manifest.get("stages", {}).items():
        measured = ", ".join(f"{k} {v}" for k, v in stage.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)
                             and k.startswith(("psnr", "final_loss", "lora_final", "full_final")))
        out.append(f"| `{name}` | {stage.get('recipe', '-')} | {stage.get('steps') or '-'} | "
                   f"{stage.get('seconds', '-')} | {measured or '-'} |")
    out += ["", f"Total: {manifest.get('total_seconds', '-')} s; {len(manifest.get('files', {}))} files."]
    return "\n".join(out) + "\n"


def page() -> str:
    names = [p.stem for p in sorted(results.FOLDER.glob("*.json"))]
    ordered = [o for o in ORDER if o[0] in names] + [(n, n, "-") for n in names if n not in dict((o[0], 0) for o in ORDER)]
    parts = ["# Results", "",
             "Every measured table of the course, written by `scripts/results_page.py` from the result files (do "
             "not edit by hand). Toy world, 2 CPU cores. A fraction carries its 95 % bootstrap interval over the "
             "row's videos in brackets; two rows whose intervals overlap are a tie. The definitions are in "
             "[docs/NOTATION.md](docs/NOTATION.md) (Measures) and [docs/GLOSSARY.md](docs/GLOSSARY.md).", ""]
    parts += [section(n, results.load(n), title, nbs) for n, title, nbs in ordered]
    parts.append(zoo_section())
    return "\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare, do not write")
    args = p.parse_args(argv)
    text = page()
    if args.check:
        if not PAGE.is_file() or PAGE.read_text() != text:
            print(f"{PAGE.name} is out of date: run `python scripts/results_page.py`", file=sys.stderr)
            return 1
        return 0
    tmp = PAGE.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(PAGE)
    print(f"wrote {PAGE} ({len(text):,} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
