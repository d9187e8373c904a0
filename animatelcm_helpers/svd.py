"""AnimateLCM-SVD-xt (a driver): image-to-video in 1 to 8 steps, a consistency model of Stable Video
Diffusion xt, loaded, sampled and costed.

The model (Hub ids in ``config.HUB["svd_xt"]`` and ``config.HUB["animatelcm_svd_xt"]``) is SVD-xt's
own ``StableVideoDiffusionPipeline`` with two parts swapped: the UNet's weights (one safetensors
file, a diffusers-format state dict of ``UNetSpatioTemporalConditionModel``) and the scheduler,
:class:`~animatelcm_helpers.svd_scheduler.AnimateLCMSVDScheduler`, which samples the consistency
function on SVD's EDM noise levels (its formulas are in :mod:`animatelcm_helpers.svd_scheduler`).

Cost (:func:`cost_table`): a step is ONE UNet evaluation (no classifier-free guidance needed when
max_guidance is 1; the demo's ramp 1.0 -> 1.2 does use CFG), against SVD-xt's 25 Euler steps with
CFG, 50 evaluations; FLOPs are counted on the meta device (:func:`count_svd_flops`).

The toy world's SVD (its training and distillation) lives in :mod:`animatelcm_helpers.toy.svd`,
the distillation loss in :mod:`animatelcm_helpers.svd_distill`.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKLTemporalDecoder, StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel
from safetensors import SafetensorError, safe_open

from . import config, hub, loading, pipelines, utils
from .config import UserError
from .media import float_to_uint8
from .svd_scheduler import SIGMA_MAX, AnimateLCMSVDScheduler, euler_baseline_scheduler, timestep_of
from .toy import configs, zoo
from .toy.svd import TOY_STUDENT_FOLDER, TOY_SVD
from .utils import count_flops


def guidance_ramp(frames: int, min_guidance: float = 1.0, max_guidance: float = 1.2) -> torch.Tensor:
    """Per-frame guidance scales, linear from the first frame to the last, as SVD's pipeline makes
    them: ``linspace(min_guidance, max_guidance, frames)`` (the first frame is the input image)."""
    return torch.linspace(float(min_guidance), float(max_guidance), int(frames))


# ------------------------------------------------------------------------------------------
# 3. Cost: FLOPs counted on the meta device
# ------------------------------------------------------------------------------------------


def svd_xt_unet_config() -> dict:
    """SVD-xt's ``UNetSpatioTemporalConditionModel`` config (1.52 B parameters); diffusers' defaults
    are this config, except ``sample_size`` (96 latent pixels = 768 px)."""
    return {
        "sample_size": 96,
        "in_channels": 8,  # 4 noisy latent channels + 4 channels of the conditioning image's latent
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
        "up_block_types": ("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
        "block_out_channels": (320, 640, 1280, 1280),
        "addition_time_embed_dim": 256,  # fps - 1, motion bucket, noise augmentation: 3 x 256
        "projection_class_embeddings_input_dim": 768,
        "layers_per_block": 2,
        "cross_attention_dim": 1024,  # the CLIP image embedding
        "transformer_layers_per_block": 1,
        "num_attention_heads": (5, 10, 20, 20),
        "num_frames": 25,
    }


def svd_xt_vae_config() -> dict:
    """SVD-xt's ``AutoencoderKLTemporalDecoder`` config (97.7 M parameters, 63.6 M of them in the
    temporal decoder); unlike the UNet's, diffusers' defaults are NOT this config."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "latent_channels": 4,
        "sample_size": 768,
        "scaling_factor": 0.18215,
        "force_upcast": True,
    }


def on_meta(cls, cfg: dict):
    """``cls(**cfg)`` with every tensor on the meta device (no memory, no time). The ``.to("meta")``
    is needed: a few diffusers parameters (the ``time_mixer.mix_factor``) are made with the legacy
    ``torch.Tensor([...])`` constructor, which ignores the default device and lands on the CPU."""
    with torch.device("meta"):
        model = cls(**cfg)
    return model.to("meta").eval()


def vae_factor(vae_config: dict) -> int:
    """Pixels per latent pixel: 2^(levels - 1) (8 for SVD, 4 for the toy VAE)."""
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


