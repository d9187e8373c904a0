"""Consistency models as small functions: scalings, time grids, losses, EMA, multistep sampling.

A consistency function maps any point of a probability-flow (PF) ODE trajectory to the
trajectory's origin (Song et al. 2023, "Consistency Models"):

    f(x_t, t) = x_eps   for every t in [eps, T] on one trajectory,

and it is parameterised so that the boundary condition f(x, eps) = x holds by construction:

    f_theta(x, t) = c_skip(t) * x + c_out(t) * F_theta(x, t),   c_skip(eps) = 1, c_out(eps) = 0.

Latent Consistency Models (LCM, Luo et al. 2023) use the same form on the discrete timesteps
t = 0..999 of a DDPM/DDIM model, with F = the model's x0 prediction and the scalings of
:func:`scalings_lcm`; AnimateLCM distils video latents with it.

Everything here is tensor-generic: ``x`` may be a batch of 2-D points (B, 2) or of video
latents (B, C, F, H, W). A time ``t`` may be a Python float, a 0-d tensor, or one value per
sample (a tensor of shape (B,)); :func:`append_dims` broadcasts it over the trailing dimensions.

Notation (the papers'): ``sigma_data`` (s_d) the data's standard deviation, ``eps`` the
smallest time, ``T`` the largest, ``rho`` the Karras grid's curvature, ``mu`` the EMA rate,
``k`` the skipping step (LCM), ``w`` the guidance scale, ``c`` the pseudo-Huber constant.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

# The CM paper's defaults (EDM's VE parameterisation: x_t = x_0 + t * z).
SIGMA_DATA = 0.5
EPS = 0.002
T_MAX = 80.0
RHO = 7.0

# The LCM defaults (discrete timesteps 0..999 of a DDPM model).
TIMESTEP_SCALING = 10.0


# --------------------------------------------------------------------------------------------
# Broadcasting
# --------------------------------------------------------------------------------------------


def as_time(t, like: torch.Tensor) -> torch.Tensor:
    """``t`` as a tensor with ``like``'s dtype and device (a float, a 0-d or a (B,) tensor)."""
    return torch.as_tensor(t, dtype=like.dtype, device=like.device)


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append singleton dimensions to ``v`` until it has ``ndim`` dims: (B,) -> (B, 1, ..., 1).

    A 0-d tensor stays 0-d (it broadcasts as is).
    """
    if v.ndim == 0:
        return v
    if v.ndim > ndim:
        raise ValueError(f"cannot broadcast a time of shape {tuple(v.shape)} over {ndim} dims")
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


# --------------------------------------------------------------------------------------------
# Boundary-condition scalings
# --------------------------------------------------------------------------------------------


def scalings_cm(t, sigma_data: float = SIGMA_DATA, eps: float = EPS):
    """The consistency model's skip and output scalings (Song et al. 2023, appendix C).

        c_skip(t) = s_d^2 / ((t - eps)^2 + s_d^2)
        c_out(t)  = s_d (t - eps) / sqrt(t^2 + s_d^2)

    so that c_skip(eps) = 1 and c_out(eps) = 0: f(x, eps) = x whatever the network says.
    Returns ``(c_skip, c_out)``, tensors when ``t`` is a tensor, else floats.
    """
    if isinstance(t, torch.Tensor):
        c_skip = sigma_data**2 / ((t - eps) ** 2 + sigma_data**2)
        c_out = sigma_data * (t - eps) / torch.sqrt(t**2 + sigma_data**2)
        return c_skip, c_out
    c_skip = sigma_data**2 / ((t - eps) ** 2 + sigma_data**2)
    c_out = sigma_data * (t - eps) / math.sqrt(t**2 + sigma_data**2)
    return c_skip, c_out


def scalings_lcm(timestep, sigma_data: float = SIGMA_DATA, timestep_scaling: float = TIMESTEP_SCALING):
    """LCM's scalings on the discrete timesteps 0..999 (diffusers' LCMScheduler, LCM training).

        u = timestep_scaling * t                    (10 t)
        c_skip(t) = s_d^2 / (u^2 + s_d^2)
        c_out(t)  = u / sqrt(u^2 + s_d^2)

    c_skip(0) = 1 and c_out(0) = 0 (the boundary condition at t = 0); already at t = 19 the skip
    term is negligible (c_skip(19) = 0.25 / 36100.25 ~ 6.9e-6), so f is almost exactly the
    model's x0 prediction at every timestep the sampler visits. Returns ``(c_skip, c_out)``.
    """
    if isinstance(timestep, torch.Tensor):
        u = timestep * timestep_scaling
        c_skip = sigma_data**2 / (u**2 + sigma_data**2)
        c_out = u / torch.sqrt(u**2 + sigma_data**2)
        return c_skip, c_out
    u = timestep * timestep_scaling
    c_skip = sigma_data**2 / (u**2 + sigma_data**2)
    c_out = u / math.sqrt(u**2 + sigma_data**2)
    return c_skip, c_out


def consistency_function(model_out: torch.Tensor, x: torch.Tensor, t, scalings: Callable = scalings_cm, **kwargs):
    """Combine a network's output with its input so that the boundary condition holds.

        f(x, t) = c_skip(t) * x + c_out(t) * F(x, t)

    ``model_out`` is F(x, t) (for LCM: the model's x0 prediction), ``x`` the noisy input,
    ``t`` the time (float, 0-d or per-sample (B,)), ``scalings`` a function
    ``t -> (c_skip, c_out)`` such as :func:`scalings_cm` (default) or :func:`scalings_lcm`;
    extra keyword arguments go to it (``sigma_data``, ``eps``, ``timestep_scaling``).
    """
    t = as_time(t, x)
    c_skip, c_out = scalings(t, **kwargs)
    return append_dims(c_skip, x.ndim) * x + append_dims(c_out, x.ndim) * model_out


# --------------------------------------------------------------------------------------------
# Time grid and the PF-ODE
# --------------------------------------------------------------------------------------------


def karras_grid(n: int, eps: float = EPS, T: float = T_MAX, rho: float = RHO, dtype=torch.float32) -> torch.Tensor:
    """``n`` times from T down to eps, dense near eps (Karras et al. 2022, eq. 5):

        t_i = (T^(1/rho) + i / (n - 1) * (eps^(1/rho) - T^(1/rho)))^rho,   i = 0 .. n-1

    so t_0 = T and t_{n-1} = eps; descending. (The CM paper numbers the same grid upwards,
    t_1 = eps < ... < t_N = T.) ``n = 1`` gives ``[T]``.
    """
    if n < 1:
        raise ValueError("karras_grid needs n >= 1")
    if n == 1:
        return torch.tensor([T], dtype=dtype)
    i = torch.arange(n, dtype=torch.float64)
    t = (T ** (1 / rho) + i / (n - 1) * (eps ** (1 / rho) - T ** (1 / rho))) ** rho
    t[0], t[-1] = T, eps  # exact endpoints, not pow round-off
    return t.to(dtype)


def add_noise_ve(x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """The variance-exploding forward process of EDM/CM: x_t = x_0 + t * z."""
    return x0 + append_dims(as_time(t, x0), x0.ndim) * noise


def pf_ode_derivative(denoiser: Callable, x: torch.Tensor, t) -> torch.Tensor:
    """The PF-ODE of the VE process in EDM form: dx/dt = (x - D(x, t)) / t.

    ``denoiser(x, t)`` returns D(x, t), the model's estimate of E[x_0 | x_t = x].
    """
    t = as_time(t, x)
    return (x - denoiser(x, t)) / append_dims(t, x.ndim)


def euler_step(denoiser: Callable, x: torch.Tensor, t, t_next) -> torch.Tensor:
    """One Euler step of the PF-ODE from t to t_next: x' = x + (t_next - t) * d(x, t).

    With the VE process this is exactly DDIM's update (Karras et al. 2022, sec. 3).
    """
    d = pf_ode_derivative(denoiser, x, t)
    h = append_dims(as_time(t_next, x) - as_time(t, x), x.ndim)
    return x + h * d


def heun_step(denoiser: Callable, x: torch.Tensor, t, t_next) -> torch.Tensor:
    """One Heun (2nd-order) step of the PF-ODE from t to t_next (EDM's algorithm 1):

        d  = d(x, t);  x_e = x + h d;  d' = d(x_e, t_next);  x' = x + h (d + d') / 2,  h = t_next - t.

    Two denoiser evaluations; t_next must be > 0.
    """
    h = append_dims(as_time(t_next, x) - as_time(t, x), x.ndim)
    d = pf_ode_derivative(denoiser, x, t)
    x_euler = x + h * d
    d_next = pf_ode_derivative(denoiser, x_euler, t_next)
    return x + h * (d + d_next) / 2


def pf_ode_sample(denoiser: Callable, x: torch.Tensor, ts: Sequence, step: Callable = heun_step) -> torch.Tensor:
    """Solve the PF-ODE along the descending times ``ts`` (e.g. :func:`karras_grid`) from x at ts[0].

    ``len(ts) - 1`` solver steps; returns x at ts[-1]. Start from x = ts[0] * z.
    """
    ts = [float(t) for t in ts]
    for t, t_next in zip(ts[:-1], ts[1:]):
        x = step(denoiser, x, t, t_next)
    return x


# --------------------------------------------------------------------------------------------
# Distances, losses, EMA
# --------------------------------------------------------------------------------------------


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise squared distance (a - b)^2; the losses average it (the CM paper's L2 up to a constant)."""
    return (a - b) ** 2


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float = 0.001) -> torch.Tensor:
    """Element-wise pseudo-Huber distance sqrt((a - b)^2 + c^2) - c (LCM, AnimateLCM: c = 0.001).

    Quadratic ((a-b)^2 / 2c) for |a - b| << c, linear (|a - b| - c) for |a - b| >> c:
    large errors pull less than under L2.
    """
    return torch.sqrt((a - b) ** 2 + c**2) - c


def weight_inverse_gap(t, t_prev):
    """The loss weight lambda(t_n) = 1 / (t_n - t_prev) of improved CT (Song & Dhariwal 2023).

    Small gaps (near eps) give small differences between f(x_t) and f(x_t_prev); the weight
    keeps them from being drowned by the large-t pairs.
    """
    return 1.0 / (t - t_prev)


def _per_sample_mean(d: torch.Tensor) -> torch.Tensor:
    return d.reshape(d.shape[0], -1).mean(dim=1) if d.ndim > 1 else d


def _weighted_mean(d: torch.Tensor, weight) -> torch.Tensor:
    d = _per_sample_mean(d)
    if weight is not None:
        d = as_time(weight, d) * d
    return d.mean()


def cd_loss(
    f_online: Callable,
    f_target: Callable,
    solver_step: Callable,
    x_t: torch.Tensor,
    t,
    t_prev,
    distance: Callable = pseudo_huber,
    weight=None,
) -> torch.Tensor:
    """Consistency-distillation loss (Song et al. 2023, eq. 7; LCM's LCD):

        x_hat = Phi(x_t, t -> t_prev)                     one teacher ODE-solver step, no grad
        L     = E[ lambda(t) d( f_theta(x_t, t), f_theta-(x_hat, t_prev) ) ]

    ``f_online(x, t)`` is the student's consistency function f_theta (gradients flow),
    ``f_target(x, t)`` the EMA target f_theta- (no gradient: computed under ``torch.no_grad``),
    ``solver_step(x, t, t_prev)`` the teacher's step from t to t_prev < t (e.g.
    ``lambda x, t, s: heun_step(teacher, x, t, s)``, or a guided DDIM step for LCM, which may
    skip k timesteps), ``x_t`` the noisy sample at ``t`` (made with the same forward process
    the teacher knows), ``distance`` element-wise (:func:`l2`, :func:`pseudo_huber`),
    ``weight`` lambda(t), a float or one value per sample. Returns the scalar loss.
    """
    with torch.no_grad():
        x_hat = solver_step(x_t, t, t_prev)
        target = f_target(x_hat, t_prev)
    pred = f_online(x_t, t)
    return _weighted_mean(distance(pred, target), weight)


def ct_loss(
    f_online: Callable,
    f_target: Callable,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t,
    t_prev,
    add_noise: Callable = add_noise_ve,
    distance: Callable = pseudo_huber,
    weight=None,
) -> torch.Tensor:
    """Consistency-training loss, no teacher (Song et al. 2023, eq. 10; AnimateLCM's adapters):

        x_t      = add_noise(x0, z, t)           (VE: x0 + t z)
        x_t_prev = add_noise(x0, z, t_prev)      the SAME x0 and the SAME noise z
        L        = E[ lambda(t) d( f_theta(x_t, t), f_theta-(x_t_prev, t_prev) ) ]

    Sharing z replaces the teacher's ODE step by the one-sample estimate of the score,
    (x_t - x0) / t^2 = z / t, so the pair lies (to first order) on one PF-ODE trajectory.
    ``add_noise(x0, noise, t)`` is the forward process (:func:`add_noise_ve` by default; a
    DDPM scheduler's ``add_noise`` for LCM-style models). The target is computed without grad.
    """
    x_t = add_noise(x0, noise, t)
    with torch.no_grad():
        target = f_target(add_noise(x0, noise, t_prev), t_prev)
    pred = f_online(x_t, t)
    return _weighted_mean(distance(pred, target), weight)


@torch.no_grad()
def ema_update(target, online, mu: float):
    """Exponential moving average of the online weights into the target, in place:

        theta- <- mu * theta- + (1 - mu) * theta        (stop-gradient on theta-)

    ``target``/``online`` are modules (parameters averaged, buffers copied) or matching
    sequences of tensors. mu = 0 copies the online weights (iCT, LCM-LoRA: no separate
    target), mu = 1 freezes the target. Returns ``target``.
    """
    if isinstance(target, torch.nn.Module):
        for p_t, p_o in zip(target.parameters(), online.parameters()):
            p_t.lerp_(p_o.detach(), 1.0 - mu)
        for b_t, b_o in zip(target.buffers(), online.buffers()):
            b_t.copy_(b_o)
    else:
        for p_t, p_o in zip(target, online):
            p_t.lerp_(p_o.detach(), 1.0 - mu)
    return target


def ct_schedule(k: int, K: int, s0: int = 2, s1: int = 150, mu0: float = 0.9):
    """The CT discretisation and EMA-rate schedules (Song et al. 2023, appendix C), at step k of K:

        N(k)  = ceil( sqrt( k / K * ((s1 + 1)^2 - s0^2) + s0^2 ) - 1 ) + 1
        mu(k) = exp( s0 * log(mu0) / N(k) )

    Few, coarse steps early (low-variance but biased targets), more and finer steps later.
    Returns ``(N, mu)``; N is the number of grid points for :func:`karras_grid`.
    """
    n = math.ceil(math.sqrt(k / K * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1
    mu = math.exp(s0 * math.log(mu0) / n) if mu0 > 0 else 0.0
    return n, mu


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def renoise_ve(x0: torch.Tensor, noise: torch.Tensor, t_next, eps: float = EPS) -> torch.Tensor:
    """Back onto the trajectory at t_next (CM algorithm 1): x = x0 + sqrt(t_next^2 - eps^2) z."""
    s = torch.sqrt(torch.clamp(as_time(t_next, x0) ** 2 - eps**2, min=0.0))
    return x0 + append_dims(s, x0.ndim) * noise


@torch.no_grad()
def multistep_sample(
    f: Callable,
    x: torch.Tensor,
    ts: Sequence,
    generator: torch.Generator | None = None,
    renoise: Callable = renoise_ve,
) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, algorithm 1; LCM's sampler):

        x0 = f(x, ts[0])                                      x = T z at the start
        for t in ts[1:]:   x = x0 + sqrt(t^2 - eps^2) z,  x0 = f(x, t)      (fresh z each step)

    One step (``ts = [T]``) is one-step generation. ``f(x, t)`` is the consistency function,
    ``ts`` descending times, ``renoise(x0, z, t)`` the forward process back to t
    (:func:`renoise_ve` by default; a scheduler's ``add_noise`` for LCM). Returns the last x0.
    """
    ts = [float(t) for t in ts]
    x0 = f(x, ts[0])
    for t in ts[1:]:
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        x0 = f(renoise(x0, z, t), t)
    return x0
