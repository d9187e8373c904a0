"""AnimateLCM-SVD-xt: image-to-video in 1 to 8 steps, a consistency model of Stable Video Diffusion xt.

The model (Hub ids in ``config.HUB["svd_xt"]`` and ``config.HUB["animatelcm_svd_xt"]``) is SVD-xt's
own ``StableVideoDiffusionPipeline`` with two parts swapped: the UNet's weights (one safetensors
file, a diffusers-format state dict of ``UNetSpatioTemporalConditionModel``) and the scheduler,
:class:`AnimateLCMSVDScheduler`, which samples the consistency function on SVD's EDM noise levels.

The consistency function in SVD's v-parameterisation (sigma_data = 1)::

    f(x, s) = c_skip(s) x + c_out(s) F(c_in(s) x, 0.25 ln s)
    c_skip = s_d^2 / (s^2 + s_d^2),   c_out = -s s_d / sqrt(s^2 + s_d^2),   c_in = 1 / sqrt(s^2 + s_d^2)

It meets the boundary condition f(x, s_min) ~ x (c_skip(0.002) = 0.999996). Sampling (the
consistency models' multistep sampler): x = s_0 z, then for each chosen noise level
``x0 = f(x, s_i)``; ``x = x0 + s_{i+1} z'`` with fresh noise, and the last step returns ``x0``.

Cost (:func:`cost_table`): a step is ONE UNet evaluation (no classifier-free guidance needed when
max_guidance is 1; the demo's ramp 1.0 -> 1.2 does use CFG), against SVD-xt's 25 Euler steps with
CFG, 50 evaluations; FLOPs are counted on the meta device (:func:`count_svd_flops`).

The toy world (section 5) runs the whole recipe at toy size: a toy SVD teacher trained as SVD is
(:func:`train_toy_svd_teacher`: image-to-video, EDM with v-prediction) and its consistency
distillation as the official AnimateLCM-SVD recipe does it (:func:`distill_toy_svd`, :func:`cd_loss`):
one guided Euler teacher step to the adjacent index of the 40-point grid, an EMA target, a
pseudo-Huber distance weighted by (1/(s_n - s_{n+1}))^0.1. The zoo keeps both in ``svd/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from . import config, pipelines
from .media import float_to_uint8
from .config import UserError

NUM_TRAIN_TIMESTEPS = 40  # points of the Karras grid the model was distilled on
SIGMA_MIN, SIGMA_MAX, SIGMA_DATA, RHO = 0.002, 700.0, 1.0, 7.0
TOY_SVD = "svd"  # the toy zoo's folder for a trained toy SVD pipeline (diffusers layout)

# The official demo's settings (image-to-video, AnimateLCM-SVD-xt).
DEMO = {
    "steps": 4,
    "min_guidance": 1.0,
    "max_guidance": 1.2,
    "motion_bucket_id": 80,
    "fps": 8,
    "decode_chunk_size": 4,
    "noise_aug_strength": 0.02,
}
SIZES = {  # (frames, height, width) a world samples by default
    "full": (25, 576, 1024),
    "toy": (8, 32, 32),
}


# ------------------------------------------------------------------------------------------
# 1. The noise levels and the consistency scalings
# ------------------------------------------------------------------------------------------


def karras_sigmas(n: int = NUM_TRAIN_TIMESTEPS, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                  rho: float = RHO) -> np.ndarray:
    """The Karras et al. (EDM) grid, decreasing, float64 (n,)::

        s_i = (s_max^(1/rho) + i / (n - 1) (s_min^(1/rho) - s_max^(1/rho)))^rho,   i = 0 .. n-1
    """
    if n < 2:
        raise UserError(f"the Karras grid needs at least 2 points, got {n}")
    ramp = np.arange(n, dtype=np.float64) / (n - 1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def step_indices(steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    """Which grid points ``steps`` steps visit: ``arange(steps) * (N // steps)`` (always index 0 = s_max).

    With more than N/2 steps the stride is 1 and the steps cover only the noisiest ``steps`` points.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= num_train_timesteps:
        raise UserError(
            f"the number of steps must be a whole number from 1 to {num_train_timesteps} (the consistency "
            f"grid has {num_train_timesteps} noise levels), got {steps!r}; AnimateLCM-SVD-xt is made for "
            "1 to 8 steps (the demo uses 4)"
        )
    return np.arange(int(steps)) * (num_train_timesteps // int(steps))


def step_sigmas(steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, sigma_min: float = SIGMA_MIN,
                sigma_max: float = SIGMA_MAX, rho: float = RHO) -> np.ndarray:
    """The noise levels ``steps`` steps visit, e.g. 4 -> [700, 128.6, 13.68, 0.497]."""
    return karras_sigmas(num_train_timesteps, sigma_min, sigma_max, rho)[step_indices(steps, num_train_timesteps)]


def timestep_of(sigma):
    """The UNet's timestep input for noise level sigma (EDM's c_noise): ``t = 0.25 ln(sigma)``."""
    return 0.25 * (torch.log(sigma) if isinstance(sigma, torch.Tensor) else np.log(sigma))


def scalings(sigma, sigma_data: float = SIGMA_DATA):
    """(c_skip, c_out, c_in) of the v-parameterised consistency function at noise level sigma::

        c_skip = s_d^2 / (s^2 + s_d^2),  c_out = -s s_d / sqrt(s^2 + s_d^2),  c_in = 1 / sqrt(s^2 + s_d^2)

    With v = F(c_in x, t), ``c_skip x + c_out v`` is the v-prediction estimate of the clean x0.
    """
    var = sigma**2 + sigma_data**2
    root = var**0.5
    return sigma_data**2 / var, -sigma * sigma_data / root, 1.0 / root


def guidance_ramp(frames: int, min_guidance: float = 1.0, max_guidance: float = 1.2) -> torch.Tensor:
    """Per-frame guidance scales, linear from the first frame to the last, as SVD's pipeline makes
    them: ``linspace(min_guidance, max_guidance, frames)`` (the first frame is the input image)."""
    return torch.linspace(float(min_guidance), float(max_guidance), int(frames))


# ------------------------------------------------------------------------------------------
# 2. The scheduler (a drop-in for StableVideoDiffusionPipeline's EulerDiscreteScheduler)
# ------------------------------------------------------------------------------------------


@dataclass
class AnimateLCMSVDSchedulerOutput(BaseOutput):
    """``prev_sample``: the sample for the next step (``denoised`` itself after the last step);
    ``denoised``: the consistency function's estimate of the clean latents, f(x, s)."""

    prev_sample: torch.Tensor
    denoised: torch.Tensor


class AnimateLCMSVDScheduler(SchedulerMixin, ConfigMixin):
    """Multistep consistency sampling on SVD's EDM noise levels (AnimateLCM-SVD-xt).

    Grid: :func:`karras_sigmas` with N = ``num_train_timesteps`` points (0.002 .. 700, rho 7);
    ``set_timesteps(n)`` picks the points ``arange(n) * (N // n)``. At noise level s the
    pipeline feeds the UNet ``x / sqrt(s^2 + s_d^2)`` (:meth:`scale_model_input`) at timestep
    ``0.25 ln s`` (:attr:`timesteps`), and :meth:`step` turns its v-prediction into::

        denoised = c_skip(s) x + c_out(s) v,   c_skip = s_d^2/(s^2+s_d^2),  c_out = -s s_d/sqrt(s^2+s_d^2)
        x_next   = denoised + s_next z,        z ~ N(0, I) fresh   (the last step returns denoised)

    The pipeline starts from ``x = s_max z`` (:attr:`init_noise_sigma`). It calls ``step`` without
    a generator: set :attr:`noise_generator` (a ``torch.Generator``) to make the re-noising
    reproducible (``svd.generate_svd`` does); ``step(..., generator=g)`` takes precedence.
    """

    config_name = "scheduler_config.json"
    _compatibles: list = []
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
        sigma_min: float = SIGMA_MIN,
        sigma_max: float = SIGMA_MAX,
        sigma_data: float = SIGMA_DATA,
        rho: float = RHO,
    ):
        if not 0 < sigma_min < sigma_max:
            raise UserError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        self.train_sigmas = torch.from_numpy(karras_sigmas(num_train_timesteps, sigma_min, sigma_max, rho)).float()
        self.noise_generator: torch.Generator | None = None
        self.num_inference_steps: int | None = None
        self._begin_index: int | None = None
        self.set_timesteps(num_train_timesteps)

    # -- the schedule ------------------------------------------------------------------------

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Choose ``num_inference_steps`` noise levels (1 .. N): ``sigmas`` holds them plus a final 0,
        ``timesteps`` the UNet's inputs ``0.25 ln s`` (float32, on ``device``)."""
        cfg = self.config
        chosen = step_sigmas(num_inference_steps, cfg.num_train_timesteps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
        self.num_inference_steps = int(num_inference_steps)
        self.timesteps = torch.from_numpy(timestep_of(chosen)).float().to(device)
        self.sigmas = torch.cat([torch.from_numpy(chosen).float(), torch.zeros(1)])  # kept on the CPU
        self._step_index = None
        self._begin_index = None

    @property
    def init_noise_sigma(self) -> float:
        """The standard deviation of the first sample, x = s_max z (the pipeline multiplies by it)."""
        return float(self.sigmas.max())

    @property
    def step_index(self) -> int | None:
        """The index of the current step; it grows by 1 after each :meth:`step`."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The first step's index, when a pipeline set it with :meth:`set_begin_index`."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at step ``begin_index`` (for pipelines that start mid-schedule, e.g. video-to-video)."""
        self._begin_index = begin_index

    def index_for_timestep(self, timestep, schedule_timesteps: torch.Tensor | None = None) -> int:
        """The step whose timestep (``0.25 ln s``) is ``timestep``."""
        schedule = self.timesteps if schedule_timesteps is None else schedule_timesteps
        t = torch.as_tensor(timestep, dtype=torch.float32).to(schedule.device).reshape(-1)[0]
        gaps = (schedule.float() - t).abs()
        index = int(torch.argmin(gaps))
        if float(gaps[index]) > 1e-3:
            raise ValueError(
                f"timestep {float(t):.5g} is not in this schedule {schedule.tolist()}; pass one of "
                "scheduler.timesteps (after set_timesteps), not an index or another scheduler's timestep"
            )
        return index

    def _init_step_index(self, timestep) -> None:
        self._step_index = self.index_for_timestep(timestep) if self._begin_index is None else self._begin_index

    # -- one step ----------------------------------------------------------------------------

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """The UNet's input at noise level s: ``c_in x = x / sqrt(s^2 + s_d^2)``."""
        if self._step_index is None:
            self._init_step_index(timestep)
        sigma = float(self.sigmas[self._step_index])
        return sample * scalings(sigma, self.config.sigma_data)[2]

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> AnimateLCMSVDSchedulerOutput | tuple:
        """One consistency step from noise level s (this step's) to s_next (the next step's)::

            denoised = c_skip(s) x + c_out(s) v
            x_next   = denoised + s_next z   (fresh z from ``generator``, else :attr:`noise_generator`);
                       the last step returns ``denoised``, drawing no noise

        ``model_output`` is the UNet's v-prediction (after guidance); computed in float32, returned
        in ``sample``'s dtype. Returns (prev_sample, denoised) when ``return_dict`` is False.
        """
        if self._step_index is None:
            self._init_step_index(timestep)
        i = self._step_index
        if i >= self.num_inference_steps:
            raise ValueError(
                f"step {i + 1} of a {self.num_inference_steps}-step schedule: call set_timesteps before sampling again"
            )
        c_skip, c_out, _ = scalings(float(self.sigmas[i]), self.config.sigma_data)
        denoised = c_skip * sample.float() + c_out * model_output.float()
        if i + 1 < self.num_inference_steps:
            generator = self.noise_generator if generator is None else generator
            noise = randn_tensor(denoised.shape, generator=generator, device=denoised.device, dtype=torch.float32)
            prev = denoised + float(self.sigmas[i + 1]) * noise
        else:
            prev = denoised
        self._step_index = i + 1
        prev, denoised = prev.to(sample.dtype), denoised.to(sample.dtype)
        if not return_dict:
            return prev, denoised
        return AnimateLCMSVDSchedulerOutput(prev_sample=prev, denoised=denoised)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``x0 + s z`` at each sample's noise level s (the forward process in EDM's form)."""
        ts = torch.as_tensor(timesteps).reshape(-1)
        sigma = torch.tensor([float(self.sigmas[self.index_for_timestep(t)]) for t in ts])
        sigma = sigma.to(original_samples.device, original_samples.dtype)
        sigma = sigma.reshape(-1, *([1] * (original_samples.ndim - 1)))
        return original_samples + sigma * noise

    def __len__(self) -> int:
        return self.config.num_train_timesteps


def euler_baseline_scheduler():
    """SVD-xt's own sampler, the baseline: ``EulerDiscreteScheduler`` with SVD-xt's scheduler config
    (v-prediction, continuous timesteps 0.25 ln s, Karras sigmas 0.002 .. 700), written out."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        interpolation_type="linear",
        use_karras_sigmas=True,
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        timestep_spacing="leading",
        timestep_type="continuous",
        steps_offset=1,
    )


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
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from .metrics import count_flops

    factor = vae_factor(vae_config)
    frames = pipelines.check_int("frames", frames, 1)
    for name, value in (("height", height), ("width", width)):
        if pipelines.check_int(name, value, factor) % factor:
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
        n = pipelines.check_int("steps", n, 1)
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
    from diffusers import UNetSpatioTemporalConditionModel

    unet = on_meta(UNetSpatioTemporalConditionModel, unet_config or svd_xt_unet_config())
    try:
        unet.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as err:
        raise UserError(f"the UNet weights do not fit SVD-xt's UNet: {str(err)[:500]}") from None
    left = [n for n, t in [*unet.named_parameters(), *unet.named_buffers()] if t.is_meta]
    if left:
        raise UserError(f"the UNet weights left {len(left)} tensors unset, e.g. {left[:3]}")
    return unet.to(dtype=dtype) if dtype is not None else unet


