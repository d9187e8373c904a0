"""The official AnimateLCM demo's controls as an ipywidgets app, in either world.

The official demo (REFERENCES.md) has a text-to-video tab: base DreamBooth model, motion module,
an optional personal LoRA with its alpha (0.8, 0..2), the LCM LoRA alpha (0.8, 0..1), prompt,
negative prompt ("bad quality"), the LCM sampler, steps (6, 1..25), width/height (512, 256..1024),
frames (16, 12..20), CFG (1.5, 1..2) and a seed (-1 = random); the AnimateLCM-SVD-xt demo takes an
image, a motion bucket and steps (4). What a generation costs is one UNet evaluation per step,
two with classifier-free guidance (CFG > 1).

The app is three layers, so that everything but the drawing runs without a browser:

1. **Data**: the controls of each tab (:class:`Field` lists, per world: ranges, defaults, menus)
   and the list of tabs, :data:`TABS` (:class:`Tab`: title, fields, validate, run, available).
2. **Plain functions**: ``validate_*(values, world)`` turns the widgets' values (a dict) into
   checked values or raises a one-line :class:`config.UserError` that says what to do;
   ``run_*(values, progress)`` makes the video and returns a ``pipelines.Generation`` (frames,
   seed, seconds, UNet evaluations); :func:`save_result` writes it as GIF or MP4 (atomically).
3. **Widgets**: :func:`app` builds a tab per available :class:`Tab` from its fields; Generate
   validates, runs with a progress bar (driven by a hook on the UNet: one tick per evaluation
   call, i.e. per denoising step), plays the video inline as an HTML5 ``<video>`` (mediapy, H.264)
   and shows the seconds and UNet evaluations; a bad value is a message in the tab, not a traceback.

Adding a tab is data: write its fields and its ``validate``/``run`` functions and append
``Tab(...)`` to :data:`TABS`. The image-to-video tab is such an entry: in the full world the official
AnimateLCM-I2V (``i2v_official``: its checkpoint converted once, the official controls: motion
scale 0.8 (0..1.5), steps 4, CFG 1, 16 frames at 512x512), in the toy world the zoo's model
(:func:`i2v_pipe` is the one place that says which); it shows only where its model exists
(:func:`i2v_available`).

The text-to-video and image-to-video tabs take a base DreamBooth model and a personal LoRA as the
official demo does: a menu of the world's (``config.BASES``; ``config.PERSONAL_LORAS`` or the toy
styles) plus "a file on this machine" with its path (a single-file ``.safetensors`` checkpoint in the
original SD layout; a LoRA ``.safetensors`` in diffusers' or kohya's format), the LoRA at its alpha
(0.8, 0..2) beside the LCM LoRA.
"""

from __future__ import annotations

import gc
import html
import io
import re
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import ipywidgets as w
import mediapy
import numpy as np
import PIL.Image
import torch

from . import config, control, i2v, loading, media, pipelines, svd, utils
from . import i2v_official as official_i2v  # the module; i2v_official() below says which design a world has
from .checkpoint_formats import check_weights_file
from .config import UserError
from .svd import check_image
from .toy import zoo
from .toy.data import STYLES, MovingDigits, to_uint8

