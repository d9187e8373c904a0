"""Controlled generation: control maps from controlnet-aux detectors, ControlNets (the toy
world's teacher-free ones or the Hub's SD1.5 ones) on AnimateLCM, image-to-video through the
toy I2V adapter, video-to-video, and how well a video follows its control (edge F1).

    maps = detectors.detect(video, "canny")                        # PIL images, one per frame
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
from diffusers import AnimateDiffControlNetPipeline, AnimateDiffVideoToVideoPipeline, ControlNetModel

from . import config, loading, pipelines, utils
from .config import UserError
from .detectors import as_pil_frames, conditioning_frames
from .distill import as_conditioning
from .media import float_to_uint8
from .toy import zoo

# Which detector each ControlNet was trained on (the full world's SD1.5 v1.1 ControlNets).
CONTROLNETS = {"full": {"canny": "controlnet_canny", "lineart": "controlnet_lineart",
                        "openpose": "controlnet_openpose", "depth": "controlnet_depth"}}
# The toy zoo's adapters, trained by distill.train_adapter (``<zoo>/<folder>``).
TOY_ADAPTERS = {"canny": "controlnet-edges", "lineart": "controlnet-edges", "i2v": "i2v-adapter"}
NAIVE_SUFFIX = "-naive"  # the same adapters trained with the plain diffusion loss (for the comparison)


# ------------------------------------------------------------------------------------------
# Control maps
# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# How well a video follows its control
# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# ControlNets and pipelines
# ------------------------------------------------------------------------------------------


def load_controlnet(kind: str = "canny", world: str | None = None, naive: bool = False, device: str | None = None):
    """A ControlNet for ``kind`` of control: in the toy world the zoo's teacher-free adapters
    (``canny`` and ``lineart`` share the edge ControlNet; ``i2v`` is the image-to-video adapter;
    ``naive=True``: the same nets trained with the plain diffusion loss), in the full world the
    SD1.5 v1.1 ControlNet from ``config.HUB``."""
    settings = config.with_world(world) if world else config.current()
    if settings.world == "toy":
        if kind not in TOY_ADAPTERS:
            raise UserError(f"the toy world has ControlNets for {', '.join(TOY_ADAPTERS)}; got {kind!r}")
        name = _toy_adapter(kind, naive)
        if name in zoo.NOT_SHIPPED and not (zoo.root() / name).is_dir():
            raise UserError(f"{name} is not shipped in the zoo ({zoo.NOT_SHIPPED[name]}); `python -m "
                            "animatelcm_helpers.toy.build` trains it into <work>/adapters/model: point ANIMATELCM_ZOO "
                            "at a zoo built with it")
        weights = config.toy_weights(name)
    else:
        if naive:
            raise UserError("naive=True picks the toy world's diffusion-loss adapters; the full world has none")
        if kind not in CONTROLNETS["full"]:
            raise UserError(f"the full world has ControlNets for {', '.join(CONTROLNETS['full'])}; got {kind!r}")
        weights = config.HUB[CONTROLNETS["full"][kind]]
    net = loading.from_pretrained(ControlNetModel, weights, f"{kind} ControlNet", dtype=settings.dtype)
    return net.to(device or settings.device).eval()


def controlnet_pipeline(controlnet, model: str = "animatelcm", world: str | None = None, pipe=None):
    """``AnimateDiffControlNetPipeline`` of a text-to-video model (default: AnimateLCM, LCM
    sampler, no CFG) and ``controlnet``; ``pipe`` reuses an already loaded text-to-video pipeline."""
    base = pipe if pipe is not None else pipelines.load_t2v(model, world=world)
    if controlnet.dtype != base.unet.dtype:
        raise UserError(f"the ControlNet is {controlnet.dtype} but the pipeline {base.unet.dtype}; load both in one world")
    return pipelines.derive(base, AnimateDiffControlNetPipeline, controlnet=controlnet)


def video_to_video_pipeline(model: str = "animatelcm", world: str | None = None, pipe=None):
    """``AnimateDiffVideoToVideoPipeline`` sharing a text-to-video model's parts (and LoRAs)."""
    base = pipe if pipe is not None else pipelines.load_t2v(model, world=world)
    return pipelines.derive(base, AnimateDiffVideoToVideoPipeline)


