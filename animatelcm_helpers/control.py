"""Controlled generation: control maps from controlnet-aux detectors, ControlNets (the toy
world's teacher-free ones or the Hub's SD1.5 ones) on AnimateLCM, image-to-video through the
toy I2V adapter, video-to-video, and how well a video follows its control (edge F1).

    maps = control.detect(video, "canny")                        # PIL images, one per frame
    pipe = control.controlnet_pipeline(control.load_controlnet("canny"))
    out  = control.generate_controlled(pipe, "a seven moving left", maps, scale=1.0)

Conditioning frames go to the pipeline as PIL images (or floats in [0, 1]): diffusers does not
rescale raw uint8 arrays, so :func:`conditioning_frames` converts whatever it is given.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import config, pipelines
from .config import UserError
from .media import float_to_uint8

# Detectors of controlnet-aux that run without downloaded weights, and those that need the Hub.
DETECTORS = ("canny", "lineart", "shuffle")
HUB_DETECTORS = {"openpose": "OpenposeDetector", "depth": "MidasDetector", "hed": "HEDdetector"}
# Which detector each ControlNet was trained on (the full world's SD1.5 v1.1 ControlNets).
CONTROLNETS = {"full": {"canny": "controlnet_canny", "lineart": "controlnet_lineart",
                        "openpose": "controlnet_openpose", "depth": "controlnet_depth"}}
# The toy zoo's adapters, trained by distill.train_adapter (``<zoo>/<folder>``).
TOY_ADAPTERS = {"canny": "controlnet-edges", "lineart": "controlnet-edges", "i2v": "i2v-adapter"}
NAIVE_SUFFIX = "-naive"  # the same adapters trained with the plain diffusion loss (for the comparison)
DETECT_RESOLUTION = 64  # controlnet-aux rounds sizes to multiples of 64: detect at 64, then resize


# ------------------------------------------------------------------------------------------
# Control maps
# ------------------------------------------------------------------------------------------


def _frames(video) -> list:
    """A video (F, H, W, 3) uint8 / floats in [0, 1], a PIL image or a list of PIL images -> PIL images."""
    from PIL import Image

    if isinstance(video, Image.Image):
        return [video.convert("RGB")]
    if isinstance(video, (list, tuple)) and video and all(isinstance(v, Image.Image) for v in video):
        return [v.convert("RGB") for v in video]
    arr = np.asarray(video)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise UserError(f"give frames as (frames, height, width, 3) or PIL images, got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 1:
            raise UserError("float frames must lie in [0, 1]; give uint8 frames (0..255) or floats in [0, 1]")
        arr = float_to_uint8(arr)
    return [Image.fromarray(a) for a in arr]


def _detector(kind: str):
    import warnings

    with warnings.catch_warnings():  # controlnet-aux's package import warns about optional extras it does not need here
        warnings.simplefilter("ignore")
        if kind == "canny":
            from controlnet_aux.canny import CannyDetector

            return CannyDetector()
        if kind == "lineart":
            from controlnet_aux.lineart_standard import LineartStandardDetector

            return LineartStandardDetector()
        if kind == "shuffle":
            from controlnet_aux.shuffle import ContentShuffleDetector

            return ContentShuffleDetector()
        if kind in HUB_DETECTORS:
            return _hub_detector(kind)
    raise UserError(f"unknown detector {kind!r}; choose one of {', '.join(DETECTORS + tuple(HUB_DETECTORS))}")


def _hub_detector(kind: str):
    """OpenPose / MiDaS depth / HED need weights from the Hub (``config.HUB["annotators"]``)."""
    import controlnet_aux

    weights = config.HUB["annotators"]
    if not config.hub_reachable():
        raise pipelines.MissingWeightsError(
            f"the {kind} detector needs weights from the Hub ({weights.describe()}) and the Hub is not "
            f"reachable here; use one of {', '.join(DETECTORS)} (no weights needed), or connect and retry")
    cls = getattr(controlnet_aux, HUB_DETECTORS[kind])
    try:
        return cls.from_pretrained(weights.repo_id, revision=weights.revision)
    except Exception as err:  # a missing or moved file on the Hub
        raise pipelines.MissingWeightsError(
            f"could not load the {kind} detector's weights from {weights.describe()}: {err}") from err


def detect(video, kind: str = "canny", **options) -> list:
    """Control maps of every frame of ``video`` with a controlnet-aux detector, as PIL images of
    the frames' size (what the ControlNet pipelines take). ``canny``: ``low_threshold`` /
    ``high_threshold`` (100 / 200); ``lineart``: ``guassian_sigma`` (2.0, controlnet-aux's
    spelling); ``shuffle``: a seeded ``f`` shuffle. Small frames are detected at 64 pixels."""
    from PIL import Image

    frames = _frames(video)
    detector = _detector(kind)
    size = frames[0].size
    res = max(DETECT_RESOLUTION, (max(size) + 63) // 64 * 64)
    out = []
    for i, frame in enumerate(frames):
        if kind == "canny":
            m = detector(frame, low_threshold=options.get("low_threshold", 100),
                         high_threshold=options.get("high_threshold", 200), detect_resolution=res, image_resolution=res)
        elif kind == "lineart":
            m = detector(frame, guassian_sigma=options.get("guassian_sigma", 2.0), detect_resolution=res)
        elif kind == "shuffle":
            np.random.seed(options.get("seed", 0) + i)  # the detector draws its flow field from numpy's global RNG
            m = detector(frame, detect_resolution=res, image_resolution=res)
        else:
            m = detector(frame)
        m = m if isinstance(m, Image.Image) else Image.fromarray(np.asarray(m))
        out.append(m.convert("RGB").resize(size, Image.BILINEAR))
    return out


def conditioning_frames(maps, frames: int | None = None) -> list:
    """Whatever control the user has -> PIL images for the pipeline (uint8 arrays, floats in
    [0, 1], PIL). One image with ``frames`` given repeats (one still control map for every frame)."""
    images = _frames(maps)
    if frames is not None and len(images) == 1:
        images = images * frames
    if frames is not None and len(images) != frames:
        raise UserError(f"{len(images)} conditioning frames for a {frames}-frame video: give one map per frame")
    return images


def as_maps_tensor(maps) -> torch.Tensor:
    """PIL control maps -> uint8 tensor (F, 3, H, W), the layout training stores."""
    return torch.from_numpy(np.stack([np.asarray(m) for m in maps])).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------------------
# How well a video follows its control
# ------------------------------------------------------------------------------------------


def _edges(video, threshold: int = 64) -> np.ndarray:
    """Canny edges (bool, (F, H, W)) of a video, the same detector as the control."""
    return np.stack([np.asarray(m)[..., 0] > threshold for m in detect(video, "canny")])


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, axis=-2), dx, axis=-1)
    return out


def edge_f1(video, control, tolerance: int = 1, threshold: int = 64) -> float:
    """F1 of the generated video's Canny edges against the control edges, an edge counting as
    matched within ``tolerance`` pixels: precision = generated edges near a control edge,
    recall = control edges near a generated edge, F1 = 2 P R / (P + R) (0 when either is empty)."""
    gen = _edges(video, threshold)
    ref = np.stack([np.asarray(m)[..., 0] > threshold for m in conditioning_frames(control)])
    if gen.shape != ref.shape:
        raise UserError(f"the video has {gen.shape} edge maps but the control {ref.shape}: give one map per frame")
    if not gen.any() or not ref.any():
        return 0.0
    precision = (gen & _dilate(ref, tolerance)).sum() / gen.sum()
    recall = (ref & _dilate(gen, tolerance)).sum() / ref.sum()
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def psnr(a, b) -> float:
    """PSNR in dB of two uint8 images (or videos) of the same shape: 10 log10(255^2 / MSE)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise UserError(f"images of different shapes {a.shape} and {b.shape}")
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