def _download(weights: config.Weights, what: str) -> str:
    """The local path of the single file ``weights.weight_name`` (the Hub cache, or a download)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(
            weights.repo_id,
            weights.weight_name,
            subfolder=weights.subfolder,
            revision=weights.revision,
            local_files_only=not config.hub_reachable(),
        )
    except (OSError, EntryNotFoundError):
        raise pipelines._missing(weights, what) from None


def _full_pipeline(dtype):
    from diffusers import StableVideoDiffusionPipeline
    from safetensors.torch import load_file

    weights = config.HUB["animatelcm_svd_xt"]
    state_dict = load_file(_download(weights, "AnimateLCM-SVD-xt UNet"))
    unet = unet_from_state_dict(state_dict, dtype=dtype)
    del state_dict
    pipe = pipelines.from_pretrained(
        StableVideoDiffusionPipeline, config.HUB["svd_xt"], "Stable Video Diffusion xt pipeline",
        unet=unet, scheduler=AnimateLCMSVDScheduler(), variant="fp16", dtype=dtype,
    )
    note = f"AnimateLCM-SVD-xt: {weights.describe()} in {config.HUB['svd_xt'].describe()}"
    return pipe, note


def toy_svd_pipeline(seed: int = 0):
    """(pipeline, note): the toy world's ``StableVideoDiffusionPipeline`` with :class:`AnimateLCMSVDScheduler`.
    From the zoo's ``svd/`` folder (the toy SVD-xt pipeline) with its distilled UNet
    (``svd/animatelcm_unet``) when the zoo has them, as the full world swaps the AnimateLCM-SVD-xt
    UNet into SVD-xt; else a fallback of seeded random tiny parts (``toy.configs``; the note says so)."""
    from diffusers import StableVideoDiffusionPipeline

    from .toy import configs, zoo

    folder = zoo.root() / TOY_SVD
    if (folder / "model_index.json").is_file() and (folder / TOY_STUDENT_FOLDER / "config.json").is_file():
        from diffusers import UNetSpatioTemporalConditionModel

        unet = pipelines.from_pretrained(UNetSpatioTemporalConditionModel,
                                         config.toy_weights(f"{TOY_SVD}/{TOY_STUDENT_FOLDER}"),
                                         "toy AnimateLCM-SVD-xt UNet", torch_dtype=torch.float32)
        pipe = pipelines.from_pretrained(
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
    ((frames, height, width) to sample by default). Sample it with :func:`generate_svd`.
    """
    settings = config.with_world(world) if world else config.current()
    device = device or settings.device
    if settings.world == "full":
        pipe, note = _full_pipeline(settings.dtype)
    else:
        pipe, note = toy_svd_pipeline()
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.svd_note = note
    pipe.svd_size = SIZES[settings.world]
    return pipe


