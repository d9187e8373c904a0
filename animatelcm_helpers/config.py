"""Settings in one place: which world, which device and dtype, test mode, and every Hub id.

Two worlds run the same code:

* ``full``: the real models from the Hugging Face Hub on a GPU;
* ``toy``: "Moving Digits", tiny models of the same diffusers classes, offline on any CPU.

The world is chosen, in this order, by an explicit argument (a notebook's ``parameters``
cell), the environment variable ``ANIMATELCM_WORLD`` (``toy`` or ``full``), and otherwise
automatically: ``full`` only when a CUDA GPU is present *and* the Hub answers, else ``toy``.

Test mode (``ANIMATELCM_TEST_MODE=1`` or ``setup(test_mode=True)``) shortens training loops so
that every notebook runs in CI in a couple of minutes; it never changes how a model samples.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants

WORLDS = ("toy", "full")
WORLD_ENV = "ANIMATELCM_WORLD"
TEST_MODE_ENV = "ANIMATELCM_TEST_MODE"
DEVICE_ENV = "ANIMATELCM_DEVICE"
CACHE_ENV = "ANIMATELCM_CACHE"

# Where the course's repository lives: the notebooks' Colab badges and install cells point here.
REPO_URL = "https://github.com/animatelcm-runnable/animatelcm-runnable"
REPO_BRANCH = "main"


class UserError(ValueError):
    """A mistake in what the user asked for. The message says what is wrong and what to do.

    The command line and the demo print it as one line, never as a traceback.
    """


# --------------------------------------------------------------------------------------------
# Hub ids: the ONLY place the course names a model on the Hub. A moved or deleted model is a
# one-line fix here. ``revision`` is a branch, tag or commit; pin a commit hash for a result you
# must reproduce exactly. These say "main": they were written without Hub access, and a wrong
# pinned hash would break that model for every user; the commits seen on the Hub's pages are in
# ``hub_files.json`` ("seen_commit") for the first session with Hub access to check and pin.
# The files each entry reads (and their sizes) are listed in ``hub_files.json``, which
# ``python -m animatelcm_helpers download`` and the tests' fake Hub both read.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """Where a component's weights live: a Hub repository (full world) or a folder (toy world).

    ``repo_id`` is ``owner/name`` on the Hub, or a path relative to the toy zoo's root (or an
    absolute folder). ``weight_name`` names a single file (a LoRA, a UNet state dict);
    ``variant`` picks diffusers' ``<name>.<variant>.safetensors`` files ("fp16": half the download).
    """

    repo_id: str
    revision: str | None = "main"
    subfolder: str | None = None
    weight_name: str | None = None
    local: bool = False
    variant: str | None = None

    def describe(self) -> str:
        if self.local:
            return f"toy zoo folder '{self.repo_id}'"
        where = self.repo_id + (f"/{self.subfolder}" if self.subfolder else "")
        name = f" ({self.weight_name})" if self.weight_name else ""
        return f"{where}@{self.revision}{name}"


# AnimateDiff's motion-LoRA repositories hold one file; naming it lets diffusers load it from the cache
# (offline, diffusers cannot guess a LoRA's file name: "you must specify a weight_name").
MOTION_LORA_FILE = "diffusion_pytorch_model.safetensors"

HUB: dict[str, Weights] = {
    # Stable Diffusion 1.5 bases (the personalized "DreamBooth" bases of the demo).
    "epicrealism": Weights("emilianJR/epiCRealism"),
    "sd15": Weights("stable-diffusion-v1-5/stable-diffusion-v1-5"),
    # AnimateLCM (the paper's models): motion adapter + its spatial LCM LoRA, at the repo's root.
    "animatelcm_motion_adapter": Weights("wangfuyun/AnimateLCM", variant="fp16"),
    "animatelcm_lcm_lora": Weights(
        "wangfuyun/AnimateLCM", weight_name="AnimateLCM_sd15_t2v_lora.safetensors"
    ),
    # The teacher's motion module (AnimateDiff v1.5.2).
    "animatediff_motion_adapter": Weights("guoyww/animatediff-motion-adapter-v1-5-2"),
    # Image-to-video models.
    "svd_xt": Weights("stabilityai/stable-video-diffusion-img2vid-xt", variant="fp16"),
    "animatelcm_svd_xt": Weights(
        "wangfuyun/AnimateLCM-SVD-xt", weight_name="AnimateLCM-SVD-xt-1.1.safetensors"
    ),
    # SD1.5 ControlNets (v1.1).
    "controlnet_canny": Weights("lllyasviel/control_v11p_sd15_canny", variant="fp16"),
    "controlnet_openpose": Weights("lllyasviel/control_v11p_sd15_openpose", variant="fp16"),
    "controlnet_depth": Weights("lllyasviel/control_v11f1p_sd15_depth", variant="fp16"),
    "controlnet_lineart": Weights("lllyasviel/control_v11p_sd15_lineart", variant="fp16"),
    # controlnet-aux's detector weights (OpenPose, MiDaS depth, HED); Canny/line art/shuffle need none.
    "annotators": Weights("lllyasviel/Annotators"),
    # AnimateDiff's motion LoRAs (camera moves, on the v1.5.2 motion modules; AnimateLCM takes them too).
    "motion_lora_pan_left": Weights("guoyww/animatediff-motion-lora-pan-left", weight_name=MOTION_LORA_FILE),
    "motion_lora_pan_right": Weights("guoyww/animatediff-motion-lora-pan-right", weight_name=MOTION_LORA_FILE),
    "motion_lora_tilt_up": Weights("guoyww/animatediff-motion-lora-tilt-up", weight_name=MOTION_LORA_FILE),
    "motion_lora_tilt_down": Weights("guoyww/animatediff-motion-lora-tilt-down", weight_name=MOTION_LORA_FILE),
    "motion_lora_zoom_in": Weights("guoyww/animatediff-motion-lora-zoom-in", weight_name=MOTION_LORA_FILE),
    "motion_lora_zoom_out": Weights("guoyww/animatediff-motion-lora-zoom-out", weight_name=MOTION_LORA_FILE),
    # More personalized SD1.5 bases in diffusers' layout (the demo's base menu): Realistic Vision (the
    # AnimateDiff docs' base; the official AnimateLCM demos default to a "realistic" DreamBooth file) and
    # DreamShaper 8 (one of AnimateDiff-Lightning's demo bases). Both ship safetensors; DreamShaper fp16 too.
    "realistic_vision": Weights("SG161222/Realistic_Vision_V5.1_noVAE"),
    "dreamshaper": Weights("Lykon/dreamshaper-8", variant="fp16"),
    # Only the component configs and the tokenizer of SD1.5: the layout a single-file DreamBooth checkpoint
    # (original SD names) is read into (``from_single_file(config=...)``); no weights are fetched for it.
    "sd15_layout": Weights("stable-diffusion-v1-5/stable-diffusion-v1-5"),
    # Personal style LoRAs for SD1.5 in kohya's format (the demo's LoRA menu); their trigger words below.
    "lora_pixel_art": Weights("artificialguybr/pixelartredmond-1-5v-pixel-art-loras-for-sd-1-5",
                              weight_name="PixelArtRedmond15V-PixelArt-PIXARFK.safetensors"),
    "lora_coloring_book": Weights("artificialguybr/coloringbook-redmond-1-5v-coloring-book-lora-for-liberteredmond-sd-1-5",
                                  weight_name="ColoringBookRedmond15V-LiberteRedmond-ColoringBookAF.safetensors"),
    # AnimateLCM-I2V (official): motion modules + image encoder in one pickle (read once with
    # torch.load(weights_only=True) and converted into the cache: i2v_official.py) and its own spatial LCM LoRA.
    "animatelcm_i2v": Weights("wangfuyun/AnimateLCM-I2V", weight_name="AnimateLCM_sd15_i2v.ckpt"),
    "animatelcm_i2v_lora": Weights("wangfuyun/AnimateLCM-I2V", weight_name="AnimateLCM_sd15_i2v_lora.safetensors"),
    # The text-to-video motion adapter's config.json only: the I2V motion modules' architecture (attention
    # heads, GroupNorm groups), which a checkpoint's shapes do not record.
    "animatelcm_motion_config": Weights("wangfuyun/AnimateLCM", weight_name="config.json"),
    # AnimateDiff-Lightning (ByteDance; progressive adversarial distillation of AnimateDiff v1.5.2, a successor
    # of AnimateLCM, notebook 09): one motion adapter per step count, each a bare MotionAdapter state dict
    # (no config.json; its model card loads it into ``MotionAdapter()``, diffusers' defaults: the v1.5.2
    # architecture). Sampled with Euler, trailing spacing, linear betas, no CFG.
    **{f"lightning_{n}step": Weights("ByteDance/AnimateDiff-Lightning",
                                     weight_name=f"animatediff_lightning_{n}step_diffusers.safetensors")
       for n in (1, 2, 4, 8)},
    # The architecture those state dicts have: AnimateDiff v1.5.2's config.json (= ``MotionAdapter()``'s
    # defaults for the real one); read instead of the defaults so the same code runs on any size of model.
    "lightning_motion_config": Weights("guoyww/animatediff-motion-adapter-v1-5-2", weight_name="config.json"),
}
LIGHTNING_STEPS = (1, 2, 4, 8)  # the step counts AnimateDiff-Lightning was distilled for (its card: 1 step is for research)



def toy_weights(path: str, weight_name: str | None = None) -> Weights:
    """A component of the toy zoo, by its folder relative to the zoo's root."""
    return Weights(path, revision=None, weight_name=weight_name, local=True)


