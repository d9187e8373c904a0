"""After AnimateLCM: why one and two steps are weak, and two of its successors (notebook 09).

**Why one step is hard.** At t = 999 the noisy input keeps sqrt(abar_999) ~ 0.07 of the clean
latent, so many clean videos fit it. A network trained to predict x0 (or eps) with a squared error
learns the conditional MEAN of all of them, x0_hat(x_999, c) ~ E[x0 | x_999, c]: an average of
digits in different places, a blur (:func:`high_frequency_energy` measures it). A consistency model
distilled from such a teacher inherits the averaging wherever its training target is itself an
average. LCM's multistep sampler then re-noises each x0_hat with FRESH noise (``lcm.lcm_step``),
which forgets part of the previous step (:func:`noise_share` measures how much of a video the
sampler's own noise decides); a deterministic sampler (DDIM, TCD with gamma = 0) keeps it.

**Phased consistency** (PCM, Wang et al. 2024): cut the trajectory into P phases at the edges
e_0 = 999 > e_1 > ... > e_P = 0 (:func:`phase_edges`; LCM's P-step timesteps plus 0) and learn,
per phase, a consistency function that maps any point of the phase to the phase's lower EDGE,
not to x0, by a DDIM jump with the model's own noise estimate (:func:`ddim_jump`)::

    s(t)              = max{ e_j : e_j < t }                        the edge below t
    f_theta(x_t, t)   = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) eps_theta(x_t, t),   s = s(t)

so the boundary condition f_theta(x_s, s) = x_s holds by construction. Sampling is deterministic,
edge to edge: a P-step DDIM (diffusers' ``TCDScheduler`` with ``eta = 0`` on the LCM grid), each
jump the one the model was trained for (:func:`phased_sample`). Each phase's function only has to
bridge its own phase, so with P > 1 no network output has to be the blurry mean at t = 999.

**An adversarial term** (MCM, Zhai et al. 2024; AnimateDiff-Lightning, Lin & Yang 2024): a small
discriminator D judges the student's one-step prediction against REAL clean latents, conditioned
on the caption (:class:`LatentVideoDiscriminator`), with hinge losses added to the LCD loss::

    L_theta = L_LCD + lambda * ( -E[ D(f_theta(x_t, t), c) ] ),          t in {999, 499}
    L_D     = E[ max(0, 1 - D(x0, c)) ] + E[ max(0, 1 + D(sg(f_theta(x_t, t)), c)) ]

A squared error is minimised by the mean; the discriminator penalises whatever real data does not
look like, the mean included, so the one-step output is pushed off the average toward one sharp
video. t in {999, 499}: the timesteps LCM's 1- and 2-step samplers visit.

Both successors here are trained as a LoRA on top of a given video consistency model (the toy
AnimateLCM: motion modules + LCM LoRA, frozen), with the same data and teacher as stage 2
(``distill.distill_video``). World-free: sized from the models and latents given.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from peft import LoraConfig, get_peft_model_state_dict
from torch import nn
from torch.func import functional_call

from . import distill, training
from .config import UserError
from .consistency import append_dims, ema_update, pseudo_huber
from .lcm import lcm_timesteps, predicted_x0, renoise

SUCCESSOR = "successor"  # the peft adapter name of a successor's LoRA (on top of the LCM LoRA)
SUCCESSOR_RANK = 2  # small enough to ship two of them in the zoo (77 kB each in float16)
PHASES = 4  # the toy phased model: edges at LCM's 4-step timesteps, [999, 759, 499, 259, 0]
ADVERSARIAL_TIMESTEPS = (999, 499)  # where LCM's 1- and 2-step samplers evaluate the model
ADVERSARIAL_WEIGHT = 0.1  # lambda
# The successor LoRA's layers: every attention projection, spatial (self- and cross-attention) and temporal
# (the motion modules'); peft cannot wrap the motion modules' proj_in / proj_out.
SUCCESSOR_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


# ------------------------------------------------------------------------------------------
# 1. Why one step is hard: measured
# ------------------------------------------------------------------------------------------


def high_frequency_energy(videos, cutoff: float = 0.25) -> np.ndarray:
    """The share of each video's spectral power above ``cutoff`` cycles per pixel (Nyquist = 0.5),
    per frame on the gray image with its mean removed, averaged over the frames::

        g = gray(frame) - mean(gray(frame)),   P(u, v) = |FFT2(g)(u, v)|^2
        HF = sum_{sqrt(u^2 + v^2) > cutoff} P(u, v) / sum_{u, v} P(u, v)

    ``videos`` uint8 or float (N, F, H, W, 3) (or (N, H, W, 3) images). A blur lowers HF: an
    average of digits in different places has less fine detail than any one of them. Returns (N,)."""
    v = np.asarray(videos, dtype=np.float64)
    if v.ndim == 4:
        v = v[:, None]
    if v.ndim != 5 or v.shape[-1] != 3:
        raise UserError(f"videos must be (N, F, H, W, 3) or (N, H, W, 3), got {v.shape}")
    gray = v.mean(-1)
    gray = gray - gray.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(gray)) ** 2
    fy, fx = np.fft.fftfreq(v.shape[2]), np.fft.fftfreq(v.shape[3])
    high = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) > cutoff
    total = power.sum(axis=(-2, -1))
    share = (power * high).sum(axis=(-2, -1)) / np.maximum(total, 1e-12)
    return share.mean(axis=1)


def noise_share(samples) -> float:
    """How much of a sampler's output its own fresh noise decides: with K starting noises x_T and
    M re-noising seeds each (``samples`` of shape (K, M, ...)),

        share = mean over elements of  E_k[ Var_m x_{k,m} ]  /  Var_{k,m} x_{k,m}

    0 for a deterministic sampler (the output is a function of x_T alone), near 1 when the start
    hardly matters. LCM's multistep sampler draws fresh z at every step but the last."""
    x = torch.as_tensor(np.asarray(samples), dtype=torch.float64)
    if x.ndim < 3 or x.shape[0] < 2 or x.shape[1] < 2:
        raise UserError(f"samples must be (K >= 2 starts, M >= 2 noise seeds, ...), got {tuple(x.shape)}")
    within = x.var(dim=1, unbiased=False).mean(dim=0)
    total = x.flatten(0, 1).var(dim=0, unbiased=False)
    return float(within.sum() / total.sum())