# ------------------------------------------------------------------------------------------
# 1. Data: the controls, per world
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One control. ``kind``: "choice" (a menu of ``options``: {label: value}), "text", "int"
    (typed in, so a bad value reaches :func:`validate_t2v` and gets its message), "float" (a slider
    from ``low`` to ``high``) or "image" (a menu of example images plus an upload)."""

    name: str
    label: str
    kind: str
    default: object
    low: float | None = None
    high: float | None = None
    step: float | None = None
    options: dict = field(default_factory=dict)
    hint: str = ""
    sets: Callable[[object, str], dict] | None = None  # a choice that sets other controls: sets(value, world)


@dataclass(frozen=True)
class Limits:
    """The text-to-video ranges of a world (the official demo's for the full world)."""

    steps: tuple[int, int]
    size: tuple[int, int]  # width and height, multiples of SIZE_MULTIPLE
    frames: tuple[int, int]
    cfg: tuple[float, float]


SIZE_MULTIPLE = 8  # SD's VAE downsamples by 8; the toy VAE by 4 (8 keeps its latents even too)
LIMITS = {
    "full": Limits(steps=(1, 25), size=(256, 1024), frames=(12, 20), cfg=(1.0, 2.0)),
    "toy": Limits(steps=(1, 25), size=(16, 64), frames=(1, 16), cfg=(1.0, 2.0)),
}
NO_LORA = "none"
FILE = "a file on this machine"  # the menus' last entry: the path comes from the text field beside it
SVD_STEPS = (1, 8)  # AnimateLCM-SVD-xt is made for 1 to 8 steps
SVD_EXAMPLES = 4  # example images: the first frames of this many Moving Digits test videos


def bases(world: str) -> dict[str, str]:
    """{label: base name} of the world's base DreamBooth models (``config.BASES``; the first is the
    AnimateLCM model's own): full world epiCRealism, Realistic Vision, DreamShaper; toy world the
    zoo's base. The menu adds "a file on this machine" (:data:`FILE`)."""
    return {("toy base" if world == "toy" else name): name for name in config.BASES[config.check_world(world)]}


def personal_loras(world: str) -> dict[str, str]:
    """{label: name} of the personal LoRAs: in the toy world its styles (image-only LoRAs that stand
    in for personalized DreamBooth/LoRA models), in the full world ``config.PERSONAL_LORAS["full"]``
    (style LoRAs for SD1.5; their trigger words in ``config.LORA_TRIGGERS``). The menu adds
    "a file on this machine" (:data:`FILE`)."""
    loras = {NO_LORA: NO_LORA}
    if world == "toy":
        loras.update({s: s for s in STYLES if s != "plain"})
    else:
        loras.update({name: name for name in config.PERSONAL_LORAS[world]})
    return loras


def _personal_fields(world: str, lcm_default: float) -> list[Field]:
    """The base and personal-LoRA controls the text-to-video and image-to-video tabs share."""
    triggers = "; ".join(f"{k}: add '{v}' to the prompt" for k, v in config.LORA_TRIGGERS.items()
                         if k in config.PERSONAL_LORAS[world])
    return [
        Field("base", "base model", "choice", next(iter(bases(world))), options={**bases(world), FILE: FILE},
              hint="a DreamBooth base; or 'a file on this machine'"),
        Field("base_file", "base file", "text", "",
              hint="for 'a file on this machine': a single-file .safetensors checkpoint (original SD layout)"),
        Field("personal_lora", "personal LoRA", "choice", NO_LORA, options={**personal_loras(world), FILE: FILE},
              hint="toy world: the styles, image-only LoRAs" if world == "toy" else triggers),
        Field("lora_file", "LoRA file", "text", "",
              hint="for 'a file on this machine': a LoRA .safetensors (diffusers' or kohya's format)"),
        Field("lora_alpha", "LoRA alpha", "float", config.PERSONAL_LORA_ALPHA, *config.PERSONAL_LORA_RANGE, 0.05),
        Field("lcm_alpha", "LCM LoRA alpha", "float", float(lcm_default), 0.0, 1.0, 0.05),
    ]


def motion_loras(world: str) -> dict[str, str]:
    """{label: name} of the world's motion LoRAs (``config.MOTION_LORAS``), after "none"."""
    return {NO_LORA: NO_LORA, **{m: m for m in config.MOTION_LORAS[world]}}


T2V_MODEL = "animatelcm"  # the text-to-video tab's default model (config.MODELS[world]["animatelcm"])


def t2v_models(world: str) -> dict[str, str]:
    """{label: model name} of the text-to-video tab's model menu: AnimateLCM, and in the full world
    its successor AnimateDiff-Lightning, one entry per distilled step count (``config.MODELS``)."""
    models = {("AnimateLCM (toy)" if world == "toy" else "AnimateLCM"): T2V_MODEL}
    if world == "full":
        models.update({f"AnimateDiff-Lightning, {n}-step model": f"lightning-{n}step" for n in config.LIGHTNING_STEPS})
    return models


def model_defaults(model: str, world: str) -> dict:
    """What choosing ``model`` in the menu sets: its steps, CFG and LCM LoRA alpha (``config.MODELS``)."""
    spec = config.model_spec(model, world)
    return {"steps": spec.steps, "cfg": float(spec.guidance), "lcm_alpha": float(spec.lcm_lora_weight)}


def t2v_fields(world: str) -> list[Field]:
    """The text-to-video tab's controls, with the world's defaults (``config.MODELS``). The model menu
    (:func:`t2v_models`) sets steps, CFG and the LCM LoRA alpha to the chosen model's (:func:`model_defaults`)."""
    spec = config.model_spec(T2V_MODEL, world)
    lim = LIMITS[world]
    example = "a seven moving left" if world == "toy" else "a boy holding a rabbit, spring, flowers"
    return [
        Field("model", "model", "choice", next(iter(t2v_models(world))), options=t2v_models(world),
              hint="Lightning: a motion adapter per step count, Euler, no CFG, no LCM LoRA (notebook 09)",
              sets=model_defaults),
        *_personal_fields(world, spec.lcm_lora_weight),
        Field("motion_lora", "motion LoRA", "choice", NO_LORA, options=motion_loras(world),
              hint="steers the motion (weight 1); the prompt alone does not pick it"),
        Field("prompt", "prompt", "text", example),
        Field("negative_prompt", "negative prompt", "text", "bad quality"),
        Field("steps", "steps", "int", spec.steps, *lim.steps),
        Field("width", "width", "int", spec.width, *lim.size, hint=f"a multiple of {SIZE_MULTIPLE}"),
        Field("height", "height", "int", spec.height, *lim.size, hint=f"a multiple of {SIZE_MULTIPLE}"),
        Field("frames", "frames", "int", spec.frames, *lim.frames),
        Field("cfg", "CFG", "float", float(spec.guidance), *lim.cfg, 0.1,
              hint="above 1: classifier-free guidance, 2 UNet evaluations a step"),
        Field("seed", "seed", "int", -1, -1, None, hint="-1 draws a random seed"),
    ]


# The official AnimateLCM-SVD-xt app's sliders (animatelcm_svd/app.py) for the full world; the toy SVD's sizes.
SVD_LIMITS = {
    "full": {"width": (576, 2048), "height": (320, 1152), "frames": (1, 25)},
    "toy": {"width": (16, 64), "height": (16, 64), "frames": (1, 8)},
}


def svd_fields(world: str) -> list[Field]:
    """The SVD-xt tab's controls, the official app's: the image, the motion bucket (80, 1..255), the
    saved video's fps (8, 5..30; the UNet itself is conditioned on ``config.SVD_FPS``), the guidance
    ramp's max and min (1.2 and 1.0), steps (4), frames, width and height (1024 x 576), the frames
    decoded at a time (4), a seed."""
    DEMO = config.SVD_DEMO
    lim = SVD_LIMITS[world]
    frames, height, width = config.SVD_SIZES[world]
    return [
        Field("image", "image", "image", 0, options=svd_examples()),
        Field("motion_bucket_id", "motion bucket", "int", DEMO["motion_bucket_id"], 1, 255, hint="more = more motion"),
        Field("video_fps", "frames per second", "int", DEMO["video_fps"], 5, 30,
              hint=f"of the saved video; the UNet is conditioned on fps {config.SVD_FPS[world]} (the official app's)"),
        Field("max_guidance", "max guidance", "float", DEMO["max_guidance"], 1.0, 2.0, 0.05,
              hint="above 1: classifier-free guidance, 2 UNet evaluations a step"),
        Field("min_guidance", "min guidance", "float", DEMO["min_guidance"], 1.0, 1.5, 0.05,
              hint="the first frame's guidance; it ramps to the max over the frames"),
        Field("steps", "steps", "int", DEMO["steps"], *SVD_STEPS),
        Field("frames", "frames", "int", frames, *lim["frames"]),
        Field("width", "width", "int", width, *lim["width"], hint=f"a multiple of {SIZE_MULTIPLE}"),
        Field("height", "height", "int", height, *lim["height"], hint=f"a multiple of {SIZE_MULTIPLE}"),
        Field("decode_chunk_size", "frames decoded at a time", "int", DEMO["decode_chunk_size"], 1, frames,
              hint="fewer uses less GPU memory"),
        Field("seed", "seed", "int", -1, -1, None, hint="-1 draws a random seed"),
    ]


def i2v_official(world: str) -> bool:
    """Whether ``world``'s image-to-video model is the official AnimateLCM-I2V design (an image
    encoder on the image latent, ``i2v.py``): always in the full world; in the toy world once the
    zoo has its image encoder (``<zoo>/i2v-encoder``), else the toy keyframe ControlNet (``control.py``)."""
    if world == "full":
        return True
    return (zoo.root() / i2v.TOY_ENCODER_FOLDER / "config.json").is_file()


def i2v_fields(world: str) -> list[Field]:
    """The image-to-video tab's controls. The official design (:func:`i2v_official`): the official
    demo's (app-i2v.py): image, base model and personal LoRA (+ alpha), the LCM LoRA alpha (0.8),
    prompt ("best quality"), negative prompt ("bad quality"), motion scale (0.8, 0..1.5), steps (4),
    CFG (1, 1..2), frames (16), width and height (512), seed. The toy keyframe ControlNet: the image,
    a prompt for the motion, the image's strength (the adapter's conditioning scale), steps, frames
    and a seed, with AnimateLCM's defaults (``config.MODELS``), and the base and LoRA menus."""
    spec = config.model_spec("animatelcm", world)
    lim = LIMITS[world]
    if not i2v_official(world):
        return [
            Field("image", "image", "image", 0, options=svd_examples()),
            *_personal_fields(world, spec.lcm_lora_weight),
            Field("prompt", "prompt", "text", "a one moving left" if world == "toy" else "a boy holding a rabbit"),
            Field("image_scale", "image strength", "float", 1.0, 0.0, 2.0, 0.05,
                  hint="the I2V adapter's conditioning scale"),
            Field("steps", "steps", "int", spec.steps, *lim.steps),
            Field("frames", "frames", "int", spec.frames, *lim.frames),
            Field("seed", "seed", "int", -1, -1, None, hint="-1 draws a random seed"),
        ]
    full = world == "full"
    lcm_alpha = i2v.LCM_LORA_WEIGHT if full else spec.lcm_lora_weight
    frames, width, height = (i2v.FRAMES, i2v.WIDTH, i2v.HEIGHT) if full else (spec.frames, spec.width, spec.height)
    return [
        Field("image", "image", "image", 0, options=svd_examples()),
        *_personal_fields(world, lcm_alpha),
        Field("prompt", "prompt", "text", i2v.PROMPT if full else "a one moving left"),
        Field("negative_prompt", "negative prompt", "text", i2v.NEGATIVE_PROMPT, hint="used when CFG > 1"),
        Field("motion_scale", "motion scale", "float", i2v.MOTION_SCALE, 0.0, 1.5, 0.05,
              hint="the image encoder's per-frame embedding (official 0.8); RESULTS.md measures 0, 0.8 and 1.5"),
        Field("steps", "steps", "int", i2v.STEPS, *lim.steps),
        Field("cfg", "CFG", "float", i2v.GUIDANCE, *lim.cfg, 0.1,
              hint="above 1: classifier-free guidance, 2 UNet evaluations a step"),
        Field("frames", "frames", "int", frames, *lim.frames),
        Field("width", "width", "int", width, *lim.size, hint=f"a multiple of {SIZE_MULTIPLE}"),
        Field("height", "height", "int", height, *lim.size, hint=f"a multiple of {SIZE_MULTIPLE}"),
        Field("seed", "seed", "int", -1, -1, None, hint="-1 draws a random seed"),
    ]


def i2v_available(world: str) -> bool:
    """An image-to-video tab needs an I2V model: the official AnimateLCM-I2V in the full world
    (``config.HUB["animatelcm_i2v"]``), the toy zoo's image encoder or its keyframe ``i2v-adapter``."""
    if world == "full" or i2v_official(world):
        return True
    return (control.zoo_folder("i2v") / "config.json").is_file()


def svd_examples() -> dict[str, int]:
    """{caption: index} of the example images: first frames of Moving Digits test videos."""
    return {f"example: {caption} (first frame)": i for i, (caption, _) in enumerate(_examples())}


def example_image(index: int) -> np.ndarray:
    """The first frame of Moving Digits test video ``index`` as (32, 32, 3) uint8."""
    return _examples()[index][1].copy()


@lru_cache(maxsize=1)
def _examples() -> tuple:
    data = MovingDigits("test", num_frames=8)
    items = [data[i] for i in range(SVD_EXAMPLES)]
    return tuple((item["caption"], to_uint8(item["pixel_values"])[0]) for item in items)


def defaults(fields: list[Field]) -> dict:
    """The fields' default values, as a dict :func:`validate_t2v` / :func:`validate_svd` take."""
    return {f.name: f.default for f in fields}


# ------------------------------------------------------------------------------------------
# 2. Plain functions: validate and run (no widgets, no browser)
# ------------------------------------------------------------------------------------------


def _number(values: dict, f: Field):
    """The value of field ``f``, checked against its range (whole numbers for "int")."""
    value = values.get(f.name, f.default)
    bounds = f" ({f.hint})" if f.hint else ""
    if f.kind == "int":
        return utils.check_int(f.label, value, int(f.low), None if f.high is None else int(f.high), bounds)
    return utils.check_range(f.label, value, f.low, f.high)


def _choice(values: dict, f: Field):
    value = values.get(f.name, f.default)
    if value not in f.options:
        named = [str(o) for o in f.options if o != FILE]  # the file entry needs its path field: not listed here
        raise UserError(f"unknown {f.label} {value!r}; choose one of: {', '.join(named)}")
    return f.options[value]


def _file(values: dict, f: Field, what: str) -> str:
    """The path typed into ``f`` for the 'a file on this machine' entry, checked: a readable
    ``.safetensors`` file (a pickle, a missing file or a broken one is a one-line message)."""
    text = values.get(f.name) or ""
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"'{FILE}' is chosen for the {what}: type the path of a .safetensors file into '{f.label}'")
    return str(check_weights_file(text.strip(), what))


