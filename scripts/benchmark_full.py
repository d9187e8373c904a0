"""Time the full world on a GPU with full-size models and RANDOM weights: nothing is downloaded.

    python scripts/benchmark_full.py                          # a CUDA GPU: full size, fp16
    python scripts/benchmark_full.py --repeats 3 --json results/benchmark_full.json
    python scripts/benchmark_full.py --only svd               # image-to-video only
    python scripts/benchmark_full.py --small --device cpu     # any CPU, seconds: tiny widths, same code path

What is timed (one warm-up run, then ``--repeats`` timed runs per configuration; medians):

* text-to-video, 16 frames 512x512, ``AnimateDiffPipeline`` (SD1.5's UNet inflated by a motion
  adapter): AnimateLCM, ``LCMScheduler`` 4 steps, guidance 1 (no CFG: 1 UNet evaluation a step)
  against the teacher (SD1.5 + AnimateDiff's motion module, the same architecture), ``DDIMScheduler``
  25 steps, CFG 7.5 (2 evaluations a step);
* image-to-video, 25 frames 576x1024, ``StableVideoDiffusionPipeline``: SVD-xt's Euler sampler,
  25 steps, guidance ramp 1.0 -> 3.0 over frames (SVD's defaults: CFG) against AnimateLCM-SVD-xt's
  scheduler, 4 steps with the official demo's ramp 1.0 -> 1.2 (still CFG: 2 evaluations a step),
  and 4 steps without CFG (max guidance 1.0).

Figures per configuration: seconds per video (the whole pipeline call, VAE decode and postprocessing
included), UNet seconds (the sum of the UNet's forward times, from forward pre/post hooks that
synchronize the GPU), UNet evaluations per video (a CFG call with batch 2 counts 2), VAE-decode
seconds, and peak GPU memory (``torch.cuda.max_memory_allocated`` and ``_reserved``) with the
pipeline on the GPU whole and with ``enable_model_cpu_offload()``. The ratios printed at the end
are the teacher's (baseline's) figure over AnimateLCM's. ``--json PATH`` writes every figure and the
environment (atomically).

Why random weights measure the real thing: time and memory depend on the architecture, the sizes
and the dtype, never on the weights' values. The models are the diffusers/transformers classes with
the real repositories' configs (below), built directly on the target device (fp16 on a GPU, fp32 on
a CPU), never materialised on the CPU first (``AnimateDiffPipeline`` inflates the UNet into a
``UNetMotionModel`` made in fp32 and then cast: ~5 GB for a moment, on the GPU). ``--small`` on a
CPU runs on one thread (tiny models are latency-bound). AnimateLCM's spatial LCM LoRA is not
applied: a fused LoRA costs nothing at inference. The prompt is given as ``prompt_embeds`` (random, (1, 77, 768)), so
no tokenizer is needed and the text encoder (built, on the GPU, counted in memory) is not run: one
CLIP-text pass is negligible next to the UNet.

Configs and their sources (``--small`` shrinks widths, depth, frames and pixels; same classes, same code path):

* SD1.5 ``UNet2DConditionModel``: stable-diffusion-v1-5's unet/config.json, written out in
  :func:`sd15_unet_config` (diffusers' defaults differ in ``cross_attention_dim``, 1280, and
  ``sample_size``); 859.5 M parameters.
* AnimateLCM's ``MotionAdapter`` (wangfuyun/AnimateLCM config.json, 376 bytes, not read here):
  ASSUMED to be diffusers' defaults, AnimateDiff v1.5-2's architecture (motion mid block, 2 motion
  layers a block, 8 heads, 32 positions). A diffusers 0.26-dev config with exactly these keys plus
  ``conv_in_channels: null`` serialises to 376 bytes, and the checkpoint's size (1.81 GB fp32)
  matches these ~453 M parameters. The teacher's v1.5-2 adapter has the same architecture.
* SD1.5 ``AutoencoderKL`` (vae/config.json; 83.7 M) and ``CLIPTextModel`` with CLIP ViT-L/14's text
  config (hidden 768, 12 layers, 12 heads, 77 positions, vocabulary 49408; 123.1 M).
* SVD-xt: ``UNetSpatioTemporalConditionModel`` and ``AutoencoderKLTemporalDecoder`` from
  ``animatelcm_helpers.svd`` (1.52 B and 97.7 M), ``CLIPVisionModelWithProjection`` with ViT-H/14's
  vision config as in SVD-xt's image_encoder/config.json (hidden 1280, 32 layers, 16 heads, patch 14,
  image 224, projection 1024, gelu; 632 M), ``CLIPImageProcessor`` (224, CLIP mean/std).
* Schedulers: DDIM with AnimateDiff's settings (linear betas 0.00085..0.012, clip_sample False,
  linspace spacing, steps_offset 1); LCM as the official inference-t2v.yaml (linear betas, beta_end
  0.012, original_inference_steps 100); SVD-xt's Euler (``svd.euler_baseline_scheduler``) and
  ``svd.AnimateLCMSVDScheduler``. fps 7 (diffusers' default; the official app passes none), motion
  bucket 127 (SVD's default) for the baseline and 80 (the demo's) for AnimateLCM, noise
  augmentation 0.02, decode chunk 4 frames for SVD (the demo's) and 16 for AnimateDiff (its default).

Memory on a 16 GB card: every configuration is also run with ``enable_model_cpu_offload()``, and
each row says whether its peak (reserved memory plus the CUDA context) fits the ~14.5 GiB a 16 GB
T4 leaves to PyTorch: an estimate when measured on a bigger card. A configuration that runs out of
memory is recorded as "OOM" and the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

T4_USABLE_GIB = 14.5  # a 16 GB T4 shows ~15.0 GiB; the CUDA context takes ~0.3-0.5 of it
CUDA_CONTEXT_GIB = 0.4  # added to PyTorch's reserved peak for the 16 GB estimate
NA = "n/a"

SIZES = {  # (frames, height, width) of one video
    "full": {"t2v": (16, 512, 512), "svd": (25, 576, 1024)},
    "small": {"t2v": (4, 16, 16), "svd": (4, 16, 16)},
}
T2V_DECODE_CHUNK = 16  # AnimateDiffPipeline's default decode_chunk_size
SVD_DECODE_CHUNK = 4  # the official AnimateLCM-SVD-xt demo's decoding_t
SVD_FPS = 7  # diffusers' default; the official app passes no fps (its fps_id only sets the export)
NOISE_AUG = 0.02


# ------------------------------------------------------------------------------------------
# 1. Configs (full size, or --small: tiny widths, one UNet level, the same classes)
# ------------------------------------------------------------------------------------------


def sd15_unet_config(small: bool = False) -> dict:
    """SD1.5's ``UNet2DConditionModel`` (stable-diffusion-v1-5 unet/config.json): 859.5 M parameters."""
    if small:
        return {
            "sample_size": 8, "in_channels": 4, "out_channels": 4,
            "down_block_types": ("CrossAttnDownBlock2D",), "up_block_types": ("CrossAttnUpBlock2D",),
            "block_out_channels": (32,), "layers_per_block": 1,
            "cross_attention_dim": 32, "attention_head_dim": 2, "norm_num_groups": 32,
        }
    return {
        "sample_size": 64,  # latent pixels: 512 / 8
        "in_channels": 4,
        "out_channels": 4,
        "center_input_sample": False,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "act_fn": "silu",
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "cross_attention_dim": 768,  # CLIP ViT-L/14's text width (diffusers' default is 1280)
        "attention_head_dim": 8,  # SD1.5's legacy name: 8 heads in every block
    }


