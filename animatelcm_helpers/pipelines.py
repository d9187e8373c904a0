"""Load and drive diffusers' own pipelines, in either world, through the same code.

A model is named in :mod:`config` (``MODELS``): a base image model, a motion adapter and,
for AnimateLCM, the spatial LCM LoRA. In the full world their weights come from the Hub (by id
and revision, safetensors only); in the toy world from the zoo's local folders, which are laid
out exactly like those Hub repositories. So loading the toy world exercises the full world's code.

Text-to-video with AnimateLCM, the official recipe (repository ids in ``config.HUB``)::

    adapter = MotionAdapter.from_pretrained(ANIMATELCM_REPO, variant="fp16")
    base = StableDiffusionPipeline.from_pretrained(BASE_REPO, safety_checker=None, feature_extractor=None)
    pipe = AnimateDiffPipeline.from_pipe(base, motion_adapter=adapter)
    pipe.scheduler = LCMScheduler(beta_schedule="linear", beta_end=0.012, original_inference_steps=100, steps_offset=1)
    pipe.load_lora_weights(ANIMATELCM_REPO, weight_name=LCM_LORA_FILE, adapter_name="lcm-lora")
    pipe.set_adapters(["lcm-lora"], [0.8])

(the base goes through ``StableDiffusionPipeline`` without its safety checker, which the video
pipelines never use: ``loading.load_base``.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AnimateDiffPipeline,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    TCDScheduler,
)

from . import config
from .checkpoint_formats import check_weights_file, checkpoint_kind, header
from .config import ModelSpec, UserError, Weights
from .loading import LCM_ADAPTER, from_pretrained, load_base, load_lora, load_motion_adapter, memory_plan, place
from .media import float_to_uint8
from .toy.data import STYLES
from .utils import PICKLE_SUFFIXES, check_int, check_range, quiet_loading, seeded

def make_scheduler(kind: str, base_config, **overrides):
    """The sampler by name, built from the base model's noise schedule."""
    classes = {
        "lcm": LCMScheduler,
        "tcd": TCDScheduler,
        "ddim": DDIMScheduler,
        "euler": EulerDiscreteScheduler,
        "dpm++": DPMSolverMultistepScheduler,
    }
    if kind not in classes:
        raise UserError(f"unknown scheduler {kind!r}; choose one of {', '.join(classes)}")
    return classes[kind].from_config(base_config, **overrides)


def spec_scheduler(spec: ModelSpec, base_config, kind: str | None = None):
    """The model's sampler: ``spec.scheduler`` with ``spec.scheduler_kwargs`` on the base's noise
    schedule, or on the sampler's own defaults where ``spec.scheduler_from_base`` is False (the
    official AnimateLCM ``LCMScheduler``); ``kind`` swaps in another sampler on the base's schedule
    (with the same overrides: the motion modules' linear betas)."""
    own = kind is None or kind == spec.scheduler
    start = {} if (own and not spec.scheduler_from_base) else base_config
    return make_scheduler(kind or spec.scheduler, start, **dict(spec.scheduler_kwargs))


def lcm_grid_points(scheduler) -> int | None:
    """The number of points of an LCM/TCD sampler's skipping grid (``original_inference_steps``):
    the most steps it can take. None for other samplers."""
    return getattr(scheduler.config, "original_inference_steps", None) if isinstance(scheduler, (LCMScheduler, TCDScheduler)) else None


