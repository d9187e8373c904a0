"""AnimateLCM-I2V: image-to-video with the official image encoder, on diffusers' AnimateDiffPipeline.

The official model (``config.HUB["animatelcm_i2v"]``) is a text-to-video AnimateLCM whose UNet carries
one more part, an image encoder (``img_encoder.*`` in ``AnimateLCM_sd15_i2v.ckpt``): a
T2I-Adapter-like net on the image latent ``z`` (repeated over the frames), with a fixed sinusoidal
position embedding over frames scaled by ``motion_scale``. Its level-``i`` feature map is added to
down block ``i`` of the UNet, to the hidden states of the block's SECOND layer right after its
spatial attention (after its resnet in the attention-free last block), BEFORE that layer's motion
module::

    x_f = conv_in(z) + motion_scale * PE[f]                       (f = 0 .. F-1, d = channels[0])
    x   = R_{i,j}(x)  for level i = 0 .. L-1, block j = 0 .. nums_rb-1;  feature_i = w_i * x
    h_i <- h_i + feature_i    in down block i, layer 1, between spatial attention and motion module

Everything the official code does, and where it does it (G-U-N/AnimateLCM @ f873122,
``animatelcm_sd15/``; ``file:line``):

* encoder: ``Adapter(cin=4, channels=[320, 640, 1280, 1280], nums_rb=2, ksize=1, sk=True,
  use_conv=False)`` (``animatelcm/models/unet.py:103``); ``conv_in`` zero-initialised
  (``adapter.py:75``); ``motion_scale = 0.8`` (``adapter.py:76``), set from the demo's slider
  (``app-i2v.py:178``); ``insertion_weights = [1, 1, 1, 1]`` (``adapter.py:77``); PE dimension
  ``channels[0]`` (``adapter.py:79``), formula ``adapter.py:50-57``, added after ``conv_in``
  (``adapter.py:86-95``); the ResnetBlock ``adapter.py:107-141``, its downsample ``adapter.py:144-182``.
* the image latent is repeated over the frames (``unet.py:377-381``); each down block gets its
  level's feature (``unet.py:457-479``) at layer index 1 (``idx == 2``) after the attention
  (``unet_blocks.py:495-504``) or after the resnet (``unet_blocks.py:608-614``).
* the image latent: resize (LANCZOS, cover) + centre crop to the output size (``util.py:19-43``,
  called at ``pipeline_animation.py:363``), ``ToTensor() * 2 - 1``, ``vae.encode(...).latent_dist
  .sample()`` (a SAMPLE, not the mean) ``* 0.18215`` (``pipeline_animation.py:360-374``).
* classifier-free guidance: the unconditional half gets the SAME image features
  (``img_latent`` is concatenated twice, ``pipeline_animation.py:470-476``); CFG runs only when
  ``guidance_scale > 1`` (``pipeline_animation.py:422-423``).
* initial latents: pure Gaussian noise ``(B, 4, F, H/8, W/8) * init_noise_sigma``; the image is not
  mixed into them (``pipeline_animation.py:327-358, 441-451``). diffusers' AnimateDiffPipeline does the same.
* after decoding, each frame's HSV means are moved towards the input image's
  (``util.py:45-61`` via ``pipeline_animation.py:271-284``): :func:`adjust_colors`.
* the demo's defaults and the scheduler: see the constants below.

What differs here, on purpose: the VAE sample and all noise come from seeded CPU generators (the
official code draws from the global RNG); the VAE's ``config.scaling_factor`` is used (0.18215 for
SD1.5's VAE, the official constant); frames are rounded to uint8 (the official code truncates);
no ``temp.png`` is written (``pipeline_animation.py:369-373``).

Loading of Hub files stays out of this module: :func:`convert_official_checkpoint` turns the
official pickle into two diffusers folders, and :func:`load_i2v` takes a loaded
``AnimateDiffPipeline`` (its UNet a ``UNetMotionModel`` with the converted motion modules) and the
encoder (a folder or a module).
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AnimateDiffPipeline, LCMScheduler, MotionAdapter
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image
from torch import nn

from . import config, loading, pipelines
from .config import UserError, Weights
from .toy import configs as toy_configs
from .toy import zoo
from .utils import quiet_loading

# ---------------------------------------------------------------------------------------------
# The official settings (G-U-N/AnimateLCM @ f873122, animatelcm_sd15/)
# ---------------------------------------------------------------------------------------------
OFFICIAL_COMMIT = "f873122358c101cd191533adb9cd517899fbfb01"
# The encoder's constructor arguments (animatelcm/models/unet.py:103).
OFFICIAL_ENCODER = {"cin": 4, "channels": (320, 640, 1280, 1280), "nums_rb": 2, "ksize": 1, "sk": True, "use_conv": False}
# The LCMScheduler's arguments (configs/inference-i2v.yaml:26-31; app-i2v.py:181-182 builds it from them).
I2V_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.014,  # also the demo slider's default, 0.012 .. 0.016 (app-i2v.py:319-320)
    "beta_schedule": "linear",
    "original_inference_steps": 200,
    "steps_offset": 1,
}
STEPS = 4  # app-i2v.py:313-314 (slider 1 .. 25)
GUIDANCE = 1.0  # app-i2v.py:327-328 (slider 1 .. 2): no CFG by default (pipeline_animation.py:422)
MOTION_SCALE = 0.8  # adapter.py:76; app-i2v.py:316-318 (slider 0 .. 1.5, step 0.05)
FRAMES = 16  # app-i2v.py:325-326 (slider 12 .. 20)
HEIGHT = WIDTH = 512  # app-i2v.py:321-324 (the examples use 768 wide x 512 high, app-i2v.py:365-371)
PROMPT = "best quality"  # app-i2v.py:304
NEGATIVE_PROMPT = "bad quality"  # app-i2v.py:305-306
LCM_LORA_WEIGHT = 0.8  # "LCM LoRA alpha" (app-i2v.py:280-281), AnimateLCM_sd15_i2v_lora.safetensors (app-i2v.py:55)
OFFICIAL_LAYER = 1  # the SECOND layer of each down block: idx == 2 with idx starting at 1 (unet_blocks.py:455, 498)
# Motion modules: 8 heads (inference-i2v.yaml:18), GroupNorm(32) (motion_module.py:94, 107),
# a 64-frame sinusoidal PE buffer named ``pos_encoding`` (motion_module.py:234, 242). The released
# files most likely hold no PE buffers (the t2v file's 1,813,041,929 B is its 453,209,280 motion
# parameters in fp32 plus ~0.2 MB; the buffers would add 9.7 MB), hence the 64 as the default.
MOTION_HEADS = 8
MOTION_NORM_GROUPS = 32
MOTION_MAX_SEQ_LENGTH = 64

ENCODER_PREFIX = "img_encoder."

# The toy world's AnimateLCM-I2V: the official design at toy size (the toy AnimateLCM + an image
# encoder trained teacher-free by distill.train_image_encoder, zoo folder TOY_ENCODER_FOLDER).
# Its two deviations, both because the toy UNet has ONE layer per down block where SD1.5 has two
# (toy.configs.tiny_unet: layers_per_block=1):
# * TOY_LAYER = 0: the features go into each down block's only layer, after its spatial attention,
#   before its motion module. The official second layer is SD1.5's LAST; the toy's only layer is
#   its last too, so the features enter at the same place relative to the block's output.
# * nums_rb = 1 residual block per level (official 2), like the UNet's one layer per block: two
#   would be 214 KB in float16 and the shipped zoo had 176 KB left under its 25,000,000-byte cap.
# Everything else is the official Adapter: cin = the latent's channels, channels = the UNet's
# block_out_channels (320/640/1280/1280 -> the toy's (32, 64)), ksize 1, sk, avg-pool downsampling,
# zero-initialised conv_in / in_conv / block2, the per-frame PE (d = channels[0]) times motion_scale.
TOY_LAYER = 0
TOY_ENCODER = {"cin": toy_configs.LATENT_CHANNELS, "channels": tuple(toy_configs.BLOCKS), "nums_rb": 1, "ksize": 1,
               "sk": True, "use_conv": False, "max_frames": toy_configs.MAX_FRAMES}
TOY_ENCODER_FOLDER = "i2v-encoder"
TOY_PROMPT = "a seven moving left"  # the toy's captions say the digit and the way; the image shows the digit


# ---------------------------------------------------------------------------------------------
# 1. The image encoder
# ---------------------------------------------------------------------------------------------
def frame_position_embedding(num_frames: int, dim: int) -> torch.Tensor:
    """The fixed sinusoidal embedding over frames, ``(num_frames, dim)`` (adapter.py:50-57)::

        PE[f, 2k] = sin(f * 10000^(-2k/d)),   PE[f, 2k+1] = cos(f * 10000^(-2k/d))
    """
    position = torch.arange(num_frames, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(num_frames, dim)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class _Downsample(nn.Module):
    """Replicate-pad H and W up to even, then a 2x2 average pool (``use_conv=False``) or a
    stride-2 3x3 conv with padding 1 (adapter.py:144-182). Parameter name ``op`` as the official."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x):
        h, w = x.shape[-2:]
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
        return self.op(x)