# Personalized bases and LoRAs by the names the command line (``--base``, ``--lora``), ``load_t2v`` and
# the demo's menus take, per world. Besides these: a Hub id in diffusers' layout, or a file on this
# machine (a single-file ``.safetensors`` base in the original SD layout, a LoRA ``.safetensors``).
# The toy world's LoRAs are the zoo's styles (``pipelines.style_weights``).
BASES: dict[str, dict[str, Weights]] = {
    "full": {"epicrealism": HUB["epicrealism"], "realistic-vision": HUB["realistic_vision"],
             "dreamshaper": HUB["dreamshaper"]},
    "toy": {"toy": toy_weights("base")},
}
PERSONAL_LORAS: dict[str, dict[str, Weights]] = {
    "full": {"pixel-art": HUB["lora_pixel_art"], "coloring-book": HUB["lora_coloring_book"]},
    "toy": {},
}
# The words each LoRA was trained to answer to (its model card's "instance_prompt"): put them in the prompt.
LORA_TRIGGERS = {"pixel-art": "pixel art, PixArFK", "coloring-book": "Coloring Book, ColoringBookAF"}
# Where a single-file checkpoint's component configs and tokenizer come from: a config.HUB key (its files
# in hub_files.json, used_by that key) in the full world, the zoo's base folder in the toy world.
SINGLE_FILE_LAYOUT = {"full": "sd15_layout", "toy": "base"}
PERSONAL_LORA_RANGE = (0.0, 2.0)  # the official demo's "LoRA alpha" slider
PERSONAL_LORA_ALPHA = 0.8  # its default