def load_t2v(
    model: str = "animatelcm",
    world: str | None = None,
    lcm_lora_weight: float | None = None,
    scheduler: str | None = None,
    device: str | None = None,
    base=None,
    loras=(),
):
    """Text-to-video: ``AnimateDiffPipeline`` + ``MotionAdapter`` (+ the LCM LoRA at a weight).

    ``model`` names an entry of ``config.MODELS[world]`` ("animatelcm" or "teacher"), or is a
    folder with an ``animatelcm_spec.json``: a pipeline written by :func:`save_pipeline`, or a
    model in AnimateLCM's own layout (a motion adapter and an LCM LoRA, as
    ``scripts/distill_full.py`` saves its student; :func:`save_model_spec`).
    ``lcm_lora_weight`` (0..1, the demo's "LCM LoRA alpha") defaults to the model's.
    ``base`` replaces the model's base image model (:func:`base_weights`: a name of
    ``config.BASES[world]``, a Hub id in diffusers' layout, or a single-file DreamBooth
    ``.safetensors`` on this machine); ``loras`` adds personal LoRAs beside the LCM LoRA, each
    ``(name_or_path_or_id, alpha)`` or a bare one at alpha 0.8 (:func:`add_lora`).
    Returns the pipeline with ``pipe.model_spec`` set; sample it with :func:`generate`.
    """
    settings = config.with_world(world) if world else config.current()
    device = device or settings.device
    dtype = settings.dtype
    if (Path(model) / SAVED_SPEC).is_file():
        spec, layout = read_saved_spec(Path(model))
        if layout == "pipeline":
            pipe = from_pretrained(AnimateDiffPipeline, spec.base, "saved pipeline", dtype=dtype)
            if scheduler:
                pipe.scheduler = spec_scheduler(spec, pipe.scheduler.config, scheduler)
            if lcm_lora_weight is not None:
                raise UserError("this saved pipeline has its LCM LoRA fused in; leave lcm_lora_weight unset")
            if base is not None:
                raise UserError("a saved pipeline has its base inside it; leave base unset (or load the parts)")
            add_loras(pipe, loras, settings.world)
            return _ready(pipe, spec, device)
    else:
        spec = config.model_spec(model, settings.world)
    if base is not None:
        spec = replace(spec, base=base_weights(base, settings.world))
    adapter = load_motion_adapter(spec.motion_adapter, dtype, spec.motion_config)
    base = load_base(spec.base, dtype, world=settings.world)
    with quiet_loading():  # from_pipe's .to() warns about float32 modules it does not have
        pipe = AnimateDiffPipeline.from_pipe(base, motion_adapter=adapter)
    pipe.scheduler = spec_scheduler(spec, base.scheduler.config, scheduler)
    if spec.lcm_lora is not None:
        weight = spec.lcm_lora_weight if lcm_lora_weight is None else lcm_lora_weight
        check_range("lcm_lora_weight", weight, 0.0, 1.0)
        load_lora(pipe, spec.lcm_lora)
        set_adapter_weight(pipe, LCM_ADAPTER, weight)
    elif lcm_lora_weight not in (None, 0, 0.0):
        raise UserError(f"model {model!r} has no LCM LoRA; leave lcm_lora_weight unset")
    add_loras(pipe, loras, settings.world)
    return _ready(pipe, spec, device)


# ------------------------------------------------------------------------------------------
# Personalized bases and LoRAs, as a user brings them
# ------------------------------------------------------------------------------------------

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name
HUB_FILE = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)/([\w.-]+\.safetensors)$")  # owner/name/file.safetensors


def _local_file(path: Path) -> Weights:
    return Weights(str(path.resolve().parent), revision=None, weight_name=path.name, local=True)