def count_svd_flops(frames: int = 25, height: int = 576, width: int = 1024,
                    unet_config: dict | None = None, vae_config: dict | None = None) -> dict:
    """FLOPs (``FlopCounterMode``: a multiply-add is 2) of ONE UNet evaluation on one video and of
    decoding all its frames (the temporal decoder only, ``num_frames=frames``), counted on meta.

    UNet inputs: latents (1, frames, 8, h/8, w/8), timestep 0.25 ln 700, image embedding
    (1, 1, 1024), added_time_ids (1, 3). Defaults: SVD-xt at 25 frames 576x1024
    (79.9 TFLOP a UNet evaluation, 173.6 TFLOP the decode). Returns a dict: ``unet_flops``,
    ``vae_decode_flops``, ``unet_params``, ``vae_params``, ``vae_decoder_params``, and the size.
    """
    if unet_config is None and vae_config is None:
        return dict(_count_svd_xt(frames, height, width))
    return _count(frames, height, width, unet_config or svd_xt_unet_config(), vae_config or svd_xt_vae_config())


@lru_cache(maxsize=8)
def _count_svd_xt(frames: int, height: int, width: int) -> dict:
    return _count(frames, height, width, svd_xt_unet_config(), svd_xt_vae_config())


def _count(frames: int, height: int, width: int, unet_config: dict, vae_config: dict) -> dict:
    factor = vae_factor(vae_config)
    frames = utils.check_int("frames", frames, 1)
    for name, value in (("height", height), ("width", width)):
        if utils.check_int(name, value, factor) % factor:
            raise UserError(f"{name} {value} is not a multiple of {factor}, the VAE's downsampling factor")
    unet = on_meta(UNetSpatioTemporalConditionModel, unet_config)
    vae = on_meta(AutoencoderKLTemporalDecoder, vae_config)
    h, w = height // factor, width // factor
    with torch.device("meta"), torch.no_grad():
        latents = torch.empty(1, frames, unet_config["in_channels"], h, w)
        embeds = torch.empty(1, 1, unet_config["cross_attention_dim"])
        time_ids = torch.empty(1, 3)
        t = torch.full((1,), float(timestep_of(SIGMA_MAX)))
        unet_flops = count_flops(unet, latents, t, encoder_hidden_states=embeds, added_time_ids=time_ids)
        z = torch.empty(frames, vae_config["latent_channels"], h, w)
        vae_flops = count_flops(vae.decode, z, num_frames=frames)

    def params(module):
        return sum(p.numel() for p in module.parameters())

    return {
        "unet_flops": unet_flops,
        "vae_decode_flops": vae_flops,
        "unet_params": params(unet),
        "vae_params": params(vae),
        "vae_decoder_params": params(vae.decoder),
        "frames": frames,
        "height": height,
        "width": width,
    }


def cost_table(steps=(1, 2, 4, 8), baseline_steps: int = 25, baseline_guidance: bool = True,
               frames: int = 25, height: int = 576, width: int = 1024, flops: dict | None = None) -> list[dict]:
    """SVD-xt (Euler, ``baseline_steps`` steps, 2 UNet evaluations a step with CFG) against
    AnimateLCM-SVD-xt at each of ``steps`` steps without CFG (1 evaluation a step). First row: the
    baseline. Each row: ``label``, ``steps``, ``cfg``, ``unet_evals``, ``unet_tflop``,
    ``total_tflop`` (UNet + VAE decode), and the fractions of the baseline's work::

        unet_fraction = evals / baseline_evals
        fraction_with_vae = (evals U + V) / (baseline_evals U + V)     U: a UNet evaluation, V: the decode

    ``flops``: a :func:`count_svd_flops` result (default: SVD-xt at frames x height x width).
    """
    flops = flops or count_svd_flops(frames, height, width)
    unet, vae = flops["unet_flops"], flops["vae_decode_flops"]
    base_evals = baseline_steps * (2 if baseline_guidance else 1)

    def row(label, n, cfg, evals):
        return {
            "label": label,
            "steps": n,
            "cfg": cfg,
            "unet_evals": evals,
            "unet_tflop": evals * unet / 1e12,
            "total_tflop": (evals * unet + vae) / 1e12,
            "unet_fraction": evals / base_evals,
            "fraction_with_vae": (evals * unet + vae) / (base_evals * unet + vae),
        }

    cfg_note = " + CFG" if baseline_guidance else ""
    rows = [row(f"SVD-xt, Euler{cfg_note}", baseline_steps, baseline_guidance, base_evals)]
    for n in steps:
        n = utils.check_int("steps", n, 1)
        rows.append(row("AnimateLCM-SVD-xt, no CFG", n, False, n))
    return rows