# ------------------------------------------------------------------------------------------
# 2a. Phased consistency (PCM)
# ------------------------------------------------------------------------------------------


def phase_edges(phases: int = PHASES, solver_steps: int = distill.SOLVER_STEPS,
                num_train_timesteps: int = 1000) -> np.ndarray:
    """The phase edges, descending: LCM's ``phases``-step timesteps on the distillation grid, then 0,

        e = (lcm_timesteps(P), 0):   1 -> [999, 0];  2 -> [999, 499, 0];  4 -> [999, 759, 499, 259, 0]

    Every edge but 0 is a grid point (20 n - 1); 0 is where the grid's last teacher step lands."""
    if isinstance(phases, bool) or not isinstance(phases, int) or not 1 <= phases <= solver_steps:
        raise UserError(f"phases must be a whole number from 1 to {solver_steps}, got {phases!r}")
    return np.append(lcm_timesteps(phases, solver_steps, num_train_timesteps), 0).astype(np.int64)


def phase_edge(t: torch.Tensor, edges) -> torch.Tensor:
    """s(t) = max{ e in edges : e < t }, the lower edge of t's phase (an edge itself belongs to the
    phase below it: the sampler jumps from e_j to e_{j+1}); 0 for t <= the lowest nonzero edge."""
    e = torch.as_tensor(np.sort(np.asarray(edges)), dtype=torch.long)
    t = torch.as_tensor(t, dtype=torch.long)
    below = torch.searchsorted(e, t, right=False) - 1  # the index of the largest edge < t
    return e[below.clamp(min=0)]


def ddim_jump(eps: torch.Tensor, x_t: torch.Tensor, abar_t: torch.Tensor, abar_s: torch.Tensor) -> torch.Tensor:
    """The DDIM jump from t to s with the noise estimate ``eps`` (``abar_*`` per sample, (B,))::

        x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
        x_s    = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) eps

    At s = t it returns x_t for any eps (the phased boundary condition)."""
    x0 = predicted_x0(eps, x_t, abar_t)
    return append_dims(abar_s.sqrt(), x_t.ndim) * x0 + append_dims((1 - abar_s).sqrt(), x_t.ndim) * eps


