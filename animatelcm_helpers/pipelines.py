"""Load and drive diffusers' own pipelines, in either world, through the same code.

A model is named in :mod:`config` (``MODELS``): a base image model, a motion adapter and,
for AnimateLCM, the spatial LCM LoRA. In the full world their weights come from the Hub (by id
and revision, safetensors only); in the toy world from the zoo's local folders, which are laid
out exactly like those Hub repositories. So loading the toy world exercises the full world's code.

Text-to-video with AnimateLCM, the official recipe (repository ids in ``config.HUB``)::

    adapter = MotionAdapter.from_pretrained(ANIMATELCM_REPO)
    pipe = AnimateDiffPipeline.from_pretrained(BASE_REPO, motion_adapter=adapter)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config, beta_schedule="linear")
    pipe.load_lora_weights(ANIMATELCM_REPO, weight_name=LCM_LORA_FILE, adapter_name="lcm-lora")
    pipe.set_adapters(["lcm-lora"], [0.8])
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import config
from .config import ModelSpec, UserError, Weights
from .media import float_to_uint8

LCM_ADAPTER = "lcm-lora"
MAX_LCM_STEPS = 50  # LCMScheduler's original_inference_steps: its skipping grid has 50 points


class MissingWeightsError(UserError):
    """Weights that are neither on this machine nor reachable on the Hub."""


@contextlib.contextmanager
def quiet_loading():
    """Silence diffusers' and transformers' load-time chatter and progress bars (errors still show)."""
    import warnings

    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    state = (dlog.get_verbosity(), tlog.get_verbosity(), dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="huggingface_hub")
            # peft says so each time a second LoRA (a style next to the LCM LoRA) joins a model
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            yield
    finally:
        dlog.set_verbosity(state[0])
        tlog.set_verbosity(state[1])
        if state[2]:
            dlog.enable_progress_bar()
        if state[3]:
            tlog.enable_progress_bar()


def resolve(weights: Weights) -> tuple[str, dict]:
    """(path or repo id, keyword arguments for from_pretrained) for a component's weights."""
    if weights.local:
        from .toy import zoo

        path = Path(weights.repo_id)
        path = path if path.is_absolute() else zoo.root() / path
        if not path.exists():
            raise MissingWeightsError(
                f"the toy zoo has no folder {weights.repo_id!r} (looked in {path.parent}); "
                "rebuild the zoo (see README, 'The toy model zoo') or delete the folder to get a fresh one"
            )
        return str(path), {"local_files_only": True}
    kwargs = {"revision": weights.revision}
    if not config.hub_reachable():  # use the local cache only: fail fast instead of retrying
        kwargs["local_files_only"] = True
    if weights.subfolder:
        kwargs["subfolder"] = weights.subfolder
    return weights.repo_id, kwargs


def _missing(weights: Weights, what: str) -> MissingWeightsError:
    offline = " (HF_HUB_OFFLINE is set)" if config._truthy(os.environ.get("HF_HUB_OFFLINE")) else ""
    return MissingWeightsError(
        f"the {what} {weights.describe()} is not on this machine and could not be fetched from the "
        f"Hugging Face Hub{offline}. On a machine with internet, run "
        f"`hf download {weights.repo_id} --revision {weights.revision}` (it fills the cache at HF_HOME), "
        "or use the toy world (world='toy', or ANIMATELCM_WORLD=toy), which needs no download."
    )