def check_image(image):
    """The conditioning image as an RGB PIL image; accepts PIL RGB or an (H, W, 3) uint8 array."""
    import PIL.Image

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


def generate_svd(
    pipe,
    image,
    steps: int = DEMO["steps"],
    frames: int | None = None,
    min_guidance: float = DEMO["min_guidance"],
    max_guidance: float = DEMO["max_guidance"],
    motion_bucket_id: int = DEMO["motion_bucket_id"],
    fps: int = DEMO["fps"],
    seed: int = 0,
    decode_chunk_size: int = DEMO["decode_chunk_size"],
    height: int | None = None,
    width: int | None = None,
    noise_aug_strength: float = DEMO["noise_aug_strength"],
) -> pipelines.Generation:
    """Animate ``image`` (RGB PIL or (H, W, 3) uint8): a ``pipelines.Generation`` with frames uint8
    (frames, height, width, 3), the seed, seconds, UNet evaluations per video and the steps.

    Guidance ramps over frames from ``min_guidance`` to ``max_guidance`` (:func:`guidance_ramp`);
    SVD's pipeline runs classifier-free guidance (2 UNet evaluations a step) whenever
    ``max_guidance > 1``, so ``max_guidance=1`` halves the cost. ``seed=-1`` draws a seed; one CPU
    generator, seeded, makes all the noise (the image's noise augmentation, the first latents and
    every step's re-noising), so a seed gives the same video. Defaults: the official demo's,
    at ``pipe.svd_size``.
    """
    default_frames, default_height, default_width = getattr(pipe, "svd_size", SIZES["toy"])
    image = check_image(image)
    steps = pipelines.check_int("steps", steps, 1, pipe.scheduler.config.num_train_timesteps,
                                hint=" (consistency steps; AnimateLCM-SVD-xt is made for 1 to 8)")
    limit = int(pipe.unet.config.num_frames)
    frames = pipelines.check_int("frames", default_frames if frames is None else frames, 1, limit,
                                 hint=" (the number of frames the UNet was trained on is the most)")
    min_guidance = pipelines.check_range("min_guidance", min_guidance, 1.0)
    max_guidance = pipelines.check_range("max_guidance", max_guidance, 1.0)
    if min_guidance > max_guidance:
        # the pipeline decides on CFG from max_guidance alone; a ramp above it would break its batch
        raise UserError(f"min_guidance {min_guidance} is above max_guidance {max_guidance}; swap them")
    motion_bucket_id = pipelines.check_int("motion_bucket_id", motion_bucket_id, 0, 255, hint=" (more = more motion)")
    fps = pipelines.check_int("fps", fps, 1)
    decode_chunk_size = pipelines.check_int("decode_chunk_size", decode_chunk_size, 1)
    noise_aug_strength = pipelines.check_range("noise_aug_strength", noise_aug_strength, 0.0)
    multiple = max(8, pipe.vae_scale_factor)  # the pipeline wants multiples of 8
    height = pipelines.check_int("height", default_height if height is None else height, multiple)
    width = pipelines.check_int("width", default_width if width is None else width, multiple)
    for name, value in (("height", height), ("width", width)):
        if value % multiple:
            raise UserError(f"{name} {value} is not a multiple of {multiple}; try {round(value / multiple) * multiple}")
    seed, generator = pipelines.seeded(seed)
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