def base_weights(base, world: str | None = None) -> Weights:
    """Where a base image model comes from, for :func:`load_t2v`'s ``base``:

    * a name of ``config.BASES[world]`` (full: "epicrealism", "realistic-vision", "dreamshaper";
      toy: "toy", the zoo's base), or a ``config.Weights``;
    * a path to ONE ``.safetensors`` file in the original SD layout (a community DreamBooth
      checkpoint; ``Weights(folder, weight_name=file)``, read by ``loading.load_single_file_base``);
      a pickle (``.ckpt``, ``.pt``, ``.bin``) is refused before anything opens it;
    * a folder on this machine in diffusers' layout (``model_index.json``);
    * full world only: a Hub id ``owner/name`` in diffusers' layout, at ``main``.
    """
    world = config.check_world(world or config.current().world)
    if isinstance(base, Weights):
        return base
    text = str(base).strip()
    names = config.BASES[world]
    if text in names:
        return names[text]
    path = Path(text).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES + (".safetensors",) or path.is_file():
        return _local_file(check_weights_file(path, "base model"))
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise UserError(f"{path} is a folder without model_index.json: give a Stable Diffusion folder in "
                            "diffusers' layout or a single-file .safetensors checkpoint")
        return Weights(str(path.resolve()), revision=None, local=True)
    if world == "full" and HUB_ID.match(text):
        return Weights(text)
    where = "a Hub id (owner/name) in diffusers' layout, " if world == "full" else ""
    raise UserError(f"unknown base {text!r}: give one of {', '.join(names)}, {where}or the path of a single-file "
                    ".safetensors checkpoint on this machine")


def lora_weights(lora, world: str | None = None) -> tuple[Weights, str]:
    """(where a personal LoRA comes from, its adapter name), for :func:`add_lora`:

    * toy world: a zoo style ("neon", "sunset", "paper", "checker"; adapter name = the style);
    * full world: a name of ``config.PERSONAL_LORAS["full"]`` ("pixel-art", "coloring-book"), a
      Hub file ``owner/name/FILE.safetensors`` or a Hub id ``owner/name`` (diffusers guesses the
      file, online only);
    * either world: a path to a LoRA ``.safetensors`` on this machine, in diffusers' or kohya's
      format (``lora_unet_*``; diffusers converts it); a pickle is refused by its name.
    """
    world = config.check_world(world or config.current().world)
    if isinstance(lora, Weights):
        return lora, _adapter_name(lora.weight_name or lora.repo_id)
    text = str(lora).strip()
    styles = [st for st in STYLES if st != "plain"]
    if world == "toy" and text in styles:
        return style_weights(text), text
    named = config.PERSONAL_LORAS[world]
    if text in named:
        return named[text], text
    path = Path(text).expanduser()
    hub_file = HUB_FILE.match(text) if world == "full" and not text.startswith((".", "/", "~")) else None
    if hub_file and not path.exists():
        return Weights(hub_file[1], weight_name=hub_file[2]), _adapter_name(hub_file[1])
    if path.suffix.lower() in PICKLE_SUFFIXES + (".safetensors",) or path.is_file():
        path = check_weights_file(path, "LoRA")
        kind = checkpoint_kind(header(path))
        if kind in ("sd", "sdxl", "sd2"):
            raise UserError(f"{path.name} is a whole base model checkpoint, not a LoRA: give it as the base "
                            "(--base / the base menu)")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:6]
        return _local_file(path), _adapter_name(f"{path.stem}-{digest}")
    if world == "full" and HUB_ID.match(text):
        return Weights(text), _adapter_name(text)
    known = styles if world == "toy" else list(named)
    hub = "a Hub file (owner/name/FILE.safetensors), " if world == "full" else ""
    raise UserError(f"unknown LoRA {text!r}: give one of {', '.join(known)}, {hub}or the path of a LoRA "
                    ".safetensors file on this machine")


def _adapter_name(text: str) -> str:
    """A peft adapter name for a LoRA: 'lora-' + its name's letters, digits and dashes."""
    return "lora-" + re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60]


def add_lora(pipe, lora, alpha: float = config.PERSONAL_LORA_ALPHA, world: str | None = None) -> str:
    """Load a personal LoRA (see :func:`lora_weights`) into ``pipe`` once, beside the LCM LoRA,
    under its own adapter name, and give it ``alpha`` (0..2, the official demo's "LoRA alpha";
    the other adapters keep their weights: W x + sum_k alpha_k B_k A_k x). Returns the adapter name."""
    alpha = check_range("LoRA alpha", alpha, *config.PERSONAL_LORA_RANGE)
    weights, name = lora_weights(lora, world)
    if not any(name in names for names in pipe.get_list_adapters().values()):
        load_lora(pipe, weights, adapter_name=name)
    set_adapter_weight(pipe, name, alpha)
    return name