def _personal_values(values: dict, fields: dict, world: str) -> dict:
    """The base (None: the model's own), the personal LoRA (a name, a path or ``NO_LORA``) and the alphas."""
    base = _choice(values, fields["base"])
    base = _file(values, fields["base_file"], "base model") if base == FILE else base
    lora = _choice(values, fields["personal_lora"])
    lora = _file(values, fields["lora_file"], "LoRA") if lora == FILE else lora
    default = next(iter(config.BASES[world]))
    return {"base": None if base == default else base, "personal_lora": lora,
            "lora_alpha": _number(values, fields["lora_alpha"]), "lcm_alpha": _number(values, fields["lcm_alpha"])}


def validate_t2v(values: dict, world: str | None = None) -> dict:
    """The text-to-video tab's values, checked: a dict ready for :func:`run_t2v`.

    Raises a one-line ``UserError`` naming the control and what to do: an empty prompt, steps,
    frames, CFG or alphas outside the world's range (``LIMITS``), a width or height that is not a
    multiple of 8 (the VAE's factor; the message suggests the nearest that is), a seed below -1.
    """
    world = world or config.current().world
    fields = {f.name: f for f in t2v_fields(world)}
    prompt = values.get("prompt", "")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("the prompt is empty: describe the video, e.g. "
                        + repr(fields["prompt"].default))
    negative = values.get("negative_prompt") or ""
    if not isinstance(negative, str):
        raise UserError(f"the negative prompt must be text, got {negative!r}")
    # "_checked": run_t2v takes this dict as it is (its base and LoRA are already paths or names, not menu labels)
    out = {"world": world, "prompt": prompt.strip(), "negative_prompt": negative.strip(),
           "model": _choice(values, fields["model"]), "_checked": True}
    out.update(_personal_values(values, fields, world))
    out["motion_lora"] = _choice(values, fields["motion_lora"])
    for name in ("steps", "frames", "cfg", "seed", "width", "height"):
        out[name] = _number(values, fields[name])
    _check_size(out, fields)
    return out


