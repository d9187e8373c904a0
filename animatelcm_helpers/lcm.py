"""The LCM sampler written out from the math (notebook 02, "the LCM scheduler").

A latent consistency model (LCM, Luo et al. 2023) is a DDPM/DDIM latent diffusion model whose
network was distilled so that its x0 prediction, wrapped in the boundary-condition scalings,

    f(x_t, t) = c_skip(t) * x_t + c_out(t) * x0_hat(x_t, t)

is a consistency function: it maps any point of a PF-ODE trajectory to its origin. Sampling is
then the multistep consistency sampler (Song et al. 2023, algorithm 1) on the discrete timesteps
t = 0..999 of the variance-preserving forward process

    x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * z,     abar_t = prod_{s<=t} (1 - beta_s):

    x = z ~ N(0, I) at t_0 = 999
    for each t_i:   x0 = f(x, t_i);   x = sqrt(abar_{t_{i+1}}) x0 + sqrt(1 - abar_{t_{i+1}}) z'
    return the last x0

Every function here matches diffusers' ``LCMScheduler`` (and ``TCDScheduler`` for the TCD
variant) to float32 round-off; ``tests/test_lcm.py`` checks it. The paper's names: ``k`` the
skipping step of the LCD solver grid, ``c_skip`` / ``c_out`` the boundary scalings (from
:func:`animatelcm_helpers.consistency.scalings_lcm`), ``w`` the guidance scale (baked into the
distilled model: the sampler itself never sees it), ``gamma`` TCD's stochasticity.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from .config import UserError
from .consistency import SIGMA_DATA, TIMESTEP_SCALING, append_dims, as_time, scalings_lcm
from .media import float_to_uint8

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

# Stable Diffusion 1.5's noise schedule (the base of AnimateLCM's text-to-video model).
SD_BETA_START = 0.00085
SD_BETA_END = 0.012


# --------------------------------------------------------------------------------------------
# The noise schedule
# --------------------------------------------------------------------------------------------


def alphas_cumprod(
    beta_start: float = SD_BETA_START,
    beta_end: float = SD_BETA_END,
    beta_schedule: str = "scaled_linear",
    num_train_timesteps: int = 1000,
) -> torch.Tensor:
    """abar_t = prod_{s=0..t} (1 - beta_s) for t = 0..num_train_timesteps-1 (float32, as diffusers).

        "linear":        beta_t = linspace(beta_start, beta_end)
        "scaled_linear": beta_t = linspace(sqrt(beta_start), sqrt(beta_end))^2    (Stable Diffusion)

    With SD1.5's defaults abar_0 ~ 0.99915 and abar_999 ~ 0.0047 (the schedule does not reach
    pure noise: the last timestep still holds sqrt(0.0047) ~ 7% of the signal).
    """
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    else:
        raise UserError(f"beta_schedule {beta_schedule!r} is not supported: use 'linear' or 'scaled_linear'")
    return torch.cumprod(1.0 - betas, dim=0)


# --------------------------------------------------------------------------------------------
# Timesteps
# --------------------------------------------------------------------------------------------


def _check_int(name: str, value, low: int, high: int, what_to_do: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"{name} must be a whole number, got {value!r}: {what_to_do}")
    if not low <= value <= high:
        raise UserError(f"{name} = {value} is out of range {low}..{high}: {what_to_do}")
    return int(value)


def _check_strength(strength) -> float:
    if not 0.0 < float(strength) <= 1.0:
        raise UserError(f"strength = {strength!r} must be in (0, 1]: 1.0 samples from pure noise")
    return float(strength)


def skipping_grid(original_steps: int = 50, num_train_timesteps: int = 1000) -> np.ndarray:
    """The LCD solver grid: the timesteps the LCM was distilled on, ascending.

        k   = num_train_timesteps // original_steps          the skipping step (1000 // 50 = 20)
        t_j = j * k - 1,   j = 1 .. original_steps          (19, 39, ..., 999)

    During distillation the teacher's ODE solver jumps from t_j to t_{j-1} = t_j - k in one step,
    so the student only ever saw these timesteps. When ``original_steps`` does not divide
    ``num_train_timesteps`` the grid stops short of 999 (30 steps: k = 33, 32 .. 989).
    """
    num_train_timesteps = _check_int("num_train_timesteps", num_train_timesteps, 1, 10**6, "use 1000")
    original_steps = _check_int(
        "original_steps", original_steps, 1, num_train_timesteps, "use the grid the LCM was distilled on (50)"
    )
    k = num_train_timesteps // original_steps
    return np.arange(1, original_steps + 1, dtype=np.int64) * k - 1


def _select_evenly(origin_ascending: np.ndarray, steps: int) -> np.ndarray:
    """Take ``steps`` of the grid, descending, at indices floor(i * L / n) (see :func:`lcm_timesteps`)."""
    descending = origin_ascending[::-1]
    # np.linspace, not the exact integer i * L // n: diffusers uses linspace, whose round-off
    # lands one index lower for a few (L, n), e.g. (30, 22) and (45, 33).
    idx = np.floor(np.linspace(0, len(descending), num=steps, endpoint=False)).astype(np.int64)
    return descending[idx].copy()


def lcm_timesteps(
    steps: int, original_steps: int = 50, num_train_timesteps: int = 1000, strength: float = 1.0
) -> np.ndarray:
    """The timesteps diffusers' ``LCMScheduler.set_timesteps(steps, original_inference_steps=...)`` picks.

    Take the first L = int(original_steps * strength) points of the :func:`skipping_grid`,
    reverse them (t'_0 = the largest, ..., t'_{L-1} = k - 1), and keep ``n = steps`` of them at
    evenly spaced indices, rounding down:

        t_i = t'_{floor(i L / n)} = k (L - floor(i L / n)) - 1,     i = 0 .. n-1

    (floor(i L / n) as numpy's ``linspace(0, L, n, endpoint=False)`` computes it). So the first
    timestep is always the grid's top (999 for L = 50), the last is NOT the grid's bottom (19)
    unless n = L, and when n does not divide L the gaps alternate between floor(L/n) and
    ceil(L/n) grid steps: 1 -> [999]; 2 -> [999, 499]; 3 -> [999, 679, 339];
    4 -> [999, 759, 499, 259]. ``strength < 1`` (image-to-video) starts lower: only the
    bottom L points of the grid are used. Returns a descending int64 array.
    """
    grid = skipping_grid(original_steps, num_train_timesteps)
    strength = _check_strength(strength)
    length = int(original_steps * strength)
    if length < 1:
        raise UserError(
            f"strength = {strength} keeps no timestep of the {original_steps}-step grid: "
            f"use strength >= {1 / original_steps:g}"
        )
    steps = _check_int(
        "steps",
        steps,
        1,
        length,
        f"LCM takes 1 to {length} steps on the {original_steps}-step distillation grid"
        + (f" at strength {strength}" if strength < 1 else "")
        + " (1 to 8 is typical; 4 is the usual choice)",
    )
    return _select_evenly(grid[:length], steps)


def tcd_timesteps(
    steps: int, original_steps: int | None = 50, num_train_timesteps: int = 1000, strength: float = 1.0
) -> np.ndarray:
    """The timesteps diffusers' ``TCDScheduler.set_timesteps`` picks, with the same rule as
    :func:`lcm_timesteps`, t_i = grid'_{floor(i L / n)}, on one of two grids:

    * ``original_steps = o`` (what ``TCDScheduler(original_inference_steps=o).set_timesteps(n)``
      does, as the pipelines call it): the LCD grid of :func:`skipping_grid`, identical to LCM;
    * ``original_steps = None``: every training timestep 0 .. num_train_timesteps - 1, so
      4 -> [999, 749, 499, 249]. Beware: diffusers switches to this grid whenever
      ``set_timesteps`` is *given* ``original_inference_steps``, whatever its value.
    """
    if original_steps is not None:
        return lcm_timesteps(steps, original_steps, num_train_timesteps, strength)
    strength = _check_strength(strength)
    length = int(num_train_timesteps * strength)
    steps = _check_int("steps", steps, 1, max(length, 1), f"TCD takes 1 to {length} steps")
    return _select_evenly(np.arange(0, length, dtype=np.int64), steps)


# --------------------------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------------------------


def _check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise UserError(
            f"prediction_type {prediction_type!r} is unknown: use one of {', '.join(PREDICTION_TYPES)} "
            "(the model's scheduler config says which)"
        )


def _abar(alphas_cumprod: torch.Tensor, t, like: torch.Tensor) -> torch.Tensor:
    """abar_t for an int or a 0-d / (B,) tensor of timesteps, broadcastable against ``like``."""
    index = torch.as_tensor(t, device=alphas_cumprod.device).long()
    return append_dims(as_time(alphas_cumprod[index], like), like.ndim)


def predicted_x0(
    model_output: torch.Tensor, sample: torch.Tensor, alpha_bar_t, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """The model's estimate x0_hat of the clean latent, from x_t = sqrt(abar) x0 + sqrt(1 - abar) z:

        "epsilon":       x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)
        "v_prediction":  x0_hat = sqrt(abar_t) x_t - sqrt(1 - abar_t) v_hat
                         (v = sqrt(abar) z - sqrt(1 - abar) x0, Salimans & Ho 2022)
        "sample":        x0_hat = the model output

    ``alpha_bar_t`` is abar_t: a float, a 0-d tensor, or one value per sample (B,).
    """
    _check_prediction_type(prediction_type)
    abar = append_dims(as_time(alpha_bar_t, sample), sample.ndim)
    if prediction_type == "epsilon":
        return (sample - (1 - abar).sqrt() * model_output) / abar.sqrt()
    if prediction_type == "v_prediction":
        return abar.sqrt() * sample - (1 - abar).sqrt() * model_output
    return model_output


def predicted_noise(
    model_output: torch.Tensor, sample: torch.Tensor, alpha_bar_t, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """The model's estimate eps_hat of the noise in x_t (the companion of :func:`predicted_x0`):

        "epsilon":       eps_hat = the model output
        "v_prediction":  eps_hat = sqrt(abar_t) v_hat + sqrt(1 - abar_t) x_t
        "sample":        eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)
    """
    _check_prediction_type(prediction_type)
    abar = append_dims(as_time(alpha_bar_t, sample), sample.ndim)
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "v_prediction":
        return abar.sqrt() * model_output + (1 - abar).sqrt() * sample
    return (sample - abar.sqrt() * model_output) / (1 - abar).sqrt()


def renoise(x0: torch.Tensor, noise: torch.Tensor, alpha_bar_next) -> torch.Tensor:
    """The forward process back to t_next: x_{t_next} = sqrt(abar_next) x0 + sqrt(1 - abar_next) z."""
    abar = append_dims(as_time(alpha_bar_next, x0), x0.ndim)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def lcm_step(
    model_output: torch.Tensor,
    t,
    sample: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    t_next,
    noise: torch.Tensor | None,
    prediction_type: str = "epsilon",
    sigma_data: float = SIGMA_DATA,
    timestep_scaling: float = TIMESTEP_SCALING,
):
    """One LCM step (diffusers' ``LCMScheduler.step``). Returns ``(prev_sample, denoised)``.

        x0_hat   = predicted_x0(model_output, x_t, abar_t)
        denoised = c_skip(t) x_t + c_out(t) x0_hat                 f(x_t, t), the consistency function
        u = timestep_scaling * t,  c_skip = s_d^2 / (u^2 + s_d^2),  c_out = u / sqrt(u^2 + s_d^2)

    then, unless this is the last step (``t_next is None``: prev_sample = denoised exactly),
    re-noise to the next timestep with fresh noise z (``noise``):

        prev_sample = sqrt(abar_{t_next}) denoised + sqrt(1 - abar_{t_next}) z

    ``t`` / ``t_next`` are ints or 0-d / (B,) tensors of timesteps in 0..999, ``alphas_cumprod``
    the model's abar (e.g. :func:`alphas_cumprod` or ``scheduler.alphas_cumprod``).
    """
    x0_hat = predicted_x0(model_output, sample, _abar(alphas_cumprod, t, sample), prediction_type)
    c_skip, c_out = scalings_lcm(as_time(t, sample), sigma_data=sigma_data, timestep_scaling=timestep_scaling)
    denoised = append_dims(c_out, sample.ndim) * x0_hat + append_dims(c_skip, sample.ndim) * sample
    if t_next is None:
        return denoised, denoised
    if noise is None:
        raise UserError("lcm_step needs fresh noise (e.g. torch.randn_like(sample)) when t_next is given")
    return renoise(denoised, noise, _abar(alphas_cumprod, t_next, sample)), denoised


def tcd_step(
    model_output: torch.Tensor,
    t,
    sample: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    t_next,
    noise: torch.Tensor | None,
    gamma: float = 0.3,
    prediction_type: str = "epsilon",
):
    """One TCD step (Zheng et al. 2024; diffusers' ``TCDScheduler.step`` with ``eta = gamma``).

    Returns ``(prev_sample, x_s)``. With t_next = 0 on the last step (``t_next is None``):

        s    = floor((1 - gamma) t_next)                          an intermediate timestep <= t_next
        x_s  = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) eps_hat      a DDIM jump from t down to s
        prev_sample = sqrt(abar_{t_next} / abar_s) x_s + sqrt(1 - abar_{t_next} / abar_s) z

    i.e. go a little *past* t_next deterministically, then forward-diffuse back up to t_next with
    fresh noise z. gamma = 0 is DDIM (s = t_next, no noise drawn), gamma = 1 is the LCM-like
    "predict x0, re-noise" (s = 0). No c_skip / c_out. On the last step prev_sample = x_s at
    s = 0, which is sqrt(abar_0) x0_hat + sqrt(1 - abar_0) eps_hat, not x0_hat itself.
    (1 - gamma) t_next is rounded as diffusers does: a float32 product, then floor.
    """
    if not 0.0 <= gamma <= 1.0:
        raise UserError(f"gamma = {gamma!r} must be in [0, 1]: 0 is deterministic (DDIM), 0.3 the TCD default")
    last = t_next is None
    t_next = torch.as_tensor(0 if last else t_next, device=alphas_cumprod.device).long()
    s = torch.floor((1 - gamma) * t_next).long()
    abar_t = _abar(alphas_cumprod, t, sample)
    abar_s = _abar(alphas_cumprod, s, sample)
    x0_hat = predicted_x0(model_output, sample, abar_t, prediction_type)
    eps_hat = predicted_noise(model_output, sample, abar_t, prediction_type)
    x_s = abar_s.sqrt() * x0_hat + (1 - abar_s).sqrt() * eps_hat
    if last or gamma == 0:
        return x_s, x_s
    if noise is None:
        raise UserError(
            "tcd_step needs fresh noise (e.g. torch.randn_like(sample)) when gamma > 0 and t_next is given"
        )
    ratio = _abar(alphas_cumprod, t_next, sample) / abar_s
    return ratio.sqrt() * x_s + (1 - ratio).sqrt() * noise, x_s


# --------------------------------------------------------------------------------------------
# The whole loop
# --------------------------------------------------------------------------------------------


def _fresh_noise(like: torch.Tensor, generator) -> torch.Tensor:
    """z ~ N(0, I) drawn as diffusers' schedulers draw it (``randn_tensor``): on the generator's
    device (a CPU generator draws on the CPU, then moves), one draw per sample for a list of
    generators. Same generator state -> the same z as ``LCMScheduler.step``."""
    return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def _timestep_input(t, like: torch.Tensor) -> torch.Tensor:
    # The pipelines hand the UNet a 0-d int64 tensor from scheduler.timesteps.
    return torch.tensor(int(t), dtype=torch.long, device=like.device)


@torch.no_grad()
def lcm_sample(
    model_fn: Callable,
    latents: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    steps: int,
    generator: torch.Generator | list | None = None,
    original_steps: int = 50,
    prediction_type: str = "epsilon",
    return_trajectory: bool = False,
):
    """Multistep LCM sampling: the loop of diffusers' LCM pipelines, step by step.

        x = latents (pure noise z for text-to-video; diffusers' init_noise_sigma is 1)
        for i, t_i in enumerate(lcm_timesteps(steps, original_steps)):
            out = model_fn(x, t_i)                               (0-d int64 tensor t_i)
            x, denoised_i = lcm_step(out, t_i, x, abar, t_{i+1}, z_i)
        return x                                                 (= denoised of the last step)

    z_i is drawn from ``generator`` after the model call and only between steps (n - 1 draws),
    exactly as ``LCMScheduler.step`` draws it, so the same generator state gives the same result.
    ``model_fn(x, t)`` returns the model output (eps, v or x0 per ``prediction_type``; any
    classifier-free guidance belongs inside it, but an LCM needs none: w is distilled in).
    Returns the final latents, or ``(latents, [(t_i, denoised_i), ...])`` with
    ``return_trajectory=True`` (the predicted x0 at each step).
    """
    _check_prediction_type(prediction_type)
    timesteps = lcm_timesteps(steps, original_steps, num_train_timesteps=len(alphas_cumprod))
    x = latents
    trajectory = []
    for i, t in enumerate(timesteps):
        out = model_fn(x, _timestep_input(t, x))
        t_next = int(timesteps[i + 1]) if i + 1 < len(timesteps) else None
        noise = None if t_next is None else _fresh_noise(out, generator)
        x, denoised = lcm_step(out, int(t), x, alphas_cumprod, t_next, noise, prediction_type)
        trajectory.append((int(t), denoised))
    return (x, trajectory) if return_trajectory else x


@torch.no_grad()
def tcd_sample(
    model_fn: Callable,
    latents: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    steps: int,
    gamma: float = 0.3,
    generator: torch.Generator | list | None = None,
    original_steps: int | None = 50,
    prediction_type: str = "epsilon",
    return_trajectory: bool = False,
):
    """TCD sampling (the loop of a pipeline with ``TCDScheduler``, ``eta = gamma``):

        for i, t_i in enumerate(tcd_timesteps(steps, original_steps)):
            x, x_s = tcd_step(model_fn(x, t_i), t_i, x, abar, t_{i+1}, z_i, gamma)

    z_i is drawn (as diffusers draws it) only between steps and only when gamma > 0.
    Returns the final latents, or ``(latents, [(t_i, x_s_i), ...])`` with ``return_trajectory``.
    """
    _check_prediction_type(prediction_type)
    timesteps = tcd_timesteps(steps, original_steps, num_train_timesteps=len(alphas_cumprod))
    x = latents
    trajectory = []
    for i, t in enumerate(timesteps):
        out = model_fn(x, _timestep_input(t, x))
        t_next = int(timesteps[i + 1]) if i + 1 < len(timesteps) else None
        noise = _fresh_noise(out, generator) if t_next is not None and gamma > 0 else None
        x, x_s = tcd_step(out, int(t), x, alphas_cumprod, t_next, noise, gamma, prediction_type)
        trajectory.append((int(t), x_s))
    return (x, trajectory) if return_trajectory else x


# --------------------------------------------------------------------------------------------
# For the plot
# --------------------------------------------------------------------------------------------


def scaling_curves(
    num_train_timesteps: int = 1000, sigma_data: float = SIGMA_DATA, timestep_scaling: float = TIMESTEP_SCALING
):
    """(t, c_skip(t), c_out(t)) for t = 0..num_train_timesteps-1, as float64 numpy arrays.

    c_skip = s_d^2 / (u^2 + s_d^2), c_out = u / sqrt(u^2 + s_d^2), u = timestep_scaling * t:
    c_skip falls from 1 to ~6.9e-6 by t = 19 (the first grid point), c_out rises from 0 to ~1,
    so at every timestep the sampler visits f(x, t) is, in effect, the model's x0 prediction.
    """
    t = np.arange(num_train_timesteps, dtype=np.float64)
    c_skip, c_out = scalings_lcm(torch.from_numpy(t), sigma_data=sigma_data, timestep_scaling=timestep_scaling)
    return t, c_skip.numpy(), c_out.numpy()


# ------------------------------------------------------------------------------------------
# On a real pipeline: our loop on an AnimateDiff pipeline's UNet, checked against the pipeline
# ------------------------------------------------------------------------------------------


def initial_latents(pipe, frames: int, height: int, width: int, seed: int) -> torch.Tensor:
    """x_T ~ N(0, I) of shape (1, C, F, h, w), from a CPU generator seeded by ``seed``."""
    factor = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, frames, height // factor, width // factor)
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


@torch.no_grad()
def sample_video(pipe, prompt: str, steps: int = 4, seed: int = 0, noise_seed: int = 1, original_steps: int = 50):
    """Sample ``prompt`` with :func:`lcm_sample` on ``pipe``'s UNet (an AnimateDiff pipeline with
    an LCM; no CFG): x_T from ``seed``, the re-noising draws from ``noise_seed``. Returns
    ``(latents, trajectory, x_T)``; ``pipe(..., latents=x_T, generator=Generator().manual_seed(
    noise_seed), output_type="latent")`` with an ``LCMScheduler`` gives the same latents."""
    spec = pipe.model_spec
    x_T = initial_latents(pipe, spec.frames, spec.height, spec.width, seed)
    embeds, _ = pipe.encode_prompt(prompt, "cpu", 1, False)
    embeds = embeds.repeat_interleave(spec.frames, dim=0)  # one copy per frame, as the pipeline does
    alphas = pipe.scheduler.alphas_cumprod

    def model_fn(x, t):
        return pipe.unet(x, t, encoder_hidden_states=embeds).sample

    generator = torch.Generator("cpu").manual_seed(noise_seed)
    latents, trajectory = lcm_sample(model_fn, x_T, alphas, steps, generator, original_steps, return_trajectory=True)
    return latents, trajectory, x_T


@torch.no_grad()
def decode(pipe, latents: torch.Tensor) -> np.ndarray:
    """Video latents (1, C, F, h, w) -> uint8 frames (F, H, W, 3), through the pipeline's VAE."""
    video = pipe.decode_latents(latents)
    frames = pipe.video_processor.postprocess_video(video=video, output_type="np")[0]
    return float_to_uint8(frames)