def format_cost_table(rows: list[dict]) -> str:
    """:func:`cost_table`'s rows as a markdown table (fractions in percent)."""
    lines = [
        "| model | steps | UNet evals | UNet TFLOP | with VAE decode, TFLOP | UNet work | with VAE decode |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['steps']} | {r['unet_evals']} | {r['unet_tflop']:,.1f} | {r['total_tflop']:,.1f} "
            f"| {100 * r['unet_fraction']:.1f}% | {100 * r['fraction_with_vae']:.1f}% |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# 4. Loading and sampling
# ------------------------------------------------------------------------------------------


def unet_from_state_dict(state_dict: dict, unet_config: dict | None = None, dtype=None):
    """A ``UNetSpatioTemporalConditionModel`` built on the meta device and filled from
    ``state_dict`` (strict: every key must match), so the 1.5 B random weights are never made."""
    unet = on_meta(UNetSpatioTemporalConditionModel, unet_config or svd_xt_unet_config())
    try:
        unet.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as err:
        raise UserError(f"the UNet weights do not fit SVD-xt's UNet: {str(err)[:500]}") from None
    left = [n for n, t in [*unet.named_parameters(), *unet.named_buffers()] if t.is_meta]
    if left:
        raise UserError(f"the UNet weights left {len(left)} tensors unset, e.g. {left[:3]}")
    return unet.to(dtype=dtype) if dtype is not None else unet


def svd_xt_unet_config_from_hub() -> dict:
    """SVD-xt's own ``unet/config.json`` (the AnimateLCM-SVD-xt UNet has SVD-xt's architecture:
    the official app loads it into ``pipe.unet`` with ``strict=True``)."""
    path = hub.hub_file(config.HUB["svd_xt"], "SVD-xt UNet config", "unet/config.json")
    return {k: v for k, v in json.loads(Path(path).read_text()).items() if not k.startswith("_")}


def read_unet_file(path, dtype) -> dict:
    """The AnimateLCM-SVD-xt UNet file (about 6 GB in float32), each tensor cast to ``dtype`` as it
    is read, so the float32 copy never sits in memory whole (Colab has about 12 GB of RAM)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k).to(dtype) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path} is not a readable safetensors file ({err}); delete it and download it again") from None


def _full_pipeline(dtype):
    weights = config.HUB["animatelcm_svd_xt"]
    state_dict = read_unet_file(hub.hub_file(weights, "AnimateLCM-SVD-xt UNet"), dtype)
    unet = unet_from_state_dict(state_dict, svd_xt_unet_config_from_hub(), dtype=dtype)
    del state_dict
    pipe = loading.from_pretrained(
        StableVideoDiffusionPipeline, config.HUB["svd_xt"], "Stable Video Diffusion xt pipeline",
        unet=unet, scheduler=AnimateLCMSVDScheduler(), dtype=dtype,
    )
    note = f"AnimateLCM-SVD-xt: {weights.describe()} in {config.HUB['svd_xt'].describe()}"
    return pipe, note


def toy_svd_pipeline(seed: int = 0):
    """(pipeline, note): the toy world's ``StableVideoDiffusionPipeline`` with :class:`AnimateLCMSVDScheduler`.
    From the zoo's ``svd/`` folder (the toy SVD-xt pipeline) with its distilled UNet
    (``svd/animatelcm_unet``) when the zoo has them, as the full world swaps the AnimateLCM-SVD-xt
    UNet into SVD-xt; else a fallback of seeded random tiny parts (``toy.configs``; the note says so)."""


    folder = zoo.root() / TOY_SVD
    if (folder / "model_index.json").is_file() and (folder / TOY_STUDENT_FOLDER / "config.json").is_file():
        unet = loading.from_pretrained(UNetSpatioTemporalConditionModel,
                                         config.toy_weights(f"{TOY_SVD}/{TOY_STUDENT_FOLDER}"),
                                         "toy AnimateLCM-SVD-xt UNet", torch_dtype=torch.float32)
        pipe = loading.from_pretrained(
            StableVideoDiffusionPipeline, config.toy_weights(TOY_SVD), "toy SVD pipeline",
            unet=unet, scheduler=AnimateLCMSVDScheduler(), torch_dtype=torch.float32,
        )
        return pipe, (f"toy AnimateLCM-SVD-xt: the distilled UNet ({TOY_SVD}/{TOY_STUDENT_FOLDER}) in the toy "
                      f"SVD-xt pipeline ({TOY_SVD}/) of the zoo {zoo.root()}")
    pipe = StableVideoDiffusionPipeline(
        vae=configs.tiny_temporal_vae(seed),
        image_encoder=configs.tiny_image_encoder(seed),
        unet=configs.tiny_svd_unet(seed),
        scheduler=AnimateLCMSVDScheduler(),
        feature_extractor=configs.tiny_feature_extractor(),
    )
    note = (
        f"RANDOM-INITIALISED toy SVD (seed {seed}): the toy zoo has no trained SVD (folder "
        f"'{TOY_SVD}/'), so its videos are noise; it runs the full world's code path at toy size"
    )
    return pipe, note


def load_svd(world: str | None = None, device: str | None = None):
    """AnimateLCM-SVD-xt as a ``StableVideoDiffusionPipeline`` with :class:`AnimateLCMSVDScheduler`.

    Full world: SVD-xt (``config.HUB["svd_xt"]``, fp16 files) with its UNet's weights replaced by
    the AnimateLCM-SVD-xt file (``config.HUB["animatelcm_svd_xt"]``); float16 on a GPU. Toy world:
    :func:`toy_svd_pipeline`. Sets ``pipe.svd_note`` (what was loaded) and ``pipe.svd_size``
    ((frames, height, width) to sample by default), ``pipe.svd_fps`` (the fps the UNet is
    conditioned on, ``config.SVD_FPS``) and ``pipe.memory_plan`` (offload, feed-forward chunking and
    decoding chunk for the GPU's memory: ``loading.memory_plan``). Sample it with :func:`generate_svd`.
    """
    settings = config.with_world(world) if world else config.current()
    device = device or settings.device
    if settings.world == "full":
        pipe, note = _full_pipeline(settings.dtype)
    else:
        pipe, note = toy_svd_pipeline()
    loading.place(pipe, device, loading.memory_plan("svd", device))
    pipe.set_progress_bar_config(disable=True)
    pipe.svd_note = note
    pipe.svd_size = config.SVD_SIZES[settings.world]
    pipe.svd_fps = config.SVD_FPS[settings.world]
    return pipe


def check_image(image):
    """The conditioning image as an RGB PIL image; accepts PIL RGB or an (H, W, 3) uint8 array."""
    if isinstance(image, PIL.Image.Image):
        if image.mode != "RGB":
            raise UserError(f"the image is a {image.mode} image; give an RGB one (image.convert('RGB'))")
        return image
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8 or 0 in image.shape:
            raise UserError(
                f"the image array must be (height, width, 3) uint8, got {image.shape} {image.dtype}; "
                "for floats in [0, 1] use (x * 255).round().astype('uint8')"
            )
        return PIL.Image.fromarray(image)
    raise UserError(f"the image must be an RGB PIL image or an (height, width, 3) uint8 array, got {type(image).__name__}")


def fit_image(image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
    """The official app's input preprocessing (``resize_image``, animatelcm_svd/app.py): resize
    (Lanczos) so the image covers width x height keeping its aspect ratio, then crop the middle::

        a = w / h;   a > width / height:  h' = height, w' = int(height a),  crop x in [(w' - width)/2, (w' + width)/2]
                     otherwise:           w' = width,  h' = int(width / a), crop y in [(h' - height)/2, (h' + height)/2]

    (diffusers' pipeline alone would squeeze the image to width x height instead.)"""
    aspect = image.width / image.height
    if aspect > width / height:
        new_w, new_h = int(height * aspect), height
        box = ((new_w - width) / 2, 0, (new_w + width) / 2, height)
    else:
        new_w, new_h = width, int(width / aspect)
        box = (0, (new_h - height) / 2, width, (new_h + height) / 2)
    return image.resize((new_w, new_h), PIL.Image.LANCZOS).crop(box)


def generate_svd(
    pipe,
    image,
    steps: int = config.SVD_DEMO["steps"],
    frames: int | None = None,
    min_guidance: float = config.SVD_DEMO["min_guidance"],
    max_guidance: float = config.SVD_DEMO["max_guidance"],
    motion_bucket_id: int = config.SVD_DEMO["motion_bucket_id"],
    fps: int | None = None,
    seed: int = 0,
    decode_chunk_size: int | None = None,
    height: int | None = None,
    width: int | None = None,
    noise_aug_strength: float = config.SVD_DEMO["noise_aug_strength"],
) -> pipelines.Generation:
    """Animate ``image`` (RGB PIL or (H, W, 3) uint8): a ``pipelines.Generation`` with frames uint8
    (frames, height, width, 3), the seed, seconds, UNet evaluations per video and the steps.

    Guidance ramps over frames from ``min_guidance`` to ``max_guidance`` (:func:`guidance_ramp`);
    SVD's pipeline runs classifier-free guidance (2 UNet evaluations a step) whenever
    ``max_guidance > 1``, so ``max_guidance=1`` halves the cost. ``seed=-1`` draws a seed; one CPU
    generator, seeded, makes all the noise (the image's noise augmentation, the first latents and
    every step's re-noising), so a seed gives the same video. Defaults: the official demo's,
    at ``pipe.svd_size``; ``fps`` (the UNet sees fps - 1) defaults to ``pipe.svd_fps``, the
    decoding chunk to the pipeline's memory plan (``loading.memory_plan``). The image is resized
    to cover height x width and centre-cropped, as the official app does (:func:`fit_image`).
    """
    default_frames, default_height, default_width = getattr(pipe, "svd_size", config.SVD_SIZES["toy"])
    image = check_image(image)
    fps = getattr(pipe, "svd_fps", config.SVD_FPS["full"]) if fps is None else fps
    if decode_chunk_size is None:
        plan = getattr(pipe, "memory_plan", None)
        decode_chunk_size = plan.decode_chunk_size if plan is not None else config.SVD_DEMO["decode_chunk_size"]
    steps = utils.check_int("steps", steps, 1, pipe.scheduler.config.num_train_timesteps,
                                hint=" (consistency steps; AnimateLCM-SVD-xt is made for 1 to 8)")
    limit = int(pipe.unet.config.num_frames)
    frames = utils.check_int("frames", default_frames if frames is None else frames, 1, limit,
                                 hint=" (the number of frames the UNet was trained on is the most)")
    min_guidance = utils.check_range("min_guidance", min_guidance, 1.0)
    max_guidance = utils.check_range("max_guidance", max_guidance, 1.0)
    if min_guidance > max_guidance:
        # the pipeline decides on CFG from max_guidance alone; a ramp above it would break its batch
        raise UserError(f"min_guidance {min_guidance} is above max_guidance {max_guidance}; swap them")
    motion_bucket_id = utils.check_int("motion_bucket_id", motion_bucket_id, 0, 255, hint=" (more = more motion)")
    fps = utils.check_int("fps", fps, 1)
    decode_chunk_size = utils.check_int("decode_chunk_size", decode_chunk_size, 1)
    noise_aug_strength = utils.check_range("noise_aug_strength", noise_aug_strength, 0.0)
    multiple = max(8, pipe.vae_scale_factor)  # the pipeline wants multiples of 8
    height = utils.check_int("height", default_height if height is None else height, multiple)
    width = utils.check_int("width", default_width if width is None else width, multiple)
    for name, value in (("height", height), ("width", width)):
        if value % multiple:
            raise UserError(f"{name} {value} is not a multiple of {multiple}; try {round(value / multiple) * multiple}")
    image = fit_image(image, width, height)
    seed, generator = utils.seeded(seed)
    pipe.scheduler.noise_generator = generator
    start = time.perf_counter()
    try:
        with pipelines.count_unet_evaluations(pipe.unet) as counter, torch.inference_mode():
            out = pipe(
                image,
                height=height,
                width=width,
                num_frames=frames,
                num_inference_steps=steps,
                min_guidance_scale=min_guidance,
                max_guidance_scale=max_guidance,
                fps=fps,
                motion_bucket_id=motion_bucket_id,
                noise_aug_strength=noise_aug_strength,
                decode_chunk_size=decode_chunk_size,
                generator=generator,
                output_type="np",
            )
    finally:
        pipe.scheduler.noise_generator = None
    seconds = time.perf_counter() - start
    video = float_to_uint8(np.asarray(out.frames[0], dtype=np.float32))
    return pipelines.Generation(video, seed, seconds, counter["n"], steps, max_guidance)


def load_toy_svd_teacher(device: str = "cpu"):
    """The zoo's toy SVD-xt (the teacher UNet) in ``StableVideoDiffusionPipeline`` with SVD's Euler
    scheduler, or a UserError when the zoo has none."""


    folder = zoo.root() / TOY_SVD
    if not (folder / "model_index.json").is_file():
        raise UserError(f"the toy zoo has no trained SVD ({folder}); build it with "
                        "`python -m animatelcm_helpers.toy.build --only svd_teacher svd_student`")
    pipe = loading.from_pretrained(StableVideoDiffusionPipeline, config.toy_weights(TOY_SVD), "toy SVD teacher",
                                     scheduler=euler_baseline_scheduler(), torch_dtype=torch.float32)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.svd_note, pipe.svd_size = f"toy SVD-xt teacher (Euler) from {folder}", config.SVD_SIZES["toy"]
    return pipe
