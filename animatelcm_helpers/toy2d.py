"""A 2-D world for consistency theory (notebook 01): data you can plot, models that train in seconds.

* data: two moons (scikit-learn's ``make_moons``), standardised to std ``sigma_data = 0.5``;
  a fixed train / held-out split, deterministic by seed;
* a diffusion teacher: a small time-conditioned MLP with EDM (Karras et al. 2022) preconditioning,
  trained by denoising score matching, sampled by solving its PF-ODE (Euler or Heun on the
  Karras grid);
* consistency students of the same MLP: consistency distillation (CD) from the teacher and
  consistency training (CT) from the data alone, both with the functions of
  :mod:`animatelcm_helpers.consistency`;
* a sample-quality number: the sliced Wasserstein distance to the held-out points.

Everything runs on a CPU in seconds to a minute; all randomness comes from explicit seeds.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from typing import Callable

import torch
from sklearn.datasets import make_moons
from torch import nn
from tqdm.auto import tqdm

from . import consistency as cm

SIGMA_DATA = cm.SIGMA_DATA
EPS = cm.EPS
T_MAX = cm.T_MAX


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def make_data(n_train: int = 4000, n_test: int = 2000, noise: float = 0.06, seed: int = 0, sigma_data: float = SIGMA_DATA):
    """Two moons, centred and scaled so that the overall std is ``sigma_data``: (train, test).

    Both splits come from one ``make_moons`` draw (random_state=seed), shuffled; the scaling is
    computed on the training split. Returns two float32 tensors of shapes (n_train, 2), (n_test, 2).
    """
    points, _ = make_moons(n_samples=n_train + n_test, noise=noise, random_state=seed, shuffle=True)
    points = torch.as_tensor(points, dtype=torch.float32)
    mean = points[:n_train].mean(0)
    train, test = points[:n_train] - mean, points[n_train:] - mean
    scale = sigma_data / train.std()
    return train * scale, test * scale


# --------------------------------------------------------------------------------------------
# The network and its preconditioning
# --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """F(x_in, c_noise): a residual MLP on 2-D points, conditioned on the noise level.

    The noise level enters as Fourier features of c_noise = ln(t) / 4, added to every block.
    """

    def __init__(self, dim: int = 2, hidden: int = 64, depth: int = 3, n_freq: int = 16):
        super().__init__()
        self.register_buffer("freqs", torch.arange(1, n_freq + 1, dtype=torch.float32) * math.pi / 2)
        self.inp = nn.Linear(dim, hidden)
        self.temb = nn.Sequential(nn.Linear(2 * n_freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        c_noise = torch.as_tensor(c_noise, dtype=x_in.dtype).reshape(-1)  # (1,) for one shared t, or (B,)
        angles = c_noise[:, None] * self.freqs
        emb = self.temb(torch.cat([angles.sin(), angles.cos()], dim=1))  # (1 or B, hidden): broadcasts
        h = self.inp(x_in)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)


def precond_in(t: torch.Tensor, sigma_data: float = SIGMA_DATA):
    """EDM's input scalings: c_in(t) = 1 / sqrt(t^2 + s_d^2), c_noise(t) = ln(t) / 4."""
    return 1.0 / torch.sqrt(t**2 + sigma_data**2), torch.log(t) / 4


def scalings_edm(t, sigma_data: float = SIGMA_DATA):
    """EDM's denoiser scalings: c_skip = s_d^2 / (t^2 + s_d^2), c_out = t s_d / sqrt(t^2 + s_d^2).

    The same form as :func:`~animatelcm_helpers.consistency.scalings_cm` with eps = 0: the
    denoiser D(x, t) estimates E[x_0 | x_t] and need not satisfy any boundary condition.
    """
    return sigma_data**2 / (t**2 + sigma_data**2), t * sigma_data / torch.sqrt(t**2 + sigma_data**2)


def denoiser(net: nn.Module, x: torch.Tensor, t) -> torch.Tensor:
    """The teacher's denoiser D(x, t) = c_skip x + c_out F(c_in x, c_noise) (EDM's preconditioning)."""
    t = cm.as_time(t, x)
    c_in, c_noise = precond_in(t)
    return cm.consistency_function(net(cm.append_dims(c_in, x.ndim) * x, c_noise), x, t, scalings=scalings_edm)


def consistency_fn(net: nn.Module, x: torch.Tensor, t, scalings: Callable = cm.scalings_cm) -> torch.Tensor:
    """A student's consistency function f(x, t) = c_skip(t) x + c_out(t) F(c_in x, c_noise).

    ``scalings`` defaults to the CM form (boundary condition at eps); pass another
    ``t -> (c_skip, c_out)`` to experiment (e.g. to break the boundary condition).
    """
    t = cm.as_time(t, x)
    c_in, c_noise = precond_in(t)
    return cm.consistency_function(net(cm.append_dims(c_in, x.ndim) * x, c_noise), x, t, scalings=scalings)