# ------------------------------------------------------------------------------------------
# ControlNets and pipelines
# ------------------------------------------------------------------------------------------


def load_controlnet(kind: str = "canny", world: str | None = None, naive: bool = False, device: str | None = None):
    """A ControlNet for ``kind`` of control: in the toy world the zoo's teacher-free adapters
    (``canny`` and ``lineart`` share the edge ControlNet; ``i2v`` is the image-to-video adapter;
    ``naive=True``: the same nets trained with the plain diffusion loss), in the full world the
    SD1.5 v1.1 ControlNet from ``config.HUB``."""
    from diffusers import ControlNetModel

    settings = config.with_world(world) if world else config.current()
    if settings.world == "toy":
        if kind not in TOY_ADAPTERS:
            raise UserError(f"the toy world has ControlNets for {', '.join(TOY_ADAPTERS)}; got {kind!r}")
        weights = config.toy_weights(_toy_adapter(kind, naive))
    else:
        if naive:
            raise UserError("naive=True picks the toy world's diffusion-loss adapters; the full world has none")
        if kind not in CONTROLNETS["full"]:
            raise UserError(f"the full world has ControlNets for {', '.join(CONTROLNETS['full'])}; got {kind!r}")
        weights = config.HUB[CONTROLNETS["full"][kind]]
    net = pipelines.from_pretrained(ControlNetModel, weights, f"{kind} ControlNet", dtype=settings.dtype)
    return net.to(device or settings.device).eval()