def add_loras(pipe, loras, world: str | None = None) -> list[str]:
    """:func:`add_lora` for each of ``loras``: ``(lora, alpha)`` pairs or bare LoRAs (alpha 0.8)."""
    if isinstance(loras, (str, Path, Weights)):
        loras = [loras]
    names = []
    for item in loras or ():
        lora, alpha = item if isinstance(item, tuple) else (item, config.PERSONAL_LORA_ALPHA)
        names.append(add_lora(pipe, lora, alpha, world))
    return names


def style_weights(style: str) -> Weights:
    """A personalized style of the toy zoo (an image-only LoRA in ``<zoo>/styles``)."""
    styles = [s for s in STYLES if s != "plain"]
    if style not in styles:
        raise UserError(f"unknown style {style!r}; choose one of: {', '.join(styles)}")
    return config.toy_weights("styles", f"{style}.safetensors")


def add_style(pipe, style: str, weight: float = 0.8) -> None:
    """Load a toy style LoRA into ``pipe`` next to the LCM LoRA (if any), at ``weight`` (0..2,
    the demo's personal-LoRA alpha); the other adapters keep their weights."""
    weight = check_range("style weight", weight, 0.0, 2.0)
    if not any(style in names for names in pipe.get_list_adapters().values()):
        load_lora(pipe, style_weights(style), adapter_name=style)
    set_adapter_weight(pipe, style, weight)


MOTION_PREFIX = "motion-"  # a motion LoRA's adapter name is "motion-<name>"


def motion_lora_weights(name: str, world: str | None = None) -> Weights:
    """A motion LoRA by name, from ``config.MOTION_LORAS[world]``: in the toy world "left",
    "right", "up", "down" (the way the digit moves); in the full world AnimateDiff's camera
    moves ("pan-left", "tilt-up", "zoom-in", ...)."""
    world = config.check_world(world or config.current().world)
    names = config.MOTION_LORAS[world]
    if name not in names:
        raise UserError(f"unknown motion LoRA {name!r} in the {world} world; choose one of: {', '.join(names)}")
    return names[name]


def load_motion_lora(pipe, name: str) -> str:
    """Load the motion LoRA ``name`` into ``pipe`` as adapter ``"motion-<name>"`` unless it is
    already there; returns the adapter's name. Its weight is left to the caller."""
    adapter = MOTION_PREFIX + name
    if adapter not in pipe.get_list_adapters().get("unet", []):
        load_lora(pipe, motion_lora_weights(name), adapter_name=adapter)
    return adapter


def use_motion_lora(pipe, name: str | None, weight: float = 1.0) -> None:
    """Switch the motion LoRA of a text-to-video pipeline: load ``name`` once (adapter
    ``"motion-<name>"``, a LoRA on the motion modules' attention and feed-forward layers) and
    set it to ``weight``; every other loaded motion LoRA goes to 0, and the LCM LoRA and styles
    keep their weights. ``None`` turns all motion LoRAs off. The motion modules have no text
    cross-attention, so the prompt steers the motion only through the image layers; a motion
    LoRA steers it directly (the caller picks it, as a demo's motion menu does)."""
    if type(pipe.unet).__name__ != "UNetMotionModel":
        raise UserError("motion LoRAs go on a text-to-video pipeline (load_t2v), not an image pipeline")
    weights = dict(getattr(pipe, "adapter_weights", {}))
    if name is not None:
        weight = check_range("motion LoRA weight", weight, 0.0, 2.0)
        load_motion_lora(pipe, name)
    for other in [k for k in weights if k.startswith(MOTION_PREFIX)]:
        weights[other] = 0.0
    if name is not None:
        weights[MOTION_PREFIX + name] = float(weight)
    apply_adapter_weights(pipe, weights)


