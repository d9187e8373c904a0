"""The course's result tables on the toy zoo, measured with the metrics module and saved as JSON.

    python scripts/tables.py stage1      # images: LCM-LoRA / full LCD student vs the teacher's samplers
    python scripts/tables.py table1      # videos: our version of the paper's table 1
    python scripts/tables.py guidance    # videos: the teacher at 50 DDIM steps across CFG scales
    python scripts/tables.py motion      # videos: each prompt's motion LoRA on the teacher and on AnimateLCM
    python scripts/tables.py samplers    # LCM and TCD on the student, DDIM/Euler/DPM++ on the teacher
    python scripts/tables.py styles      # style LoRAs + the LCM LoRA (images) and + AnimateLCM (videos)
    python scripts/tables.py control     # ControlNet / image-to-video adapters (teacher-free vs naive), video-to-video
    python scripts/tables.py i2v         # image-to-video: the official AnimateLCM-I2V design (toy) vs the keyframe ControlNet
    python scripts/tables.py svd         # image-to-video: toy AnimateLCM-SVD-xt vs the toy SVD teacher
    python scripts/tables.py all

Each table goes to ``animatelcm_helpers/results/<name>.json`` (rows of ``evaluation.evaluate``) and is
printed as markdown; the notebooks show these files beside their own live, smaller runs.
Image rows: the 10 prompts "a zero" .. "a nine" x 96 seeds (960 images), with the digit score and
the image Frechet distance besides the digit read. Video rows: the 40
prompts (10 digits x 4 directions) x 2 seeds (80 videos). Seeds and prompts are fixed: a rerun on
the same machine gives the same numbers (seconds aside).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from animatelcm_helpers import evaluation

IMAGE_SEEDS = tuple(range(96))  # 960 images a row: at 320 the 4-step rows differ by 1 to 3 images
VIDEO_SEEDS = (0, 1)
STEPS = (1, 2, 4, 8)
TEACHER_CFG = 7.5
GUIDANCE_SCALES = (1.0, 4.0, 7.5, 10.0, 15.0)  # the teacher's CFG sweep (guidance table)
STYLE_TEACHER_CFG = 7.5  # the styles table's reference rows: the style LoRA on the teacher, 25 DDIM steps
CONTROL_VIDEOS = 40  # the control and i2v tables' held-out videos (evaluation.test_videos), seed = index
I2V_MOTION_SCALES = (0.0, 0.8, 1.5)  # the official slider's ends and its default (0.8, the scale the toy encoder trained at)
SVD_VIDEOS = 200  # image-to-video inputs: the first frames of test videos 0..199 (50 digits x 4 directions)


def _save(name: str, rows: list, extra: dict | None = None) -> None:
    from animatelcm_helpers import results

    results.save(name, {"rows": rows, **(extra or {})})
    print(evaluation.format_table(rows), flush=True)


def stage1() -> None:
    import torch

    from animatelcm_helpers import pipelines, results
    from animatelcm_helpers.toy import zoo

    rows = []
    ev = lambda pipe, n, g, label, **kw: rows.append(evaluation.evaluate(  # noqa: E731
        pipe, n, g, seeds=IMAGE_SEEDS, batch=80, label=label, **kw))
    lora = pipelines.load_t2i(lcm_lora=zoo.root() / "image-lcm" / "lcm_lora.safetensors")
    for n in STEPS:
        ev(lora, n, 1.0, "LCM-LoRA student")
    from diffusers import UNet2DConditionModel

    full = pipelines.load_t2i(unet=UNet2DConditionModel.from_pretrained(zoo.root() / "image-lcm" / "full", torch_dtype=torch.float32))
    for n in STEPS:  # guidance = w + 1 = 7.5 feeds the w-embedding: still one UNet call a step
        ev(full, n, TEACHER_CFG, "full LCD student (w = 6.5)")
    teacher = pipelines.load_t2i(scheduler="ddim")
    for sched in ("ddim", "dpm++"):
        for n in STEPS:
            ev(teacher, n, TEACHER_CFG, "image teacher", scheduler=sched)
    ev(teacher, 50, TEACHER_CFG, "image teacher", scheduler="ddim")
    # the target ablation's rows (a LoRA no longer shipped, so not re-measurable here) are kept as they were
    kept = {k: v for k, v in results.load("stage1").items() if k == "target_ablation"} if (results.FOLDER / "stage1.json").exists() else {}
    _save("stage1", rows, {"what": f"images, 10 digit prompts x {len(IMAGE_SEEDS)} seeds", "created": results.stamp(), **kept})


def table1() -> None:
    from animatelcm_helpers import pipelines, results

    rows = []
    student = pipelines.load_t2v("animatelcm")
    for n in STEPS:
        rows.append(evaluation.evaluate(student, n, 1.0, seeds=VIDEO_SEEDS, label="AnimateLCM (toy)"))
    teacher = pipelines.load_t2v("teacher")
    for sched, steps in (("ddim", STEPS + (25, 50)), ("dpm++", STEPS)):
        for n in steps:
            rows.append(evaluation.evaluate(teacher, n, TEACHER_CFG, scheduler=sched, seeds=VIDEO_SEEDS, label="teacher"))
            print(f"done {sched} {n}", file=sys.stderr, flush=True)
    _save("table1", rows, {"what": "videos, 40 prompts x 2 seeds", "created": results.stamp()})


def guidance() -> None:
    """The video teacher at 50 DDIM steps across guidance scales: how much CFG the prompt's
    direction needs (the teacher check of the zoo uses 7.5)."""
    from animatelcm_helpers import pipelines, results

    rows = []
    teacher = pipelines.load_t2v("teacher")
    for g in GUIDANCE_SCALES:
        rows.append(evaluation.evaluate(teacher, 50, g, scheduler="ddim", seeds=VIDEO_SEEDS, label="teacher"))
        print(f"done CFG {g}", file=sys.stderr, flush=True)
    _save("guidance", rows, {"what": "videos, 40 prompts x 2 seeds, DDIM 50 steps", "created": results.stamp()})


def motion() -> None:
    """Motion LoRAs (trained on the video teacher): each prompt's motion word picks its LoRA, on the
    teacher at 50 DDIM steps (CFG 7.5; without them: table1's row) and on the toy AnimateLCM at 1,
    2, 4 and 8 steps (no CFG), there next to the same model without them."""
    from animatelcm_helpers import pipelines, results

    rows = []
    for model, label, steps, cfg, sched in (("teacher", "teacher", (50,), TEACHER_CFG, "ddim"),
                                            ("animatelcm", "AnimateLCM (toy)", STEPS, 1.0, None)):
        pipe = pipelines.load_t2v(model)
        for n in steps:  # the teacher without them is table1's row (the same videos)
            for with_loras in (False, True) if model == "animatelcm" else (True,):
                rows.append(evaluation.evaluate(pipe, n, cfg, scheduler=sched, seeds=VIDEO_SEEDS, motion_loras=with_loras,
                                             label=label + (" + motion LoRAs" if with_loras else "")))
            print(f"done {model} {n}", file=sys.stderr, flush=True)
    _save("motion", rows, {"what": "videos, 40 prompts x 2 seeds; motion LoRA = the prompt's direction, weight 1",
                           "created": results.stamp()})


def samplers() -> None:
    from animatelcm_helpers import pipelines, results

    rows = []
    student = pipelines.load_t2v("animatelcm")
    for gamma in (0.0, 0.3, 0.6):
        for n in STEPS:
            row = evaluation.evaluate(student, n, 1.0, scheduler="tcd", seeds=VIDEO_SEEDS, call_kwargs={"eta": gamma},
                                   label=f"AnimateLCM (toy), TCD gamma {gamma:g}")
            rows.append(row)
    teacher = pipelines.load_t2v("teacher")
    for n in STEPS:
        rows.append(evaluation.evaluate(teacher, n, TEACHER_CFG, scheduler="euler", seeds=VIDEO_SEEDS, label="teacher"))
    _save("samplers", rows, {"what": "videos, 40 prompts x 2 seeds; LCM/DDIM/DPM++ rows are in table1",
                             "created": results.stamp()})


def styles() -> None:
    import numpy as np
    import torch

    from animatelcm_helpers import pipelines, results
    from animatelcm_helpers.toy import metrics, zoo
    from animatelcm_helpers.toy.data import DIGIT_WORDS, DIRECTIONS, STYLES

    rows = []
    image = pipelines.load_t2i(lcm_lora=zoo.root() / "image-lcm" / "lcm_lora.safetensors")
    video = pipelines.load_t2v("animatelcm")
    teacher = pipelines.load_t2i(scheduler="ddim")
    # (kind, pipeline, steps, CFG, sampler, label): 4 LCM steps without CFG, and the reference, the
    # style LoRA on the teacher without the LCM LoRA
    runs = (("image", image, 4, 1.0, "lcm", "image: {} LoRA 0.8 + LCM"),
            ("video", video, 4, 1.0, "lcm", "video: {} LoRA 0.8 + LCM"),
            ("image", teacher, 25, STYLE_TEACHER_CFG, "ddim", "image: {} LoRA 0.8 on the teacher"))
    for style in (s for s in STYLES if s != "plain"):
        for kind, pipe, steps, guidance, sampler, label in runs:
            pipelines.add_style(pipe, style, 0.8)
            if kind == "image":
                prompts = [f"a {w} in {style} style" for w in DIGIT_WORDS for _ in range(4)]
            else:
                prompts = [f"a {w} moving {d} in {style} style" for w in DIGIT_WORDS for d in DIRECTIONS]
            gens = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
            kwargs = {"num_frames": 8} if kind == "video" else {}
            with torch.inference_mode():
                out = pipe(prompts, height=32, width=32, num_inference_steps=steps, guidance_scale=guidance,
                           generator=gens, output_type="np", **kwargs)
            arr = np.asarray(out.frames) if kind == "video" else np.asarray(out.images)[:, None]
            videos = np.clip(np.round(arr * 255), 0, 255).astype(np.uint8)
            faith = metrics.faithfulness(videos, [p.replace(f" in {style} style", "") for p in prompts])
            row = {"label": label.format(style), "scheduler": sampler, "steps": steps, "guidance": guidance,
                   "videos": len(videos), "style": float(np.mean([r == style for r in metrics.read_styles(videos[:, 0])])),
                   "digit": faith["digit"], "direction": faith["direction"] if kind == "video" else None}
            rows.append(row)
            print(row, flush=True)
            pipe.delete_adapters(style)
            pipe.adapter_weights.pop(style)
    results.save("styles", {"rows": rows, "what": "4 LCM steps, no CFG (the teacher rows: 25 DDIM steps, CFG 7.5); "
                                                   "style read by metrics.read_styles (first frame)",
                            "created": results.stamp()})


def naive_i2v_net():
    """The keyframe I2V ControlNet trained the naive way: not shipped in the zoo (``zoo.NOT_SHIPPED``); read
    from the zoo in use if it has it, else from the zoo build's work folder (``toy.build``'s default)."""
    from diffusers import ControlNetModel

    from animatelcm_helpers import config
    from animatelcm_helpers import control as ctl
    from animatelcm_helpers.config import UserError

    try:
        return ctl.load_controlnet("i2v", naive=True)
    except UserError:
        work = config.cache_dir() / "toy-zoo-work" / "adapters" / "model" / "i2v-adapter-naive"
        if not (work / "config.json").is_file():
            raise
        return ControlNetModel.from_pretrained(work, use_safetensors=True, torch_dtype=config.current().dtype).eval()


def control() -> None:
    """Issue 8: control adherence, image-to-video and video-to-video on 40 held-out videos."""
    from animatelcm_helpers import control as ctl
    from animatelcm_helpers import pipelines, results

    videos, prompts = evaluation.test_videos(CONTROL_VIDEOS)
    rows = []

    def add(row):
        row.pop("frames")
        rows.append(row)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    lcm = pipelines.load_t2v("animatelcm")
    add(evaluation.evaluate_control(lcm, videos, prompts, "t2v", steps=4, label="AnimateLCM, no control"))
    for naive in (False, True):
        kind = "naive (diffusion loss, on the teacher)" if naive else "teacher-free (consistency training)"
        edges = ctl.controlnet_pipeline(ctl.load_controlnet("canny", naive=naive), pipe=lcm)
        for detector in ("canny", "lineart"):
            add(evaluation.evaluate_control(edges, videos, prompts, "control", steps=4, detector=detector,
                                            label=f"AnimateLCM + {kind} edge ControlNet, {detector} maps"))
        i2v = ctl.controlnet_pipeline((naive_i2v_net() if naive else ctl.load_controlnet("i2v")), pipe=lcm)
        add(evaluation.evaluate_control(i2v, videos, prompts, "i2v", steps=4, label=f"AnimateLCM + {kind} I2V adapter"))
    teacher = pipelines.load_t2v("teacher")
    naive_on_teacher = ctl.controlnet_pipeline(ctl.load_controlnet("canny", naive=True), pipe=teacher)
    add(evaluation.evaluate_control(naive_on_teacher, videos, prompts, "control", steps=25, guidance=TEACHER_CFG,
                                    label="teacher (DDIM, CFG) + naive edge ControlNet, canny maps"))
    add(evaluation.evaluate_control(ctl.controlnet_pipeline(naive_i2v_net(), pipe=teacher),
                                    videos, prompts, "i2v", steps=25, guidance=TEACHER_CFG,
                                    label="teacher (DDIM, CFG) + naive I2V adapter"))
    pipelines.add_style(lcm, "neon", 0.8)
    v2v = ctl.video_to_video_pipeline(pipe=lcm)
    for strength in (0.25, 0.5, 0.75, 1.0):
        add(evaluation.evaluate_control(v2v, videos, prompts, "v2v", steps=8, strength=strength,
                                        style_prompt="{} in neon style",
                                        label=f"AnimateLCM + neon LoRA 0.8, video-to-video, strength {strength}"))
    results.save("control", {"rows": rows, "created": results.stamp(),
                             "what": "40 held-out plain videos (test split), one seed each; edge F1 within 1 px; "
                                     "digit/direction against the original caption; intervals: 95 % bootstrap over "
                                     "the videos (edge F1 and first-frame PSNR stored per row)"})


def _i2v_row(label: str, frames, videos, prompts, seconds: float, unet_evals: int, **fields) -> dict:
    """A row of the i2v table: first-frame PSNR, digit and direction (against the original caption)
    with their 95 % bootstrap intervals over the videos (metrics, "one rule for wins and ties")."""
    import numpy as np

    from animatelcm_helpers import utils
    from animatelcm_helpers.toy import metrics

    psnr = [utils.psnr(f[0], v[0]) for f, v in zip(frames, videos)]
    faith = metrics.faithfulness(frames, list(prompts))
    n = len(videos)
    intervals = {"first_psnr": metrics.bootstrap(psnr), "digit": metrics.proportion_interval(faith["digit"], n),
                 "direction": metrics.proportion_interval(faith["direction"], n)}
    row = {"label": label, **fields, "videos": n, "digit": faith["digit"], "direction": faith["direction"],
           "first_psnr": float(np.mean(psnr)), "unet_evals": unet_evals, "seconds": seconds,
           "intervals": {k: [iv.low, iv.high] for k, iv in intervals.items()}}
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return row


def i2v() -> None:
    """Image-to-video in the toy world: the official AnimateLCM-I2V design (the toy AnimateLCM + the
    zoo's image encoder, trained teacher-free; ``i2v.image_to_video_pipeline``) beside the keyframe
    ControlNet (the comparison: frame 0's control, gray on the others; teacher-free and naive), on
    the control table's 40 held-out videos with the same seeds (seed = video index), 4 LCM steps,
    no CFG; and AnimateLCM without any image (first-frame PSNR's floor). Each figure with its 95 %
    bootstrap interval over the 40 videos; a win only where the intervals do not overlap."""
    import numpy as np

    from animatelcm_helpers import control as ctl
    from animatelcm_helpers import i2v as i2v_
    from animatelcm_helpers import pipelines, results
    from animatelcm_helpers.toy import metrics

    videos, prompts = evaluation.test_videos(CONTROL_VIDEOS)
    rows = []
    lcm = pipelines.load_t2v("animatelcm")
    for mode, pipe, label, kind in (
            ("t2v", lcm, "AnimateLCM, no image", None),
            ("i2v", ctl.controlnet_pipeline(ctl.load_controlnet("i2v"), pipe=lcm),
             "keyframe ControlNet, teacher-free (consistency training)", "keyframe"),
            ("i2v", ctl.controlnet_pipeline(naive_i2v_net(), pipe=lcm),
             "keyframe ControlNet, naive (diffusion loss, on the teacher)", "keyframe")):
        r = evaluation.evaluate_control(pipe, videos, prompts, mode, steps=4)
        rows.append(_i2v_row(f"AnimateLCM + {label}" if kind else label, r["frames"], videos, prompts, r["seconds"],
                             r["unet_evals"], design=kind or "none", mode=mode, steps=4, guidance=1.0))
    pipe = i2v_.image_to_video_pipeline(world="toy")
    for scale in I2V_MOTION_SCALES:
        for colors in ((False, True) if scale == i2v_.MOTION_SCALE else (False,)):
            gens = []
            for i, (video, prompt) in enumerate(zip(videos, prompts)):
                with pipelines.count_unet_evaluations(pipe.unet) as counter:
                    gen = i2v_.generate_i2v(pipe, video[0], prompt, motion_scale=scale, steps=4, guidance=1.0,
                                            frames=len(video), seed=i, match_colors=colors)
                gens.append((gen, counter["n"]))
            frames = np.stack([g.frames for g, _ in gens])
            label = (f"AnimateLCM-I2V design (toy): image encoder, teacher-free, motion scale {scale:g}"
                     + (", official colour correction" if colors else ""))
            rows.append(_i2v_row(label, frames, videos, prompts, float(np.mean([g.seconds for g, _ in gens])),
                                 gens[0][1], design="official", mode="i2v-encoder", steps=4, guidance=1.0,
                                 motion_scale=scale, match_colors=colors))
    keyframe = rows[1]
    verdicts = {}
    for r in rows[3:]:
        verdicts[r["label"]] = {k: metrics.compare(results.interval(r, k), results.interval(keyframe, k))
                                for k in ("first_psnr", "digit", "direction")}
    results.save("i2v", {"rows": rows, "against_keyframe_teacher_free": verdicts, "created": results.stamp(),
                         "what": f"{CONTROL_VIDEOS} held-out plain videos (evaluation.test_videos, the control table's), "
                                 "seed = video index, 4 LCM steps, no CFG; the image: the video's first frame; "
                                 "digit/direction against the original caption; intervals: 95 % bootstrap over the videos; "
                                 "verdicts: win/loss only when the intervals do not overlap, else tie"})
    print(json.dumps(verdicts, indent=1), flush=True)


def svd() -> None:
    """Image-to-video (notebook 07): the toy AnimateLCM-SVD-xt at 1/2/4/8 steps without guidance
    against the toy SVD teacher (Euler with SVD's frame guidance ramp 1 -> 3) at 1/2/4/8 and 25
    steps, over the first SVD_VIDEOS inputs of toy_svd.eval_set (seed = input index)."""
    from animatelcm_helpers import results
    from animatelcm_helpers import svd as svd_
    from animatelcm_helpers.toy import metrics

    rows = []
    student = svd_.load_svd(world="toy")
    for n in STEPS:
        rows.append(svd_.evaluate_svd(student, n, n=SVD_VIDEOS, label="AnimateLCM-SVD-xt (toy)")[0])
        print(rows[-1], file=sys.stderr, flush=True)
    teacher = svd_.load_toy_svd_teacher()
    ramp = (svd_.TEACHER_EVAL["min_guidance"], svd_.TEACHER_EVAL["max_guidance"])
    for n in STEPS + (svd_.TEACHER_EVAL["steps"],):
        rows.append(svd_.evaluate_svd(teacher, n, *ramp, n=SVD_VIDEOS, label="SVD-xt teacher (toy), Euler")[0])
        print(rows[-1], file=sys.stderr, flush=True)
    base = rows[-1]
    four = next(r for r in rows if r["steps"] == 4 and r["max_guidance"] == 1)
    ratio = {k: (four[k] / base[k] if base[k] else None) for k in ("digit", "score", "direction", "both")}
    results.save("svd", {"rows": rows, "student_4_steps_over_teacher_25": ratio,
                         "frechet_floor": metrics.real_floor(n=SVD_VIDEOS),
                         "what": f"image-to-video, {SVD_VIDEOS} test inputs ({SVD_VIDEOS // 4} digits x 4 directions; the first frame "
                                 "shows the direction by its trail), one video each, seed = input index",
                         "created": results.stamp()})
    print(svd_.format_svd_table(rows), flush=True)
    print("student at 4 steps / teacher at 25 guided steps:", ratio, flush=True)


TABLES = {"stage1": stage1, "table1": table1, "guidance": guidance, "motion": motion, "samplers": samplers, "styles": styles,
          "control": control, "i2v": i2v, "svd": svd}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tables", nargs="+", choices=[*TABLES, "all"])
    args = p.parse_args(argv)
    from animatelcm_helpers import config

    config.setup(world="toy")
    for name in (TABLES if "all" in args.tables else args.tables):
        t0 = time.perf_counter()
        TABLES[name]()
        print(f"[{name}] {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