def _check_size(out: dict, fields: dict) -> None:
    for name in ("width", "height"):
        if out[name] % SIZE_MULTIPLE:
            near = min(max(round(out[name] / SIZE_MULTIPLE) * SIZE_MULTIPLE, fields[name].low), fields[name].high)
            raise UserError(f"{name} {out[name]} is not a multiple of {SIZE_MULTIPLE} (the VAE's downsampling "
                            f"factor); try {int(near)}")


def validate_svd(values: dict, world: str | None = None) -> dict:
    """The SVD-xt tab's values, checked: a dict ready for :func:`run_svd`.

    ``values["image"]`` is an example's index (see :func:`svd_examples`), the bytes of an uploaded
    PNG/JPEG, a PIL image or an (H, W, 3) uint8 array; an unreadable file is a ``UserError``.
    """
    world = world or config.current().world
    fields = {f.name: f for f in svd_fields(world)}
    out = {"world": world, "image": read_image(values.get("image", 0))}
    for name, f in fields.items():
        if f.kind in ("int", "float"):
            out[name] = _number(values, f)
    if out["min_guidance"] > out["max_guidance"]:
        raise UserError(f"min guidance {out['min_guidance']} is above max guidance {out['max_guidance']}: "
                        "the guidance ramps from the min (first frame) up to the max (last frame)")
    for name in ("width", "height"):
        if out[name] % SIZE_MULTIPLE:
            near = min(max(round(out[name] / SIZE_MULTIPLE) * SIZE_MULTIPLE, fields[name].low), fields[name].high)
            raise UserError(f"{name} {out[name]} is not a multiple of {SIZE_MULTIPLE} (the VAE's downsampling "
                            f"factor); try {int(near)}")
    return out