def set_adapter_weight(pipe, name: str, weight: float) -> None:
    """Set one loaded LoRA's weight, keeping the others' (``pipe.adapter_weights`` holds them)."""
    weights = dict(getattr(pipe, "adapter_weights", {}))
    weights[name] = float(weight)
    apply_adapter_weights(pipe, weights)


def apply_adapter_weights(pipe, weights: dict) -> None:
    """Give the loaded LoRAs these weights: W x + sum_k alpha_k B_k A_k x. ``pipe.adapter_weights``
    records them all, zeros included; only the LoRAs with a nonzero weight stay active, so a
    switched-off LoRA costs nothing (its term would add exactly 0 anyway)."""
    active = {k: float(w) for k, w in weights.items() if w != 0}
    if active:
        pipe.enable_lora()
        pipe.set_adapters(list(active), list(active.values()))
    elif weights:
        pipe.disable_lora()
    pipe.adapter_weights = {k: float(w) for k, w in weights.items()}


def load_t2i(world: str | None = None, unet=None, lcm_lora: str | Path | None = None, lcm_lora_weight: float = 1.0,
             scheduler: str = "lcm", steps: int = 4, guidance: float = 1.0, device: str | None = None):
    """Text-to-image (stage 1): the world's base image model as a ``StableDiffusionPipeline``.

    ``unet`` replaces its UNet (e.g. the full LCD student, w-conditioned: its ``guidance`` is
    w + 1 and feeds the w-embedding, not CFG); ``lcm_lora`` is an LCM LoRA file in diffusers'
    format (stage 1's ``<zoo>/image-lcm/lcm_lora.safetensors``), loaded at ``lcm_lora_weight``.
    ``pipe.model_spec`` carries the defaults ``steps`` and ``guidance`` (frames = 1).
    """
    settings = config.with_world(world) if world else config.current()
    base = config.model_spec("teacher", settings.world).base
    pipe = load_base(base, settings.dtype, **({"unet": unet} if unet is not None else {}))
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    if lcm_lora is not None:
        weight = check_range("lcm_lora_weight", lcm_lora_weight, 0.0, 1.0)
        path = Path(lcm_lora)
        if not (path.is_file() and path.suffix == ".safetensors"):
            raise UserError(f"lcm_lora must be a LoRA .safetensors file (diffusers' format), got {str(path)!r}")
        load_lora(pipe, Weights(str(path.parent), revision=None, weight_name=path.name, local=True))
        set_adapter_weight(pipe, LCM_ADAPTER, weight)
    teacher = config.model_spec("teacher", settings.world)
    spec = ModelSpec("t2i", "text-to-image", base, None, None, lcm_lora_weight, scheduler, steps, guidance,
                     1, teacher.height, teacher.width)
    return _ready(pipe, spec, device or settings.device)


def with_unet(pipe, unet, scheduler: str = "lcm", spec: ModelSpec | None = None):
    """A new pipeline of ``pipe``'s kind sharing its parts but with ``unet`` (e.g. a student being
    trained: a UNetMotionModel for AnimateDiff, a UNet2DConditionModel for images) and the named
    sampler; ``spec`` (default: the world's "animatelcm") gives its defaults."""
    parts = {**pipe.components, "unet": unet, "scheduler": make_scheduler(scheduler, pipe.scheduler.config)}
    new = type(pipe)(**parts)
    new.set_progress_bar_config(disable=True)
    new.model_spec = spec or replace(config.model_spec("animatelcm"), scheduler=scheduler)
    return new


def _ready(pipe, spec: ModelSpec, device: str):
    place(pipe, device, memory_plan("t2v", device))
    pipe.set_progress_bar_config(disable=True)
    pipe.model_spec = spec
    return pipe