def animatelcm_adapter_config(small: bool = False) -> dict:
    """AnimateLCM's ``MotionAdapter`` (assumed: diffusers' defaults, AnimateDiff v1.5-2's architecture;
    see the module docstring): ~453 M parameters. ``motion_layers_per_block`` must equal the UNet's
    ``layers_per_block``."""
    if small:
        return {
            "block_out_channels": (32,), "motion_layers_per_block": 1,
            "motion_mid_block_layers_per_block": 1, "motion_num_attention_heads": 2,
            "motion_norm_num_groups": 32, "motion_max_seq_length": 32, "use_motion_mid_block": True,
        }
    return {
        "block_out_channels": (320, 640, 1280, 1280),
        "motion_layers_per_block": 2,
        "motion_transformer_layers_per_block": 1,
        "motion_mid_block_layers_per_block": 1,
        "motion_transformer_layers_per_mid_block": 1,
        "motion_num_attention_heads": 8,
        "motion_norm_num_groups": 32,
        "motion_max_seq_length": 32,
        "use_motion_mid_block": True,
        "conv_in_channels": None,
    }


def sd15_vae_config(small: bool = False) -> dict:
    """SD1.5's ``AutoencoderKL`` (vae/config.json): 83.7 M parameters, 8 pixels a latent pixel."""
    if small:
        return {
            "in_channels": 3, "out_channels": 3, "latent_channels": 4,
            "down_block_types": ("DownEncoderBlock2D",) * 2, "up_block_types": ("UpDecoderBlock2D",) * 2,
            "block_out_channels": (32, 64), "layers_per_block": 1, "sample_size": 16,
        }
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    }


