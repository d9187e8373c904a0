"""The evaluation harness (an app): sample a model on a fixed prompt or input set with a seed per
video and measure the videos with the toy world's metrics (:mod:`animatelcm_helpers.toy.metrics`),
one table row per setting: text-to-video and text-to-image (:func:`evaluate`), controlled
generation (:func:`evaluate_control`) and AnimateLCM-SVD-xt (:func:`evaluate_svd`).
"""

from __future__ import annotations

import inspect
import time

import numpy as np
import torch

from . import control, detectors, distill, lcm, pipelines, svd, utils
from .config import UserError
from .media import float_to_uint8
from .toy import data as toy_data
from .toy import metrics
from .toy import svd as toy_svd
from .utils import count_flops

# ------------------------------------------------------------------------------------------
# Text-to-video and text-to-image: the paper's table rows
# ------------------------------------------------------------------------------------------


class _Captured(Exception):
    pass


def unet_inputs(pipe, frames: int | None = None, height: int | None = None, width: int | None = None):
    """(args, kwargs) of the UNet's first call when ``pipe`` samples one video (no guidance):
    caught by a forward pre-hook, so they are shaped exactly as the pipeline shapes them."""
    spec = pipe.model_spec
    captured = {}

    def hook(module, args, kwargs):
        captured["args"], captured["kwargs"] = args, kwargs
        raise _Captured

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    kwargs = {} if is_image_pipeline(pipe) else {"num_frames": frames or spec.frames}
    try:
        with torch.no_grad():
            pipe(prompt="a video", height=height or spec.height, width=width or spec.width,
                 num_inference_steps=1, guidance_scale=1.0, generator=torch.Generator("cpu").manual_seed(0),
                 output_type="latent", **kwargs)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not captured:
        raise UserError("the pipeline never called its UNet; cannot count its FLOPs")
    return captured["args"], captured["kwargs"]


def unet_flops_per_evaluation(pipe, frames: int | None = None, height: int | None = None,
                              width: int | None = None) -> int:
    """FLOPs of ONE UNet forward on ONE video (frames x height x width; defaults: the model's),
    counted on real tensors (LoRA layers, when loaded and not fused, count too)."""
    args, kwargs = unet_inputs(pipe, frames, height, width)
    with torch.no_grad():
        return count_flops(pipe.unet, *args, **kwargs)


SCHEDULER_NAMES = {
    "LCMScheduler": "lcm", "TCDScheduler": "tcd", "DDIMScheduler": "ddim",
    "EulerDiscreteScheduler": "euler", "DPMSolverMultistepScheduler": "dpm++",
}


def scheduler_name(scheduler) -> str:
    return SCHEDULER_NAMES.get(type(scheduler).__name__, type(scheduler).__name__)


def video_seed(prompt_index: int, seed: int) -> int:
    """The seed of the video of prompt ``prompt_index`` at ``seed``: evaluate()'s video is
    ``pipelines.generate(pipe, prompts[prompt_index], seed=video_seed(prompt_index, seed), ...)``
    (up to the float rounding of batching)."""
    return seed * 10_000 + prompt_index


def is_image_pipeline(pipe) -> bool:
    """True for a text-to-image pipeline (no ``num_frames`` argument), e.g. stage 1's student."""
    return "num_frames" not in inspect.signature(pipe.__call__).parameters