def derive(pipe, cls, **parts):
    """A pipeline of class ``cls`` made of ``pipe``'s parts (``parts`` replace or add some: a
    ControlNet, a UNet): the same model spec, LoRA weights and device placement."""
    new = cls(**{**pipe.components, **parts})
    new.set_progress_bar_config(disable=True)
    new.model_spec = pipe.model_spec
    new.adapter_weights = dict(getattr(pipe, "adapter_weights", {}))
    if getattr(pipe, "memory_plan", None) is not None:
        place(new, pipe.run_device, pipe.memory_plan)
    return new


# ------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------


def decode_chunk_size(pipe) -> int:
    """Frames the VAE decodes at a time (the pipeline's memory plan; diffusers' 16 without one)."""
    plan = getattr(pipe, "memory_plan", None)
    return plan.decode_chunk_size if plan is not None else 16


def max_frames(pipe) -> int:
    """The motion modules' maximum sequence length (frames one pass can make)."""
    return int(pipe.unet.config.motion_max_seq_length)


@dataclass
class Generation:
    """A generated video and what it cost."""
    frames: np.ndarray  # uint8, (frames, height, width, 3)
    seed: int
    seconds: float
    unet_evaluations: int  # UNet evaluations of ONE sample (a CFG step counts 2)
    steps: int
    guidance: float


@contextlib.contextmanager
def count_unet_evaluations(unet, videos: int = 1):
    """Count UNet evaluations per video: each forward adds its batch size / ``videos``
    (a classifier-free-guided step evaluates the conditional and unconditional halves: 2)."""
    counter = {"n": 0}

    def hook(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        counter["n"] += sample.shape[0] // videos

    handle = unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield counter
    finally:
        handle.remove()


def generate(
    pipe,
    prompt: str,
    steps: int | None = None,
    guidance: float | None = None,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    seed: int = 0,
    negative_prompt: str | None = None,
) -> Generation:
    """Sample one video. Arguments left as None take the model's defaults (``pipe.model_spec``).

    ``seed=-1`` draws a random seed (returned in the result). The noise comes from a CPU
    generator, so a seed gives the same video on any device of the same kind.
    """
    spec: ModelSpec = pipe.model_spec
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("the prompt is empty: describe the video, e.g. 'a seven moving left'")
    steps = check_int("steps", spec.steps if steps is None else steps, 1, hint=" (denoising steps)")
    points = lcm_grid_points(pipe.scheduler)
    if points is not None and steps > points:
        raise UserError(f"steps must be at most {points} for this LCM sampler (its skipping grid has {points} points), "
                        f"got {steps}")
    guidance = check_range("guidance", spec.guidance if guidance is None else guidance, 0.0)
    frames = check_int(
        "frames", spec.frames if frames is None else frames, 1, max_frames(pipe),
        hint=" (the motion modules' maximum sequence length)",
    )
    factor = pipe.vae_scale_factor
    height = check_int("height", spec.height if height is None else height, factor)
    width = check_int("width", spec.width if width is None else width, factor)
    for name, value in (("height", height), ("width", width)):
        if value % factor:
            raise UserError(
                f"{name} {value} is not a multiple of {factor}, the VAE's downsampling factor; "
                f"try {max(factor, round(value / factor) * factor)}"
            )
    seed, generator = seeded(seed)
    start = time.perf_counter()
    with count_unet_evaluations(pipe.unet) as counter, torch.inference_mode():
        out = pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_frames=frames,
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generator,
            output_type="np",
            decode_chunk_size=decode_chunk_size(pipe),
        )
    seconds = time.perf_counter() - start
    video = float_to_uint8(np.asarray(out.frames[0], dtype=np.float32))
    return Generation(video, seed, seconds, counter["n"], steps, guidance)


SAVED_SPEC = "animatelcm_spec.json"