# --------------------------------------------------------------------------------------------
# Models by name, per world: what `python -m animatelcm_helpers models` lists.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A text-to-video model: a base image model, a motion adapter, optionally an LCM LoRA.

    ``scheduler`` is ``"lcm"`` (consistency sampling, no CFG needed) or ``"ddim"`` (the teacher);
    ``scheduler_kwargs`` override the base model's noise-schedule config (AnimateDiff's motion
    modules were trained with ``beta_schedule="linear"``, so the full world samples with it);
    with ``scheduler_from_base=False`` they are the whole config (the sampler's defaults plus
    them), as the official AnimateLCM inference builds its ``LCMScheduler``.
    ``motion_config`` is set where ``motion_adapter`` names one bare state-dict file (its
    ``weight_name``; AnimateDiff-Lightning's): the ``config.json`` of the architecture it fills.
    """

    name: str
    description: str
    base: Weights
    motion_adapter: Weights
    lcm_lora: Weights | None
    lcm_lora_weight: float
    scheduler: str
    steps: int
    guidance: float
    frames: int
    height: int
    width: int
    scheduler_kwargs: tuple[tuple[str, object], ...] = ()
    scheduler_from_base: bool = True
    motion_config: Weights | None = None  # a motion adapter that is one state-dict file: its config.json


# diffusers' AnimateDiff recipe for DDIM on the full world's teacher (the motion modules' linear betas).
ANIMATEDIFF_SCHEDULE = (
    ("beta_start", 0.00085),
    ("beta_end", 0.012),
    ("beta_schedule", "linear"),
    ("clip_sample", False),
    ("timestep_spacing", "linspace"),
    ("steps_offset", 1),
)
# The official AnimateLCM text-to-video sampler, G-U-N/AnimateLCM animatelcm_sd15/configs/inference-t2v.yaml
# (noise_scheduler_kwargs; app.py builds LCMScheduler(**these), every other field at its default). Its
# skipping grid has 100 points (k = 10), not diffusers' default 50: 4 steps are [999, 749, 499, 249].
ANIMATELCM_T2V_SCHEDULE = (
    ("beta_start", 0.00085),
    ("beta_end", 0.012),
    ("beta_schedule", "linear"),
    ("original_inference_steps", 100),
    ("steps_offset", 1),
)

# AnimateDiff-Lightning's sampler (its model card): EulerDiscreteScheduler on the base's schedule with trailing
# timestep spacing and linear betas; 4 steps are [999, 749, 499, 249], 1 step [999].
LIGHTNING_SCHEDULE = (
    ("timestep_spacing", "trailing"),
    ("beta_schedule", "linear"),
)

TOY_LCM_LORA = "AnimateLCM_sd15_t2v_lora.safetensors"

MODELS: dict[str, dict[str, ModelSpec]] = {
    "full": {
        "animatelcm": ModelSpec(
            "animatelcm",
            "AnimateLCM: epiCRealism + AnimateLCM motion adapter + LCM LoRA 0.8 (official demo settings)",
            base=HUB["epicrealism"],
            motion_adapter=HUB["animatelcm_motion_adapter"],
            lcm_lora=HUB["animatelcm_lcm_lora"],
            lcm_lora_weight=0.8,
            scheduler="lcm",
            steps=6,
            guidance=1.5,
            frames=16,
            height=512,
            width=512,
            scheduler_kwargs=ANIMATELCM_T2V_SCHEDULE,  # the official AnimateLCM sampler
            scheduler_from_base=False,
        ),
        "teacher": ModelSpec(
            "teacher",
            "AnimateDiff teacher: epiCRealism + AnimateDiff v1.5.2 motion adapter, DDIM with CFG",
            base=HUB["epicrealism"],
            motion_adapter=HUB["animatediff_motion_adapter"],
            lcm_lora=None,
            lcm_lora_weight=0.0,
            scheduler="ddim",
            steps=25,
            guidance=7.5,
            frames=16,
            height=512,
            width=512,
            scheduler_kwargs=ANIMATEDIFF_SCHEDULE,
        ),
        **{f"lightning-{n}step": ModelSpec(
            f"lightning-{n}step",
            f"AnimateDiff-Lightning, {n}-step model: epiCRealism + its {n}-step motion adapter, Euler (trailing), no CFG",
            base=HUB["epicrealism"],
            motion_adapter=HUB[f"lightning_{n}step"],
            lcm_lora=None,
            lcm_lora_weight=0.0,
            scheduler="euler",
            steps=n,
            guidance=1.0,
            frames=16,
            height=512,
            width=512,
            scheduler_kwargs=LIGHTNING_SCHEDULE,
            motion_config=HUB["lightning_motion_config"],
        ) for n in LIGHTNING_STEPS},
    },
    "toy": {
        "animatelcm": ModelSpec(
            "animatelcm",
            "toy AnimateLCM: toy base + toy AnimateLCM motion adapter + toy LCM LoRA",
            base=toy_weights("base"),
            motion_adapter=toy_weights("animatelcm"),
            lcm_lora=toy_weights("animatelcm", TOY_LCM_LORA),
            lcm_lora_weight=1.0,
            scheduler="lcm",
            steps=4,
            guidance=1.0,
            frames=8,
            height=32,
            width=32,
        ),
        "teacher": ModelSpec(
            "teacher",
            "toy video teacher: toy base + toy AnimateDiff motion adapter, DDIM with CFG",
            base=toy_weights("base"),
            motion_adapter=toy_weights("motion-adapter"),
            lcm_lora=None,
            lcm_lora_weight=0.0,
            scheduler="ddim",
            steps=25,
            guidance=7.5,
            frames=8,
            height=32,
            width=32,
        ),
    },
}


# Motion LoRAs by name, per world (the demo's motion menu). The full world's are camera moves
# (a "pan-left" camera makes the scene drift right); the toy world's are named by the way the
# digit moves and were trained by the zoo's `motion_loras` stage on the video teacher.
MOTION_LORAS: dict[str, dict[str, Weights]] = {
    "full": {m: HUB[f"motion_lora_{m.replace('-', '_')}"]
             for m in ("pan-left", "pan-right", "tilt-up", "tilt-down", "zoom-in", "zoom-out")},
    "toy": {d: toy_weights("motion-loras", f"{d}.safetensors") for d in ("left", "right", "up", "down")},
}


# The official AnimateLCM-SVD-xt app's settings (G-U-N/AnimateLCM animatelcm_svd/app.py, ``sample``): 4 steps,
# the guidance ramp 1.0 -> 1.2 over the frames (so CFG runs: 2 UNet evaluations a step), motion bucket 80,
# 4 frames decoded at a time, noise augmentation 0.02 (the pipeline's default), the input image resized and
# centre-cropped to 1024 x 576 (``resize_image``). The app passes no ``fps`` to the pipeline: diffusers'
# default 7, so the UNet is conditioned on fps - 1 = 6 (its fps slider, 8, only sets the saved video's rate).
SVD_DEMO = {
    "steps": 4,
    "min_guidance": 1.0,
    "max_guidance": 1.2,
    "motion_bucket_id": 80,
    "decode_chunk_size": 4,
    "noise_aug_strength": 0.02,
    "video_fps": 8,  # the saved video's frame rate (export_to_video in the app)
}
# The fps the UNet is conditioned on (it sees fps - 1): the full world as the official app (diffusers'
# default 7); the toy SVD was trained with 8 (every toy video moves at one rate, so it is a constant there).
SVD_FPS = {"full": 7, "toy": 8}
SVD_SIZES = {  # (frames, height, width) a world samples by default
    "full": (25, 576, 1024),
    "toy": (8, 32, 32),
}


def model_spec(name: str, world: str | None = None) -> ModelSpec:
    """The spec of model ``name`` in ``world`` (default: the current world)."""
    world = world or current().world
    specs = MODELS[check_world(world)]
    if name not in specs:
        raise UserError(
            f"unknown model {name!r} in the {world} world; choose one of: {', '.join(specs)} "
            "(`python -m animatelcm_helpers models` lists them)"
        )
    return specs[name]


# --------------------------------------------------------------------------------------------
# World, device, dtype, test mode.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    world: str
    device: str
    dtype_name: str
    test_mode: bool

    @property
    def dtype(self):
        return getattr(torch, self.dtype_name)

    def __str__(self) -> str:
        mode = "test mode (short training loops)" if self.test_mode else "normal mode"
        return f"world: {self.world} | device: {self.device} | dtype: {self.dtype_name} | {mode}"


def check_world(world: str) -> str:
    if world not in WORLDS:
        raise UserError(f"unknown world {world!r}: use 'toy' (tiny models, any CPU) or 'full' (Hub models, GPU)")
    return world


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the Hugging Face Hub answers (and HF_HUB_OFFLINE is not set); asked once per
    endpoint. The endpoint is huggingface_hub's (``HF_ENDPOINT``: a mirror, or the tests' fake Hub)."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")):
        return False
    url = urlparse(hf_constants.ENDPOINT)  # read at call time: a test or a mirror may change it
    port = url.port or (443 if url.scheme == "https" else 80)
    return _hub_answers(url.hostname or "huggingface.co", port, timeout)


@lru_cache(maxsize=8)
def _hub_answers(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def cuda_available() -> bool:
    return torch.cuda.is_available()


def default_world() -> str:
    """``ANIMATELCM_WORLD`` if set, else ``full`` with a GPU and the Hub, else ``toy``."""
    env = os.environ.get(WORLD_ENV, "").strip().lower()
    if env:
        return check_world(env)
    return "full" if cuda_available() and hub_reachable() else "toy"


def default_device(world: str) -> str:
    env = os.environ.get(DEVICE_ENV, "").strip()
    if env:
        return env
    if world == "full":
        return "cuda" if cuda_available() else "cpu"
    return "cpu"


_settings: Settings | None = None


def setup(world: str | None = None, test_mode: bool | None = None, device: str | None = None) -> Settings:
    """Choose the world for this session (a notebook's first code cell calls it).

    Arguments left as None fall back to the environment (``ANIMATELCM_WORLD``,
    ``ANIMATELCM_TEST_MODE``, ``ANIMATELCM_DEVICE``) and then to automatic choices.
    The full world uses float16 on a GPU; everything else uses float32.
    """
    global _settings
    world = check_world(world) if world else default_world()
    if test_mode is None:
        test_mode = _truthy(os.environ.get(TEST_MODE_ENV))
    device = device or default_device(world)
    dtype = "float16" if (world == "full" and device.startswith("cuda")) else "float32"
    _settings = Settings(world=world, device=device, dtype_name=dtype, test_mode=bool(test_mode))
    _brief_user_errors()
    return _settings


def _brief_user_errors() -> None:
    """In Jupyter/IPython, show a :class:`UserError` as one line (what is wrong, what to do),
    not as a traceback; other exceptions keep their tracebacks."""
    try:
        from IPython import get_ipython  # deferred: optional, present only where IPython or Jupyter runs
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def brief(shell, etype, value, tb, tb_offset=None):
        print(f"{etype.__name__}: {value}", file=sys.stderr)

    shell.set_custom_exc((UserError,), brief)


def current() -> Settings:
    """The settings chosen by :func:`setup`, or the defaults if it was never called."""
    return _settings if _settings is not None else setup()


def pick(normal, test):
    """``test`` in test mode, else ``normal``: e.g. ``steps = config.pick(2000, 20)``."""
    return test if current().test_mode else normal


def with_world(world: str) -> Settings:
    """The current settings switched to another world (device and dtype follow)."""
    s = current()
    device = default_device(world)
    dtype = "float16" if (world == "full" and device.startswith("cuda")) else "float32"
    return replace(s, world=check_world(world), device=device, dtype_name=dtype)


def cache_dir() -> Path:
    """Where the package writes things it builds (``ANIMATELCM_CACHE``, default ~/.cache)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "animatelcm_helpers"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