# ------------------------------------------------------------------------------------------
# 5. The toy world: an SVD teacher, its consistency distillation, and the measurements
# ------------------------------------------------------------------------------------------
#
# Direction without a prompt. SVD has no text: the IMAGE decides the motion. In Moving Digits the
# input image is the first frame of a moving-digit video, and that frame already shows where the
# digit goes: it carries the afterimage trail behind the digit (toy.data: copies 4 and 8 px
# behind at strengths 0.5 and 0.25), and a digit that will travel 14 px starts at the far side
# of the canvas (one moving right starts at the left edge). The toy SVD must continue the motion
# the first frame shows. Faithfulness of a generated video: the classifier reads the INPUT
# image's digit (metrics.read_digits) and the centroid moves the way the input's video moved
# (metrics.read_direction). fps, motion bucket and noise augmentation are fed as SVD feeds them,
# fixed at the demo's values (every toy video moves 2 px a frame at one frame rate, so they carry
# no information here; other values are outside the toy's training).

TOY_TEACHER_FOLDER = "unet"  # inside the zoo's svd/ folder: the toy SVD-xt's own UNet (the teacher)
TOY_STUDENT_FOLDER = "animatelcm_unet"  # inside svd/: the distilled UNet (the toy AnimateLCM-SVD-xt)
P_MEAN, P_STD = 0.7, 1.6  # SVD's training noise levels: ln sigma ~ N(P_mean, P_std^2)
COND_DROP = 0.1  # share of training samples with the image condition zeroed (SVD's negative: zeros)
CD_GUIDANCE = ((1.0, 1.25, 1.5), (2.0, 2.25, 2.5))  # the official recipe's ramp ends, chosen per sample
CD_EMA, CD_HUBER_C, CD_WEIGHT_POWER = 0.95, 0.001, 0.1
TEACHER_EVAL = {"steps": 25, "min_guidance": 1.0, "max_guidance": 3.0}  # SVD's own sampler defaults
EVAL_VIDEOS = 40  # the first 40 test videos: 10 digits x 4 directions


def toy_unet_config(num_frames: int = 8) -> dict:
    """The toy SVD UNet: SVD-xt's block types at toy size (32 channels on 8x8 and 4x4 latents,
    0.63 M parameters); in_channels 8 = 4 noisy + 4 of the first frame's latent."""
    return {
        "sample_size": 8, "in_channels": 8, "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        "block_out_channels": (32, 32), "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 24,
        "layers_per_block": 1, "cross_attention_dim": 32, "transformer_layers_per_block": 1,
        "num_attention_heads": (2, 2), "num_frames": num_frames,
    }