def phased_loss(online: Callable, target: Callable, teacher: Callable, x0: torch.Tensor, text: torch.Tensor,
                uncond: torch.Tensor, alphas_cumprod: torch.Tensor, g: torch.Generator, phases: int = PHASES,
                w_range=distill.W_RANGE["lora"], distance: Callable = pseudo_huber,
                solver_steps: int = distill.SOLVER_STEPS, device=None) -> torch.Tensor:
    """The phased consistency distillation loss on a batch of clean latents (PCM's, on LCD's grid)::

        t ~ U{grid},  t_prev = t - k,  s = s(t) (:func:`phase_edge`),   x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) z
        x_prev = DDIM step t -> t_prev of the guided teacher (x0_w, eps_w)      (as in ``distill.lcd_loss``)
        pred   = ddim_jump(eps_theta (x_t,    t),      x_t,    t      -> s)
        goal   = ddim_jump(eps_theta-(x_prev, t_prev), x_prev, t_prev -> s)     (= x_prev when t_prev = s)
        L      = d(pred, goal)                                                  in the edge's space x_s

    The same draws (t, w, z from ``g``), teacher step and target as LCD; only the function changes:
    it maps to the phase's edge s instead of to x0. (PCM's code also wraps it in LCM's c_skip/c_out,
    which is the identity to within 7e-6 for t >= 19: left out, the boundary holds exactly.)"""
    b = x0.shape[0]
    t, t_prev = distill.grid_pairs(b, alphas_cumprod, solver_steps, g)
    w = w_range[0] + (w_range[1] - w_range[0]) * torch.rand(b, generator=g)
    z = torch.randn(x0.shape, generator=g)
    s = phase_edge(t, phase_edges(phases, solver_steps, len(alphas_cumprod)))
    part = training.shard()
    x0, text, t, t_prev, s, w, z = x0[part], text[part], t[part], t_prev[part], s[part], w[part], z[part]
    if device is not None:
        x0, text, t, t_prev, s, w, z, uncond, alphas_cumprod = (
            v.to(device) for v in (x0, text, t, t_prev, s, w, z, uncond, alphas_cumprod))
    abar, abar_prev, abar_s = alphas_cumprod[t], alphas_cumprod[t_prev], alphas_cumprod[s]
    x_t = renoise(x0, z, abar)

    pred = ddim_jump(online(x_t, t, text, w), x_t, abar, abar_s)
    with torch.no_grad():
        eps = teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([text, uncond.expand_as(text)]))
        eps_c, eps_u = eps.chunk(2)
        x0_w = distill.guided(predicted_x0(eps_c, x_t, abar), predicted_x0(eps_u, x_t, abar), w)
        x_prev = renoise(x0_w, distill.guided(eps_c, eps_u, w), abar_prev)
        goal = ddim_jump(target(x_prev, t_prev, text, w), x_prev, abar_prev, abar_s)
    return distance(pred.float(), goal.float()).mean()


@torch.no_grad()
def phased_sample(model_fn: Callable, latents: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int = PHASES,
                  solver_steps: int = distill.SOLVER_STEPS, return_edges: bool = False):
    """Deterministic edge-to-edge sampling: x = x_T; for each pair of consecutive edges of
    :func:`phase_edges` (``steps`` phases), x <- ddim_jump(model_fn(x, e_j), x, e_j -> e_{j+1}).
    No fresh noise. This is the loop of diffusers' ``TCDScheduler`` with ``eta = 0`` (gamma 0) on the
    LCM grid, which the pipelines run. ``model_fn(x, t)`` returns eps. Returns x (at edge 0) or
    ``(x, visited)`` with the timesteps the model was called at."""
    edges = phase_edges(steps, solver_steps, len(alphas_cumprod))
    x, visited = latents, []
    for e, e_next in zip(edges[:-1], edges[1:]):
        t = torch.tensor(int(e), dtype=torch.long)
        abar = alphas_cumprod[t].expand(x.shape[0])
        x = ddim_jump(model_fn(x, t), x, abar, alphas_cumprod[int(e_next)].expand(x.shape[0]))
        visited.append(int(e))
    return (x, visited) if return_edges else x


