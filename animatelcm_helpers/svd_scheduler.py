"""The AnimateLCM-SVD-xt scheduler: multistep consistency sampling on SVD's EDM noise levels
(one scheduler, one file, as diffusers keeps them).

The consistency function in SVD's v-parameterisation (sigma_data = 1)::

    f(x, s) = c_skip(s) x + c_out(s) F(c_in(s) x, 0.25 ln s)
    c_skip = s_d^2 / (s^2 + s_d^2),   c_out = -s s_d / sqrt(s^2 + s_d^2),   c_in = 1 / sqrt(s^2 + s_d^2)

It meets the boundary condition f(x, s_min) ~ x (c_skip(0.002) = 0.999996). Sampling (the
consistency models' multistep sampler): x = s_0 z, then for each chosen noise level
``x0 = f(x, s_i)``; ``x = x0 + s_{i+1} z'`` with fresh noise, and the last step returns ``x0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import EulerDiscreteScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .config import UserError

NUM_TRAIN_TIMESTEPS = 40  # points of the Karras grid the model was distilled on
SIGMA_MIN, SIGMA_MAX, SIGMA_DATA, RHO = 0.002, 700.0, 1.0, 7.0


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