def evaluate(pipe, steps: int, guidance: float, scheduler: str | None = None, prompts=None,
             seeds=(0,), batch: int = 40, label: str = "", nets: metrics.MetricNets | None = None,
             scheduler_kwargs: dict | None = None, call_kwargs: dict | None = None,
             motion_loras: bool = False) -> dict:
    """Sample one video per (prompt, seed) and measure them: one row of the paper's table.

    The pipeline is called in batches of ``batch`` prompts, each video with its own CPU
    generator seeded by :func:`video_seed`; ``scheduler`` (a name for ``pipelines.make_scheduler``)
    replaces the pipeline's sampler for this call only. Returns a dict: ``label``, ``scheduler``,
    ``steps``, ``guidance``, ``videos``, ``digit``, ``direction``, ``both`` (:func:`metrics.faithfulness`),
    ``frechet`` (vs the real test reference set) and ``floor`` (:func:`metrics.real_floor` at the same number
    of videos; None below 2 videos), ``unet_evals`` (per video), ``gflops`` (UNet GFLOPs per video)
    and ``seconds`` (wall time per video, sampling and decoding). Default prompts: every digit
    x every direction (40).

    ``score`` is :func:`metrics.digit_score` (the mean probability of the asked digit).
    An image pipeline (:func:`is_image_pipeline`, e.g. stage 1's) is measured on still images
    (default prompts :data:`metrics.IMAGE_PROMPTS`): direction is None, and ``frechet`` / ``floor`` are
    the image Frechet distance (:func:`metrics.image_features`) and :func:`metrics.image_floor`.
    ``scheduler_kwargs`` go to the sampler's config (e.g. ``original_inference_steps``),
    ``call_kwargs`` to the pipeline call (e.g. ``eta=0.3``, TCD's gamma).
    ``motion_loras=True`` samples each prompt with the motion LoRA of its motion word
    (:func:`pipelines.use_motion_lora`, the prompts grouped by direction), then unloads the
    ones it loaded and puts the other adapters' weights back."""
    nets = metrics.metric_nets(nets)  # fail before sampling, not after
    image = is_image_pipeline(pipe)
    default = metrics.IMAGE_PROMPTS if image else metrics.PROMPTS
    prompts = list(default if prompts is None else ([prompts] if isinstance(prompts, str) else prompts))
    if not prompts:
        raise UserError("no prompts: give at least one, e.g. 'a seven moving left'")
    if len(prompts) > 10_000:
        raise UserError(f"at most 10000 prompts per evaluation, got {len(prompts)}")
    for p in prompts:
        toy_data.parse_caption(p)
    steps = utils.check_int("steps", steps, 1, hint=" (denoising steps)")
    guidance = utils.check_range("guidance", guidance, 0.0)
    batch = utils.check_int("batch", batch, 1)
    seeds = [utils.check_int("seed", s, 0) for s in (seeds if not isinstance(seeds, int) else [seeds])]
    if not seeds:
        raise UserError("no seeds: give at least one, e.g. seeds=(0,)")
    spec = pipe.model_spec
    jobs = [(i, s) for s in seeds for i in range(len(prompts))]
    groups = {None: jobs}
    if motion_loras:
        if image:
            raise UserError("motion_loras=True needs a text-to-video pipeline")
        moves = [toy_data.parse_caption(p)[1] for p in prompts]
        if None in moves:
            raise UserError("motion_loras=True needs a motion word in every prompt, e.g. 'a seven moving left'")
        groups = {d: [j for j in jobs if moves[j[0]] == d] for d in dict.fromkeys(moves)}
        jobs = [j for group in groups.values() for j in group]
    original = pipe.scheduler
    if motion_loras:  # to put the pipeline back as it was: its adapters and their weights
        adapters_before = set(pipe.get_list_adapters().get("unet", []))
        weights_before = dict(getattr(pipe, "adapter_weights", {}))
    if scheduler is not None:
        pipe.scheduler = pipelines.make_scheduler(scheduler, original.config, **(scheduler_kwargs or {}))
    elif scheduler_kwargs:
        pipe.scheduler = original.__class__.from_config(original.config, **scheduler_kwargs)
    try:
        name = scheduler_name(pipe.scheduler)
        points = pipelines.lcm_grid_points(pipe.scheduler)
        if points is not None and steps > points:
            raise UserError(f"steps must be at most {points} for the {name} scheduler (its skipping grid), got {steps}")
        videos, evals, seconds = [], [], 0.0
        chunks = []
        for move, group in groups.items():
            chunks += [(move, group[start : start + batch]) for start in range(0, len(group), batch)]
        for move, chunk in chunks:
            if motion_loras:
                pipelines.use_motion_lora(pipe, move)
            generators = [torch.Generator("cpu").manual_seed(video_seed(i, s)) for i, s in chunk]
            t0 = time.perf_counter()
            kwargs = dict(call_kwargs or {})
            if not image:
                kwargs["num_frames"] = spec.frames
            with pipelines.count_unet_evaluations(pipe.unet, videos=len(chunk)) as counter, torch.inference_mode():
                out = pipe(prompt=[prompts[i] for i, _ in chunk], height=spec.height, width=spec.width,
                           num_inference_steps=steps, guidance_scale=guidance, generator=generators,
                           output_type="np", **kwargs)
            seconds += time.perf_counter() - t0
            evals.append(counter["n"])
            frames = np.asarray(out.images, dtype=np.float32)[:, None] if image else np.asarray(out.frames, dtype=np.float32)
            videos.append(float_to_uint8(frames))
        flops = unet_flops_per_evaluation(pipe, None if image else spec.frames, spec.height, spec.width)
    finally:
        pipe.scheduler = original
        if motion_loras:
            added = [a for a in pipe.get_list_adapters().get("unet", []) if a not in adapters_before]
            if added:
                pipe.delete_adapters(added)
            # the LoRAs that were there get their recorded weights back (0 when none was recorded,
            # which is how use_motion_lora left them)
            pipelines.apply_adapter_weights(pipe, {a: weights_before.get(a, 0.0)
                                                   for a in pipe.get_list_adapters().get("unet", [])})
            pipe.adapter_weights = weights_before
    videos = np.concatenate(videos)
    asked = [prompts[i] for i, _ in jobs]
    faith = metrics.faithfulness(videos, asked, nets)
    faith["score"] = metrics.digit_score(videos, asked, nets)
    frechet = floor = None
    intervals = {}
    if image:
        faith["direction"] = faith["both"] = None
        if len(videos) >= 2:
            feats, reference = metrics.image_features(videos, nets), metrics.image_reference_features(nets)
            frechet = metrics.frechet_distance(feats, reference)
            floor = metrics.image_floor(min(len(videos), len(toy_data.MovingDigits("test", kind="image")) - metrics.IMAGE_REFERENCE_SIZE), nets)
    elif len(videos) >= 2:
        feats, reference = metrics.video_features(videos, nets), metrics.reference_features(nets)
        frechet = metrics.frechet_distance(feats, reference)
        floor = metrics.real_floor(min(len(videos), len(toy_data.MovingDigits("test")) - metrics.REFERENCE_SIZE), nets=nets)
    if len(videos) >= 2:  # the 95 % bootstrap intervals over the videos (metrics, "one rule for wins and ties")
        for key in ("digit", "direction"):
            if faith.get(key) is not None:
                iv = metrics.proportion_interval(faith[key], len(videos))
                intervals[key] = [iv.low, iv.high]
        iv = metrics.frechet_interval(feats, reference)
        intervals["frechet"] = [iv.low, iv.high]
    unet_evals = max(evals)
    return {
        "label": label, "scheduler": name, "steps": steps, "guidance": guidance, "videos": len(videos),
        **faith, "frechet": frechet, "floor": floor, "unet_evals": unet_evals,
        "gflops": unet_evals * flops / 1e9, "seconds": seconds / len(videos), "intervals": intervals,
    }