# --------------------------------------------------------------------------------------------
# Training loops
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _threads(n: int | None):
    """Run the body with ``n`` torch threads (None: leave as is), then restore the setting.

    These networks are tiny: one thread is as fast as two, and much faster on a busy machine.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(iterable, progress: bool, desc: str):
    if not progress:
        return iterable

    return tqdm(iterable, desc=desc, leave=False, mininterval=1.0)


def _cosine_lr(opt, step: int, steps: int, lr: float, warmup: int = 100):
    scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
    for group in opt.param_groups:
        group["lr"] = lr * max(scale, 0.02)


def _batch(data: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
    return data[torch.randint(len(data), (batch,), generator=gen)]


def train_teacher(
    data: torch.Tensor,
    steps: int = 3000,
    batch: int = 512,
    lr: float = 2e-3,
    p_mean: float = -0.6,
    p_std: float = 1.8,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
    **mlp_kwargs,
):
    """Train a diffusion teacher by EDM's denoising score matching:

        t ~ exp(N(p_mean, p_std^2)),  x_t = x0 + t z,
        L = E[ lambda(t) ||D(x_t, t) - x0||^2 ],   lambda(t) = (t^2 + s_d^2) / (t s_d)^2

    (a wider noise distribution than EDM's images use, so that the teacher also knows the
    largest noise levels, up to T = 80). Adam with a cosine learning rate. ``threads``: torch
    threads while training (one is fastest for a net this small). Returns ``(net, losses)``.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = MLP(**mlp_kwargs)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    with _threads(threads):
        for step in _progress(range(steps), progress, "teacher"):
            _cosine_lr(opt, step, steps, lr)
            x0 = _batch(data, batch, gen)
            t = torch.exp(p_mean + p_std * torch.randn(batch, generator=gen)).clamp(EPS, T_MAX)
            z = torch.randn(x0.shape, generator=gen)
            weight = (t**2 + SIGMA_DATA**2) / (t * SIGMA_DATA) ** 2
            loss = (weight[:, None] * (denoiser(net, x0 + t[:, None] * z, t) - x0) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return net.eval().requires_grad_(False), losses


def train_cd(
    teacher: nn.Module,
    data: torch.Tensor,
    steps: int = 1500,
    n_grid: int = 18,
    skip: int = 1,
    mu: float = 0.95,
    solver: str = "heun",
    distance: Callable = cm.l2,
    scalings: Callable = cm.scalings_cm,
    weighting: Callable | None = None,
    batch: int = 512,
    lr: float = 1e-3,
    seed: int = 1,
    init_from_teacher: bool = True,
    progress: bool = True,
    threads: int | None = 1,
):
    """Consistency distillation of ``teacher`` into a student MLP (Song et al. 2023, algorithm 2).

    Each step: x0 from the data, an index n on ``karras_grid(n_grid)`` (descending),
    t = t_n, t_prev = t_{n+skip} (``skip`` = k, LCM's skipping step), x_t = x0 + t z, one teacher
    ``solver`` step ("euler" or "heun") from t to t_prev, :func:`cd_loss` against the EMA
    target (weighted by ``weighting(t, t_prev)`` if given), then ``ema_update(target, student, mu)``.
    The student starts from the teacher's weights (as in the CM paper) unless
    ``init_from_teacher=False``; ``scalings`` makes its boundary condition. Returns
    ``(student, losses)``; the student returned is the EMA target (the CM paper samples with it).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    student = copy.deepcopy(teacher) if init_from_teacher else MLP()
    student.train().requires_grad_(True)
    target = copy.deepcopy(student).requires_grad_(False)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    ts = cm.karras_grid(n_grid)
    step_fn = {"euler": cm.euler_step, "heun": cm.heun_step}[solver]

    def teacher_step(x, t, t_prev):
        return step_fn(lambda y, s: denoiser(teacher, y, s), x, t, t_prev)

    losses = []
    with _threads(threads):
        for step in _progress(range(steps), progress, "CD"):
            _cosine_lr(opt, step, steps, lr)
            x0 = _batch(data, batch, gen)
            n = torch.randint(0, n_grid - skip, (batch,), generator=gen)
            t, t_prev = ts[n], ts[n + skip]
            x_t = cm.add_noise_ve(x0, torch.randn(x0.shape, generator=gen), t)
            loss = cm.cd_loss(
                lambda x, s: consistency_fn(student, x, s, scalings),
                lambda x, s: consistency_fn(target, x, s, scalings),
                teacher_step,
                x_t,
                t,
                t_prev,
                distance=distance,
                weight=None if weighting is None else weighting(t, t_prev),
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            cm.ema_update(target, student, mu)
            losses.append(loss.item())
    return target.eval(), losses


def train_ct(
    data: torch.Tensor,
    steps: int = 2000,
    s0: int = 2,
    s1: int = 100,
    mu0: float = 0.0,
    distance: Callable = functools.partial(cm.pseudo_huber, c=0.01),
    scalings: Callable = cm.scalings_cm,
    weighting: Callable | None = cm.weight_inverse_gap,
    batch: int = 512,
    lr: float = 1e-3,
    seed: int = 2,
    progress: bool = True,
    threads: int | None = 1,
    **mlp_kwargs,
):
    """Consistency training from the data alone (Song et al. 2023, algorithm 3), no teacher.

    Each step k: (N, mu) = ``ct_schedule(k, steps, s0, s1, mu0)``, an index n on
    ``karras_grid(N)``, t = t_n, t_prev = t_{n+1}, one noise z shared by both points,
    :func:`ct_loss` weighted by ``weighting(t, t_prev)``, then ``ema_update(target, student, mu)``.
    The student starts from random weights. Returns ``(student, losses)`` (the target network).

    The defaults are a small-scale recipe, not the CM paper's (s1 = 150, mu0 = 0.9, L2, no
    weighting): a shorter grid for a shorter run, and three changes from "Improved techniques
    for training consistency models" (Song & Dhariwal 2023): no EMA in the target (mu0 = 0,
    target = stop-gradient of the student), the weight 1 / (t - t_prev), and a pseudo-Huber
    distance (c = 0.01 here, chosen for points of std 0.5).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    student = MLP(**mlp_kwargs)
    target = copy.deepcopy(student).requires_grad_(False)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    losses = []
    with _threads(threads):
        for step in _progress(range(steps), progress, "CT"):
            _cosine_lr(opt, step, steps, lr)
            n_grid, mu = cm.ct_schedule(step, steps, s0, s1, mu0)
            ts = cm.karras_grid(n_grid)
            x0 = _batch(data, batch, gen)
            n = torch.randint(0, n_grid - 1, (batch,), generator=gen)
            t, t_prev = ts[n], ts[n + 1]
            loss = cm.ct_loss(
                lambda x, s: consistency_fn(student, x, s, scalings),
                lambda x, s: consistency_fn(target, x, s, scalings),
                x0,
                torch.randn(x0.shape, generator=gen),
                t,
                t_prev,
                distance=distance,
                weight=None if weighting is None else weighting(t, t_prev),
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            cm.ema_update(target, student, mu)
            losses.append(loss.item())
    return target.eval().requires_grad_(False), losses


# --------------------------------------------------------------------------------------------
# Sampling and measuring
# --------------------------------------------------------------------------------------------


def start_noise(n: int = 2000, seed: int = 123, T: float = T_MAX) -> torch.Tensor:
    """x_T = T z for ``n`` points, from a seeded generator (the same for every sampler compared)."""
    return T * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def teacher_sample(teacher: nn.Module, x_T: torch.Tensor, steps: int, solver: str = "heun", return_path: bool = False):
    """Solve the teacher's PF-ODE from x_T at T to eps in ``steps`` steps on ``karras_grid(steps + 1)``.

    Euler costs ``steps`` network evaluations, Heun ``2 * steps``. With ``return_path`` also returns
    the times and the list of states (the trajectory).
    """
    step_fn = {"euler": cm.euler_step, "heun": cm.heun_step}[solver]
    ts = cm.karras_grid(steps + 1)
    x, path = x_T, [x_T]
    for t, t_next in zip(ts[:-1].tolist(), ts[1:].tolist()):
        x = step_fn(lambda y, s: denoiser(teacher, y, s), x, t, t_next)
        path.append(x)
    return (x, ts, path) if return_path else x


def student_times(steps: int, T: float = T_MAX, t_min: float = 0.1, rho: float = 2.0) -> torch.Tensor:
    """The times a ``steps``-step consistency sampler visits: T first; then 0.5 for two steps, or
    for more the first ``steps - 1`` times of a Karras-style grid from 1 to ``t_min`` (``rho=2``,
    gentler than the ODE's). Moderate re-noising refines detail; re-noising to a large t would
    only throw the sample away again.
    """
    if steps == 1:
        return torch.tensor([T])
    rest = cm.karras_grid(steps, eps=t_min, T=1.0, rho=rho)[:-1] if steps > 2 else torch.tensor([0.5])
    return torch.cat([torch.tensor([T]), rest])


@torch.no_grad()
def student_sample(student: nn.Module, x_T: torch.Tensor, steps: int = 1, ts=None, seed: int = 7, scalings: Callable = cm.scalings_cm):
    """Multistep consistency sampling with ``student`` from x_T (one network evaluation a step)."""
    ts = student_times(steps) if ts is None else ts
    gen = torch.Generator().manual_seed(seed)
    return cm.multistep_sample(lambda x, t: consistency_fn(student, x, t, scalings), x_T, ts, generator=gen)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_proj: int = 512, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between two equal-size point sets:

        SW_1(a, b) = E_theta [ W_1(<a, theta>, <b, theta>) ],   theta uniform on the unit circle,

    W_1 of two 1-D samples of equal size = mean |sorted(a) - sorted(b)|. Lower is better; two
    independent samples of the same distribution give a small positive floor.
    """
    if a.shape != b.shape:
        raise ValueError(f"sliced_wasserstein needs equal-size sets, got {tuple(a.shape)} and {tuple(b.shape)}")
    theta = torch.randn(a.shape[1], n_proj, generator=torch.Generator().manual_seed(seed))
    theta = theta / theta.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a.float() @ theta, dim=0)
    pb, _ = torch.sort(b.float() @ theta, dim=0)
    return (pa - pb).abs().mean().item()