def toy_unet(seed: int = 0):
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(seed)
    return UNetSpatioTemporalConditionModel(**toy_unet_config())


def toy_temporal_vae(seed: int = 0):
    """SVD's VAE class (AutoencoderKLTemporalDecoder) at toy size: factor 4, 32 channels, 0.32 M parameters."""
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(seed)
    return AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                                        block_out_channels=(32, 32, 32), layers_per_block=1, latent_channels=4,
                                        sample_size=32)


def toy_videos(split: str = "train", n: int = 2400, start: int = 0):
    """Moving Digits videos ``start .. start + n`` of a split (plain, trailed, 8 frames): pixels
    float32 (n, 8, 3, 32, 32) in [-1, 1], digits (n,), directions (list of n)."""
    from .toy.data import MovingDigits

    ds = MovingDigits(split, kind="video", num_frames=SIZES["toy"][0])
    if not 0 <= start < start + n <= len(ds):
        raise UserError(f"the {split} split has {len(ds)} videos; cannot take {n} from {start}")
    items = [ds[i] for i in range(start, start + n)]
    pixels = torch.from_numpy(np.stack([it["pixel_values"] for it in items]))
    return pixels, torch.tensor([it["digit"] for it in items]), [it["direction"] for it in items]


def train_toy_vae(folder, steps: int, batch: int = 4, lr: float = 2e-3, seed: int = 0, kl_weight: float = 1e-6,
                  videos: int = 1200, progress: bool = True):
    """The toy temporal VAE on whole 8-frame videos (its decoder mixes frames): MSE + a small KL;
    then the scaling factor that gives the latents unit variance. Returns (vae, fit)."""
    import torch.nn.functional as F

    from . import training

    vae = toy_temporal_vae(seed)
    pixels = toy_videos("train", videos)[0]
    frames = pixels.shape[1]

    def loss_fn(step, g):
        x = pixels[torch.randint(0, len(pixels), (batch,), generator=g)].flatten(0, 1)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        recon = vae.decode(z, num_frames=frames).sample
        return F.mse_loss(recon, x) + kl_weight * post.kl().mean()

    fit = training.fit("toy-svd-vae", {"vae": vae}, loss_fn, steps, lr, folder, seed=seed, progress=progress,
                       save_every=200)
    vae.eval()
    with torch.no_grad():
        z = vae.encode(pixels[:256].flatten(0, 1)).latent_dist.mode()
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    return vae, fit


def finetune_toy_decoder(folder, vae, steps: int, batch: int = 4, lr: float = 1e-3, seed: int = 0,
                         videos: int = 1200, chunks=(1, 2, 4, 8), progress: bool = True):
    """Fine-tune the temporal decoder with the encoder FROZEN (as SVD fine-tuned its temporal decoder
    on SD's frozen VAE encoder): the latent space stays the same, so UNets trained on it stay valid.
    Each step decodes the videos in clips of a random length from ``chunks`` (the pipeline decodes
    ``decode_chunk_size`` frames at a time), loss = MSE to the frames. Returns the fit."""
    import torch.nn.functional as F

    from . import training

    pixels = toy_videos("train", videos)[0]
    n, frames = pixels.shape[:2]
    vae.requires_grad_(False).decoder.requires_grad_(True)
    vae.decoder.train()

    def loss_fn(step, g):
        x = pixels[torch.randint(0, n, (batch,), generator=g)]
        with torch.no_grad():
            z = vae.encode(x.flatten(0, 1)).latent_dist.mode()
        size = chunks[int(torch.randint(0, len(chunks), (1,), generator=g))]
        recon = vae.decode(z, num_frames=size).sample  # clips of `size` consecutive frames
        return F.mse_loss(recon, x.flatten(0, 1))

    fit = training.fit("toy-svd-decoder", {"decoder": vae.decoder}, loss_fn, steps, lr, folder, seed=seed,
                       progress=progress, save_every=100)
    vae.eval()
    return fit


@torch.no_grad()
def vae_psnr(vae, pixels: torch.Tensor) -> float:
    """PSNR (dB) of the temporal VAE on videos (n, F, 3, H, W) in [-1, 1]."""
    frames = pixels.shape[1]
    recon = vae.decode(vae.encode(pixels.flatten(0, 1)).latent_dist.mode(), num_frames=frames).sample.clamp(-1, 1)
    mse = float(((recon - pixels.flatten(0, 1)) / 2).pow(2).mean())
    return 10 * float(np.log10(1.0 / mse))


def toy_parts(vae=None, unet=None, scheduler=None, seed: int = 0):
    """A toy ``StableVideoDiffusionPipeline`` from parts (defaults: :func:`toy_temporal_vae`,
    :func:`toy_unet`, the tiny CLIP image encoder, frozen at its seeded initialisation, and SVD's
    Euler scheduler). The image encoder is never trained: a fixed random CLIP tower still maps
    each image to its own 32-d embedding, the cross-attention context SVD gets from CLIP."""
    from diffusers import StableVideoDiffusionPipeline

    from .toy import configs

    return StableVideoDiffusionPipeline(
        vae=vae if vae is not None else toy_temporal_vae(seed),
        image_encoder=configs.tiny_image_encoder(seed),
        unet=unet if unet is not None else toy_unet(seed),
        scheduler=scheduler if scheduler is not None else euler_baseline_scheduler(),
        feature_extractor=configs.tiny_feature_extractor(),
    )