COLUMNS = (  # (key, header, format)
    ("label", "model", "{}"), ("scheduler", "scheduler", "{}"), ("steps", "steps", "{}"),
    ("guidance", "CFG", "{:g}"), ("digit", "digit", "{:.2f}"), ("direction", "direction", "{:.2f}"),
    ("both", "both", "{:.2f}"), ("score", "digit p", "{:.3f}"), ("frechet", "Frechet", "{:.2f}"), ("floor", "floor", "{:.2f}"),
    ("unet_evals", "UNet evals", "{}"), ("gflops", "UNet GFLOPs", "{:.3g}"), ("seconds", "s/video", "{:.3f}"),
)


def format_table(rows, floor: float | None = None) -> str:
    """Rows of :func:`evaluate` as a markdown table; ``floor`` (e.g. :func:`metrics.real_floor`) adds a
    footer line with the real-vs-real Frechet distance."""
    rows = list(rows)
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)] or list(COLUMNS)
    cell = lambda r, key, fmt: "-" if r.get(key) is None else fmt.format(r[key])
    table = [[h for _, h, _ in cols]] + [[cell(r, k, f) for k, _, f in cols] for r in rows]
    widths = [max(len(line[j]) for line in table) for j in range(len(cols))]

    def fmt(line):  # text left, numbers right
        return "| " + " | ".join(v.ljust(w) if j < 2 else v.rjust(w) for j, (v, w) in enumerate(zip(line, widths))) + " |"

    lines = [fmt(table[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, table[1:])]
    if floor is not None:
        lines.append(f"real-vs-real Frechet distance (the floor): {floor:.2f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Controlled generation: held-out videos, their maps, one table row per setting
# ------------------------------------------------------------------------------------------


def test_videos(n: int = 40, seed: int = 0, frames: int = 8) -> tuple[np.ndarray, list[str]]:
    """``n`` held-out plain Moving Digits videos (uint8 (n, F, H, W, 3)) and their captions,
    drawn by a seeded shuffle of the test split (every digit and direction turns up)."""
    ds = toy_data.MovingDigits("test", kind="video", num_frames=frames, seed=seed)
    n = utils.check_int("n", n, 1, len(ds))
    order = np.random.default_rng(seed).permutation(len(ds))[:n]
    items = [ds[int(i)] for i in order]
    return toy_data.to_uint8(np.stack([it["pixel_values"] for it in items])), [it["caption"] for it in items]


def evaluate_control(pipe, videos, prompts, mode: str, steps: int | None = None, guidance: float | None = None,
             scale: float = 1.0, strength: float = 0.6, detector: str = "canny", seed: int = 0,
             label: str = "", style_prompt: str | None = None) -> dict:
    """One table row: ``pipe`` run on every held-out video in one ``mode``:

    * ``"t2v"`` / ``"control"``: the prompt alone / with the video's ``detector`` maps; ``edge_f1``
      compares the output's Canny edges with the video's own (the control);
    * ``"i2v"``: the first frame as the image; ``first_psnr`` = PSNR of output frame 0 vs it;
    * ``"v2v"``: the video re-rendered at ``strength``; ``style_prompt`` (with ``{}`` for the
      caption) sets the new prompt, ``style`` the fraction read as that style.

    Always: ``digit`` / ``direction`` faithfulness to the ORIGINAL caption, UNet evaluations
    and seconds per video. Seeds are ``seed + i`` per video, so rows compare like with like.
    ``intervals``: the 95 % bootstrap intervals over the videos of the per-video means (``edge_f1``,
    ``first_psnr``; ``metrics.bootstrap``), from two videos on; the fractions' come from
    ``results.interval`` (the fraction and the count)."""
    outs, f1s, psnrs = [], [], []
    for i, (video, prompt) in enumerate(zip(videos, prompts)):
        asked = style_prompt.format(prompt) if style_prompt else prompt
        if mode == "t2v":
            gen = pipelines.generate(pipe, asked, steps=steps, guidance=guidance, frames=len(video), seed=seed + i)
        elif mode == "control":
            gen = control.generate_controlled(pipe, asked, detectors.detect(video, detector), scale, steps, guidance, seed + i)
        elif mode == "i2v":
            gen = control.image_to_video(pipe, video[0], asked, scale, steps, len(video), guidance, seed + i)
        elif mode == "v2v":
            gen = control.video_to_video(pipe, video, asked, strength, steps, guidance, seed + i)
        else:
            raise UserError(f"unknown mode {mode!r}; choose t2v, control, i2v or v2v")
        outs.append(gen)
        if mode in ("t2v", "control"):
            f1s.append(detectors.edge_f1(gen.frames, detectors.detect(video, "canny")))
        psnrs.append(utils.psnr(gen.frames[0], video[0]))
    frames = np.stack([g.frames for g in outs])
    faith = metrics.faithfulness(frames, list(prompts))
    row = {"label": label, "mode": mode, "steps": outs[0].steps, "guidance": outs[0].guidance, "videos": len(outs),
           "digit": faith["digit"], "direction": faith["direction"],
           "edge_f1": float(np.mean(f1s)) if f1s else None, "first_psnr": float(np.mean(psnrs)),
           "unet_evals": outs[0].unet_evaluations, "seconds": float(np.mean([g.seconds for g in outs]))}
    if len(outs) >= 2:
        row["intervals"] = {k: [iv.low, iv.high] for k, v in (("edge_f1", f1s), ("first_psnr", psnrs)) if v
                            for iv in [metrics.bootstrap(np.asarray(v, dtype=np.float64))]}
    if mode in ("control", "i2v"):
        row["scale"] = scale
    if mode == "v2v":
        row["strength"] = strength
        if style_prompt:
            read = metrics.read_styles(frames[:, 0])
            style = next((s for s in toy_data.STYLES if s != "plain" and s in style_prompt), "plain")
            row["style"] = read.count(style) / len(read)
    row["frames"] = frames  # dropped before saving; the notebooks show a few
    return row


# ------------------------------------------------------------------------------------------
# AnimateLCM-SVD-xt: the toy SVD's evaluation inputs, one row per setting
# ------------------------------------------------------------------------------------------


def evaluate_svd(pipe, steps: int, min_guidance: float = 1.0, max_guidance: float = 1.0, n: int = toy_svd.EVAL_VIDEOS,
                 label: str = "", frechet: bool = True) -> dict:
    """Sample one video per evaluation input (seed = its index) and measure it: ``digit`` (the
    classifier reads the input image's digit), ``direction`` (the centroid moves the way the input's
    video moved), ``both``, ``frechet`` (against metrics' 720 real test videos; needs >= 2 videos),
    ``unet_evals`` and ``seconds`` per video. Returns (row, videos)."""
    images, digits, directions = toy_svd.eval_set(n)
    gens = [svd.generate_svd(pipe, img, steps=steps, seed=i, min_guidance=min_guidance, max_guidance=max_guidance)
            for i, img in enumerate(images)]
    videos = np.stack([g.frames for g in gens])
    digit_ok = metrics.read_digits(videos) == digits
    dir_ok = np.array([r == d for r, d in zip(metrics.read_direction(videos), directions)])
    row = {"label": label, "steps": steps, "min_guidance": min_guidance, "max_guidance": max_guidance,
           "videos": len(videos), "digit": float(digit_ok.mean()), "direction": float(dir_ok.mean()),
           "both": float((digit_ok & dir_ok).mean()),
           "score": metrics.digit_score(videos, [toy_data.caption(int(d)) for d in digits]), "unet_evals": gens[0].unet_evaluations,
           "seconds": float(np.mean([g.seconds for g in gens]))}
    if frechet and len(videos) >= 2:
        row["frechet"] = metrics.frechet_distance(metrics.video_features(videos), metrics.reference_features())
    return row, videos


def format_svd_table(rows: list[dict]) -> str:
    """Rows of :func:`evaluate_svd` as markdown."""
    lines = ["| model | steps | guidance | UNet evals | digit | digit p | direction | both | Frechet | s / video |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = "none" if r["max_guidance"] == 1 else f"ramp {r['min_guidance']:g} -> {r['max_guidance']:g}"
        fd = f"{r['frechet']:.1f}" if r.get("frechet") is not None else "-"
        score = f"{r['score']:.3f}" if r.get("score") is not None else "-"
        lines.append(f"| {r['label']} | {r['steps']} | {g} | {r['unet_evals']} | {r['digit']:.2f} | {score} | "
                     f"{r['direction']:.2f} | {r['both']:.2f} | {fd} | {r['seconds']:.3f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# After AnimateLCM (notebook 09): what a one-step model is distilled toward, and what the
# sampler's own noise decides
# ------------------------------------------------------------------------------------------

TEACHER_W = 6.5  # the video teacher's guidance in LCM's convention (CFG 7.5), as stage 2 distils it


def start_noise(pipe, seeds) -> torch.Tensor:
    """The pipeline's starting latents (B, C, F, h, w) for ``seeds``, one video a seed
    (``lcm.initial_latents``: what ``generate(seed=s)`` starts from)."""
    spec = pipe.model_spec
    return torch.cat([lcm.initial_latents(pipe, spec.frames, spec.height, spec.width, int(s)) for s in seeds])


def decode_videos(pipe, latents: torch.Tensor) -> np.ndarray:
    """(B, C, F, h, w) latents -> uint8 videos (B, F, H, W, 3), through the pipeline's VAE."""
    with torch.no_grad():
        video = pipe.decode_latents(latents)
    return float_to_uint8(np.asarray(pipe.video_processor.postprocess_video(video=video, output_type="np")))


@torch.no_grad()
def guided_x0(teacher, prompts, seeds, t: int = 999, w: float = TEACHER_W, batch: int = 20) -> np.ndarray:
    """The guided teacher's one-step x0 estimate at timestep ``t`` from the pipeline's starting noise
    (``t = 999``: what a ONE-step student is distilled toward), decoded to uint8 videos::

        x0_hat(eps) = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
        x0_w        = x0_hat(eps_c) + w (x0_hat(eps_c) - x0_hat(eps_u))     (``distill.guided``)
    """
    x = start_noise(teacher, seeds)
    frames = x.shape[2]
    with torch.no_grad():
        cond, _ = teacher.encode_prompt(list(prompts), teacher.device, 1, False)
        uncond, _ = teacher.encode_prompt([""], teacher.device, 1, False)
    abar = teacher.scheduler.alphas_cumprod[t]
    step = torch.tensor(t)
    out = []
    for i in range(0, len(x), batch):
        xb, cb = x[i:i + batch], cond[i:i + batch]
        eps_c = teacher.unet(xb, step, encoder_hidden_states=cb.repeat_interleave(frames, 0)).sample
        eps_u = teacher.unet(xb, step, encoder_hidden_states=uncond.expand(len(xb), -1, -1).repeat_interleave(frames, 0)).sample
        x0 = distill.guided(lcm.predicted_x0(eps_c, xb, abar), lcm.predicted_x0(eps_u, xb, abar), torch.full((len(xb),), w))
        out.append(decode_videos(teacher, x0))
    return np.concatenate(out)


@torch.no_grad()
def sample_videos(pipe, prompts, seeds, steps: int, latents=None, noise_seeds=None, batch: int = 40, **kw) -> np.ndarray:
    """uint8 videos (B, F, H, W, 3), no CFG, at the model's size: the start from ``seeds``
    (:func:`start_noise`) or ``latents``, the sampler's OWN noise (LCM's fresh noise each step) from
    ``noise_seeds`` (default: the same seeds). ``kw`` go to the pipeline call (``eta=0.0``)."""
    latents = start_noise(pipe, seeds) if latents is None else latents
    gens = [torch.Generator("cpu").manual_seed(int(s)) for s in (noise_seeds if noise_seeds is not None else seeds)]
    spec = pipe.model_spec
    out = []
    for i in range(0, len(prompts), batch):
        frames = pipe(prompt=list(prompts[i:i + batch]), num_frames=spec.frames, height=spec.height, width=spec.width,
                      num_inference_steps=steps, guidance_scale=1.0, generator=gens[i:i + batch],
                      latents=latents[i:i + batch], output_type="np", **kw).frames
        out.append(float_to_uint8(np.asarray(frames, dtype=np.float32)))
    return np.concatenate(out)