def from_pretrained(cls, weights: Weights, what: str, **kwargs):
    """``cls.from_pretrained`` for either world, safetensors only, with a clear error offline."""
    source, extra = resolve(weights)
    try:
        with quiet_loading():
            return cls.from_pretrained(source, use_safetensors=True, **extra, **kwargs)
    except UserError:
        raise
    except (OSError, ValueError) as err:
        if weights.local:
            raise UserError(
                f"could not load the {what} from the folder {source}: {err}. "
                "If it is the toy zoo's cache, delete the folder to rebuild it."
            ) from None
        if isinstance(err, OSError):
            raise _missing(weights, what) from None
        raise UserError(f"could not load the {what} {weights.describe()}: {err}") from None


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def load_safetensors(path, what: str = "weights") -> dict:
    """Read a safetensors file, refusing anything else: a pickle (.bin/.pt/.ckpt: loading one can
    run arbitrary code) or a corrupted/truncated file gets a clear error, never a deep traceback."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(f"{path.name} is a pickle file; this course loads safetensors only (a pickle can run code "
                        "when loaded). Convert it where you trust it, or use the .safetensors version of the weights")
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        with open(path, "rb") as f:
            head = f.read(2)
        kind = "a pickle file renamed .safetensors" if head[:1] == b"\x80" or head == b"PK" else "corrupted or truncated"
        raise UserError(f"{path} is not a readable safetensors file ({kind}: {err}); download or rebuild it") from None


def load_lora(pipe, weights: Weights, adapter_name: str = LCM_ADAPTER) -> None:
    """Load a LoRA (diffusers format, safetensors) into ``pipe`` under ``adapter_name``."""
    source, extra = resolve(weights)
    extra.pop("subfolder", None)
    if weights.local and weights.weight_name:
        load_safetensors(Path(source) / weights.weight_name, "LoRA")  # refuse pickles and broken files first
    try:
        with quiet_loading():
            pipe.load_lora_weights(
                source, weight_name=weights.weight_name, adapter_name=adapter_name, **extra
            )
    except OSError as err:
        if weights.local:
            raise UserError(f"could not load the LoRA {weights.weight_name} from {source}: {err}") from None
        raise _missing(weights, "LoRA") from None
    except (RuntimeError, ValueError, KeyError) as err:  # shapes or names of another architecture
        raise UserError(f"the LoRA {weights.weight_name or weights.repo_id} does not fit this model's UNet "
                        f"({str(err).splitlines()[0][:200]}); use a LoRA trained for this base model") from None
    if adapter_name not in pipe.get_list_adapters().get("unet", []):
        raise UserError(f"the LoRA {weights.weight_name or weights.repo_id} has no layer this model's UNet has: "
                        "it was made for another architecture; use a LoRA trained for this base model")


def make_scheduler(kind: str, base_config, **overrides):
    """The sampler by name, built from the base model's noise schedule."""
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        LCMScheduler,
        TCDScheduler,
    )

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


def load_t2v(
    model: str = "animatelcm",
    world: str | None = None,
    lcm_lora_weight: float | None = None,
    scheduler: str | None = None,
    device: str | None = None,
):
    """Text-to-video: ``AnimateDiffPipeline`` + ``MotionAdapter`` (+ the LCM LoRA at a weight).

    ``model`` names an entry of ``config.MODELS[world]`` ("animatelcm" or "teacher"), or is the
    folder of a pipeline written by :func:`save_pipeline`.
    ``lcm_lora_weight`` (0..1, the demo's "LCM LoRA alpha") defaults to the model's.
    Returns the pipeline with ``pipe.model_spec`` set; sample it with :func:`generate`.
    """
    from diffusers import AnimateDiffPipeline, MotionAdapter

    settings = config.with_world(world) if world else config.current()
    device = device or settings.device
    dtype = settings.dtype
    if (Path(model) / SAVED_SPEC).is_file():
        spec = read_saved_spec(Path(model))
        pipe = from_pretrained(AnimateDiffPipeline, spec.base, "saved pipeline", dtype=dtype)
        if scheduler:
            pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
        if lcm_lora_weight is not None:
            raise UserError("this saved pipeline has its LCM LoRA fused in; leave lcm_lora_weight unset")
        return _ready(pipe, spec, device)
    spec = config.model_spec(model, settings.world)
    adapter = from_pretrained(MotionAdapter, spec.motion_adapter, "motion adapter", dtype=dtype)
    pipe = from_pretrained(
        AnimateDiffPipeline, spec.base, "base model", motion_adapter=adapter, dtype=dtype
    )
    pipe.scheduler = make_scheduler(
        scheduler or spec.scheduler, pipe.scheduler.config, **dict(spec.scheduler_kwargs)
    )
    if spec.lcm_lora is not None:
        weight = spec.lcm_lora_weight if lcm_lora_weight is None else lcm_lora_weight
        check_range("lcm_lora_weight", weight, 0.0, 1.0)
        load_lora(pipe, spec.lcm_lora)
        set_adapter_weight(pipe, LCM_ADAPTER, weight)
    elif lcm_lora_weight not in (None, 0, 0.0):
        raise UserError(f"model {model!r} has no LCM LoRA; leave lcm_lora_weight unset")
    return _ready(pipe, spec, device)


def style_weights(style: str) -> Weights:
    """A personalized style of the toy zoo (an image-only LoRA in ``<zoo>/styles``)."""
    from .toy.data import STYLES

    styles = [s for s in STYLES if s != "plain"]
    if style not in styles:
        raise UserError(f"unknown style {style!r}; choose one of: {', '.join(styles)}")
    return config.toy_weights("styles", f"{style}.safetensors")


def add_style(pipe, style: str, weight: float = 0.8) -> None:
    """Load a toy style LoRA into ``pipe`` next to the LCM LoRA (if any), at ``weight`` (0..2,
    the demo's personal-LoRA alpha); the other adapters keep their weights."""
    weight = check_range("style weight", weight, 0.0, 2.0)
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
    if weights:
        pipe.set_adapters(list(weights), list(weights.values()))
    pipe.adapter_weights = weights