def validate_i2v(values: dict, world: str | None = None) -> dict:
    """The image-to-video tab's values, checked: a dict ready for :func:`run_i2v`."""
    world = world or config.current().world
    fields = {f.name: f for f in i2v_fields(world)}
    prompt = values.get("prompt", "")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("the prompt is empty: say how the image should move, e.g. " + repr(fields["prompt"].default))
    out = {"world": world, "image": read_image(values.get("image", 0)), "prompt": prompt.strip(),
           "official": i2v_official(world), "_checked": True}
    out.update(_personal_values(values, fields, world))
    if out["official"]:
        negative = values.get("negative_prompt") or ""
        if not isinstance(negative, str):
            raise UserError(f"the negative prompt must be text, got {negative!r}")
        out["negative_prompt"] = negative.strip()
        for name in ("motion_scale", "steps", "cfg", "frames", "width", "height", "seed"):
            out[name] = _number(values, fields[name])
        _check_size(out, fields)
    else:
        for name in ("image_scale", "steps", "frames", "seed"):
            out[name] = _number(values, fields[name])
    return out


def read_image(image) -> np.ndarray:
    """An image for SVD as (H, W, 3) uint8: an example's index, uploaded bytes, PIL or an array."""
    if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
        if not 0 <= image < SVD_EXAMPLES:
            raise UserError(f"there are {SVD_EXAMPLES} example images (0 to {SVD_EXAMPLES - 1}), got {image}")
        return example_image(int(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        if not len(image):
            raise UserError("the uploaded file is empty: upload a PNG or JPEG image")
        try:
            with PIL.Image.open(io.BytesIO(bytes(image))) as im:
                image = im.convert("RGB")
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as err:
            raise UserError(f"could not read the uploaded file as an image ({type(err).__name__}); "
                            "upload a PNG or JPEG image") from None
    return np.asarray(check_image(image))


_PIPES: dict[tuple, tuple] = {}


def _cached(kind: tuple, which: tuple, build: Callable[[], object]):
    """One pipeline per ``kind`` (tab, world, device) for the session: reused while ``which`` (the
    model, the base) stays the same, replaced (the old one freed) when it changes, so switching the
    base menu does not keep every base in memory."""
    held = _PIPES.get(kind)
    if held is not None and held[0] == which:
        return held[1]
    _PIPES.pop(kind, None)
    if held is not None:
        del held
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    pipe = build()
    _PIPES[kind] = (which, pipe)
    return pipe


def t2v_pipe(model: str, world: str | None = None, base=None):
    """The text-to-video pipeline of ``model`` in ``world`` on ``base`` (None: the model's own; a
    name of ``config.BASES``, a Hub id or a single-file checkpoint: ``pipelines.load_t2v``), loaded
    once and kept for the session."""
    settings = config.with_world(world) if world else config.current()
    return _cached(("t2v", settings.world, settings.device), (model, base),
                   lambda: pipelines.load_t2v(model, world=settings.world, base=base))


def svd_pipe(world: str | None = None):
    """The AnimateLCM-SVD-xt pipeline of ``world`` (``svd.load_svd``), loaded once."""
    settings = config.with_world(world) if world else config.current()
    return _cached(("svd", settings.world, settings.device), (), lambda: svd.load_svd(world=settings.world))


def set_loras(pipe, lcm_alpha: float, personal_lora: str = NO_LORA, lora_alpha: float = 0.8,
              motion_lora: str = NO_LORA) -> dict:
    """Activate exactly the LCM LoRA at ``lcm_alpha``, the personal LoRA at ``lora_alpha`` (a toy
    style, a name of ``config.PERSONAL_LORAS``, or a LoRA file: ``pipelines.add_lora``, loaded once)
    and the motion LoRA at 1; other loaded LoRAs are set to 0.
    W = W0 + sum_k alpha_k B_k A_k. Returns {adapter: weight} of the active ones."""
    active = {}
    if pipe.model_spec.lcm_lora is not None or loading.LCM_ADAPTER in _adapters(pipe):
        active[loading.LCM_ADAPTER] = float(lcm_alpha)
    if personal_lora != NO_LORA:
        active[pipelines.add_lora(pipe, personal_lora, lora_alpha)] = float(lora_alpha)  # loads the file once
    if motion_lora != NO_LORA:
        active[pipelines.load_motion_lora(pipe, motion_lora)] = 1.0
    # every loaded LoRA gets a weight, 0 for those not asked for (so the teacher after a motion
    # LoRA is the plain teacher again); pipe.adapter_weights records them all, as use_motion_lora does
    pipelines.apply_adapter_weights(pipe, {a: active.get(a, 0.0) for a in _adapters(pipe)})
    return active


def _adapters(pipe) -> list[str]:
    """Every LoRA adapter loaded into ``pipe`` (UNet first, then text-encoder-only ones)."""
    names = []
    for component in pipe.get_list_adapters().values():
        names += [a for a in component if a not in names]
    return names


class _StepHook:
    """Calls ``progress(done, total)`` before each UNet evaluation call (one per denoising step: a
    guided step evaluates both halves in one batched call); a context manager on ``pipe.unet``."""

    def __init__(self, unet, total: int, progress: Callable[[int, int], None] | None):
        self.unet, self.total, self.progress, self.done = unet, total, progress, 0

    def __enter__(self):
        def hook(module, args, kwargs):
            self.done += 1
            if self.progress:
                self.progress(self.done, self.total)

        self.handle = self.unet.register_forward_pre_hook(hook, with_kwargs=True)
        if self.progress:
            self.progress(0, self.total)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def run_t2v(values: dict, progress: Callable[[int, int], None] | None = None) -> pipelines.Generation:
    """Make the video the text-to-video tab asks for. ``values``: the raw controls (they are
    validated here too) or :func:`validate_t2v`'s output. ``progress(done, total)`` is called per step.

    The same as ``pipelines.generate`` on ``load_t2v(model)`` with the LoRAs set by :func:`set_loras`.
    """
    v = values if values.get("_checked") else {**validate_t2v(values, values.get("world")), "_checked": True}
    pipe = t2v_pipe(v["model"], v["world"], v.get("base"))
    max_frames = pipelines.max_frames(pipe)
    if v["frames"] > max_frames:
        raise UserError(f"frames must be at most {max_frames} for this motion module, got {v['frames']}")
    set_loras(pipe, v["lcm_alpha"], v["personal_lora"], v["lora_alpha"], v.get("motion_lora", NO_LORA))
    with _StepHook(pipe.unet, v["steps"], progress):
        return pipelines.generate(
            pipe, v["prompt"], steps=v["steps"], guidance=v["cfg"], frames=v["frames"], height=v["height"],
            width=v["width"], seed=v["seed"], negative_prompt=v["negative_prompt"] or None,
        )


def run_svd(values: dict, progress: Callable[[int, int], None] | None = None) -> pipelines.Generation:
    """Animate the SVD-xt tab's image with AnimateLCM-SVD-xt (``svd.generate_svd``, the official
    demo's guidance ramp 1.0 -> 1.2, so 2 UNet evaluations a step). ``result.note`` says what model
    ran (in the toy world: random-initialised unless the zoo has a trained toy SVD)."""
    v = values if values.get("_checked") else validate_svd(values, values.get("world"))
    pipe = svd_pipe(v["world"])
    with _StepHook(pipe.unet, v["steps"], progress):
        result = svd.generate_svd(pipe, v["image"], steps=v["steps"], frames=v["frames"], height=v["height"],
                                  width=v["width"], min_guidance=v["min_guidance"], max_guidance=v["max_guidance"],
                                  motion_bucket_id=v["motion_bucket_id"], decode_chunk_size=v["decode_chunk_size"],
                                  seed=v["seed"])
    result.note, result.fps = pipe.svd_note, v["video_fps"]
    return result


def i2v_pipe(world: str | None = None, base=None):
    """THE image-to-video pipeline of ``world`` (the one place that says which), loaded once:

    * full world: the official AnimateLCM-I2V (``i2v_official.pipeline``: the checkpoint converted
      once, its LCM LoRA, on ``base``);
    * toy world, the official design once the zoo has its image encoder (:func:`i2v_official`):
      ``i2v.image_to_video_pipeline("toy")`` (the toy base only);
    * toy world otherwise: AnimateLCM with the zoo's keyframe I2V ControlNet
      (``control.controlnet_pipeline(control.load_controlnet("i2v"))``), on ``base``.
    """
    settings = config.with_world(world) if world else config.current()
    official = i2v_official(settings.world)
    if settings.world == "full":
        build = lambda: official_i2v.pipeline(base=base, device=settings.device)  # noqa: E731
    elif official:
        if base is not None:
            raise UserError("the toy image-to-video model runs on the toy base only: choose 'toy base'")
        build = lambda: i2v.image_to_video_pipeline("toy", settings.device)  # noqa: E731
    else:
        def build():
            t2v = pipelines.load_t2v("animatelcm", world=settings.world, base=base)
            net = control.load_controlnet("i2v", world=settings.world)
            return control.controlnet_pipeline(net, world=settings.world, pipe=t2v)
    return _cached(("i2v", settings.world, settings.device), (official, base), build)


def run_i2v(values: dict, progress: Callable[[int, int], None] | None = None) -> pipelines.Generation:
    """Animate the image: with the official design, ``i2v.generate_i2v`` (the image latent through
    the image encoder, motion scale, the official sampler); with the toy keyframe ControlNet,
    ``control.image_to_video``. The base and personal LoRA as in :func:`run_t2v`."""
    v = values if values.get("_checked") else validate_i2v(values, values.get("world"))
    pipe = i2v_pipe(v["world"], v.get("base"))
    set_loras(pipe, v.get("lcm_alpha", 1.0), v.get("personal_lora", NO_LORA), v.get("lora_alpha", 0.8))
    with _StepHook(pipe.unet, v["steps"], progress):
        if not hasattr(pipe, "i2v_encoder"):
            return control.image_to_video(pipe, v["image"], v["prompt"], scale=v["image_scale"], steps=v["steps"],
                                          frames=v["frames"], seed=v["seed"])
        with pipelines.count_unet_evaluations(pipe.unet) as counter:
            out = i2v.generate_i2v(pipe, v["image"], v["prompt"], motion_scale=v["motion_scale"], steps=v["steps"],
                                   guidance=v["cfg"], frames=v["frames"], seed=v["seed"],
                                   negative_prompt=v["negative_prompt"] or None, height=v["height"], width=v["width"])
    return pipelines.Generation(out.frames, out.seed, out.seconds, counter["n"], v["steps"], v["cfg"])


def describe(result: pipelines.Generation) -> str:
    """One line: frames, size, steps, UNet evaluations, seconds and the seed (to make it again)."""
    f, h, w, _ = result.frames.shape
    return (f"{f} frames at {w}x{h}, {result.steps} steps, {result.unet_evaluations} UNet evaluations, "
            f"{result.seconds:.2f} s, seed {result.seed}")


def save_result(result: pipelines.Generation, folder: str | Path, stem: str, suffix: str, fps: int = 8) -> Path:
    """Write ``result`` as ``folder/stem_seed<seed>.gif`` or ``.mp4`` (atomically, ``media.save_video``)."""
    if suffix not in (".gif", ".mp4"):
        raise UserError(f"save as .gif or .mp4, got {suffix!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")[:60] or "video"
    return media.save_video(result.frames, folder / f"{slug}_seed{result.seed}{suffix}", fps=fps)


def video_html(frames, fps: int = 8, width: int = 256) -> str:
    """An HTML5 ``<video>`` (H.264 MP4 inline, mediapy) of ``frames``, upscaled to about ``width`` px."""
    arr = media.as_video(frames)
    scale = max(1, width // max(arr.shape[1:3]))
    big = media.upscale(arr, scale)
    if big.shape[1] % 2 or big.shape[2] % 2:  # H.264 wants even sizes
        big = np.pad(big, ((0, 0), (0, big.shape[1] % 2), (0, big.shape[2] % 2), (0, 0)))
    media.use_bundled_ffmpeg()
    data = mediapy.compress_video(big, codec="h264", fps=fps)
    return mediapy.html_from_compressed_video(data, big.shape[2], big.shape[1])


# ------------------------------------------------------------------------------------------
# 3. The tabs and the widgets
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tab:
    """A tab of the app: its controls (per world), how to check them and how to make the video.
    ``available(world)`` says whether the tab is shown (e.g. only where its model exists)."""

    title: str
    fields: Callable[[str], list[Field]]
    validate: Callable[[dict, str], dict]
    run: Callable[[dict, Callable | None], pipelines.Generation]
    available: Callable[[str], bool] = lambda world: True
    stem: Callable[[dict], str] = lambda values: "video"


TABS: list[Tab] = [
    Tab("Text-to-video", t2v_fields, validate_t2v, run_t2v, stem=lambda v: v["prompt"]),
    Tab("Image-to-video", i2v_fields, validate_i2v, run_i2v, available=i2v_available, stem=lambda v: v["prompt"]),
    Tab("SVD-xt", svd_fields, validate_svd, run_svd, stem=lambda v: "svd"),
    # One entry per tab: a new model's tab is its fields, validate and run functions and one line here.
]


def available_tabs(world: str | None = None) -> list[Tab]:
    """The tabs of :data:`TABS` whose models exist in ``world``."""
    world = world or config.current().world
    return [tab for tab in TABS if tab.available(world)]


def _widget(f: Field):
    style = {"description_width": "120px"}
    layout = w.Layout(width="420px")
    tip = f"{f.label}" + (f" ({f.hint})" if f.hint else "")
    if f.kind == "choice":
        return w.Dropdown(options=list(f.options), value=f.default, description=f.label, style=style,
                          layout=layout, tooltip=tip)
    if f.kind == "text":
        return w.Text(value=f.default, description=f.label, style=style, layout=w.Layout(width="600px"))
    if f.kind == "float":
        return w.FloatSlider(value=f.default, min=f.low, max=f.high, step=f.step, description=f.label,
                             style=style, layout=layout, readout_format=".2f")
    if f.kind == "int":
        rng = f"{int(f.low)}..{int(f.high)}" if f.high is not None else f">= {int(f.low)}"
        return w.IntText(value=f.default, description=f"{f.label} ({rng})", style=style, layout=layout)
    if f.kind == "image":
        menu = w.Dropdown(options=[*f.options, "uploaded file"], value=next(iter(f.options)), description=f.label,
                          style=style, layout=w.Layout(width="600px"))
        upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
        box = w.HBox([menu, upload])
        box.menu, box.upload = menu, upload
        return box
    raise ValueError(f"unknown field kind {f.kind!r}")


def _value(f: Field, widget):
    if f.kind != "image":
        return widget.value
    if widget.menu.value != "uploaded file":
        return f.options[widget.menu.value]
    files = widget.upload.value
    if not files:
        raise UserError("no file uploaded: click 'upload' and choose a PNG or JPEG, or pick an example image")
    content = files[0]["content"] if isinstance(files, (tuple, list)) else next(iter(files.values()))["content"]
    return bytes(content)


def tab_widget(tab: Tab, world: str | None = None, out_dir: str | Path = "outputs/demo"):
    """One tab: its controls, Generate, a progress bar, a status line, the video and Save buttons.

    Returns the box; ``box.controls`` ({name: widget}), ``box.generate`` (the button),
    ``box.status`` and ``box.video`` (HTML widgets), ``box.progress``, ``box.save_gif`` /
    ``box.save_mp4``, ``box.result`` (the last ``Generation``), ``box.message`` / ``box.error`` (the
    status line as text, and whether it is an error) and ``box.run()`` (what Generate does) are there
    for tests and notebooks.
    """
    world = world or config.current().world
    fields = tab.fields(world)
    controls = {f.name: _widget(f) for f in fields}
    generate = w.Button(description="Generate", button_style="primary", icon="play")
    progress = w.IntProgress(value=0, min=0, max=1, description="steps", layout=w.Layout(width="420px"))
    status = w.HTML(value="")
    video = w.HTML(value="")
    save_gif = w.Button(description="Save GIF", disabled=True, icon="download")
    save_mp4 = w.Button(description="Save MP4", disabled=True, icon="download")
    box = w.VBox([*controls.values(), w.HBox([generate, progress]), status, video, w.HBox([save_gif, save_mp4])])
    box.add_class("animatelcm-demo-tab")
    box.controls, box.generate, box.progress, box.status, box.video = controls, generate, progress, status, video
    box.save_gif, box.save_mp4, box.result, box.checked, box.traceback = save_gif, save_mp4, None, None, None
    box.message, box.error = "", False

    def message(text: str, error: bool = False):
        box.message, box.error = text, error
        colour = "#b00020" if error else "#1b5e20"
        status.value = f'<span class="animatelcm-demo-{"error" if error else "ok"}" style="color:{colour}">' \
                       f"{html.escape(text)}</span>"

    def on_progress(done: int, total: int):
        progress.max, progress.value = max(total, 1), min(done, total)

    def on_generate(_=None):
        generate.disabled = True
        try:
            values = {f.name: _value(f, controls[f.name]) for f in fields}
            checked = {**tab.validate(values, world), "_checked": True}
            message("working ...")
            result = tab.run(checked, on_progress)
            video.value = video_html(result.frames, fps=getattr(result, "fps", 8))
            note = getattr(result, "note", "")
            message(describe(result) + (f". {note}" if note else ""))
            box.result, box.checked = result, checked
            save_gif.disabled = save_mp4.disabled = False
        except UserError as err:
            message(f"{err}", error=True)
        except Exception as err:  # a bug, not a bad value: one line here, the traceback kept in box.traceback
            box.traceback = traceback.format_exc()
            message(f"unexpected {type(err).__name__}: {err} (a bug: please report it; the traceback is in the tab's .traceback)", error=True)
        finally:
            generate.disabled = False

    def on_save(suffix: str):
        try:
            path = save_result(box.result, out_dir, tab.stem(box.checked), suffix, fps=getattr(box.result, "fps", 8))
            message(f"{describe(box.result)}. Saved {path}")
        except UserError as err:
            message(f"{err}", error=True)

    for f in fields:  # a menu that sets other controls (the model menu: its steps and CFG)
        if f.sets is not None:
            def follow(change, f=f):
                for name, value in f.sets(f.options[change["new"]], world).items():
                    if name in controls:
                        controls[name].value = value
            controls[f.name].observe(follow, names="value")

    generate.on_click(on_generate)
    save_gif.on_click(lambda _: on_save(".gif"))
    save_mp4.on_click(lambda _: on_save(".mp4"))
    box.run = on_generate
    return box


def app(world: str | None = None, out_dir: str | Path = "outputs/demo"):
    """The demo: a ``Tab`` widget with one tab per available :data:`TABS` entry. Display it in a
    notebook (``demo.app()`` as a cell's last line). ``app.tabs`` maps titles to the tab boxes."""
    world = world or config.current().world
    tabs = {tab.title: tab_widget(tab, world, out_dir) for tab in available_tabs(world)}
    top = w.Tab(children=list(tabs.values()))
    for i, title in enumerate(tabs):
        top.set_title(i, title)
    top.add_class("animatelcm-demo")
    top.tabs = tabs
    return top