def controlnet_pipeline(controlnet, model: str = "animatelcm", world: str | None = None, pipe=None):
    """``AnimateDiffControlNetPipeline`` of a text-to-video model (default: AnimateLCM, LCM
    sampler, no CFG) and ``controlnet``; ``pipe`` reuses an already loaded text-to-video pipeline."""
    from diffusers import AnimateDiffControlNetPipeline

    base = pipe if pipe is not None else pipelines.load_t2v(model, world=world)
    if controlnet.dtype != base.unet.dtype:
        raise UserError(f"the ControlNet is {controlnet.dtype} but the pipeline {base.unet.dtype}; load both in one world")
    new = AnimateDiffControlNetPipeline(**{**base.components, "controlnet": controlnet.to(base.device)})
    new.set_progress_bar_config(disable=True)
    new.model_spec = base.model_spec
    new.adapter_weights = dict(getattr(base, "adapter_weights", {}))
    return new


def video_to_video_pipeline(model: str = "animatelcm", world: str | None = None, pipe=None):
    """``AnimateDiffVideoToVideoPipeline`` sharing a text-to-video model's parts (and LoRAs)."""
    from diffusers import AnimateDiffVideoToVideoPipeline

    base = pipe if pipe is not None else pipelines.load_t2v(model, world=world)
    new = AnimateDiffVideoToVideoPipeline(**base.components)
    new.set_progress_bar_config(disable=True)
    new.model_spec = base.model_spec
    new.adapter_weights = dict(getattr(base, "adapter_weights", {}))
    return new


def _run(pipe, seed, **kwargs) -> pipelines.Generation:
    seed, generator = pipelines.seeded(seed)
    start = time.perf_counter()
    # quiet: the video-to-video pipeline casts the VAE with .to() on every call, and diffusers warns each time
    with pipelines.count_unet_evaluations(pipe.unet) as counter, torch.inference_mode(), pipelines.quiet_loading():
        out = pipe(generator=generator, output_type="np", **kwargs)
    video = float_to_uint8(np.asarray(out.frames[0], dtype=np.float32))
    return pipelines.Generation(video, seed, time.perf_counter() - start, counter["n"],
                                kwargs["num_inference_steps"], kwargs["guidance_scale"])


def _common(pipe, prompt, steps, guidance) -> tuple[int, float]:
    """The checked prompt, and the steps and guidance (the model's defaults for None)."""
    spec = pipe.model_spec
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("the prompt is empty: describe the video, e.g. 'a seven moving left'")
    steps = pipelines.check_int("steps", spec.steps if steps is None else steps, 1, hint=" (denoising steps)")
    guidance = pipelines.check_range("guidance", spec.guidance if guidance is None else guidance, 0.0)
    return steps, guidance


def generate_controlled(pipe, prompt: str, control, scale: float = 1.0, steps: int | None = None,
                        guidance: float | None = None, seed: int = 0, negative_prompt: str | None = None):
    """One video following ``control`` (one map per frame: PIL, uint8 or floats in [0, 1]) with
    a ControlNet pipeline; ``scale`` is the control strength (``controlnet_conditioning_scale``,
    0 = ignore the control). Returns a :class:`pipelines.Generation`."""
    steps, guidance = _common(pipe, prompt, steps, guidance)
    scale = pipelines.check_range("control scale", scale, 0.0, 2.0)
    maps = conditioning_frames(control)
    frames = pipelines.check_int("frames", len(maps), 1, pipelines.max_frames(pipe),
                                 hint=" (one control map per frame)")
    width, height = maps[0].size
    return _run(pipe, seed, prompt=prompt, negative_prompt=negative_prompt, conditioning_frames=maps,
                num_frames=frames, height=height, width=width, num_inference_steps=steps, guidance_scale=guidance,
                controlnet_conditioning_scale=scale)


def image_to_video(pipe, image, prompt: str, scale: float = 1.0, steps: int | None = None, frames: int | None = None,
                   guidance: float | None = None, seed: int = 0):
    """Image-to-video with the toy I2V adapter: ``image`` (PIL or (H, W, 3)) is the control of
    frame 0, the later frames get the mid-gray "no condition" image (``distill.as_conditioning``,
    as the adapter was trained), the motion modules carry the image on and the prompt says how it
    moves. ``scale`` is the image's strength. ``pipe``: :func:`controlnet_pipeline` of
    ``load_controlnet("i2v")``."""
    from .distill import as_conditioning

    images = _frames(image)
    if len(images) != 1:
        raise UserError(f"give one image for image-to-video, got {len(images)}")
    frames = pipelines.check_int("frames", pipe.model_spec.frames if frames is None else frames, 1)
    keyframe = as_conditioning(torch.from_numpy(np.array(images[0])).permute(2, 0, 1)[None], frames)[0]
    return generate_controlled(pipe, prompt, keyframe.permute(0, 2, 3, 1).numpy(), scale, steps, guidance, seed)