def clip_text_config(small: bool = False) -> dict:
    """CLIP ViT-L/14's text tower (SD1.5's text_encoder): 123.1 M parameters."""
    if small:
        return {"vocab_size": 1000, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 2, "max_position_embeddings": 77, "projection_dim": 32,
                "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
    return {
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 768,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }


def clip_vision_config(small: bool = False) -> dict:
    """CLIP ViT-H/14's vision tower with its projection (SVD-xt's image_encoder): 632 M parameters.
    The input stays 224 x 224 even when small: the SVD pipeline resizes the image to 224 itself."""
    if small:
        return {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                "image_size": 224, "patch_size": 32, "projection_dim": 32}
    return {
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "patch_size": 14,
        "image_size": 224,
        "projection_dim": 1024,  # SVD-xt's UNet cross_attention_dim
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
    }


def _svd_module(name: str):
    """``name`` from the package's SVD modules (the configs in ``svd``, the schedulers in ``svd_scheduler``)."""
    from animatelcm_helpers import svd, svd_scheduler

    return getattr(svd, name, None) or getattr(svd_scheduler, name)


def svd_unet_config(small: bool = False) -> dict:
    """SVD-xt's ``UNetSpatioTemporalConditionModel`` (``svd.svd_xt_unet_config``): 1.52 B parameters."""
    if small:
        frames = SIZES["small"]["svd"][0]
        return {
            "sample_size": 8, "in_channels": 8, "out_channels": 4,
            "down_block_types": ("CrossAttnDownBlockSpatioTemporal",),
            "up_block_types": ("CrossAttnUpBlockSpatioTemporal",),
            "block_out_channels": (32,), "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 3 * 8, "layers_per_block": 1,
            "cross_attention_dim": 32, "transformer_layers_per_block": 1, "num_attention_heads": (2,),
            "num_frames": frames,
        }
    return dict(_svd_module("svd_xt_unet_config")())


def svd_vae_config(small: bool = False) -> dict:
    """SVD-xt's ``AutoencoderKLTemporalDecoder`` (``svd.svd_xt_vae_config``): 97.7 M parameters."""
    if small:
        return {"in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 2,
                "block_out_channels": (32, 64), "layers_per_block": 1, "latent_channels": 4, "sample_size": 16}
    return dict(_svd_module("svd_xt_vae_config")())


# ------------------------------------------------------------------------------------------
# 2. Building on the device
# ------------------------------------------------------------------------------------------


def build(cls, cfg: dict, device: str, dtype: torch.dtype, seed: int = 0):
    """``cls(**cfg)`` with random weights, made on ``device`` (``"meta"`` to count parameters), then
    cast. The ``.to(device)`` moves the few parameters diffusers makes with the legacy
    ``torch.Tensor([...])`` constructor, which ignores the default device and lands on the CPU."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls(**cfg)
    return model.to(device=device, dtype=dtype).eval()


def build_clip(model_cls, config_cls, cfg: dict, device: str, dtype: torch.dtype, seed: int = 0):
    """A transformers CLIP tower from its config, made on ``device`` the same way as :func:`build`."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = model_cls(config_cls(**cfg))
    return model.to(device=device, dtype=dtype).eval()


def t2v_components(device: str, dtype: torch.dtype, small: bool = False) -> dict:
    """SD1.5's UNet2DConditionModel, AnimateLCM's MotionAdapter, SD1.5's VAE and CLIP ViT-L's text tower."""
    from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    return {
        "unet2d": build(UNet2DConditionModel, sd15_unet_config(small), device, dtype, seed=0),
        "motion_adapter": build(MotionAdapter, animatelcm_adapter_config(small), device, dtype, seed=1),
        "vae": build(AutoencoderKL, sd15_vae_config(small), device, dtype, seed=2),
        "text_encoder": build_clip(CLIPTextModel, CLIPTextConfig, clip_text_config(small), device, dtype, seed=3),
    }


def svd_components(device: str, dtype: torch.dtype, small: bool = False) -> dict:
    """SVD-xt's UNet, its temporal VAE and CLIP ViT-H's vision tower with projection."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return {
        "unet": build(UNetSpatioTemporalConditionModel, svd_unet_config(small), device, dtype, seed=0),
        "vae": build(AutoencoderKLTemporalDecoder, svd_vae_config(small), device, dtype, seed=1),
        "image_encoder": build_clip(CLIPVisionModelWithProjection, CLIPVisionConfig, clip_vision_config(small),
                                    device, dtype, seed=2),
    }


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def t2v_pipeline(device: str, dtype: torch.dtype, small: bool):
    """(AnimateDiffPipeline, parameter counts). The pipeline inflates the 2D UNet into a
    ``UNetMotionModel`` (``from_unet2d``: a new model, made under the device context so it is made
    on the GPU too) and keeps the adapter as a component, as ``from_pretrained`` does."""
    from diffusers import AnimateDiffPipeline

    parts = t2v_components(device, dtype, small)
    params = {name: count(module) for name, module in parts.items()}
    unet2d, scheduler = parts.pop("unet2d"), ddim_teacher()  # the scheduler's tables stay on the CPU
    with torch.device(device):
        pipe = AnimateDiffPipeline(unet=unet2d, tokenizer=None, scheduler=scheduler, **parts)
    del unet2d
    pipe.to(device)
    params["unet (UNetMotionModel)"] = count(pipe.unet)
    pipe.set_progress_bar_config(disable=True)
    return pipe, params


def svd_pipeline(device: str, dtype: torch.dtype, small: bool):
    """(StableVideoDiffusionPipeline, parameter counts)."""
    from diffusers import StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor

    parts = svd_components(device, dtype, small)
    params = {name: count(module) for name, module in parts.items()}
    extractor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    pipe = StableVideoDiffusionPipeline(scheduler=svd_euler(), feature_extractor=extractor, **parts)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, params


# ------------------------------------------------------------------------------------------
# 3. Schedulers and the configurations
# ------------------------------------------------------------------------------------------


def ddim_teacher():
    """The teacher's sampler with AnimateDiff's settings."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                         clip_sample=False, set_alpha_to_one=False, timestep_spacing="linspace", steps_offset=1)


def lcm_student():
    """AnimateLCM's sampler as the official inference-t2v.yaml sets it."""
    from diffusers import LCMScheduler

    from animatelcm_helpers import config

    return LCMScheduler(**dict(config.ANIMATELCM_T2V_SCHEDULE))


def svd_euler():
    return _svd_module("euler_baseline_scheduler")()


def svd_animatelcm():
    return _svd_module("AnimateLCMSVDScheduler")()


CONFIGS = [  # name, task, label, scheduler, steps, guidance, motion bucket (SVD)
    {"name": "t2v_animatelcm_4", "task": "t2v", "label": "AnimateLCM, LCM 4 steps, no CFG",
     "scheduler": lcm_student, "steps": 4, "guidance": 1.0},
    {"name": "t2v_teacher_ddim_25_cfg", "task": "t2v", "label": "teacher, DDIM 25 steps, CFG 7.5",
     "scheduler": ddim_teacher, "steps": 25, "guidance": 7.5},
    {"name": "svd_euler_25_cfg", "task": "svd", "label": "SVD-xt, Euler 25 steps, CFG ramp 1.0->3.0",
     "scheduler": svd_euler, "steps": 25, "guidance": (1.0, 3.0), "motion_bucket_id": 127},
    {"name": "svd_animatelcm_4_ramp", "task": "svd", "label": "AnimateLCM-SVD-xt, 4 steps, CFG ramp 1.0->1.2",
     "scheduler": svd_animatelcm, "steps": 4, "guidance": (1.0, 1.2), "motion_bucket_id": 80},
    {"name": "svd_animatelcm_4_nocfg", "task": "svd", "label": "AnimateLCM-SVD-xt, 4 steps, no CFG",
     "scheduler": svd_animatelcm, "steps": 4, "guidance": (1.0, 1.0), "motion_bucket_id": 80},
]
RATIOS = [  # (key, label, numerator config, denominator config)
    ("t2v_teacher_over_animatelcm", "t2v: teacher DDIM 25 + CFG / AnimateLCM 4",
     "t2v_teacher_ddim_25_cfg", "t2v_animatelcm_4"),
    ("svd_euler25_over_animatelcm4_ramp", "SVD: Euler 25 + CFG / AnimateLCM 4, ramp 1.0->1.2",
     "svd_euler_25_cfg", "svd_animatelcm_4_ramp"),
    ("svd_euler25_over_animatelcm4_nocfg", "SVD: Euler 25 + CFG / AnimateLCM 4, no CFG",
     "svd_euler_25_cfg", "svd_animatelcm_4_nocfg"),
]
RATIO_FIELDS = ("seconds", "unet_seconds", "unet_evaluations")


def uses_cfg(cfg: dict) -> bool:
    """Both pipelines run classifier-free guidance (a batch of 2) when the (largest) guidance is above 1."""
    g = cfg["guidance"]
    return (max(g) if isinstance(g, tuple) else g) > 1


def t2v_inputs(device: str, dtype: torch.dtype, small: bool) -> dict:
    """Random prompt embeddings (1, 77, width) in place of CLIP's: no tokenizer, nothing downloaded."""
    width = clip_text_config(small)["hidden_size"]
    g = torch.Generator("cpu").manual_seed(0)
    embeds = torch.randn(2, 77, width, generator=g).to(device, dtype)
    return {"prompt_embeds": embeds[:1], "negative_prompt_embeds": embeds[1:]}


def svd_inputs(small: bool):
    """A random RGB conditioning image at the video's size (PIL: the pipeline resizes it for CLIP)."""
    from PIL import Image

    _, height, width = SIZES["small" if small else "full"]["svd"]
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def caller(pipe, cfg: dict, device: str, dtype: torch.dtype, small: bool):
    """``call(seed)``: one video with ``cfg``'s sampler, steps and guidance, as a numpy array."""
    frames, height, width = SIZES["small" if small else "full"][cfg["task"]]
    if cfg["task"] == "t2v":
        embeds = t2v_inputs(device, dtype, small)
        if not uses_cfg(cfg):
            embeds["negative_prompt_embeds"] = None

        def call(seed: int):
            g = torch.Generator(device).manual_seed(seed)
            return pipe(num_frames=frames, height=height, width=width, num_inference_steps=cfg["steps"],
                        guidance_scale=cfg["guidance"], generator=g, output_type="np",
                        decode_chunk_size=T2V_DECODE_CHUNK, **embeds).frames
    else:
        image = svd_inputs(small)
        lo, hi = cfg["guidance"]

        def call(seed: int):
            g = torch.Generator(device).manual_seed(seed)
            return pipe(image, height=height, width=width, num_frames=frames, num_inference_steps=cfg["steps"],
                        min_guidance_scale=lo, max_guidance_scale=hi, fps=SVD_FPS,
                        motion_bucket_id=cfg["motion_bucket_id"], noise_aug_strength=NOISE_AUG,
                        decode_chunk_size=SVD_DECODE_CHUNK, generator=g, output_type="np").frames
    return call


# ------------------------------------------------------------------------------------------
# 4. Measuring
# ------------------------------------------------------------------------------------------


def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def sync(device: str) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(device)


class Timer:
    """Sums the UNet's forward seconds and counts its evaluations (the batch rows of each call: a
    CFG call of batch 2 counts 2), and sums the VAE's decode seconds, for the runs inside ``with``.
    With model offload, the UNet's first call includes moving its weights to the GPU."""

    def __init__(self, pipe, device: str):
        self.pipe, self.device = pipe, device
        self.reset()

    def reset(self) -> None:
        self.unet_seconds, self.unet_evaluations, self.vae_seconds = 0.0, 0, 0.0

    def _pre(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.unet_evaluations += int(sample.shape[0])
        sync(self.device)
        self._start = time.perf_counter()

    def _post(self, module, args, kwargs, output):
        sync(self.device)
        self.unet_seconds += time.perf_counter() - self._start

    def __enter__(self):
        unet, vae = self.pipe.unet, self.pipe.vae
        self._hooks = [unet.register_forward_pre_hook(self._pre, with_kwargs=True),
                       unet.register_forward_hook(self._post, with_kwargs=True)]
        decode = vae.decode  # the bound method (diffusers' offload hook lives inside it)

        def timed_decode(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            out = decode(*args, **kwargs)
            sync(self.device)
            self.vae_seconds += time.perf_counter() - start
            return out

        vae.decode = timed_decode
        return self

    def __exit__(self, *exc):
        for hook in self._hooks:
            hook.remove()
        del self.pipe.vae.decode  # the class's method again
        return False


def gib(n_bytes: int) -> float:
    return n_bytes / 2**30


def free_memory(device: str) -> None:
    gc.collect()
    if is_cuda(device):
        torch.cuda.empty_cache()


def measure(pipe, cfg: dict, device: str, dtype: torch.dtype, small: bool, repeats: int) -> dict:
    """One warm-up video, then ``repeats`` timed ones: medians, the evaluations per video, and the peak
    memory over all of them (CUDA only; "n/a" on a CPU). Out of GPU memory: status "OOM"."""
    pipe.scheduler = cfg["scheduler"]()
    call = caller(pipe, cfg, device, dtype, small)
    free_memory(device)
    cuda = is_cuda(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        resident = gib(torch.cuda.memory_allocated(device))
    runs = []
    try:
        with Timer(pipe, device) as timer, torch.inference_mode():
            call(0)
            for seed in range(1, repeats + 1):
                timer.reset()
                sync(device)
                start = time.perf_counter()
                call(seed)
                sync(device)
                runs.append({"seconds": time.perf_counter() - start, "unet_seconds": timer.unet_seconds,
                             "vae_decode_seconds": timer.vae_seconds, "unet_evaluations": timer.unet_evaluations})
    except torch.cuda.OutOfMemoryError as err:
        free_memory(device)
        return {"status": "OOM", "error": str(err).splitlines()[0][:200], "seconds": NA, "unet_seconds": NA,
                "vae_decode_seconds": NA, "unet_evaluations": NA, "peak_allocated_gib": "OOM",
                "peak_reserved_gib": "OOM", "fits_16gb_estimate": False}
    evaluations = {r["unet_evaluations"] for r in runs}
    if len(evaluations) != 1:
        raise RuntimeError(f"{cfg['name']}: UNet evaluations changed between runs: {sorted(evaluations)}")
    out = {"status": "ok", "repeats": repeats, "unet_evaluations": evaluations.pop()}
    for key in ("seconds", "unet_seconds", "vae_decode_seconds"):
        out[key] = statistics.median(r[key] for r in runs)
        out[f"{key}_runs"] = [r[key] for r in runs]
    if cuda:
        reserved = gib(torch.cuda.max_memory_reserved(device))
        out.update(resident_gib=resident, peak_allocated_gib=gib(torch.cuda.max_memory_allocated(device)),
                   peak_reserved_gib=reserved, fits_16gb_estimate=reserved + CUDA_CONTEXT_GIB <= T4_USABLE_GIB)
    else:
        out.update(resident_gib=NA, peak_allocated_gib=NA, peak_reserved_gib=NA, fits_16gb_estimate=NA)
    return out


def run_task(task: str, device: str, dtype: torch.dtype, small: bool, repeats: int, log) -> tuple[dict, dict]:
    """Build the task's pipeline on the device, measure its configurations whole on the device, then
    (CUDA only) again with ``enable_model_cpu_offload()``. Returns (results by name, parameters)."""
    configs = [c for c in CONFIGS if c["task"] == task]
    builder = t2v_pipeline if task == "t2v" else svd_pipeline
    try:
        pipe, params = builder(device, dtype, small)
    except torch.cuda.OutOfMemoryError as err:
        free_memory(device)
        oom = {"status": "OOM", "error": f"building the pipeline: {str(err).splitlines()[0][:200]}"}
        return {c["name"]: describe(c) | {"whole": dict(oom), "offload": dict(oom)} for c in configs}, {}
    results = {}
    for cfg in configs:
        log(f"  {cfg['name']}: whole pipeline on {device} ...")
        results[cfg["name"]] = describe(cfg) | {"whole": measure(pipe, cfg, device, dtype, small, repeats)}
    if is_cuda(device):
        pipe.enable_model_cpu_offload(device=device)
        for cfg in configs:
            log(f"  {cfg['name']}: enable_model_cpu_offload() ...")
            results[cfg["name"]]["offload"] = measure(pipe, cfg, device, dtype, small, repeats)
    else:
        for cfg in configs:
            results[cfg["name"]]["offload"] = {"status": NA, "reason": "enable_model_cpu_offload needs a GPU"}
    del pipe
    free_memory(device)
    return results, params


def describe(cfg: dict) -> dict:
    """The JSON-able description of a configuration."""
    out = {k: v for k, v in cfg.items() if k not in ("scheduler", "name")}
    out["scheduler"] = type(cfg["scheduler"]()).__name__
    out["cfg"] = uses_cfg(cfg)
    if isinstance(out["guidance"], tuple):
        out["guidance"] = list(out["guidance"])
    return out


# ------------------------------------------------------------------------------------------
# 5. Ratios, the table, the environment, the JSON
# ------------------------------------------------------------------------------------------


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ratios(results: dict, modes=("whole", "offload")) -> dict:
    """For each pair in :data:`RATIOS` and each mode: numerator / denominator of seconds, UNet
    seconds and UNet evaluations ("n/a" where either side has no figure)."""
    out = {}
    for mode in modes:
        out[mode] = {}
        for key, label, num, den in RATIOS:
            if num not in results or den not in results:
                continue
            a, b = results[num].get(mode, {}), results[den].get(mode, {})
            entry = {"label": label, "numerator": num, "denominator": den}
            for field in RATIO_FIELDS:
                x, y = a.get(field), b.get(field)
                entry[field] = x / y if number(x) and number(y) and y > 0 else NA
            out[mode][key] = entry
    return out


def fmt(value, digits: int = 3) -> str:
    if number(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return str(value)


def fmt_ratio(value) -> str:
    return f"{value:.2f}x" if number(value) else str(value)


def fits(m: dict) -> str:
    value = m.get("fits_16gb_estimate", NA)
    return {True: "yes", False: "no"}.get(value, NA) if isinstance(value, bool) else str(value)


def table(results: dict, device: str) -> str:
    """The results as markdown: one row per configuration and mode."""
    where = "GPU" if is_cuda(device) else device
    header = ("| configuration | mode | steps | CFG | UNet evals | s / video | UNet s | VAE decode s "
              "| peak allocated GiB | peak reserved GiB | fits 16 GB (est.) |")
    lines = [header, "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        for mode in ("whole", "offload"):
            m = r.get(mode, {})
            if m.get("status") == NA:
                continue
            label = f"whole on {where}" if mode == "whole" else "model CPU offload"
            status = "" if m.get("status") == "ok" else f" ({m.get('status')})"
            cfg = "yes" if r.get("cfg") else "no"
            lines.append(
                f"| {r.get('label', name)}{status} | {label} | {r.get('steps', '')} | {cfg} "
                f"| {fmt(m.get('unet_evaluations'))} | {fmt(m.get('seconds'))} | {fmt(m.get('unet_seconds'))} "
                f"| {fmt(m.get('vae_decode_seconds'))} | {fmt(m.get('peak_allocated_gib'), 2)} "
                f"| {fmt(m.get('peak_reserved_gib'), 2)} | {fits(m)} |")
    return "\n".join(lines)


def ratio_table(rat: dict) -> str:
    lines = ["| ratio | mode | s / video | UNet s | UNet evals |", "|---|---|---:|---:|---:|"]
    for mode, entries in rat.items():
        for entry in entries.values():
            if all(entry[f] == NA for f in RATIO_FIELDS) and mode == "offload":
                continue
            lines.append(f"| {entry['label']} | {mode} | {fmt_ratio(entry['seconds'])} "
                         f"| {fmt_ratio(entry['unet_seconds'])} | {fmt_ratio(entry['unet_evaluations'])} |")
    return "\n".join(lines)


def environment(device: str, dtype: torch.dtype) -> dict:
    import diffusers
    import transformers

    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "diffusers": diffusers.__version__, "transformers": transformers.__version__,
           "device": str(device), "dtype": str(dtype).removeprefix("torch."), "cpu_threads": torch.get_num_threads()}
    try:
        import accelerate

        env["accelerate"] = accelerate.__version__
    except ImportError:
        env["accelerate"] = None
    if is_cuda(device):
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_total_memory_gib=gib(props.total_memory), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), capability=f"{props.major}.{props.minor}")
    else:
        env.update(gpu=None, gpu_total_memory_gib=NA)
    return env


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------------------------------
# 6. The command line
# ------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when present)")
    p.add_argument("--only", choices=("t2v", "svd"), help="one task only (default: both)")
    p.add_argument("--repeats", type=int, default=3, help="timed videos per configuration, after one warm-up")
    p.add_argument("--small", action="store_true",
                   help="tiny widths, one UNet level, 4 frames 16x16: the same code path in seconds on a CPU")
    p.add_argument("--json", type=Path, help="write every figure and the environment here")
    return p


@contextlib.contextmanager
def quiet_libraries():
    """Only errors from diffusers and transformers (casting notes, the missing tokenizer), restored after."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    saved = dlog.get_verbosity(), tlog.get_verbosity()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(saved[0])
        tlog.set_verbosity(saved[1])


def check_args(args) -> str:
    """The device to use; a mistake raises ``UserError`` with what to do."""
    from animatelcm_helpers.config import UserError

    if args.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {args.repeats}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if is_cuda(device) and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU here; run with --device cpu --small")
    if not is_cuda(device) and device != "cpu":
        raise UserError(f"--device {device}: use cuda, cuda:N or cpu")
    if device == "cpu" and not args.small:
        raise UserError("full-size models on a CPU take hours a video; pass --small (or run on a GPU)")
    return device


def notes(small: bool, device: str) -> list[str]:
    size = "SMALL (tiny widths; not the real models' cost)" if small else "full size"
    out = [f"{size}, RANDOM weights (nothing downloaded); time and memory do not depend on the weights' values.",
           "AnimateLCM's spatial LCM LoRA is not applied: a fused LoRA costs nothing at inference.",
           "Prompts are random prompt_embeds: the CLIP text encoder is on the device but not run.",
           (f"SVD: fps {SVD_FPS}, motion bucket 127 (Euler baseline) / 80 (AnimateLCM), noise aug {NOISE_AUG}, "
            f"decode chunk {SVD_DECODE_CHUNK}; t2v: decode chunk {T2V_DECODE_CHUNK}."),
           "UNet seconds: forward pre/post hooks that synchronize; with offload they include moving the UNet in."]
    if is_cuda(device):
        out.append(f"'fits 16 GB (est.)': peak reserved + {CUDA_CONTEXT_GIB} GiB CUDA context <= {T4_USABLE_GIB} GiB "
                   "(what a 16 GB T4 leaves to PyTorch); an estimate unless measured on a 16 GB card.")
    else:
        out.append("GPU memory and model CPU offload: n/a on a CPU.")
    return out


@contextlib.contextmanager
def one_thread(active: bool):
    """One CPU thread while ``active``: the --small models are so small that every op is latency-bound,
    and a second OpenMP thread only adds barrier waits (10x slower on a busy 2-core machine)."""
    saved = torch.get_num_threads()
    if active:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def run(args, device: str, dtype: torch.dtype, tasks: list[str]) -> int:
    env = environment(device, dtype)
    sizes = SIZES["small" if args.small else "full"]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    print(f"device: {env.get('gpu') or device} | dtype: {env['dtype']} | torch {env['torch']} | "
          f"diffusers {env['diffusers']} | {'SMALL' if args.small else 'full size'}, random weights | "
          f"median of {args.repeats} after 1 warm-up")
    results, params = {}, {}
    with quiet_libraries():
        for task in tasks:
            log(f"{task}: building {'small' if args.small else 'full-size'} models on {device} ...")
            task_results, params[task] = run_task(task, device, dtype, args.small, args.repeats, log)
            results.update(task_results)
    for task in tasks:
        frames, height, width = sizes[task]
        counts = ", ".join(f"{k} {v / 1e6:,.1f} M" for k, v in params[task].items())
        print(f"{task}: {frames} frames {height}x{width}; parameters: {counts or 'n/a (not built)'}")
    rat = ratios(results)
    print()
    print(table(results, device))
    print()
    print(ratio_table(rat))
    print()
    for line in notes(args.small, device):
        print(f"- {line}")
    if args.json:
        write_json(args.json, {
            "environment": env,
            "settings": {"small": args.small, "repeats": args.repeats, "warmup": 1, "tasks": tasks,
                         "sizes": {t: dict(zip(("frames", "height", "width"), sizes[t])) for t in tasks},
                         "t2v_decode_chunk_size": T2V_DECODE_CHUNK, "svd_decode_chunk_size": SVD_DECODE_CHUNK,
                         "svd_fps": SVD_FPS, "noise_aug_strength": NOISE_AUG, "t4_usable_gib": T4_USABLE_GIB,
                         "cuda_context_gib": CUDA_CONTEXT_GIB},
            "parameters": params,
            "configurations": results,
            "ratios": rat,
            "notes": notes(args.small, device),
        })
        print(f"\nwrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from animatelcm_helpers.config import UserError

    try:
        device = check_args(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    dtype = torch.float16 if is_cuda(device) else torch.float32
    tasks = [args.only] if args.only else ["t2v", "svd"]
    with one_thread(args.small and not is_cuda(device)):
        return run(args, device, dtype, tasks)


if __name__ == "__main__":
    sys.exit(main())