def _weights_json(weights: Weights | None, folder: Path) -> dict | None:
    """A Weights as JSON; a local path inside ``folder`` is stored relative to it (the folder can move)."""
    if weights is None:
        return None
    data = asdict(weights)
    path = Path(weights.repo_id)
    if weights.local and path.is_absolute() and path.resolve().is_relative_to(folder.resolve()):
        data["repo_id"] = str(path.resolve().relative_to(folder.resolve()))
    return data


def write_spec(folder: str | Path, spec: ModelSpec, layout: str) -> Path:
    """Write ``spec`` as ``folder/animatelcm_spec.json`` (atomically), for :func:`load_t2v`.
    ``layout`` is "pipeline" (a whole pipeline in diffusers' layout, :func:`save_pipeline`) or
    "parts" (the folder holds the motion adapter and/or the LCM LoRA; the base can be a Hub id)."""
    folder = Path(folder)
    data = asdict(spec)
    for key in ("base", "motion_adapter", "lcm_lora"):
        data[key] = _weights_json(getattr(spec, key), folder)
    data["layout"] = layout
    tmp = folder / (SAVED_SPEC + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(folder / SAVED_SPEC)
    return folder


def save_pipeline(pipe, folder: str | Path) -> Path:
    """Save a loaded text-to-video pipeline in diffusers' layout, its LCM LoRA fused in at the
    weight it was loaded with (W <- W + weight * B A). ``pipe`` keeps working, fused, afterwards.

    :func:`load_t2v` takes the folder back (``load_t2v(folder)``) with the same defaults.
    """
    folder = Path(folder)
    spec: ModelSpec = pipe.model_spec
    with quiet_loading():
        if spec.lcm_lora is not None:
            pipe.fuse_lora(adapter_names=[LCM_ADAPTER], lora_scale=1.0)
            pipe.unload_lora_weights()
            spec = replace(spec, lcm_lora=None)
        pipe.save_pretrained(folder, safe_serialization=True)
    write_spec(folder, replace(spec, base=config.Weights(str(folder.resolve()), revision=None, local=True)), "pipeline")
    pipe.model_spec = spec
    return folder


def read_saved_spec(folder: Path) -> tuple[ModelSpec, str]:
    """The spec in ``folder/animatelcm_spec.json`` and its layout ("pipeline" or "parts"); local
    paths are made absolute (relative ones are inside the folder)."""
    try:
        data = json.loads((folder / SAVED_SPEC).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{folder / SAVED_SPEC} is not readable ({err}); save the model again") from None
    layout = data.pop("layout", "pipeline")

    def weights(value):
        if value is None:
            return None
        w = config.Weights(**value)
        if w.local and not Path(w.repo_id).is_absolute():
            w = replace(w, repo_id=str((folder / w.repo_id).resolve()))
        return w

    for key in ("base", "motion_adapter", "lcm_lora"):
        data[key] = weights(data.get(key))
    if layout == "pipeline":
        data["base"] = config.Weights(str(folder.resolve()), revision=None, local=True)
        data["lcm_lora"] = None
    data["scheduler_kwargs"] = tuple(tuple(kv) for kv in data.get("scheduler_kwargs", ()))
    return ModelSpec(**data), layout


def describe(pipe) -> str:
    """One line per component: its class and parameter count, plus the active LoRA adapters."""
    lines = []
    for name, component in pipe.components.items():
        if component is None:
            continue
        params = sum(p.numel() for p in component.parameters()) if hasattr(component, "parameters") else None
        size = f"{params / 1e6:8.2f} M parameters" if params else ""
        lines.append(f"{name:<15} {type(component).__name__:<28} {size}".rstrip())
    if hasattr(pipe, "get_list_adapters"):
        active = pipe.get_active_adapters() if pipe.get_list_adapters() else []
        lines.append(f"{'LoRA adapters':<15} {', '.join(active) if active else 'none'}")
    return "\n".join(lines)
