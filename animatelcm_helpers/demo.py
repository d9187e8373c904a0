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
``Tab(...)`` to :data:`TABS`. The image-to-video tab (AnimateLCM + the I2V adapter of
``control.py``) is such an entry; it shows only where its model exists (:func:`i2v_available`).
"""

from __future__ import annotations

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

from . import config, control, loading, media, pipelines, svd, utils
from .config import UserError
from .svd import check_image
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
SVD_STEPS = (1, 8)  # AnimateLCM-SVD-xt is made for 1 to 8 steps
SVD_EXAMPLES = 4  # example images: the first frames of this many Moving Digits test videos


def bases(world: str) -> dict[str, str]:
    """{label: model name} of the world's few-step (LCM) text-to-video models, by their base.

    Full world: epiCRealism + the AnimateLCM motion module + LCM LoRA; toy world: the toy base
    + the toy AnimateLCM (models are named in ``config.MODELS``; add one there and it shows here).
    """
    out = {}
    for name, spec in config.MODELS[config.check_world(world)].items():
        if spec.lcm_lora is not None and spec.scheduler == "lcm":
            base = spec.base.repo_id.rstrip("/").split("/")[-1]
            out[f"toy {base}" if spec.base.local else base] = name
    return out


def personal_loras(world: str) -> dict[str, str]:
    """{label: name} of the personal LoRAs: in the toy world its styles (image-only LoRAs that stand
    in for personalized DreamBooth/LoRA models); the full world names none in ``config.HUB``."""
    loras = {NO_LORA: NO_LORA}
    if world == "toy":
        loras.update({s: s for s in STYLES if s != "plain"})
    return loras


def motion_loras(world: str) -> dict[str, str]:
    """{label: name} of the world's motion LoRAs (``config.MOTION_LORAS``), after "none"."""
    return {NO_LORA: NO_LORA, **{m: m for m in config.MOTION_LORAS[world]}}