def video_to_video(pipe, video, prompt: str, strength: float = 0.6, steps: int | None = None,
                   guidance: float | None = None, seed: int = 0, negative_prompt: str | None = None):
    """Re-render ``video`` (frames as for :func:`detect`) with a new prompt / style: noise it to
    ``strength`` of the schedule and denoise from there (about ``strength * steps`` UNet
    evaluations: strength 0.6 of 8 LCM steps runs 4)."""
    steps, guidance = _common(pipe, prompt, steps, guidance)
    strength = pipelines.check_range("strength", strength, 0.0, 1.0)
    if int(steps * strength) < 1:
        raise UserError(f"strength {strength} of {steps} steps leaves no step to run; raise either")
    frames = _frames(video)
    pipelines.check_int("frames", len(frames), 1, pipelines.max_frames(pipe), hint=" (the motion modules' limit)")
    width, height = frames[0].size
    return _run(pipe, seed, video=frames, prompt=prompt, negative_prompt=negative_prompt, strength=strength,
                height=height, width=width, num_inference_steps=steps, guidance_scale=guidance)


def _toy_adapter(kind: str, naive: bool = False) -> str:
    """The zoo folder's name of a toy adapter (the naive twin has the suffix)."""
    return TOY_ADAPTERS[kind] + (NAIVE_SUFFIX if naive else "")


def zoo_folder(kind: str, naive: bool = False) -> Path:
    """Where a toy adapter lives in the zoo."""
    from .toy import zoo

    return zoo.root() / _toy_adapter(kind, naive)


# ------------------------------------------------------------------------------------------
# Measuring control: held-out videos, their maps, one table row per setting
# ------------------------------------------------------------------------------------------


def test_videos(n: int = 40, seed: int = 0, frames: int = 8) -> tuple[np.ndarray, list[str]]:
    """``n`` held-out plain Moving Digits videos (uint8 (n, F, H, W, 3)) and their captions,
    drawn by a seeded shuffle of the test split (every digit and direction turns up)."""
    from .toy.data import MovingDigits, to_uint8

    ds = MovingDigits("test", kind="video", num_frames=frames, seed=seed)
    n = pipelines.check_int("n", n, 1, len(ds))
    order = np.random.default_rng(seed).permutation(len(ds))[:n]
    items = [ds[int(i)] for i in order]
    return to_uint8(np.stack([it["pixel_values"] for it in items])), [it["caption"] for it in items]


def evaluate(pipe, videos, prompts, mode: str, steps: int | None = None, guidance: float | None = None,
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
    """
    from . import metrics

    outs, f1s, psnrs = [], [], []
    for i, (video, prompt) in enumerate(zip(videos, prompts)):
        asked = style_prompt.format(prompt) if style_prompt else prompt
        if mode == "t2v":
            gen = pipelines.generate(pipe, asked, steps=steps, guidance=guidance, frames=len(video), seed=seed + i)
        elif mode == "control":
            gen = generate_controlled(pipe, asked, detect(video, detector), scale, steps, guidance, seed + i)
        elif mode == "i2v":
            gen = image_to_video(pipe, video[0], asked, scale, steps, len(video), guidance, seed + i)
        elif mode == "v2v":
            gen = video_to_video(pipe, video, asked, strength, steps, guidance, seed + i)
        else:
            raise UserError(f"unknown mode {mode!r}; choose t2v, control, i2v or v2v")
        outs.append(gen)
        if mode in ("t2v", "control"):
            f1s.append(edge_f1(gen.frames, detect(video, "canny")))
        psnrs.append(psnr(gen.frames[0], video[0]))
    frames = np.stack([g.frames for g in outs])
    faith = metrics.faithfulness(frames, list(prompts))
    row = {"label": label, "mode": mode, "steps": outs[0].steps, "guidance": outs[0].guidance, "videos": len(outs),
           "digit": faith["digit"], "direction": faith["direction"],
           "edge_f1": float(np.mean(f1s)) if f1s else None, "first_psnr": float(np.mean(psnrs)),
           "unet_evals": outs[0].unet_evaluations, "seconds": float(np.mean([g.seconds for g in outs]))}
    if mode in ("control", "i2v"):
        row["scale"] = scale
    if mode == "v2v":
        row["strength"] = strength
        if style_prompt:
            from .toy.data import STYLES

            read = metrics.read_styles(frames[:, 0])
            style = next((s for s in STYLES if s != "plain" and s in style_prompt), "plain")
            row["style"] = read.count(style) / len(read)
    row["frames"] = frames  # dropped before saving; the notebooks show a few
    return row
