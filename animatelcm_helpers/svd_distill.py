"""AnimateLCM-SVD-xt's consistency distillation, the official recipe (method core, world-free),
and the EDM loss its teacher is trained with.

SVD is image-to-video: the UNet sees the noisy latents (scaled by c_in) concatenated on the
channel axis with the conditioning image's latent, the CLIP image embedding as cross-attention
context, and ``added_time_ids`` = [fps - 1, motion bucket, noise augmentation]. One distillation
step (AnimateLCM-SVD): a grid index n ~ U{0 .. N-2} on the 40-point Karras grid, one guided Euler
step of the teacher from s_n to s_{n+1}, the EMA target's consistency function at s_{n+1} as the
goal, a pseudo-Huber distance weighted by (1/(s_n - s_{n+1}))^0.1 (:func:`svd_cd_loss`).
"""

from __future__ import annotations

import torch

from . import config
from .consistency import euler_step, pseudo_huber
from .svd_scheduler import NUM_TRAIN_TIMESTEPS, SIGMA_MAX, SIGMA_MIN, karras_sigmas, scalings, timestep_of

P_MEAN, P_STD = 0.7, 1.6  # SVD's training noise levels: ln sigma ~ N(P_mean, P_std^2)
COND_DROP = 0.1  # share of training samples with the image condition zeroed (SVD's negative: zeros)
CD_GUIDANCE = ((1.0, 1.25, 1.5), (2.0, 2.25, 2.5))  # the official recipe's ramp ends, chosen per sample
CD_EMA, CD_HUBER_C, CD_WEIGHT_POWER = 0.95, 0.001, 0.1


def condition_latents(vae, first_frames: torch.Tensor, g: torch.Generator,
                      noise_aug_strength: float = config.SVD_DEMO["noise_aug_strength"]) -> torch.Tensor:
    """SVD's image condition: ``vae.encode(image + a z).mode()`` (NOT scaled), a = noise_aug_strength."""
    with torch.no_grad():
        noisy = first_frames + noise_aug_strength * torch.randn(first_frames.shape, generator=g)
        return vae.encode(noisy).latent_dist.mode()


def added_time_ids(n: int, fps: int, motion_bucket_id: int = config.SVD_DEMO["motion_bucket_id"],
                   noise_aug_strength: float = config.SVD_DEMO["noise_aug_strength"]) -> torch.Tensor:
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


def cd_weight(sigma, sigma_next):
    """The loss weight of the pair (s_n, s_{n+1}): ``(1 / (s_n - s_{n+1}))^0.1``."""
    return (1.0 / (sigma - sigma_next)) ** CD_WEIGHT_POWER


def sample_guidance(n: int, frames: int, g: torch.Generator) -> torch.Tensor:
    """Per-sample, per-frame guidance (n, F): ``linspace(choice{1, 1.25, 1.5}, choice{2, 2.25, 2.5}, F)``."""
    lo = torch.tensor(CD_GUIDANCE[0])[torch.randint(0, 3, (n,), generator=g)]
    hi = torch.tensor(CD_GUIDANCE[1])[torch.randint(0, 3, (n,), generator=g)]
    ramp = torch.linspace(0, 1, frames)
    return lo[:, None] + (hi - lo)[:, None] * ramp


def svd_cd_loss(student, target, teacher, x0, cond, embeds, time_ids, index, noise, guidance) -> torch.Tensor:
    """AnimateLCM-SVD's consistency distillation loss for a batch, ``index`` (n,) in 0 .. N-2::

        x_n     = x0 + s_n z
        v       = v_u + w_f (v_c - v_u)                    teacher, guided per frame (w_f: ``guidance``)
        x_{n+1} = x_n + (s_{n+1} - s_n) (x_n - D) / s_n,  D = c_skip(s_n) x_n + c_out(s_n) v   (Euler)
        loss    = mean_b (1/(s_n - s_{n+1}))^0.1 * mean( sqrt((f(x_n, s_n) - f^-(x_{n+1}, s_{n+1}))^2 + c^2) - c )

    f = c_skip x + c_out F is the student (online) and f^- the EMA target, both without guidance;
    the unconditional input is SVD's: zero embeddings and a zero condition latent; c = 0.001.
    """
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
        d = c_skip * x_n + c_out * v  # the guided teacher's denoised estimate D(x_n, s_n)
        x_next = euler_step(lambda x, s: d, x_n, s_n, s_next)
        aim = denoised(target, x_next, s_next, cond, embeds, time_ids)
    pred = denoised(student, x_n, s_n, cond, embeds, time_ids)
    per_sample = pseudo_huber(pred.float(), aim.float(), CD_HUBER_C).flatten(1).mean(1)
    return (cd_weight(s_n, s_next) * per_sample).mean()
