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
    """(pipeline, note): the toy world's ``StableVideoDiffusionPipeline``, the same classes tiny
    (``toy.configs``) with :class:`AnimateLCMSVDScheduler`. From the zoo's ``svd/`` folder when it
    holds a trained toy SVD, else seeded random weights (the note says which)."""
    from diffusers import StableVideoDiffusionPipeline

    from .toy import configs, zoo

    folder = zoo.root() / TOY_SVD
    if (folder / "model_index.json").is_file():
        pipe = pipelines.from_pretrained(
            StableVideoDiffusionPipeline, config.toy_weights(TOY_SVD), "toy SVD pipeline",
            scheduler=AnimateLCMSVDScheduler(),
        )
        return pipe, f"toy SVD from the zoo folder {folder}"
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
]
