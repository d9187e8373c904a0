"""Measure a toy model the way the paper's table does: faithfulness, Frechet distance, cost.

    python scripts/evaluate.py --model teacher --schedulers ddim dpm++ --steps 1 2 4 8 25 50 --guidance 7.5
    python scripts/evaluate.py --model animatelcm --steps 1 2 4 8 --guidance 1
    python scripts/evaluate.py --model teacher --steps 25 --seeds 0 1 2 --json teacher.json

One row per (scheduler, steps): every prompt (default: every digit x every direction, 40) at
every seed, sampled in batches; the metric nets come from the toy zoo (``--metrics`` for another
folder). Runs in the toy world. Mistakes in the arguments print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from animatelcm_helpers import evaluation


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="animatelcm", help="toy model name (teacher, animatelcm, ...) or a saved pipeline folder")
    p.add_argument("--schedulers", nargs="+", help="samplers by name: lcm, tcd, ddim, euler, dpm++ (default: the model's)")
    p.add_argument("--steps", nargs="+", type=int, help="denoising steps, one row each (default: the model's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale; 1 = none (default: the model's)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds: one video per prompt and seed (default 0)")
    p.add_argument("--prompts", nargs="+", help="prompts (default: every digit x every direction, 40)")
    p.add_argument("--batch", type=int, default=40, help="videos per pipeline call (default 40)")
    p.add_argument("--lcm-lora-weight", type=float, help="weight of the LCM LoRA, 0..1 (default: the model's)")
    p.add_argument("--metrics", help="folder of the metric nets (default: <toy zoo>/metrics)")
    p.add_argument("--label", help="the model column of the table (default: --model)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from animatelcm_helpers import config, pipelines
    from animatelcm_helpers.config import UserError
    from animatelcm_helpers.toy import metrics

    try:
        config.setup(world="toy")
        nets = metrics.load_metric_nets(args.metrics)
        pipe = pipelines.load_t2v(args.model, lcm_lora_weight=args.lcm_lora_weight)
        spec = pipe.model_spec
        schedulers = args.schedulers or [None]
        steps = args.steps or [spec.steps]
        guidance = spec.guidance if args.guidance is None else args.guidance
        rows = []
        for scheduler in schedulers:
            for n in steps:
                row = evaluation.evaluate(pipe, n, guidance, scheduler=scheduler, prompts=args.prompts,
                                       seeds=args.seeds, batch=args.batch, label=args.label or args.model, nets=nets)
                rows.append(row)
                print(f"done: {row['scheduler']}, steps={n}: {row['seconds']:.3f} s a video", file=sys.stderr, flush=True)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(evaluation.format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