def set_adapter_weight(pipe, name: str, weight: float) -> None:
    """Set one loaded LoRA's weight, keeping the others' (``pipe.adapter_weights`` holds them)."""
    weights = dict(getattr(pipe, "adapter_weights", {}))
    weights[name] = float(weight)
    pipe.set_adapters(list(weights), list(weights.values()))
    pipe.adapter_weights = weights


def load_t2i(world: str | None = None, unet=None, lcm_lora: str | Path | None = None, lcm_lora_weight: float = 1.0,
             scheduler: str = "lcm", steps: int = 4, guidance: float = 1.0, device: str | None = None):
    """Text-to-image (stage 1): the world's base image model as a ``StableDiffusionPipeline``.

    ``unet`` replaces its UNet (e.g. the full LCD student, w-conditioned: its ``guidance`` is
    w + 1 and feeds the w-embedding, not CFG); ``lcm_lora`` is an LCM LoRA file in diffusers'
    format (stage 1's ``<zoo>/image-lcm/lcm_lora.safetensors``), loaded at ``lcm_lora_weight``.
    ``pipe.model_spec`` carries the defaults ``steps`` and ``guidance`` (frames = 1).
    """
    from diffusers import StableDiffusionPipeline

    settings = config.with_world(world) if world else config.current()
    base = config.model_spec("teacher", settings.world).base
    extra = {"unet": unet} if unet is not None else {}
    pipe = from_pretrained(StableDiffusionPipeline, base, "base model", dtype=settings.dtype,
                           safety_checker=None, requires_safety_checker=False, **extra)
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
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.model_spec = spec
    return pipe


# ------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------


def check_int(name: str, value, low: int, high: int | None = None, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise UserError(f"{name} must be a whole number, got {value!r}{hint}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise UserError(f"{name} must be {bounds}, got {value}{hint}")
    return int(value)


def check_range(name: str, value, low: float, high: float | None = None) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(value) or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise UserError(f"{name} must be {bounds}, got {value}")
    return value


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


def seeded(seed) -> tuple[int, torch.Generator]:
    """``(seed, CPU generator)`` for a user's seed; ``-1`` draws a random seed (returned, so the
    result can be made again). A CPU generator gives the same noise on any device."""
    seed = check_int("seed", seed, -1)
    if seed == -1:
        seed = secrets.randbelow(2**31)
    return seed, torch.Generator("cpu").manual_seed(seed)


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
    if spec.scheduler == "lcm" and pipe.scheduler.__class__.__name__ == "LCMScheduler" and steps > MAX_LCM_STEPS:
        raise UserError(f"steps must be at most {MAX_LCM_STEPS} for the LCM scheduler (its grid has 50 points), got {steps}")
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
        )
    seconds = time.perf_counter() - start
    video = float_to_uint8(np.asarray(out.frames[0], dtype=np.float32))
    return Generation(video, seed, seconds, counter["n"], steps, guidance)


SAVED_SPEC = "animatelcm_spec.json"


def save_pipeline(pipe, folder: str | Path) -> Path:
    """Save a loaded text-to-video pipeline in diffusers' layout, its LCM LoRA fused in at the
    weight it was loaded with (W <- W + weight * B A). ``pipe`` keeps working, fused, afterwards.

    :func:`load_t2v` takes the folder back (``load_t2v(folder)``) with the same defaults.
    """
    import json
    from dataclasses import asdict, replace

    folder = Path(folder)
    spec: ModelSpec = pipe.model_spec
    with quiet_loading():
        if spec.lcm_lora is not None:
            pipe.fuse_lora(adapter_names=[LCM_ADAPTER], lora_scale=1.0)
            pipe.unload_lora_weights()
            spec = replace(spec, lcm_lora=None)
        pipe.save_pretrained(folder, safe_serialization=True)
    saved = replace(spec, base=config.Weights(str(folder.resolve()), revision=None, local=True))
    (folder / SAVED_SPEC).write_text(json.dumps(asdict(saved), indent=2))
    pipe.model_spec = spec
    return folder


def read_saved_spec(folder: Path) -> ModelSpec:
    import json

    data = json.loads((folder / SAVED_SPEC).read_text())
    data["base"] = config.Weights(str(folder.resolve()), revision=None, local=True)
    data["motion_adapter"] = config.Weights(**data["motion_adapter"])
    data["lcm_lora"] = None
    data["scheduler_kwargs"] = tuple(tuple(kv) for kv in data["scheduler_kwargs"])
    return ModelSpec(**data)


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