def t2v_fields(world: str) -> list[Field]:
    """The text-to-video tab's controls, with the world's defaults (``config.MODELS``)."""
    spec = config.model_spec(next(iter(bases(world).values())), world)
    lim = LIMITS[world]
    example = "a seven moving left" if world == "toy" else "a boy holding a rabbit, spring, flowers"
    return [
        Field("base", "base model", "choice", next(iter(bases(world))), options=bases(world)),
        Field("personal_lora", "personal LoRA", "choice", NO_LORA, options=personal_loras(world),
              hint="toy world: the styles, image-only LoRAs" if world == "toy" else ""),
        Field("lora_alpha", "LoRA alpha", "float", 0.8, 0.0, 2.0, 0.05),
        Field("lcm_alpha", "LCM LoRA alpha", "float", float(spec.lcm_lora_weight), 0.0, 1.0, 0.05),
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


def i2v_fields(world: str) -> list[Field]:
    """The image-to-video tab's controls (AnimateLCM with the I2V adapter of ``control.py``): the
    image, a prompt for the motion, the image's strength (the adapter's conditioning scale), steps
    and a seed. Its defaults are AnimateLCM's (``config.MODELS``)."""
    spec = config.model_spec("animatelcm", world)
    return [
        Field("image", "image", "image", 0, options=svd_examples()),
        Field("prompt", "prompt", "text", "a one moving left" if world == "toy" else "a boy holding a rabbit"),
        Field("image_scale", "image strength", "float", 1.0, 0.0, 2.0, 0.05,
              hint="the I2V adapter's conditioning scale"),
        Field("steps", "steps", "int", spec.steps, *LIMITS[world].steps),
        Field("frames", "frames", "int", spec.frames, *LIMITS[world].frames),
        Field("seed", "seed", "int", -1, -1, None, hint="-1 draws a random seed"),
    ]


def i2v_available(world: str) -> bool:
    """An image-to-video tab needs an I2V model: the toy zoo's ``i2v-adapter`` (``control.py``);
    the full world names none in ``config.HUB``."""
    if world != "toy":
        return False

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
        raise UserError(f"unknown {f.label} {value!r}; choose one of: {', '.join(map(str, f.options))}")
    return f.options[value]


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
    out = {"world": world, "prompt": prompt.strip(), "negative_prompt": negative.strip()}
    out["model"] = _choice(values, fields["base"])
    out["personal_lora"] = _choice(values, fields["personal_lora"])
    out["motion_lora"] = _choice(values, fields["motion_lora"])
    for name in ("lora_alpha", "lcm_alpha", "steps", "frames", "cfg", "seed", "width", "height"):
        out[name] = _number(values, fields[name])
    for name in ("width", "height"):
        if out[name] % SIZE_MULTIPLE:
            near = min(max(round(out[name] / SIZE_MULTIPLE) * SIZE_MULTIPLE, fields[name].low), fields[name].high)
            raise UserError(f"{name} {out[name]} is not a multiple of {SIZE_MULTIPLE} (the VAE's downsampling "
                            f"factor); try {int(near)}")
    return out


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
    out = {"world": world, "image": read_image(values.get("image", 0)), "prompt": prompt.strip()}
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


_PIPES: dict[tuple, object] = {}


def t2v_pipe(model: str, world: str | None = None):
    """The text-to-video pipeline of ``model`` in ``world``, loaded once and kept for the session."""
    settings = config.with_world(world) if world else config.current()
    key = ("t2v", settings.world, settings.device, model)
    if key not in _PIPES:
        _PIPES[key] = pipelines.load_t2v(model, world=settings.world)
    return _PIPES[key]


def svd_pipe(world: str | None = None):
    """The AnimateLCM-SVD-xt pipeline of ``world`` (``svd.load_svd``), loaded once."""
    settings = config.with_world(world) if world else config.current()
    key = ("svd", settings.world, settings.device)
    if key not in _PIPES:
        _PIPES[key] = svd.load_svd(world=settings.world)
    return _PIPES[key]


def set_loras(pipe, lcm_alpha: float, personal_lora: str = NO_LORA, lora_alpha: float = 0.8,
              motion_lora: str = NO_LORA) -> dict:
    """Activate exactly the LCM LoRA at ``lcm_alpha``, the personal LoRA (a toy style) at
    ``lora_alpha`` and the motion LoRA at 1; other loaded LoRAs are set to 0.
    W = W0 + sum_k alpha_k B_k A_k. Returns {adapter: weight} of the active ones."""
    active = {}
    if pipe.model_spec.lcm_lora is not None:
        active[loading.LCM_ADAPTER] = float(lcm_alpha)
    if personal_lora != NO_LORA:
        if personal_lora not in pipe.get_list_adapters().get("unet", []):
            pipelines.add_style(pipe, personal_lora, lora_alpha)  # loads the file once
        active[personal_lora] = float(lora_alpha)
    if motion_lora != NO_LORA:
        active[pipelines.load_motion_lora(pipe, motion_lora)] = 1.0
    # every loaded LoRA gets a weight, 0 for those not asked for (so the teacher after a motion
    # LoRA is the plain teacher again); pipe.adapter_weights records them all, as use_motion_lora does
    pipelines.apply_adapter_weights(pipe, {a: active.get(a, 0.0) for a in pipe.get_list_adapters().get("unet", [])})
    return active


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
    pipe = t2v_pipe(v["model"], v["world"])
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


def i2v_pipe(world: str | None = None):
    """AnimateLCM with the I2V adapter (``control.controlnet_pipeline(control.load_controlnet("i2v"))``), once."""
    settings = config.with_world(world) if world else config.current()
    key = ("i2v", settings.world, settings.device)
    if key not in _PIPES:
        _PIPES[key] = control.controlnet_pipeline(control.load_controlnet("i2v", world=settings.world),
                                                  world=settings.world)
    return _PIPES[key]


def run_i2v(values: dict, progress: Callable[[int, int], None] | None = None) -> pipelines.Generation:
    """Animate the image with AnimateLCM and the I2V adapter (``control.image_to_video``)."""
    v = values if values.get("_checked") else validate_i2v(values, values.get("world"))
    pipe = i2v_pipe(v["world"])
    with _StepHook(pipe.unet, v["steps"], progress):
        return control.image_to_video(pipe, v["image"], v["prompt"], scale=v["image_scale"], steps=v["steps"],
                                      frames=v["frames"], seed=v["seed"])


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