@torch.no_grad()
def svd_conditions(pipe, pixels: torch.Tensor, batch: int = 256) -> dict:
    """What SVD's pipeline computes from the first frame of each video (n, F, 3, H, W), exactly as
    ``StableVideoDiffusionPipeline`` does: ``image_embeds`` (n, 1, D), the CLIP embedding of the
    image (resized to 224 with antialiasing) and ``latents`` (n, F, 4, h, w), the videos' VAE
    latents (mode) times the scaling factor. The conditioning latent depends on the noise
    augmentation and is made per batch by :func:`condition_latents`."""
    import PIL.Image

    from .toy.data import to_uint8

    firsts = to_uint8(pixels[:, 0].numpy())
    embeds = torch.cat([pipe._encode_image([PIL.Image.fromarray(f) for f in firsts[i : i + batch]], "cpu", 1, False)
                        for i in range(0, len(firsts), batch)])
    n, frames = pixels.shape[:2]
    lat = torch.cat([pipe.vae.encode(pixels[i : i + 64].flatten(0, 1)).latent_dist.mode()
                     for i in range(0, n, 64)])
    return {"image_embeds": embeds, "latents": lat.unflatten(0, (n, frames)) * pipe.vae.config.scaling_factor}


def condition_latents(vae, first_frames: torch.Tensor, g: torch.Generator,
                      noise_aug_strength: float = DEMO["noise_aug_strength"]) -> torch.Tensor:
    """SVD's image condition: ``vae.encode(image + a z).mode()`` (NOT scaled), a = noise_aug_strength."""
    with torch.no_grad():
        noisy = first_frames + noise_aug_strength * torch.randn(first_frames.shape, generator=g)
        return vae.encode(noisy).latent_dist.mode()


def added_time_ids(n: int, fps: int = DEMO["fps"], motion_bucket_id: int = DEMO["motion_bucket_id"],
                   noise_aug_strength: float = DEMO["noise_aug_strength"]) -> torch.Tensor:
    """(n, 3): [fps - 1, motion_bucket_id, noise_aug_strength], as the pipeline feeds the UNet."""
    return torch.tensor([[fps - 1, motion_bucket_id, noise_aug_strength]], dtype=torch.float32).repeat(n, 1)


def v_model(unet, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor, embeds: torch.Tensor,
            time_ids: torch.Tensor) -> torch.Tensor:
    """The UNet's v-prediction at noise level sigma (n,) for latents x (n, F, 4, h, w), as SVD's
    pipeline calls it: ``F(cat[c_in x, cond], 0.25 ln sigma)`` with c_in = 1/sqrt(sigma^2 + 1) and the
    condition latent ``cond`` (n, 4, h, w) repeated over the frames on the channel axis."""
    s = sigma.reshape(-1, 1, 1, 1, 1)
    c_in = scalings(s)[2]
    inp = torch.cat([c_in * x, cond[:, None].expand(-1, x.shape[1], -1, -1, -1)], dim=2)
    return unet(inp, timestep_of(sigma), encoder_hidden_states=embeds, added_time_ids=time_ids).sample


def denoised(unet, x, sigma, cond, embeds, time_ids):
    """EDM's denoiser in v-parameterisation (= the consistency function's form)::

        D(x, s) = c_skip(s) x + c_out(s) F(c_in(s) x, 0.25 ln s),  c_skip = 1/(s^2+1), c_out = -s/sqrt(s^2+1)
    """
    c_skip, c_out, _ = scalings(sigma.reshape(-1, 1, 1, 1, 1))
    return c_skip * x + c_out * v_model(unet, x, sigma, cond, embeds, time_ids)


def training_sigmas(n: int, g: torch.Generator) -> torch.Tensor:
    """Noise levels for the teacher: half of them SVD's log-normal, ln s ~ N(0.7, 1.6^2), half the
    40 Karras grid points (uniformly), so that the levels the samplers visit (up to s_max = 700)
    are all trained; clamped to [s_min, s_max]."""
    lognormal = torch.exp(P_MEAN + P_STD * torch.randn(n, generator=g))
    grid = torch.from_numpy(karras_sigmas()).float()[torch.randint(0, NUM_TRAIN_TIMESTEPS, (n,), generator=g)]
    pick = torch.rand(n, generator=g) < 0.5
    return torch.where(pick, lognormal, grid).clamp(SIGMA_MIN, SIGMA_MAX)


def teacher_loss(unet, x0, cond, embeds, time_ids, sigma, noise) -> torch.Tensor:
    """EDM's loss with v-prediction, weighted by lambda(s) = (s^2 + 1)/s^2 so that it is plain MSE on
    the network output::

        x = x0 + s z,   target F* = (x0 - c_skip x) / c_out,   loss = mean (F(c_in x, 0.25 ln s) - F*)^2
    """
    s = sigma.reshape(-1, 1, 1, 1, 1)
    x = x0 + s * noise
    c_skip, c_out, _ = scalings(s)
    target = (x0 - c_skip * x) / c_out
    return torch.nn.functional.mse_loss(v_model(unet, x, sigma, cond, embeds, time_ids), target)


def _batch(data: dict, vae, pixels: torch.Tensor, idx: torch.Tensor, g: torch.Generator, drop: float):
    """One batch: clean latents, conditioning latents (noise-augmented first frames), embeddings,
    time ids; a share ``drop`` of samples gets the zero condition (SVD's unconditional input)."""
    x0, embeds = data["latents"][idx], data["image_embeds"][idx]
    cond = condition_latents(vae, pixels[idx, 0], g)
    if drop:
        keep = (torch.rand(len(idx), generator=g) >= drop).float()
        cond, embeds = cond * keep.reshape(-1, 1, 1, 1), embeds * keep.reshape(-1, 1, 1)
    return x0, cond, embeds, added_time_ids(len(idx))