# ------------------------------------------------------------------------------------------
# 2b. An adversarial term (MCM, AnimateDiff-Lightning)
# ------------------------------------------------------------------------------------------


class LatentVideoDiscriminator(nn.Module):
    """A small projection discriminator (Miyato & Koyama 2018) on video latents (B, F, C, h, w)::

        h    = mean over frames and space of  conv3d(lrelu(conv2d_s2(lrelu(conv2d(x)))))   (width-d)
        D(x, c) = psi . h + < h, P . mean_tokens(c) >

    Per-frame convolutions (MCM judges frames), a temporal convolution (the motion), and the
    caption through the projection term, so a video that does not show its prompt scores low.
    ``channels``: the latents' channels; ``text_dim``: the text embeddings' width."""

    def __init__(self, channels: int, text_dim: int, width: int = 32, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.frame = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2),
                                       nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2))
            self.time = nn.Sequential(nn.Conv3d(2 * width, 2 * width, 3, padding=1), nn.LeakyReLU(0.2))
            self.psi = nn.Linear(2 * width, 1)
            self.project = nn.Linear(text_dim, 2 * width, bias=False)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise UserError(f"the discriminator takes video latents (B, F, C, h, w), got {tuple(x.shape)}")
        b, f = x.shape[:2]
        h = self.frame(x.flatten(0, 1))  # (B F, 2w, h/2, w/2)
        h = h.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)  # (B, 2w, F, h/2, w/2)
        h = self.time(h).mean(dim=(2, 3, 4))
        return self.psi(h).squeeze(1) + (h * self.project(text.mean(dim=1))).sum(1)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_D = E[max(0, 1 - D(real))] + E[max(0, 1 + D(fake))]."""
    return torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """L_G = -E[D(fake)]."""
    return -fake_logits.mean()


def frozen(module: nn.Module, *args):
    """``module(*args)`` with its parameters detached: gradients reach the inputs, never the module
    (the generator's term must not train the discriminator)."""
    params = {k: v.detach() for k, v in module.named_parameters()}
    return functional_call(module, params, args)


JUDGED_FRAMES = 2  # frames of each video the frame discriminator sees (MCM's discriminator judges frames)


def pixel_decoder(vae) -> Callable:
    """``decode(latents)``: video latents (B, F, C, h, w), scaled as the training latents are, to
    frames (B, F, 3, H, W) through the frozen ``vae`` (gradients reach the latents, never the VAE):
    what a discriminator on real FRAMES judges (MCM's, on the decoded frames)."""
    vae = vae.eval().requires_grad_(False)

    def decode(latents: torch.Tensor) -> torch.Tensor:
        frames = vae.decode(latents.flatten(0, 1) / vae.config.scaling_factor).sample
        return frames.unflatten(0, latents.shape[:2])

    return decode


def adversarial_loss(online: Callable, disc: nn.Module, x0: torch.Tensor, text: torch.Tensor,
                     alphas_cumprod: torch.Tensor, g: torch.Generator, timesteps=ADVERSARIAL_TIMESTEPS,
                     device=None, decode: Callable | None = None,
                     judged_frames: int = JUDGED_FRAMES) -> tuple[torch.Tensor, torch.Tensor]:
    """The adversarial pair on a batch of clean latents (module docstring)::

        t ~ U(timesteps),  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) z,  fake = f_theta(x_t, t)
        L_G = -E[D(Dec(fake), c)]                  (D frozen: :func:`frozen`)
        L_D = E[max(0, 1 - D(Dec(x0), c))] + E[max(0, 1 + D(sg(Dec(fake)), c))]

    f_theta = ``distill.consistency_prediction`` of ``online(x, t, text, None)`` (its x0 estimate);
    Dec = ``decode`` (:func:`pixel_decoder`: D judges ``judged_frames`` frames of each video, the
    same random ones for real and fake), or the identity (D judges the whole latent video).
    Returns (L_G, L_D); one backward of L_G + L_D trains each side on its own term only."""
    b = x0.shape[0]
    ts = torch.as_tensor(list(timesteps), dtype=torch.long)
    t = ts[torch.randint(0, len(ts), (b,), generator=g)]
    z = torch.randn(x0.shape, generator=g)
    part = training.shard()
    x0, text, t, z = x0[part], text[part], t[part], z[part]
    if device is not None:
        x0, text, t, z, alphas_cumprod = (v.to(device) for v in (x0, text, t, z, alphas_cumprod))
    x_t = renoise(x0, z, alphas_cumprod[t])
    fake = distill.consistency_prediction(online(x_t, t, text, None), x_t, t, alphas_cumprod)
    if decode is not None:
        frames = torch.randint(0, x0.shape[1], (min(judged_frames, x0.shape[1]),), generator=g).to(x0.device)
        fake = decode(fake[:, frames].float())
        with torch.no_grad():
            x0 = decode(x0[:, frames].float())
    g_loss = hinge_generator_loss(frozen(disc, fake.float(), text))
    d_loss = hinge_discriminator_loss(disc(x0.float(), text), disc(fake.detach().float(), text))
    return g_loss, d_loss


def adversarial_lcd_loss(online: Callable, target: Callable, teacher: Callable, disc: nn.Module, x0: torch.Tensor,
                         text: torch.Tensor, uncond: torch.Tensor, alphas_cumprod: torch.Tensor, g: torch.Generator,
                         weight: float = ADVERSARIAL_WEIGHT, timesteps=ADVERSARIAL_TIMESTEPS,
                         w_range=distill.W_RANGE["lora"], distance: Callable = pseudo_huber,
                         solver_steps: int = distill.SOLVER_STEPS, device=None, parts: dict | None = None,
                         decode: Callable | None = None):
    """The consistency loss plus the adversarial term, one scalar for one optimizer::

        L = L_LCD + lambda L_G + L_D          (lambda = ``weight``; L_D moves only D, L_G only theta)

    L_LCD is ``distill.lcd_loss`` unchanged, drawn first from ``g``; then :func:`adversarial_loss`
    (``decode``: D on decoded frames).
    ``parts``, if given, receives the three terms as floats (for the logs)."""
    lcd = distill.lcd_loss(online, target, teacher, x0, text, uncond, alphas_cumprod, g, tuple(w_range), distance,
                           solver_steps, device=device)
    g_loss, d_loss = adversarial_loss(online, disc, x0, text, alphas_cumprod, g, timesteps, device, decode)
    if parts is not None:
        parts.update(lcd=float(lcd.detach()), g=float(g_loss.detach()), d=float(d_loss.detach()))
    return lcd + weight * g_loss + d_loss


# ------------------------------------------------------------------------------------------
# Training a successor: a LoRA on a frozen video consistency model
# ------------------------------------------------------------------------------------------


def successor_lora_config(rank: int = SUCCESSOR_RANK) -> LoraConfig:
    """The successor's LoRA (alpha = rank, so its scale is 1) on :data:`SUCCESSOR_TARGETS`: the
    spatial attention and the motion modules' temporal attention."""
    return LoraConfig(r=rank, lora_alpha=rank, target_modules=list(SUCCESSOR_TARGETS))


def successor_student(unet, adapter, lcm_lora: dict, rank: int = SUCCESSOR_RANK, seed: int = 0):
    """The video consistency model (``unet`` + ``adapter``'s motion modules + the LCM LoRA
    ``lcm_lora``, all frozen) with a new LoRA :data:`SUCCESSOR` on top, the only trainable part.
    Its B matrices start at 0, so the student starts as exactly the given model."""
    model = distill.video_student(unet, adapter, lora=lcm_lora, train_lora=False).requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.add_adapter(successor_lora_config(rank), adapter_name=SUCCESSOR)
    model.set_adapter([distill.ADAPTER, SUCCESSOR])
    for name, p in model.named_parameters():
        p.requires_grad_(f".{SUCCESSOR}." in name)
    return model.train()


def successor_state_dict(student, dtype=torch.float16) -> dict:
    """The successor LoRA's weights (peft names), as ``dtype`` (shipped in float16)."""
    state = get_peft_model_state_dict(student, adapter_name=SUCCESSOR)
    return {k: v.detach().to(dtype).contiguous() for k, v in state.items()}


def _check_weight(weight) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise UserError(f"the adversarial weight lambda must be a number >= 0, got {weight!r}")
    return float(weight)


def train_successor(folder, kind: str, unet, teacher_adapter, adapter, lcm_lora: dict, latents: torch.Tensor,
                    ids: torch.Tensor, text: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int,
                    phases: int = PHASES, weight: float = ADVERSARIAL_WEIGHT, timesteps=ADVERSARIAL_TIMESTEPS,
                    rank: int = SUCCESSOR_RANK, batch: int = 8, lr: float = 1e-3,
                    w_range=distill.W_RANGE["lora"], ema: float = 0.95, distance: str = "huber", seed: int = 0,
                    save_every: int = 50, progress: bool = True, on_save: Callable | None = None,
                    log: Callable | None = None, vae=None):
    """Train a successor on top of a video consistency model (``unet`` + ``adapter`` + ``lcm_lora``),
    distilling the video teacher (``unet`` + ``teacher_adapter``, guided DDIM) as stage 2 does:

    * ``kind="phased"``: :func:`phased_loss` with ``phases`` phases (sample with TCD, eta 0);
    * ``kind="adversarial"``: :func:`adversarial_lcd_loss` (LCD + ``weight`` x the generator term, and
      the discriminator's own term) at ``timesteps``; sample with LCM as AnimateLCM. With ``vae``
      the discriminator judges decoded frames (:func:`pixel_decoder`), else latents;
    * ``kind="lcd"``: ``distill.lcd_loss`` alone, the control (the same LoRA, steps and data).

    Only the successor LoRA (and the discriminator) train; the target theta- is an EMA copy of
    the student (rate ``ema``). ``latents`` (N, F, C, h, w), ``ids`` caption indices into ``text``
    (``text[0]`` the empty caption). Checkpoints in ``folder`` (student, target, discriminator,
    optimizer) resume exactly. ``log(step, parts)`` receives each step's loss terms.
    Returns ``(student, fit)``."""
    if kind not in ("phased", "adversarial", "lcd"):
        raise UserError(f"unknown successor {kind!r}; choose 'phased', 'adversarial' or 'lcd' (the control)")
    dist = distill._check(steps, batch, tuple(w_range), distance)
    weight = _check_weight(weight)
    if latents.ndim != 5:
        raise UserError(f"video latents must be (videos, frames, channels, h, w), got {tuple(latents.shape)}")
    teacher_net = distill.motion_unet(copy.deepcopy(unet), teacher_adapter).eval().requires_grad_(False)
    online_net = successor_student(unet, adapter, lcm_lora, rank, seed)
    target_net = copy.deepcopy(online_net).requires_grad_(False).eval()
    modules = {"unet": online_net, "target": target_net}
    if kind == "adversarial":
        channels = vae.config.out_channels if vae is not None else latents.shape[2]
        modules["discriminator"] = LatentVideoDiscriminator(channels, text.shape[-1], seed=seed)
    decode = pixel_decoder(vae) if (vae is not None and kind == "adversarial") else None
    uncond = text[:1]
    online, target, teacher = distill.unet_call(online_net), distill.unet_call(target_net), distill.unet_call(teacher_net)
    device = lambda: distill._device(online_net)  # noqa: E731 (fit() may move the student)

    def loss(x0, e, g, step):
        parts = {}
        if kind == "phased":
            value = phased_loss(online, target, teacher, x0, e, uncond, alphas_cumprod, g, phases, tuple(w_range),
                                dist, device=device())
        elif kind == "adversarial":
            value = adversarial_lcd_loss(online, target, teacher, modules["discriminator"], x0, e, uncond,
                                         alphas_cumprod, g, weight, timesteps, tuple(w_range), dist, device=device(),
                                         parts=parts, decode=decode)
        else:
            value = distill.lcd_loss(online, target, teacher, x0, e, uncond, alphas_cumprod, g, tuple(w_range), dist,
                                     device=device())
        if log:
            log(step, {"loss": float(value.detach()), **parts})
        return value

    def loss_fn(step, g):
        idx = torch.randint(0, len(latents), (batch,), generator=g)
        return loss(latents[idx], text[ids[idx]], g, step)

    def after(step):
        ema_update(target_net, online_net, ema)

    fit = training.fit(f"successor-{kind}", modules, loss_fn, steps, lr, folder, seed=seed, save_every=save_every,
                       progress=progress, after_step=after,
                       on_save=(lambda step: on_save(step, online_net)) if on_save else None)
    return online_net.eval(), fit