class _ResnetBlock(nn.Module):
    """One official ResnetBlock (adapter.py:107-141), parameter names kept::

        x <- down(x)            if down   (the first block of every level but the first)
        x <- in_conv(x)         if in_c != out_c or not sk   (ksize conv, zero-initialised)
        h  = block2(relu(block1(x)))      block1: 3x3, block2: ksize conv, zero-initialised
        out = h + (skep(x) if not sk else x)
    """

    def __init__(self, in_c: int, out_c: int, down: bool, ksize: int, sk: bool, use_conv: bool):
        super().__init__()
        if not sk and in_c != out_c:
            # The official skep expects in_c channels but gets in_conv's out_c (adapter.py:111-139).
            raise UserError(f"sk=False needs equal channels in each block (got {in_c} -> {out_c}): "
                            "the official ResnetBlock cannot run that combination")
        ps = ksize // 2
        self.in_conv = _zero(nn.Conv2d(in_c, out_c, ksize, 1, ps)) if (in_c != out_c or not sk) else None
        self.block1 = nn.Conv2d(out_c, out_c, 3, 1, 1)
        self.act = nn.ReLU()
        self.block2 = _zero(nn.Conv2d(out_c, out_c, ksize, 1, ps))
        self.skep = nn.Conv2d(in_c, out_c, ksize, 1, ps) if not sk else None
        self.down = down
        self.down_opt = _Downsample(in_c, use_conv) if down else None

    def forward(self, x):
        if self.down_opt is not None:
            x = self.down_opt(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        h = self.block2(self.act(self.block1(x)))
        return h + (self.skep(x) if self.skep is not None else x)


class I2VImageEncoder(ModelMixin, ConfigMixin):
    r"""AnimateLCM-I2V's image encoder (the official ``Adapter``, adapter.py:60-104), in diffusers terms.

    On an image latent ``z`` (B, cin, h, w), for F frames::

        x_{b,f} = conv_in(z_b) + motion_scale * PE[f]            (B*F, channels[0], h, w), b-major
        PE[f, 2k] = sin(f 10000^(-2k/d)),  PE[f, 2k+1] = cos(f 10000^(-2k/d)),   d = channels[0]
        for level i = 0 .. L-1 and block j = 0 .. nums_rb-1:    x <- R_{i,j}(x)
        feature_i = insertion_weights[i] * x                      (B*F, channels[i], ceil(h/2^i), ceil(w/2^i))

    ``R_{i,j}`` is the official ResnetBlock (``channels[i-1] -> channels[i]`` for j = 0, i > 0,
    which first downsamples by 2; ``channels[i] -> channels[i]`` otherwise)::

        x <- avgpool_2x2(replicate_pad_to_even(x))   if it downsamples (a stride-2 3x3 conv if use_conv)
        x <- in_conv(x)                              if its channels change or not sk (ksize conv, zero init)
        R(x) = block2(relu(block1(x))) + s(x),   block1 3x3, block2 ksize (zero init),
        s(x) = x if sk else skep(x)

    ``conv_in`` (3x3), ``in_conv`` and ``block2`` start at zero, so a fresh encoder's features are
    ``motion_scale * PE`` at level 0 and exactly 0 at every other level: it is a no-op only with
    ``motion_scale = 0``.

    Parameter names are the official ones: ``img_encoder.<name>`` in the checkpoint is ``<name>``
    here (``conv_in.*``, ``body.<k>.{in_conv,block1,block2,skep,down_opt.op}.*``, k = i*nums_rb + j).
    ``pe_dim`` must be ``channels[0]`` (adapter.py:79; it is added to conv_in's output);
    ``max_frames`` only bounds ``num_frames`` (the official PE has no limit; 64 is the official
    motion modules' PE length, motion_module.py:234).
    """
    @register_to_config
    def __init__(
        self,
        cin: int = 4,
        channels: tuple[int, ...] = (320, 640, 1280, 1280),
        nums_rb: int = 2,
        ksize: int = 1,
        sk: bool = True,
        use_conv: bool = False,
        pe_dim: int | None = None,
        max_frames: int = MOTION_MAX_SEQ_LENGTH,
        insertion_weights: tuple[float, ...] | None = None,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or nums_rb < 1:
            raise UserError("the image encoder needs at least one level (channels) and nums_rb >= 1")
        pe_dim = channels[0] if pe_dim is None else int(pe_dim)
        if pe_dim != channels[0] or pe_dim % 2:
            raise UserError(f"pe_dim must be channels[0] and even (it is added to conv_in's output), got {pe_dim}")
        weights = (1.0,) * len(channels) if insertion_weights is None else tuple(float(w) for w in insertion_weights)
        if len(weights) != len(channels):
            raise UserError(f"insertion_weights needs one weight per level ({len(channels)}), got {len(weights)}")
        self.levels, self.nums_rb, self.pe_dim, self.insertion_weights = len(channels), nums_rb, pe_dim, weights
        body = []
        for i, c in enumerate(channels):
            for j in range(nums_rb):
                first = i > 0 and j == 0
                body.append(_ResnetBlock(channels[i - 1] if first else c, c, first, ksize, sk, use_conv))
        self.body = nn.ModuleList(body)
        self.conv_in = _zero(nn.Conv2d(cin, channels[0], 3, 1, 1))

    def forward(self, image_latents: torch.Tensor, num_frames: int, motion_scale: float = MOTION_SCALE) -> list[torch.Tensor]:
        """``image_latents`` (B, cin, h, w) -> one feature per level, (B*F, C_i, h_i, w_i), level order."""
        if image_latents.ndim != 4 or image_latents.shape[1] != self.config.cin:
            raise UserError(f"image latents must be (batch, {self.config.cin}, h, w), got {tuple(image_latents.shape)}")
        if not 1 <= int(num_frames) <= self.config.max_frames:
            raise UserError(f"num_frames must be 1 .. {self.config.max_frames}, got {num_frames}")
        z = image_latents.repeat_interleave(int(num_frames), dim=0)  # (B*F, cin, h, w): unet.py:379
        x = self.conv_in(z)
        pe = frame_position_embedding(int(num_frames), self.pe_dim).to(x)
        x = x + float(motion_scale) * pe.repeat(image_latents.shape[0], 1)[:, :, None, None]
        features = []
        for i in range(self.levels):
            for j in range(self.nums_rb):
                x = self.body[i * self.nums_rb + j](x)
            features.append(self.insertion_weights[i] * x)
        return features


def toy_image_encoder(seed: int = 0) -> I2VImageEncoder:
    """A fresh toy-size encoder (:data:`TOY_ENCODER`), seeded: block1's random init is drawn from
    a generator seeded by ``seed`` (the zero-initialised convs stay zero), so two calls give the
    same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return I2VImageEncoder(**TOY_ENCODER)


# ---------------------------------------------------------------------------------------------
# 2. Converting the official checkpoint
# ---------------------------------------------------------------------------------------------
# AnimateDiff's original motion-module keys -> diffusers MotionAdapter keys, the mapping of
# diffusers' scripts/convert_animatediff_motion_module_to_diffusers.py (and of
# loaders/single_file_utils.py: convert_animatediff_checkpoint_to_diffusers). Order matters.
MOTION_KEY_RENAMES = (
    (".norms.0", ".norm1"),
    (".norms.1", ".norm2"),
    (".ff_norm", ".norm3"),
    (".attention_blocks.0", ".attn1"),
    (".attention_blocks.1", ".attn2"),
    (".temporal_transformer", ""),
)
# The motion modules' fixed sinusoidal PE buffers (AnimateLCM names it pos_encoding, AnimateDiff
# pe): dropped, as diffusers' converter does; diffusers rebuilds the same values.
_PE_KEY = re.compile(r"\.pos_encoder\.(pos_encoding|pe)$")


def motion_key_to_diffusers(key: str) -> str:
    """``down_blocks.0.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight``
    -> ``down_blocks.0.motion_modules.1.transformer_blocks.0.attn1.to_q.weight``."""
    for old, new in MOTION_KEY_RENAMES:
        key = key.replace(old, new)
    return key


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The official pickle, read ONCE with torch's restricted (weights-only) unpickler."""
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: download AnimateLCM_sd15_i2v.ckpt (config.HUB['animatelcm_i2v']) first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path.name} is not a plain weights checkpoint (torch's weights-only unpickler refused it: "
                        f"{first[:160]}); it is not loaded any other way") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # the nesting util.py:152 unwraps
    if not isinstance(state, dict) or not state:
        raise UserError(f"{path.name} holds no state dict (got {type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{path.name} has {len(bad)} entries that are not tensors, e.g. {bad[0]!r}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _split(state: dict, name: str) -> tuple[dict, dict]:
    motion = {k: v for k, v in state.items() if "motion_modules." in k}  # the filter of util.py:153
    encoder = {k[len(ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    other = sorted(k for k in state if k not in motion and not k.startswith(ENCODER_PREFIX))
    if not encoder:
        raise UserError(f"{name} has no img_encoder.* keys: it is probably the text-to-video checkpoint "
                        "(AnimateLCM_sd15_t2v.ckpt); image-to-video needs AnimateLCM_sd15_i2v.ckpt")
    if not motion:
        raise UserError(f"{name} has no motion_modules.* keys: it is not an AnimateLCM-I2V checkpoint")
    if other:
        raise UserError(f"{name} has {len(other)} unexpected keys (neither motion modules nor img_encoder), "
                        f"e.g. {other[0]}")
    return motion, encoder


def _indices(keys, pattern: str) -> dict[int, set[int]]:
    """{block: {layer, ...}} for keys matching ``pattern`` with groups (block, layer)."""
    found: dict[int, set[int]] = {}
    for k in keys:
        m = re.match(pattern, k)
        if m:
            found.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    return found


def _one_or_tuple(values: list[int]):
    return values[0] if len(set(values)) == 1 else tuple(values)


def _contiguous(indices: set[int], what: str) -> int:
    if indices != set(range(len(indices))):
        raise UserError(f"the checkpoint's {what} indices are not 0..n-1: {sorted(indices)}")
    return len(indices)


def motion_adapter_config(motion: dict[str, torch.Tensor], heads: int = MOTION_HEADS,
                          norm_groups: int = MOTION_NORM_GROUPS, max_seq_length: int | None = None) -> dict:
    """A ``MotionAdapter`` config derived from the (converted) motion-module tensors' shapes.

    Block channels from each ``down_blocks.<i>.motion_modules.0.norm.weight``; layers per block,
    transformer layers, and the mid block from the key indices; ``motion_max_seq_length`` from
    the PE buffers' length (``max_seq_length`` or 64, motion_module.py:234, when the file has none).
    Heads and GroupNorm groups leave no trace in the shapes: 8 and 32 officially.
    """
    down = _indices(motion, r"down_blocks\.(\d+)\.motion_modules\.(\d+)\.")
    n_blocks = _contiguous(set(down), "down block")
    layers = [_contiguous(down[i], f"down block {i} layer") for i in range(n_blocks)]
    channels = []
    for i in range(n_blocks):
        key = f"down_blocks.{i}.motion_modules.0.norm.weight"
        if key not in motion:
            raise UserError(f"the checkpoint lacks {key} (after renaming); it is not an AnimateDiff motion module")
        channels.append(int(motion[key].shape[0]))
    tlayers = []
    for i in range(n_blocks):
        t = _indices(motion, rf"down_blocks\.{i}\.motion_modules\.(0)\.transformer_blocks\.(\d+)\.")
        tlayers.append(_contiguous(t.get(0, set()), f"down block {i} transformer block"))
    mid = _indices(motion, r"mid_block\.motion_modules\.(\d+)\.transformer_blocks\.(\d+)\.")
    cfg = {
        "block_out_channels": tuple(channels),
        "motion_layers_per_block": _one_or_tuple(layers),
        "motion_transformer_layers_per_block": _one_or_tuple(tlayers),
        "motion_num_attention_heads": int(heads),
        "motion_norm_num_groups": int(norm_groups),
        "motion_max_seq_length": int(max_seq_length or MOTION_MAX_SEQ_LENGTH),
        "use_motion_mid_block": bool(mid),
    }
    if mid:
        cfg["motion_mid_block_layers_per_block"] = _contiguous(set(mid), "mid block layer")
        cfg["motion_transformer_layers_per_mid_block"] = _contiguous(mid[0], "mid block transformer block")
    for c in channels:
        if c % heads or c % norm_groups:
            raise UserError(f"motion-module channels {c} must be divisible by heads ({heads}) and norm groups "
                            f"({norm_groups}); pass the right motion_heads / motion_norm_groups")
    return cfg


def _check_pe(pe_tensors: dict[str, torch.Tensor]) -> int | None:
    """Every PE buffer must be the sinusoid diffusers rebuilds; returns its length (None if absent)."""
    lengths = set()
    for key, pe in pe_tensors.items():
        if pe.ndim != 3 or pe.shape[0] != 1:
            raise UserError(f"{key} has shape {tuple(pe.shape)}, expected (1, frames, channels)")
        ref = frame_position_embedding(pe.shape[1], pe.shape[2])
        if not torch.allclose(pe[0].float(), ref, atol=1e-4):
            raise UserError(f"{key} is not the sinusoidal position embedding diffusers rebuilds; cannot convert it")
        lengths.add(int(pe.shape[1]))
    if len(lengths) > 1:
        raise UserError(f"the motion modules' PE buffers have different lengths {sorted(lengths)}")
    return lengths.pop() if lengths else None


def encoder_config(tensors: dict[str, torch.Tensor], nums_rb: int = OFFICIAL_ENCODER["nums_rb"]) -> dict:
    """An :class:`I2VImageEncoder` config from the ``img_encoder.*`` tensors (prefix stripped).

    ``cin`` from ``conv_in.weight``; ``channels`` from every ``nums_rb``-th block's ``block1``;
    ``ksize`` from ``block2``; ``sk`` is False when ``skep`` convs exist; ``use_conv`` when
    ``down_opt.op`` convs exist. ``nums_rb`` leaves no trace when channels repeat: 2 officially.
    """
    if "conv_in.weight" not in tensors:
        raise UserError("the img_encoder keys lack img_encoder.conv_in.weight: not the official image encoder")
    blocks = _contiguous({int(m.group(1)) for k in tensors if (m := re.match(r"body\.(\d+)\.", k))}, "img_encoder body")
    if blocks == 0 or blocks % nums_rb:
        raise UserError(f"the image encoder has {blocks} blocks, not a multiple of nums_rb={nums_rb}")
    try:
        channels = tuple(int(tensors[f"body.{i * nums_rb}.block1.weight"].shape[0]) for i in range(blocks // nums_rb))
        ksize = int(tensors["body.0.block2.weight"].shape[-1])
    except KeyError as err:
        raise UserError(f"the image encoder lacks img_encoder.{err.args[0]}") from None
    return {
        "cin": int(tensors["conv_in.weight"].shape[1]),
        "channels": channels,
        "nums_rb": nums_rb,
        "ksize": ksize,
        "sk": not any(".skep." in k for k in tensors),
        "use_conv": any(".down_opt.op." in k for k in tensors),
    }


def _load_strict(model: nn.Module, tensors: dict, what: str, allowed_missing=lambda k: False) -> None:
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:  # shape mismatches
        line = next((s.strip() for s in str(err).splitlines() if "size mismatch" in s), str(err).splitlines()[0])
        raise UserError(f"the {what} weights do not fit the derived config: {line[:200]}") from None
    missing = [k for k in missing if not allowed_missing(k)]
    if unexpected:
        raise UserError(f"the {what} has {len(unexpected)} unexpected keys, e.g. {unexpected[0]}")
    if missing:
        raise UserError(f"the {what} lacks {len(missing)} keys, e.g. {missing[0]}")


def convert_official_checkpoint(ckpt_path, out_folder, *, motion_heads: int = MOTION_HEADS,
                                motion_norm_groups: int = MOTION_NORM_GROUPS,
                                nums_rb: int = OFFICIAL_ENCODER["nums_rb"], overwrite: bool = False) -> Path:
    """``AnimateLCM_sd15_i2v.ckpt`` -> ``out_folder/motion_adapter`` + ``out_folder/image_encoder``.

    Reads the pickle once with ``torch.load(..., weights_only=True)`` (nothing else: a file the
    restricted unpickler refuses is an error), unwraps a ``state_dict`` nesting, splits it into
    (a) the motion modules (``*motion_modules.*``), renamed by :data:`MOTION_KEY_RENAMES`, PE
    buffers dropped, into a ``MotionAdapter`` whose config comes from the shapes
    (:func:`motion_adapter_config`), and (b) ``img_encoder.*``, prefix stripped, into an
    :class:`I2VImageEncoder` (:func:`encoder_config`). Both are loaded strictly (only the PE
    buffers ``*.pos_embed.pe`` are rebuilt) and saved with ``save_pretrained(safe_serialization=True)``
    in a temporary folder beside ``out_folder``, then renamed into place (atomic).
    """
    src, out = Path(ckpt_path).expanduser(), Path(out_folder).expanduser()
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists already: choose another folder or pass overwrite=True")
    state = _read_checkpoint(src)
    motion_raw, enc_tensors = _split(state, src.name)
    pe = {k: v for k, v in motion_raw.items() if _PE_KEY.search(k)}
    motion = {motion_key_to_diffusers(k): v for k, v in motion_raw.items() if k not in pe}
    m_cfg = motion_adapter_config(motion, motion_heads, motion_norm_groups, _check_pe(pe))
    e_cfg = encoder_config(enc_tensors, nums_rb)
    if tuple(e_cfg["channels"]) != tuple(m_cfg["block_out_channels"]):
        raise UserError(f"the image encoder's levels {e_cfg['channels']} do not match the motion modules' "
                        f"blocks {m_cfg['block_out_channels']}")
    adapter = MotionAdapter(**m_cfg)
    _load_strict(adapter, motion, "motion adapter", allowed_missing=lambda k: k.endswith(".pos_embed.pe"))
    encoder = I2VImageEncoder(**e_cfg)
    _load_strict(encoder, enc_tensors, "image encoder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        adapter.save_pretrained(tmp / "motion_adapter", safe_serialization=True)
        encoder.save_pretrained(tmp / "image_encoder", safe_serialization=True)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---------------------------------------------------------------------------------------------
# 3. Where the features go: forward hooks on a diffusers UNetMotionModel
# ---------------------------------------------------------------------------------------------
def insertion_modules(unet, layer: int = OFFICIAL_LAYER) -> list[nn.Module]:
    """Down block i's module whose OUTPUT gets feature i: ``attentions[layer]`` (the spatial
    attention; CrossAttnDownBlockMotion) or ``resnets[layer]`` (DownBlockMotion, no attention).
    Its output is the input of ``motion_modules[layer]`` in both diffusers blocks, as in the
    official blocks (unet_blocks.py:495-504, 608-614)."""
    if not hasattr(unet, "down_blocks") or not all(hasattr(b, "motion_modules") for b in unet.down_blocks):
        raise UserError("the I2V image encoder needs a UNetMotionModel (AnimateDiffPipeline's UNet)")
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise UserError(f"layer must be an integer >= 0 (the official one is {OFFICIAL_LAYER}), got {layer!r}")
    modules = []
    for i, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None)
        layers = attentions if attentions is not None else block.resnets
        if len(layers) <= layer or len(block.motion_modules) <= layer:
            raise UserError(f"down block {i} has {len(layers)} layers; the image features go into layer {layer} "
                            f"(the official second layer): the UNet needs layers_per_block >= {layer + 1}")
        modules.append(layers[layer])
    return modules


def _hook(feature: torch.Tensor, block: int):
    def add_feature(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
        n, m = hidden.shape[0], feature.shape[0]
        if n % m or hidden.shape[1:] != feature.shape[1:]:
            raise UserError(f"image feature {block} is {tuple(feature.shape)} but down block {block} has "
                            f"{tuple(hidden.shape)}: encoder and UNet (or frames/size) do not match")
        # [uncond, cond] under CFG: both halves get the same features (pipeline_animation.py:470-471).
        hidden = hidden + feature.to(hidden).repeat(n // m, 1, 1, 1)
        if isinstance(output, tuple):
            return (hidden,) + tuple(output[1:])
        if hasattr(output, "sample"):
            output.sample = hidden
            return output
        return hidden

    return add_feature


def attach(unet, features, layer: int = OFFICIAL_LAYER) -> list:
    """Install forward hooks that add ``features[i]`` (B*F, C_i, h_i, w_i) to down block i's
    ``insertion_modules(...)[i]`` output (repeated over the batch: CFG's unconditional half and
    extra videos get the same features). Returns the handles; ``handle.remove()`` undoes it.
    Prefer :func:`image_condition`, which always removes them."""
    modules = insertion_modules(unet, layer)
    if len(features) != len(modules):
        raise UserError(f"the encoder gives {len(features)} features but the UNet has {len(modules)} down blocks")
    handles = []
    try:
        for i, (module, feature) in enumerate(zip(modules, features)):
            handles.append(module.register_forward_hook(_hook(feature, i)))
    except BaseException:
        for h in handles:
            h.remove()
        raise
    return handles


@contextlib.contextmanager
def image_condition(unet, features, layer: int = OFFICIAL_LAYER):
    """``with image_condition(unet, features): pipe(...)``: the features are added during the
    block and the hooks are removed afterwards, also when the block raises."""
    handles = attach(unet, features, layer)
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


# ---------------------------------------------------------------------------------------------
# 4. Loading and generating
# ---------------------------------------------------------------------------------------------
def i2v_scheduler():
    """The official LCMScheduler: ``LCMScheduler(**I2V_SCHEDULER)`` (app-i2v.py:181-182,
    inference-i2v.yaml:26-31); 4 steps -> timesteps [999, 749, 499, 249]."""
    return LCMScheduler(**I2V_SCHEDULER)


def load_i2v(pipe, image_encoder, *, scheduler: str | None = "official", layer: int = OFFICIAL_LAYER):
    """Make an AnimateDiffPipeline (UNetMotionModel with the converted I2V motion modules, the I2V
    LCM LoRA already fused or loaded by the caller) image-to-video.

    ``image_encoder``: a folder written by :func:`convert_official_checkpoint` (``.../image_encoder``)
    or an :class:`I2VImageEncoder`. ``scheduler="official"`` installs :func:`i2v_scheduler`;
    ``None`` keeps the pipeline's. Checks that the encoder's levels fit the UNet's down blocks and
    stores it as ``pipe.i2v_encoder`` (no hooks stay installed: :func:`generate_i2v` adds them per call).
    """
    if isinstance(image_encoder, (str, os.PathLike)):
        folder = Path(image_encoder).expanduser()
        if not (folder / "config.json").is_file():
            raise UserError(f"no image encoder folder at {folder} (expected config.json + safetensors): "
                            "run convert_official_checkpoint first")
        image_encoder = I2VImageEncoder.from_pretrained(folder, use_safetensors=True)
    if not isinstance(image_encoder, I2VImageEncoder):
        raise UserError(f"image_encoder must be a folder or an I2VImageEncoder, got {type(image_encoder).__name__}")
    insertion_modules(pipe.unet, layer)
    blocks = tuple(pipe.unet.config.block_out_channels)
    if tuple(image_encoder.config.channels) != blocks:
        raise UserError(f"the image encoder's levels {tuple(image_encoder.config.channels)} do not match the "
                        f"UNet's down blocks {blocks}")
    if image_encoder.config.cin != pipe.vae.config.latent_channels:
        raise UserError(f"the image encoder takes {image_encoder.config.cin} latent channels, the VAE makes "
                        f"{pipe.vae.config.latent_channels}")
    if scheduler == "official":
        pipe.scheduler = i2v_scheduler()
    elif scheduler is not None:
        raise UserError(f"scheduler must be 'official' or None, got {scheduler!r}")
    image_encoder = image_encoder.to(device=pipe.unet.device)
    if image_encoder.dtype != pipe.unet.dtype:  # (ModelMixin.to warns whenever a dtype is passed)
        image_encoder = image_encoder.to(dtype=pipe.unet.dtype)
    pipe.i2v_encoder = image_encoder.eval()
    pipe.i2v_layer = layer
    return pipe


def resize_and_crop(image, width: int, height: int):
    """The official input preparation (util.py:19-43): scale (LANCZOS) so the image covers
    ``width x height``, then crop the centre. ``image``: a PIL image (converted to RGB)."""
    image = image.convert("RGB")
    w0, h0 = image.size
    if width / height > w0 / h0:
        rw, rh = width, round(width / w0 * h0)
    else:
        rw, rh = round(height / h0 * w0), height
    resized = image.resize((rw, rh), Image.LANCZOS)
    x0, y0 = (rw - width) / 2, (rh - height) / 2
    return resized.crop((x0, y0, x0 + width, y0 + height))


def as_pil(image):
    """A PIL image, an (H, W, 3) uint8 array, or a path -> an RGB PIL image."""
    if isinstance(image, (str, os.PathLike)):
        if not Path(image).is_file():
            raise UserError(f"no image at {image}")
        return Image.open(image).convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image) if isinstance(image, np.ndarray) else None
    if arr is None or arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        what = f"an array {arr.shape} {arr.dtype}" if arr is not None else type(image).__name__
        raise UserError(f"the image must be a PIL image or an (H, W, 3) uint8 array, got {what}")
    return Image.fromarray(arr, "RGB")


@torch.no_grad()
def encode_image(vae, image, width: int, height: int, generator: torch.Generator | None = None,
                 device=None) -> torch.Tensor:
    """The image latent (1, C, H/f, W/f) as the official pipeline makes it (pipeline_animation.py:360-368)::

        x = 2 * ToTensor(resize_and_crop(image)) - 1,   z = sample(vae.encode(x).latent_dist) * scaling_factor
    """
    pil = resize_and_crop(as_pil(image), width, height)
    x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x * 2 - 1).to(device=device or vae.device, dtype=vae.dtype)
    return vae.encode(x).latent_dist.sample(generator=generator) * vae.config.scaling_factor


def adjust_colors(frames: np.ndarray, source) -> np.ndarray:
    """The official colour correction (util.py:45-61): per frame, in OpenCV's 8-bit HSV, move the
    frame's channel means towards the source image's: ``H += 0.03 (mean_src - mean_frame)``
    (clipped to 0..180), ``S, V += 1.0 (mean_src - mean_frame)`` (clipped to 0..255)."""
    import cv2  # deferred: OpenCV (from controlnet-aux), only for the official colour correction

    src_hsv = cv2.cvtColor(np.ascontiguousarray(np.asarray(as_pil(source))[:, :, ::-1]), cv2.COLOR_BGR2HSV)
    src_means = [np.mean(src_hsv[:, :, c]) for c in range(3)]
    out = np.empty_like(frames)
    for f, frame in enumerate(frames):
        hsv = cv2.cvtColor(np.ascontiguousarray(frame[:, :, ::-1]), cv2.COLOR_BGR2HSV)
        for c, (gain, top) in enumerate(((0.03, 180), (1.0, 255), (1.0, 255))):
            diff = src_means[c] - np.mean(hsv[:, :, c])
            hsv[:, :, c] = np.clip(hsv[:, :, c] + gain * diff, 0, top)  # float -> uint8 truncates, as there
        out[f] = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[:, :, ::-1]
    return out


class I2VGeneration(NamedTuple):
    frames: np.ndarray  # uint8 (F, H, W, 3)
    seed: int
    seconds: float


def _seeded(seed) -> tuple[int, torch.Generator]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < -1:
        raise UserError(f"seed must be an integer >= 0 (or -1 for a random one), got {seed!r}")
    seed = secrets.randbelow(2**31) if seed == -1 else int(seed)
    return seed, torch.Generator("cpu").manual_seed(seed)


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (high is not None and value > high):
        span = f"{low} .. {high}" if high is not None else f">= {low}"
        raise UserError(f"{name} must be an integer {span}, got {value!r}")
    return int(value)


def _check_float(name: str, value, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value) or value < low:
        raise UserError(f"{name} must be a number >= {low}, got {value!r}")
    return float(value)


def generate_i2v(pipe, image, prompt: str = PROMPT, motion_scale: float = MOTION_SCALE, steps: int = STEPS,
                 guidance: float = GUIDANCE, frames: int | None = None, seed: int = 0,
                 negative_prompt: str | None = NEGATIVE_PROMPT, height: int | None = None,
                 width: int | None = None, match_colors: bool = True, encoder: I2VImageEncoder | None = None,
                 ) -> I2VGeneration:
    """Animate ``image`` (PIL, (H, W, 3) uint8, or a path) with ``prompt``, as the official
    pipeline does: image latent -> encoder features (x ``motion_scale`` PE) -> AnimateDiffPipeline
    with the features added by :func:`image_condition` -> optional :func:`adjust_colors`.

    Size defaults to the UNet's ``sample_size * vae_scale_factor`` (512 for SD1.5, as
    pipeline_animation.py:404-405; 32 in the toy world); ``frames`` to the pipeline's model spec
    (:func:`image_to_video_pipeline` sets it: 8 in the toy world) or the official 16. ``seed=-1`` draws one (returned). The pipeline's noise comes
    from a CPU generator seeded with ``seed``; the VAE's posterior sample from a second one seeded
    with ``seed + 1``, so a seed repeats the video and ``motion_scale=0`` with a fresh encoder gives
    exactly the text-to-video result of the same seed.
    """
    encoder = encoder if encoder is not None else getattr(pipe, "i2v_encoder", None)
    if encoder is None:
        raise UserError("this pipeline has no image encoder: call load_i2v(pipe, image_encoder) first")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("the prompt is empty: describe the video, e.g. 'best quality'")
    max_frames = min(int(pipe.unet.config.motion_max_seq_length), int(encoder.config.max_frames))
    spec = getattr(pipe, "model_spec", None)
    frames = (spec.frames if spec is not None else FRAMES) if frames is None else frames
    frames = _check_int("frames", frames, 1, max_frames)
    steps = _check_int("steps", steps, 1, getattr(pipe.scheduler.config, "original_inference_steps", None))
    guidance = _check_float("guidance", guidance, 0.0)
    motion_scale = _check_float("motion_scale", motion_scale, 0.0)
    factor = pipe.vae_scale_factor
    default = pipe.unet.config.sample_size * factor
    height = _check_int("height", default if height is None else height, factor)
    width = _check_int("width", default if width is None else width, factor)
    if height % factor or width % factor:
        raise UserError(f"height and width must be multiples of {factor} (the VAE's factor), got {height}x{width}")
    source = as_pil(image)
    seed, generator = _seeded(seed)
    start = time.perf_counter()
    device = pipe._execution_device
    with torch.inference_mode():
        z = encode_image(pipe.vae, source, width, height, torch.Generator("cpu").manual_seed(seed + 1), device)
        if next(encoder.parameters()).device != torch.device(device):
            encoder.to(device)  # e.g. after pipe.to("cuda"): pipe.to does not move the encoder
        features = encoder(z.to(next(encoder.parameters())), frames, motion_scale)
        with image_condition(pipe.unet, features, getattr(pipe, "i2v_layer", OFFICIAL_LAYER)):
            out = pipe(
                prompt=prompt,
                negative_prompt=negative_prompt,  # used only when guidance > 1
                num_frames=frames,
                height=height,
                width=width,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generator,
                output_type="np",
            )
    video = np.clip(np.round(np.asarray(out.frames[0], dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    if match_colors:
        video = adjust_colors(video, source)
    return I2VGeneration(video, seed, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# 5. The image-to-video pipeline of a world
# ---------------------------------------------------------------------------------------------
def _lora_weights(lora) -> Weights:
    if isinstance(lora, Weights):
        return lora
    path = Path(lora).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"no LoRA file at {path}: give the I2V LCM LoRA (AnimateLCM_sd15_i2v_lora.safetensors)")
    return Weights(str(path.parent), revision=None, weight_name=path.name, local=True)


def image_to_video_pipeline(world: str | None = None, device: str | None = None, *, converted=None,
                            lcm_lora=None, lcm_lora_weight: float = LCM_LORA_WEIGHT, base=None):
    """The image-to-video pipeline of ``world`` (default: the current one), ready for :func:`generate_i2v`.

    * ``"toy"``: the toy AnimateLCM (``pipelines.load_t2v("animatelcm")``: toy base, motion adapter,
      LCM LoRA at 1.0, its own LCMScheduler on the schedule it was distilled on) + the zoo's image
      encoder (``<zoo>/i2v-encoder``, trained teacher-free by ``distill.train_image_encoder``),
      its features at :data:`TOY_LAYER` (the toy's one layer per block). The other arguments must
      be left out.
    * ``"full"``: the official AnimateLCM-I2V. ``converted``: the folder :func:`convert_official_checkpoint`
      wrote from ``AnimateLCM_sd15_i2v.ckpt`` (``motion_adapter/`` + ``image_encoder/``);
      ``lcm_lora``: ``AnimateLCM_sd15_i2v_lora.safetensors`` (a path or a ``config.Weights``),
      loaded at ``lcm_lora_weight`` (the demo's 0.8; None: no LoRA); ``base``: a SD1.5 base as
      ``config.Weights`` (default ``config.HUB["epicrealism"]``) or an already loaded Stable
      Diffusion pipeline (e.g. a single-file DreamBooth checkpoint). The official scheduler
      (:func:`i2v_scheduler`), features at the official second layer (:data:`OFFICIAL_LAYER`).

    Returns an ``AnimateDiffPipeline`` with ``pipe.i2v_encoder``, ``pipe.i2v_layer`` and
    ``pipe.model_spec`` (``config.MODELS[world]["animatelcm"]``: default frames and size).
    """
    settings = config.with_world(world) if world else config.current()
    device = device or settings.device
    if settings.world == "toy":
        if converted is not None or lcm_lora is not None or base is not None:
            raise UserError("the toy world's image-to-video model comes from the toy zoo: leave converted, "
                            "lcm_lora and base out (they are the full world's files)")
        folder = zoo.root() / TOY_ENCODER_FOLDER
        if not (folder / "config.json").is_file():
            raise UserError(f"the toy zoo at {zoo.root()} has no image encoder ({TOY_ENCODER_FOLDER}/): rebuild it with "
                            "`python -m animatelcm_helpers.toy.build --add-i2v-encoder`")
        pipe = pipelines.load_t2v("animatelcm", world="toy", device=device)
        with quiet_loading():
            encoder = I2VImageEncoder.from_pretrained(folder, use_safetensors=True, torch_dtype=settings.dtype)
        return load_i2v(pipe, encoder, scheduler=None, layer=TOY_LAYER)
    if converted is None:
        raise UserError("the full world's AnimateLCM-I2V needs the converted checkpoint: "
                        "convert_official_checkpoint('AnimateLCM_sd15_i2v.ckpt', FOLDER), then converted=FOLDER")
    converted = Path(converted).expanduser()
    for part in ("motion_adapter", "image_encoder"):
        if not (converted / part / "config.json").is_file():
            raise UserError(f"{converted} has no {part}/ folder: it is not a folder written by convert_official_checkpoint")
    with quiet_loading():
        adapter = MotionAdapter.from_pretrained(converted / "motion_adapter", use_safetensors=True,
                                                torch_dtype=settings.dtype)
    if base is None or isinstance(base, Weights):
        base = loading.load_base(base or config.HUB["epicrealism"], settings.dtype, world="full")
    with quiet_loading():  # from_pipe's .to() warns about float32 modules it does not have
        pipe = AnimateDiffPipeline.from_pipe(base, motion_adapter=adapter)
    if lcm_lora is not None and lcm_lora_weight is not None:
        loading.load_lora(pipe, _lora_weights(lcm_lora), loading.LCM_ADAPTER)
        pipelines.set_adapter_weight(pipe, loading.LCM_ADAPTER, float(lcm_lora_weight))
    loading.place(pipe, device, loading.memory_plan("t2v", device))
    pipe.set_progress_bar_config(disable=True)
    pipe.model_spec = config.model_spec("animatelcm", "full")
    return load_i2v(pipe, converted / "image_encoder", scheduler="official", layer=OFFICIAL_LAYER)