def train_toy_svd_teacher(folder, pipe, pixels: torch.Tensor, steps: int, batch: int = 8, lr: float = 1e-3,
                          seed: int = 0, save_every: int = 200, progress: bool = True):
    """Train ``pipe.unet`` (image-to-video, the first frame as condition) on ``pixels`` (n, F, 3, H, W)
    with :func:`teacher_loss` at :func:`training_sigmas`, 10% of conditions dropped for guidance.
    Returns the fit; the UNet is trained in place."""
    from . import training

    data = svd_conditions(pipe, pixels)
    unet, vae = pipe.unet, pipe.vae
    unet.requires_grad_(True).train()

    def loss_fn(step, g):
        idx = torch.randint(0, len(pixels), (batch,), generator=g)
        x0, cond, embeds, ids = _batch(data, vae, pixels, idx, g, COND_DROP)
        sigma = training_sigmas(batch, g)
        return teacher_loss(unet, x0, cond, embeds, ids, sigma, torch.randn(x0.shape, generator=g))

    fit = training.fit("toy-svd-teacher", {"unet": unet}, loss_fn, steps, lr, folder, seed=seed,
                       warmup=min(50, steps // 10), save_every=save_every, progress=progress)
    unet.eval()
    return fit


# -- consistency distillation, the official AnimateLCM-SVD recipe at toy size ---------------


def euler_step(x: torch.Tensor, d: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """One Euler step of the probability-flow ODE dx/ds = (x - D(x, s)) / s from s to s_next::

        x_next = x + (s_next - s) (x - D) / s

    (diffusers' ``EulerDiscreteScheduler.step`` with v-prediction, s_churn 0: D = c_skip x + c_out v)."""
    s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.ndim - 1))
    s_next = torch.as_tensor(sigma_next, dtype=x.dtype).reshape(-1, *[1] * (x.ndim - 1))
    return x + (s_next - s) * (x - d) / s


def cd_weight(sigma, sigma_next):
    """The loss weight of the pair (s_n, s_{n+1}): ``(1 / (s_n - s_{n+1}))^0.1``."""
    return (1.0 / (sigma - sigma_next)) ** CD_WEIGHT_POWER


def sample_guidance(n: int, frames: int, g: torch.Generator) -> torch.Tensor:
    """Per-sample, per-frame guidance (n, F): ``linspace(choice{1, 1.25, 1.5}, choice{2, 2.25, 2.5}, F)``."""
    lo = torch.tensor(CD_GUIDANCE[0])[torch.randint(0, 3, (n,), generator=g)]
    hi = torch.tensor(CD_GUIDANCE[1])[torch.randint(0, 3, (n,), generator=g)]
    ramp = torch.linspace(0, 1, frames)
    return lo[:, None] + (hi - lo)[:, None] * ramp


def cd_loss(student, target, teacher, x0, cond, embeds, time_ids, index, noise, guidance) -> torch.Tensor:
    """AnimateLCM-SVD's consistency distillation loss for a batch, ``index`` (n,) in 0 .. N-2::

        x_n     = x0 + s_n z
        v       = v_u + w_f (v_c - v_u)                    teacher, guided per frame (w_f: ``guidance``)
        x_{n+1} = x_n + (s_{n+1} - s_n) (x_n - D) / s_n,  D = c_skip(s_n) x_n + c_out(s_n) v   (Euler)
        loss    = mean_b (1/(s_n - s_{n+1}))^0.1 * mean( sqrt((f(x_n, s_n) - f^-(x_{n+1}, s_{n+1}))^2 + c^2) - c )

    f = c_skip x + c_out F is the student (online) and f^- the EMA target, both without guidance;
    the unconditional input is SVD's: zero embeddings and a zero condition latent; c = 0.001.
    """
    from .consistency import pseudo_huber

    grid = torch.from_numpy(karras_sigmas()).float()
    s_n, s_next = grid[index], grid[index + 1]
    x_n = x0 + s_n.reshape(-1, 1, 1, 1, 1) * noise
    with torch.no_grad():
        both = v_model(teacher, x_n.repeat(2, 1, 1, 1, 1), s_n.repeat(2),
                       torch.cat([torch.zeros_like(cond), cond]), torch.cat([torch.zeros_like(embeds), embeds]),
                       time_ids.repeat(2, 1))
        v_u, v_c = both.chunk(2)
        v = v_u + guidance[:, :, None, None, None] * (v_c - v_u)
        c_skip, c_out, _ = scalings(s_n.reshape(-1, 1, 1, 1, 1))
        x_next = euler_step(x_n, c_skip * x_n + c_out * v, s_n, s_next)
        aim = denoised(target, x_next, s_next, cond, embeds, time_ids)
    pred = denoised(student, x_n, s_n, cond, embeds, time_ids)
    per_sample = pseudo_huber(pred.float(), aim.float(), CD_HUBER_C).flatten(1).mean(1)
    return (cd_weight(s_n, s_next) * per_sample).mean()


def distill_toy_svd(folder, pipe, teacher, pixels: torch.Tensor, steps: int, batch: int = 4, lr: float = 1e-4,
                    ema: float = CD_EMA, seed: int = 0, save_every: int = 100, progress: bool = True):
    """Consistency-distil ``teacher`` into a student initialised from it (and an EMA target, mu = 0.95),
    with :func:`cd_loss` at grid indices n ~ U{0 .. 38}, on ``pixels``' videos. Returns (student, fit)."""
    import copy

    from . import training
    from .consistency import ema_update

    data = svd_conditions(pipe, pixels)
    student = copy.deepcopy(teacher).requires_grad_(True).train()
    target_net = copy.deepcopy(teacher).requires_grad_(False).eval()
    teacher = copy.deepcopy(teacher).requires_grad_(False).eval()  # the caller's module is left as it was
    frames = pixels.shape[1]

    def loss_fn(step, g):
        idx = torch.randint(0, len(pixels), (batch,), generator=g)
        x0, cond, embeds, ids = _batch(data, pipe.vae, pixels, idx, g, 0.0)
        index = torch.randint(0, NUM_TRAIN_TIMESTEPS - 1, (batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        return cd_loss(student, target_net, teacher, x0, cond, embeds, ids, index, noise,
                       sample_guidance(batch, frames, g))

    fit = training.fit("toy-svd-cd", {"unet": student, "target": target_net}, loss_fn, steps, lr, folder, seed=seed,
                       save_every=save_every, progress=progress,
                       after_step=lambda step: ema_update(target_net, student, ema))
    student.eval()
    return student, fit


# -- the zoo's toy SVD, and how it is measured ----------------------------------------------


def load_toy_svd_teacher(device: str = "cpu"):
    """The zoo's toy SVD-xt (the teacher UNet) in ``StableVideoDiffusionPipeline`` with SVD's Euler
    scheduler, or a UserError when the zoo has none."""
    from diffusers import StableVideoDiffusionPipeline

    from .toy import zoo

    folder = zoo.root() / TOY_SVD
    if not (folder / "model_index.json").is_file():
        raise UserError(f"the toy zoo has no trained SVD ({folder}); build it with "
                        "`python -m animatelcm_helpers.toy.build --only svd_teacher svd_student`")
    pipe = pipelines.from_pretrained(StableVideoDiffusionPipeline, config.toy_weights(TOY_SVD), "toy SVD teacher",
                                     scheduler=euler_baseline_scheduler(), torch_dtype=torch.float32)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.svd_note, pipe.svd_size = f"toy SVD-xt teacher (Euler) from {folder}", SIZES["toy"]
    return pipe


def eval_set(n: int = EVAL_VIDEOS):
    """The fixed evaluation inputs: the first frames of test videos 0 .. n-1 (each test digit in
    all 4 directions) as uint8 (n, H, W, 3), with their digits and directions."""
    from .toy.data import to_uint8

    pixels, digits, directions = toy_videos("test", n)
    return to_uint8(pixels[:, 0].numpy()), digits.numpy(), directions


def evaluate_svd(pipe, steps: int, min_guidance: float = 1.0, max_guidance: float = 1.0, n: int = EVAL_VIDEOS,
                 label: str = "", frechet: bool = True) -> dict:
    """Sample one video per evaluation input (seed = its index) and measure it: ``digit`` (the
    classifier reads the input image's digit), ``direction`` (the centroid moves the way the input's
    video moved), ``both``, ``frechet`` (against metrics' 720 real test videos; needs >= 2 videos),
    ``unet_evals`` and ``seconds`` per video. Returns (row, videos)."""
    from . import metrics
    from .toy import data

    images, digits, directions = eval_set(n)
    gens = [generate_svd(pipe, img, steps=steps, seed=i, min_guidance=min_guidance, max_guidance=max_guidance)
            for i, img in enumerate(images)]
    videos = np.stack([g.frames for g in gens])
    digit_ok = metrics.read_digits(videos) == digits
    dir_ok = np.array([r == d for r, d in zip(metrics.read_direction(videos), directions)])
    row = {"label": label, "steps": steps, "min_guidance": min_guidance, "max_guidance": max_guidance,
           "videos": len(videos), "digit": float(digit_ok.mean()), "direction": float(dir_ok.mean()),
           "both": float((digit_ok & dir_ok).mean()),
           "score": metrics.digit_score(videos, [data.caption(int(d)) for d in digits]), "unet_evals": gens[0].unet_evaluations,
           "seconds": float(np.mean([g.seconds for g in gens]))}
    if frechet and len(videos) >= 2:
        row["frechet"] = metrics.frechet_distance(metrics.video_features(videos), metrics.reference_features())
    return row, videos


def format_svd_table(rows: list[dict]) -> str:
    """Rows of :func:`evaluate_svd` as markdown."""
    lines = ["| model | steps | guidance | UNet evals | digit | digit p | direction | both | Frechet | s / video |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = "none" if r["max_guidance"] == 1 else f"ramp {r['min_guidance']:g} -> {r['max_guidance']:g}"
        fd = f"{r['frechet']:.1f}" if r.get("frechet") is not None else "-"
        score = f"{r['score']:.3f}" if r.get("score") is not None else "-"
        lines.append(f"| {r['label']} | {r['steps']} | {g} | {r['unet_evals']} | {r['digit']:.2f} | {score} | "
                     f"{r['direction']:.2f} | {r['both']:.2f} | {fd} | {r['seconds']:.3f} |")
    return "\n".join(lines)


__all__ = [
    "AnimateLCMSVDScheduler",
    "AnimateLCMSVDSchedulerOutput",
    "karras_sigmas",
    "step_indices",
    "step_sigmas",
    "timestep_of",
    "scalings",
    "guidance_ramp",
    "euler_baseline_scheduler",
    "svd_xt_unet_config",
    "svd_xt_vae_config",
    "count_svd_flops",
    "cost_table",
    "format_cost_table",
    "unet_from_state_dict",
    "toy_svd_pipeline",
    "load_svd",
    "generate_svd",
    "toy_unet",
    "toy_temporal_vae",
    "train_toy_vae",
    "train_toy_svd_teacher",
    "teacher_loss",
    "euler_step",
    "cd_weight",
    "cd_loss",
    "distill_toy_svd",
    "load_toy_svd_teacher",
    "evaluate_svd",
    "format_svd_table",
]