def _run(pipe, seed, **kwargs) -> pipelines.Generation:
    seed, generator = utils.seeded(seed)
    start = time.perf_counter()
    # quiet: the video-to-video pipeline casts the VAE with .to() on every call, and diffusers warns each time
    with pipelines.count_unet_evaluations(pipe.unet) as counter, torch.inference_mode(), utils.quiet_loading():
        out = pipe(generator=generator, output_type="np", decode_chunk_size=pipelines.decode_chunk_size(pipe), **kwargs)
    video = float_to_uint8(np.asarray(out.frames[0], dtype=np.float32))
    return pipelines.Generation(video, seed, time.perf_counter() - start, counter["n"],
                                kwargs["num_inference_steps"], kwargs["guidance_scale"])


def _common(pipe, prompt, steps, guidance) -> tuple[int, float]:
    """The checked prompt, and the steps and guidance (the model's defaults for None)."""
    spec = pipe.model_spec
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("the prompt is empty: describe the video, e.g. 'a seven moving left'")
    steps = utils.check_int("steps", spec.steps if steps is None else steps, 1, hint=" (denoising steps)")
    guidance = utils.check_range("guidance", spec.guidance if guidance is None else guidance, 0.0)
    return steps, guidance


def generate_controlled(pipe, prompt: str, control, scale: float = 1.0, steps: int | None = None,
                        guidance: float | None = None, seed: int = 0, negative_prompt: str | None = None):
    """One video following ``control`` (one map per frame: PIL, uint8 or floats in [0, 1]) with
    a ControlNet pipeline; ``scale`` is the control strength (``controlnet_conditioning_scale``,
    0 = ignore the control). Returns a :class:`pipelines.Generation`."""
    steps, guidance = _common(pipe, prompt, steps, guidance)
    scale = utils.check_range("control scale", scale, 0.0, 2.0)
    maps = conditioning_frames(control)
    frames = utils.check_int("frames", len(maps), 1, pipelines.max_frames(pipe),
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
    images = as_pil_frames(image)
    if len(images) != 1:
        raise UserError(f"give one image for image-to-video, got {len(images)}")
    frames = utils.check_int("frames", pipe.model_spec.frames if frames is None else frames, 1)
    keyframe = as_conditioning(torch.from_numpy(np.array(images[0])).permute(2, 0, 1)[None], frames)[0]
    return generate_controlled(pipe, prompt, keyframe.permute(0, 2, 3, 1).numpy(), scale, steps, guidance, seed)


def video_to_video(pipe, video, prompt: str, strength: float = 0.6, steps: int | None = None,
                   guidance: float | None = None, seed: int = 0, negative_prompt: str | None = None):
    """Re-render ``video`` (frames as for :func:`detect`) with a new prompt / style: noise it to
    ``strength`` of the schedule and denoise from there (about ``strength * steps`` UNet
    evaluations: strength 0.6 of 8 LCM steps runs 4)."""
    steps, guidance = _common(pipe, prompt, steps, guidance)
    strength = utils.check_range("strength", strength, 0.0, 1.0)
    if int(steps * strength) < 1:
        raise UserError(f"strength {strength} of {steps} steps leaves no step to run; raise either")
    frames = as_pil_frames(video)
    utils.check_int("frames", len(frames), 1, pipelines.max_frames(pipe), hint=" (the motion modules' limit)")
    width, height = frames[0].size
    return _run(pipe, seed, video=frames, prompt=prompt, negative_prompt=negative_prompt, strength=strength,
                height=height, width=width, num_inference_steps=steps, guidance_scale=guidance)


def _toy_adapter(kind: str, naive: bool = False) -> str:
    """The zoo folder's name of a toy adapter (the naive twin has the suffix)."""
    return TOY_ADAPTERS[kind] + (NAIVE_SUFFIX if naive else "")


def zoo_folder(kind: str, naive: bool = False) -> Path:
    """Where a toy adapter lives in the zoo."""
    return zoo.root() / _toy_adapter(kind, naive)


# ------------------------------------------------------------------------------------------
# Measuring control: held-out videos, their maps, one table row per setting
# ------------------------------------------------------------------------------------------


