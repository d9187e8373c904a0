"""Notebook 09's table, in one command: AnimateLCM's successors trained on the toy world and measured.

    python scripts/successors.py                      # train (or resume) every successor, then measure
    python scripts/successors.py --only train         # train / resume only (checkpoints in --work)
    python scripts/successors.py --only measure       # re-measure the shipped weights, no training
    python scripts/successors.py --only analysis      # only section 1's numbers (why one step is hard)

Training: ``toy.build_successors.successor_stages`` (phased, adversarial, and the control: LCD alone,
each a LoRA on the toy AnimateLCM, the data and teacher of stage 2), resumable, one log line a step in
``<work>/<name>/log.jsonl`` and a 1-step check on 40 videos at each checkpoint in ``checks.jsonl``; the
LoRAs are then copied into the zoo (``animatelcm_helpers/toy/weights/successors``).
Measuring: the rows of ``scripts/tables.py table1`` (40 prompts x 2 seeds = 80 videos a row, with 95 %
bootstrap intervals) for AnimateLCM (LCM, and deterministic: TCD eta 0) and each successor at 1, 2, 4
and 8 steps, and section 1's analysis; written to ``animatelcm_helpers/results/successors.json``.
Run it under ``nice -n 10`` on a shared machine; it uses one thread unless ``--threads`` says more.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from animatelcm_helpers import evaluation, lcm, pipelines, results, successors
from animatelcm_helpers.toy import build_successors, metrics, zoo
from animatelcm_helpers.toy import data as toy_data

ROOT = Path(__file__).resolve().parents[1]
STEPS = (1, 2, 4, 8)
VIDEO_SEEDS = (0, 1)  # as scripts/tables.py table1
CHECK_PROMPTS = metrics.PROMPTS  # the 40 prompts, seed 0, at these checkpoints (and the last)
CHECK_AT = (50, 100, 200, 300)
NOISE = {"prompts": 8, "starts": 4, "seeds": 4, "steps": (2, 4, 8)}  # section 1's fresh-noise measurement


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


def train(work: Path, steps: int, names, limit: int | None, zoo_folder: Path) -> dict:
    base = pipelines.load_t2v("animatelcm")

    def check(name, step, student):  # 1 step (and the phased model's own 4) on 40 videos, logged
        if step not in CHECK_AT and step != steps:
            return
        pipe = build_successors.with_student(base, student, name)
        was_training = student.training
        student.eval()
        line = {"step": step}
        for n in (1, 4) if name == "phased" else (1,):
            kw = {"call_kwargs": {"eta": 0.0}} if name == "phased" else {}
            row = evaluation.evaluate(pipe, n, 1.0, seeds=(0,), prompts=CHECK_PROMPTS, **kw)
            line[f"{n}"] = {k: row[k] for k in ("digit", "direction", "frechet")}
        student.train(was_training)
        with open(work / name / "checks.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        log(name, line)

    cache = work / f"inputs-{limit or 'all'}.safetensors"
    done = build_successors.successor_stages(work, steps, names, limit=limit, on_save=check, progress=False,
                                             cache=cache)
    hashes = build_successors.write_successors(zoo_folder, work, [n for n in names if n in build_successors.SHIPPED])
    for name, info in done.items():
        log(name, {k: info[k] for k in ("steps", "seconds", "final_loss", "bytes")})
    return {"stages": {n: {k: v for k, v in i.items() if k != "loss_curve"} for n, i in done.items()},
            "loss_curves": {n: i["loss_curve"] for n, i in done.items()}, "files": hashes}


# ------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------


def stage2_seconds() -> float:
    manifest = json.loads((zoo.root() / "manifest.json").read_text())
    return float(manifest["stages"]["stage2"]["seconds"])


def where(name: str, folder: Path, work: Path) -> Path:
    """The folder a successor's LoRA is loaded from: the zoo's (shipped ones), else the work folder."""
    return folder if name in build_successors.SHIPPED else build_successors.weight_file(work, name).parent


def measure(stages: dict, folder: Path, work: Path) -> list[dict]:
    rows, base_seconds = [], stage2_seconds()
    pipe = pipelines.load_t2v("animatelcm")
    for n in STEPS:
        rows.append(evaluation.evaluate(pipe, n, 1.0, seeds=VIDEO_SEEDS, label="AnimateLCM (toy)"))
        rows[-1].update(model="animatelcm", train_seconds=base_seconds, own_seconds=0.0)
        log(rows[-1]["label"], n, rows[-1]["digit"], rows[-1]["frechet"])
    for n in STEPS:
        rows.append(evaluation.evaluate(pipe, n, 1.0, scheduler="tcd", call_kwargs={"eta": 0.0}, seeds=VIDEO_SEEDS,
                                        label="AnimateLCM (toy), deterministic (TCD eta 0)"))
        rows[-1].update(model="animatelcm", train_seconds=base_seconds, own_seconds=0.0)
    for name in stages:
        pipe = build_successors.load_successor(name, where(name, folder, work))
        kw = {"call_kwargs": dict(build_successors.SAMPLERS[name][1])} if build_successors.SAMPLERS[name][1] else {}
        own = float(stages[name]["seconds"])
        for n in STEPS:
            rows.append(evaluation.evaluate(pipe, n, 1.0, seeds=VIDEO_SEEDS, label=build_successors.LABELS[name], **kw))
            rows[-1].update(model=name, train_seconds=base_seconds + own, own_seconds=own)
            log(rows[-1]["label"], n, rows[-1]["digit"], rows[-1]["frechet"])
    return rows


def aim(rows: list[dict]) -> dict:
    """The issue's aim at 1 step: digit >= 0.95 and Frechet <= 1.5 x AnimateLCM's at 4 steps,
    without losing at 4 steps (intervals: overlapping = a tie, not a loss)."""
    ref4 = next(r for r in rows if r["label"] == "AnimateLCM (toy)" and r["steps"] == 4)
    out = {"frechet_bound": 1.5 * ref4["frechet"]}
    for name in build_successors.NAMES:
        one = [r for r in rows if r.get("model") == name and r["steps"] == 1]
        four = [r for r in rows if r.get("model") == name and r["steps"] == 4]
        if not one:
            continue
        one, four = one[0], four[0]
        verdicts = {k: metrics.compare(results.interval(four, k), results.interval(ref4, k), higher_is_better=(k != "frechet"))
                    for k in ("digit", "direction", "frechet")}
        out[name] = {"digit_1": one["digit"], "frechet_1": one["frechet"],
                     "digit_ok": one["digit"] >= 0.95, "frechet_ok": one["frechet"] <= out["frechet_bound"],
                     "at_4_steps_vs_animatelcm": verdicts}
    return out


# ------------------------------------------------------------------------------------------
# Section 1: why one step is hard
# ------------------------------------------------------------------------------------------


def interval_dict(values) -> dict:
    iv = metrics.bootstrap(np.asarray(values))
    return {"mean": iv.value, "low": iv.low, "high": iv.high, "n": iv.n}


def analysis(names, folder: Path, work: Path) -> dict:
    # the 80 videos of a table row: prompt i at seed s starts from evaluation.video_seed(i, s)
    seeds = [evaluation.video_seed(i, s) for s in VIDEO_SEEDS for i in range(len(metrics.PROMPTS))]
    prompts = [metrics.PROMPTS[i] for s in VIDEO_SEEDS for i in range(len(metrics.PROMPTS))]
    teacher, pipe = pipelines.load_t2v("teacher"), pipelines.load_t2v("animatelcm")
    real = metrics.real_videos("test", n=len(prompts))
    ds = toy_data.MovingDigits("test")
    by_caption: dict[str, list] = {}
    for i in range(len(ds)):
        item = ds[i]
        by_caption.setdefault(item["caption"], []).append(item["pixel_values"])
    hf = {"real test videos": interval_dict(successors.high_frequency_energy(real))}
    # what averaging does: the mean of the real test videos of one caption
    means, nearest, to_mean = [], [], []
    x0_top = evaluation.guided_x0(teacher, prompts, seeds)
    for j, p in enumerate(prompts):
        vids = toy_data.to_uint8(np.stack(by_caption[p])).astype(np.float64)
        mean = vids.mean(0)
        means.append(mean)
        x = x0_top[j].astype(np.float64)
        to_mean.append(float(((x - mean) ** 2).mean()))
        nearest.append(float(((vids - x) ** 2).mean(axis=(1, 2, 3, 4)).min()))
    hf["mean of the real videos of a caption"] = interval_dict(successors.high_frequency_energy(np.stack(means)))
    hf["teacher's x0 estimate at t = 999"] = interval_dict(successors.high_frequency_energy(x0_top))
    log("x0 at 999 done")
    videos = {"AnimateLCM, 1 step": evaluation.sample_videos(pipe, prompts, seeds, 1), "AnimateLCM, 4 steps": evaluation.sample_videos(pipe, prompts, seeds, 4)}
    for name in names:
        spipe = build_successors.load_successor(name, where(name, folder, work))
        kw = dict(build_successors.SAMPLERS[name][1])
        for n in (1, 4):
            videos[f"{build_successors.LABELS[name]}, {n} step{'s' if n > 1 else ''}"] = evaluation.sample_videos(spipe, prompts, seeds, n, **kw)
    for label, v in videos.items():
        hf[label] = interval_dict(successors.high_frequency_energy(v))
    log("high-frequency energy done")

    # fresh noise: K starts x M sampler seeds per prompt; the share of the output's variance the noise decides
    k, m, n_prompts = NOISE["starts"], NOISE["seeds"], NOISE["prompts"]
    chosen = [metrics.PROMPTS[i] for i in np.linspace(0, len(metrics.PROMPTS) - 1, n_prompts).astype(int)]
    shares, agree = {}, {}
    samplers = {"LCM (fresh noise each step)": ("lcm", {}), "deterministic (TCD eta 0)": ("tcd", {"eta": 0.0})}
    for sname, (kind, kw) in samplers.items():
        pipe.scheduler = pipelines.make_scheduler(kind, pipe.scheduler.config)
        for n in NOISE["steps"]:
            per_prompt, same_dir = [], []
            for pi, p in enumerate(chosen):
                starts = evaluation.start_noise(pipe, [50_000 + 100 * pi + a for a in range(k)])
                lat = starts.repeat_interleave(m, 0)
                noise_seeds = [70_000 + 100 * pi + 10 * a + b for a in range(k) for b in range(m)]
                v = evaluation.sample_videos(pipe, [p] * (k * m), None, n, latents=lat, noise_seeds=noise_seeds, **kw)
                per_prompt.append(successors.noise_share(v.reshape(k, m, *v.shape[1:]).astype(np.float64)))
                dirs = np.array(metrics.read_direction(v), dtype=object).reshape(k, m)
                same_dir += [len(set(row)) == 1 for row in dirs]
            shares[f"{sname}, {n} steps"] = interval_dict(per_prompt)
            agree[f"{sname}, {n} steps"] = float(np.mean(same_dir))
            log("noise", sname, n, shares[f"{sname}, {n} steps"]["mean"])
    pipe.scheduler = pipelines.make_scheduler("lcm", pipe.scheduler.config)
    alphas = pipe.scheduler.alphas_cumprod
    fresh = {str(n): [{"t_next": int(t), "fresh_noise_variance": float(1 - alphas[int(t)])}
                      for t in lcm.lcm_timesteps(n)[1:]] for n in NOISE["steps"]}
    return {"high_frequency_energy": hf, "cutoff": 0.25,
            "x0_at_999_distance": {"to the caption's mean (pixel MSE)": interval_dict(to_mean),
                                   "to the nearest real video of the caption": interval_dict(nearest)},
            "noise_share": shares, "direction_kept_across_noise_seeds": agree, "renoise_steps": fresh,
            "noise_setup": NOISE}


def trial(folder: Path, names) -> dict:
    """One training run's recipe and its 1-step checks (40 prompts, seed 0, at CHECK_AT and the last step)."""
    out = {}
    for name in names:
        checks, info = folder / name / "checks.jsonl", folder / name / "info.json"
        if checks.exists():
            out[name] = {"recipe": json.loads(info.read_text())["recipe"] if info.exists() else "stopped before the end",
                         "checks": [json.loads(line) for line in checks.read_text().splitlines()]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("train", "measure", "analysis"), default=None)
    ap.add_argument("--steps", type=int, default=build_successors.STEPS)
    ap.add_argument("--names", nargs="+", default=list(build_successors.NAMES), choices=build_successors.NAMES)
    ap.add_argument("--work", type=Path, default=ROOT / "outputs" / "successors")
    ap.add_argument("--limit", type=int, default=None, help="training videos (default: all 2,400 of stage 2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--record-trial", nargs=2, metavar=("LABEL", "FOLDER"), default=None,
                    help="store a trial run's 1-step checks (FOLDER/<name>/checks.jsonl, FOLDER/<name>/info.json) "
                         "under 'trials' in successors.json, then stop")
    ap.add_argument("--adversarial-weight", type=float, default=None,
                    help=f"lambda of the adversarial successor (default {build_successors.RECIPES['adversarial']['weight']})")
    ap.add_argument("--zoo", type=Path, default=zoo.SHIPPED, help="where the trained LoRAs go (successors/)")
    ap.add_argument("--results", type=Path, default=results.FOLDER, help="folder of successors.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.adversarial_weight is not None:
        build_successors.RECIPES["adversarial"]["weight"] = args.adversarial_weight
    args.work.mkdir(parents=True, exist_ok=True)
    previous = results.load("successors", args.results) if (args.results / "successors.json").exists() else {}
    out = dict(previous)
    if args.record_trial:
        label, folder = args.record_trial
        out.setdefault("trials", {})[label] = trial(Path(folder), args.names)
        results.save("successors", {**out, "created": results.stamp()}, args.results)
        return 0
    if args.only in (None, "train"):
        out.update(train(args.work, args.steps, args.names, args.limit, args.zoo))
        results.save("successors", {**out, "created": results.stamp()}, args.results)
    if args.only in (None, "measure"):
        if "stages" not in out:
            sys.exit("no trained successors recorded in results/successors.json: run with --only train first")
        out["rows"] = measure(out["stages"], args.zoo / build_successors.FOLDER, args.work)
        out["aim"] = aim(out["rows"])
        out["what"] = "videos, 40 prompts x 2 seeds (table1's), no CFG; successors are LoRAs on the toy AnimateLCM"
        results.save("successors", {**out, "created": results.stamp()}, args.results)
        print(evaluation.format_table(out["rows"]))
    if args.only in (None, "analysis"):
        out["analysis"] = analysis([n for n in args.names if n in out.get("stages", {})], args.zoo / build_successors.FOLDER, args.work)
        results.save("successors", {**out, "created": results.stamp()}, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
