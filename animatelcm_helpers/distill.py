"""Latent consistency distillation (LCD): AnimateLCM's stage 1 (images) and stage 2 (videos).

The student f_theta is a consistency function on the teacher's discrete timesteps (LCM):

    f_theta(x_t, t) = c_skip(t) x_t + c_out(t) x0_hat(eps_theta(x_t, t)),
    x0_hat(eps)     = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)

One LCD step (Luo et al. 2023; AnimateLCM eq. 6-8), on the skipping grid t_n = 20 n - 1
(k = 1000 / 50 = 20; 19, 39, ..., 999) with t_prev = t - k:

    x_t    = sqrt(abar_t) x0 + sqrt(1 - abar_t) z                  (z ~ N(0, I))
    x0_w   = x0_c + w (x0_c - x0_u),   eps_w = eps_c + w (eps_c - eps_u)   (the guided teacher)
    x_prev = sqrt(abar_prev) x0_w + sqrt(1 - abar_prev) eps_w      (one DDIM step t -> t_prev)
    L      = d( f_theta(x_t, t, w), f_theta-(x_prev, t_prev, w) )   (d: pseudo-Huber, c = 0.001)

``w ~ U[w_min, w_max]`` (LCM's w is the CFG scale minus 1). Two stage-1 students:

* ``"lora"`` (LCM-LoRA): a LoRA on the teacher UNet, no w input; the target f_theta- is the
  same network without gradients, and the teacher is that network with the LoRA switched off.
* ``"full"`` (LCD): a copy of the teacher with a w-embedding (``time_cond_proj_dim``) trained
  whole, and an EMA target theta- <- mu theta- + (1 - mu) theta (mu = 0.95).

Stage 2 (:func:`distill_video`) inflates the UNet with motion modules (initialised from the video
teacher's) and distils the video teacher the same way. AnimateLCM's *decoupled* initialisation:
the stage-1 LoRA goes into the ONLINE student only; the EMA target starts without it and picks
it up through the EMA (``lora_in_target=False``).

All functions take latents in either layout: images (B, C, h, w) or videos (B, F, C, h, w);
a model callable ``(x, t, text, w) -> eps`` hides which network runs.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict

from . import training
from .config import UserError
from .consistency import append_dims, ema_update, l2, pseudo_huber, scalings_lcm
from .lcm import predicted_x0, renoise, skipping_grid
from .utils import load_safetensors, quiet_loading, save_unet_lora

SOLVER_STEPS = 50  # the DDIM solver's grid: k = 1000 // 50 = 20
W_EMBEDDING_DIM = 256  # LCD's guidance embedding (time_cond_proj_dim)
LCM_LORA_RANK = 16
ADAPTER = "lcm"
# Spatial layers the LCM LoRA adapts: attention projections, transformer in/out, resnet convs.
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "conv1", "conv2")
W_RANGE = {"lora": (5.5, 7.5), "full": (2.0, 12.0)}  # the teacher's CFG 7.5 is w = 6.5
# The target network's EMA rate mu: theta- <- mu theta- + (1 - mu) theta. 0 = the LCM-LoRA paper's
# target, the online network itself without gradients; LCD's target is an EMA copy. Both variants
# ship with mu = 0.95: on the toy teacher the EMA target lifted the LoRA at 4 steps from 0.976 to
# 0.993 digit accuracy and at 2 steps from 0.961 to 0.984 (960 images; README, stage 1).
TARGET_EMA = {"lora": 0.95, "full": 0.95}
DISTANCES = {"huber": pseudo_huber, "l2": l2}


# ------------------------------------------------------------------------------------------
# The pieces of one LCD step
# ------------------------------------------------------------------------------------------


def w_embedding(w: torch.Tensor, dim: int = W_EMBEDDING_DIM) -> torch.Tensor:
    """LCD's guidance-scale embedding (sinusoidal, as for timesteps), of 1000 w:

        e = [sin(1000 w f_j), cos(1000 w f_j)],  f_j = exp(-j ln(10000) / (dim/2 - 1)),  j < dim/2
    """
    w = torch.as_tensor(w, dtype=torch.float32).reshape(-1) * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    emb = w[:, None] * freqs[None, :]
    emb = torch.cat([emb.sin(), emb.cos()], dim=1)
    return torch.nn.functional.pad(emb, (0, 1)) if dim % 2 else emb


def guided(cond: torch.Tensor, uncond: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance in the LCM form: cond + w (cond - uncond) (CFG scale w + 1)."""
    return cond + append_dims(w, cond.ndim) * (cond - uncond)


def consistency_prediction(eps: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor):
    """f(x_t, t) = c_skip(t) x_t + c_out(t) x0_hat(eps), LCM's boundary scalings (c_skip(0) = 1)."""
    c_skip, c_out = scalings_lcm(t.float())
    x0 = predicted_x0(eps, x_t, alphas_cumprod[t])
    return append_dims(c_skip, x_t.ndim) * x_t + append_dims(c_out, x_t.ndim) * x0


def grid_pairs(b: int, alphas_cumprod: torch.Tensor, solver_steps: int, g: torch.Generator):
    """``b`` points of the skipping grid and the point k below each: t ~ U{grid}, t_prev = max(t - k, 0),
    k = T // N (T = ``len(alphas_cumprod)``, N = ``solver_steps``); drawn from ``g``."""
    grid = torch.from_numpy(skipping_grid(solver_steps, len(alphas_cumprod)))
    k = len(alphas_cumprod) // solver_steps
    t = grid[torch.randint(0, solver_steps, (b,), generator=g)]
    return t, (t - k).clamp(min=0)


def lcd_loss(online: Callable, target: Callable, teacher: Callable, x0: torch.Tensor, text: torch.Tensor,
             uncond: torch.Tensor, alphas_cumprod: torch.Tensor, g: torch.Generator, w_range=(5.5, 7.5),
             distance: Callable = pseudo_huber, solver_steps: int = SOLVER_STEPS, device=None) -> torch.Tensor:
    """One LCD loss (the module docstring's formulas) on a batch of clean latents ``x0``.

    ``online(x, t, text, w)`` and ``target(x, t, text, w)`` return the student's eps (the target
    is called without gradients), ``teacher(x, t, text)`` the teacher's eps; ``text`` are the
    captions' embeddings (B, tokens, dim), ``uncond`` the empty caption's (1, tokens, dim).
    Noise, timesteps and w are drawn from ``g`` for the whole batch; under ``accelerate launch``
    each process then keeps its share (``training.shard()``). ``device``: where to compute.
    """
    b = x0.shape[0]
    t, t_prev = grid_pairs(b, alphas_cumprod, solver_steps, g)
    w = w_range[0] + (w_range[1] - w_range[0]) * torch.rand(b, generator=g)
    z = torch.randn(x0.shape, generator=g)
    part = training.shard()  # under accelerate launch: this process's share of the batch
    x0, text, t, t_prev, w, z = x0[part], text[part], t[part], t_prev[part], w[part], z[part]
    if device is not None:  # drawn on the CPU (the same numbers on any device), computed on ``device``
        x0, text, t, t_prev, w, z, uncond, alphas_cumprod = (
            v.to(device) for v in (x0, text, t, t_prev, w, z, uncond, alphas_cumprod))
    abar = alphas_cumprod[t]
    x_t = append_dims(abar.sqrt(), x0.ndim) * x0 + append_dims((1 - abar).sqrt(), x0.ndim) * z

    pred = consistency_prediction(online(x_t, t, text, w), x_t, t, alphas_cumprod)
    with torch.no_grad():
        eps = teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([text, uncond.expand_as(text)]))
        eps_c, eps_u = eps.chunk(2)
        x0_w = guided(predicted_x0(eps_c, x_t, abar), predicted_x0(eps_u, x_t, abar), w)
        x_prev = renoise(x0_w, guided(eps_c, eps_u, w), alphas_cumprod[t_prev])  # the DDIM step to t_prev
        goal = consistency_prediction(target(x_prev, t_prev, text, w), x_prev, t_prev, alphas_cumprod)
    return distance(pred.float(), goal.float()).mean()


# ------------------------------------------------------------------------------------------
# Networks: the LCM LoRA, the w-conditioned student, calls in either layout
# ------------------------------------------------------------------------------------------


def lora_config(rank: int = LCM_LORA_RANK, spatial_only: bool = False):
    """peft LoraConfig of the LCM LoRA (alpha = rank, so the LoRA scale is 1). ``spatial_only``
    leaves the motion modules out (on a UNetMotionModel)."""
    if spatial_only:  # a regex: every target layer whose name does not run through a motion module
        names = "|".join(n.replace(".", r"\.") for n in LORA_TARGETS)
        return LoraConfig(r=rank, lora_alpha=rank, target_modules=rf"^(?!.*motion_modules).*\.({names})$")
    return LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LORA_TARGETS))


def add_lcm_lora(unet, rank: int = LCM_LORA_RANK, spatial_only: bool = False, seed: int = 0):
    """Add the LCM LoRA to ``unet`` in place, active; returns it. lora_B = 0 (the LoRA starts
    as a no-op); lora_A is drawn from a generator seeded by ``seed`` (not the global one), so
    two runs of a recipe start from the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(lora_config(rank, spatial_only), adapter_name=ADAPTER)
    unet.set_adapter(ADAPTER)
    return unet


def load_lora_state_dict(path) -> dict:
    """A LoRA file in diffusers' format (``utils.save_unet_lora``) back to peft names (no ``unet.``)."""
    state = load_safetensors(path, "LoRA")
    return {k.removeprefix("unet."): v for k, v in state.items()}


def lora_state_dict(unet) -> dict:
    """The LCM LoRA's weights (peft names), for ``utils.save_unet_lora`` / diffusers' LoRA format."""
    return get_peft_model_state_dict(unet, adapter_name=ADAPTER)


def w_conditioned_student(teacher_unet, dim: int = W_EMBEDDING_DIM):
    """LCD's full student: the teacher's UNet config plus ``time_cond_proj_dim`` (the w input),
    with the teacher's weights. The new w projection starts at zero (the LCD script leaves it
    random), so the student starts out as exactly the teacher for every w."""
    student = UNet2DConditionModel.from_config({**teacher_unet.config, "time_cond_proj_dim": dim})
    missing, unexpected = student.load_state_dict(teacher_unet.state_dict(), strict=False)
    if unexpected or any("cond_proj" not in m for m in missing):
        raise RuntimeError(f"teacher and student UNets differ: {missing} {unexpected}")
    with torch.no_grad():
        student.time_embedding.cond_proj.weight.zero_()
    return student.train()


def unet_call(unet, with_w: bool = False) -> Callable:
    """``(x, t, text, w) -> eps`` for a UNet2DConditionModel (images) or a UNetMotionModel
    (videos, given as (B, F, C, h, w) latents; the text repeats per frame)."""
    def call(x, t, text, w=None):
        if _device(unet) != x.device:  # a frozen teacher or target that fit() did not move
            unet.to(x.device)
        cond = w_embedding(w).to(x) if with_w else None
        if x.ndim == 5:  # video
            b, f = x.shape[:2]
            out = unet(x.permute(0, 2, 1, 3, 4), t, encoder_hidden_states=text.repeat_interleave(f, dim=0),
                       timestep_cond=cond).sample
            return out.permute(0, 2, 1, 3, 4)
        return unet(x, t, encoder_hidden_states=text, timestep_cond=cond).sample

    return call


def _device(module) -> torch.device:
    return next(module.parameters()).device


def _batch_fn(latents: torch.Tensor, ids: torch.Tensor, text: torch.Tensor, batch: int, loss: Callable):
    """``loss_fn(step, g)`` for ``training.fit``: draw ``batch`` latents and captions, one LCD loss."""
    if len(latents) == 0:
        raise UserError("the training set is empty: give at least one latent (and its caption)")
    if len(latents) != len(ids):
        raise UserError(f"{len(latents)} latents but {len(ids)} captions: give one caption per latent")

    def loss_fn(step, g):
        idx = torch.randint(0, len(latents), (batch,), generator=g)
        return loss(latents[idx], text[ids[idx]], g)

    return loss_fn


def _check(steps, batch, w_range, distance):
    if not isinstance(batch, int) or batch < 1:
        raise UserError(f"batch must be a whole number of at least 1, got {batch!r}")
    if len(w_range) != 2 or not 0 <= w_range[0] <= w_range[1]:
        raise UserError(f"w_range must be (w_min, w_max) with 0 <= w_min <= w_max, got {w_range!r}")
    if distance not in DISTANCES:
        raise UserError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
    return DISTANCES[distance]


# ------------------------------------------------------------------------------------------
# Stage 1: image consistency distillation
# ------------------------------------------------------------------------------------------


def distill_image(folder, teacher_unet, latents: torch.Tensor, ids: torch.Tensor, text: torch.Tensor,
                  alphas_cumprod: torch.Tensor, steps: int, variant: str = "lora", batch: int = 32,
                  lr: float | None = None, rank: int = LCM_LORA_RANK, w_range=None, ema: float | None = None,
                  distance: str = "huber", seed: int = 0, save_every: int = 100, progress: bool = True):
    """Stage 1: distil the image teacher into an image consistency model.

    ``latents`` (N, C, h, w) clean image latents, ``ids`` their caption indices into ``text``
    (captions' embeddings; ``text[0]`` is the empty caption, the teacher's unconditional input).
    ``variant="lora"`` returns the teacher UNet (deep-copied) carrying the trained LCM LoRA;
    ``"full"`` returns the w-conditioned student. ``ema`` is the target's rate mu (default
    :data:`TARGET_EMA`): the target is an EMA copy, theta- <- mu theta- + (1 - mu) theta, after
    each step; ``ema=0`` (the LCM-LoRA paper's choice) makes it the online network without gradients.
    Checkpoints in ``folder`` resume exactly. Returns ``(unet, fit)``.
    """
    if variant not in W_RANGE:
        raise UserError(f"unknown variant {variant!r}; choose 'lora' (LCM-LoRA) or 'full' (LCD with an EMA target)")
    w_range = W_RANGE[variant] if w_range is None else tuple(w_range)
    ema = TARGET_EMA[variant] if ema is None else ema
    if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 <= ema < 1:
        raise UserError(f"ema must be in [0, 1): the target's rate mu (0 = the online network itself), got {ema!r}")
    dist = _check(steps, batch, w_range, distance)
    teacher_unet = teacher_unet.eval().requires_grad_(False)
    if variant == "lora":
        unet = add_lcm_lora(copy.deepcopy(teacher_unet), rank)

        def teacher(x, t, e):  # the same network with the LoRA switched off
            unet.disable_adapters()
            try:
                return unet_call(unet)(x, t, e)
            finally:
                unet.enable_adapters()

        lr = 1e-3 if lr is None else lr
    else:
        unet = w_conditioned_student(teacher_unet)
        teacher = unet_call(teacher_unet)
        lr = 2e-4 if lr is None else lr
    online, modules, after = unet_call(unet, variant == "full"), {"unet": unet}, None
    target = online
    if ema > 0:
        ema_net = copy.deepcopy(unet).requires_grad_(False)
        target, modules = unet_call(ema_net, variant == "full"), {"unet": unet, "target": ema_net}

        def after(step):
            ema_update(ema_net, unet, ema)

    uncond = text[:1]
    loss_fn = _batch_fn(latents, ids, text, batch, lambda x0, e, g: lcd_loss(
        online, target, teacher, x0, e, uncond, alphas_cumprod, g, w_range, dist, device=_device(unet)))
    fit = training.fit(f"lcd-image-{variant}", modules, loss_fn, steps, lr, folder, seed=seed,
                       save_every=save_every, progress=progress, after_step=after)
    return unet.eval(), fit


# ------------------------------------------------------------------------------------------
# Stage 2: video consistency distillation, with the decoupled initialisation
# ------------------------------------------------------------------------------------------


def video_student(unet, adapter, rank: int = LCM_LORA_RANK, lora: dict | None = None, train_lora: bool = True):
    """The inflated student: ``unet`` + a copy of ``adapter``'s motion modules (trainable) + a
    spatial LCM LoRA (zero, or the stage-1 weights ``lora``; trainable if ``train_lora``)."""
    with quiet_loading():  # from_unet2d's .to() warns about float32 modules it does not have
        model = UNetMotionModel.from_unet2d(copy.deepcopy(unet), copy.deepcopy(adapter))
    add_lcm_lora(model, rank, spatial_only=True)
    if lora is not None:
        result = set_peft_model_state_dict(model, lora, adapter_name=ADAPTER)
        if getattr(result, "unexpected_keys", None):
            raise UserError("the stage-1 LoRA does not fit this UNet (unexpected keys); distil it from the same base")
    model.requires_grad_(False)
    for name, p in model.named_parameters():
        if ("lora_" in name and train_lora) or ("motion_modules" in name and "lora_" not in name):
            p.requires_grad_(True)
    return model.train()


def distill_video(folder, unet, teacher_adapter, latents: torch.Tensor, ids: torch.Tensor, text: torch.Tensor,
                  alphas_cumprod: torch.Tensor, steps: int, init_lora: dict | None = None,
                  lora_in_target: bool = False, train_lora: bool = True, rank: int = LCM_LORA_RANK,
                  batch: int = 8, lr: float = 2e-4, w_range=W_RANGE["lora"], ema: float = 0.95,
                  distance: str = "huber", seed: int = 0, save_every: int = 100, progress: bool = True,
                  recipe: str = "lcd-video", on_save: Callable | None = None):
    """Stage 2: distil the video teacher (``unet`` + ``teacher_adapter``, DDIM with CFG) into a
    video consistency model: motion modules (from the teacher's) + a spatial LCM LoRA.

    ``init_lora`` is the stage-1 LoRA (peft names). AnimateLCM's decoupled initialisation puts
    it into the online student only (``lora_in_target=False``): the EMA target starts as the
    teacher's weights and takes the LoRA in through theta- <- mu theta- + (1 - mu) theta.
    ``lora_in_target=True`` starts both with it; ``init_lora=None`` distils from scratch.
    ``latents`` (N, F, C, h, w). ``on_save(step, student)`` runs at each checkpoint (e.g. to
    measure the student during training). Returns ``(student, fit)``; the student is a
    UNetMotionModel whose motion modules (``distill.extract_adapter``) and LoRA
    (:func:`lora_state_dict`) ship.
    """
    dist = _check(steps, batch, tuple(w_range), distance)
    if latents.ndim != 5:
        raise UserError(f"video latents must be (videos, frames, channels, h, w), got {tuple(latents.shape)}")
    teacher_net = motion_unet(copy.deepcopy(unet), teacher_adapter).eval().requires_grad_(False)
    online_net = video_student(unet, teacher_adapter, rank, init_lora, train_lora)
    if lora_in_target or init_lora is None:
        target_net = copy.deepcopy(online_net)
    else:
        target_net = video_student(unet, teacher_adapter, rank, None)  # no LoRA yet: lora_B = 0
        with torch.no_grad():  # the same A matrices, so only B (the product B A) differs
            for p_t, (name, p_o) in zip(target_net.parameters(), online_net.named_parameters()):
                if "lora_A" in name:
                    p_t.copy_(p_o)
    target_net.requires_grad_(False).eval()

    def after(step):
        ema_update(target_net, online_net, ema)

    uncond = text[:1]
    online, target, teacher = unet_call(online_net), unet_call(target_net), unet_call(teacher_net)
    loss_fn = _batch_fn(latents, ids, text, batch, lambda x0, e, g: lcd_loss(
        online, target, teacher, x0, e, uncond, alphas_cumprod, g, tuple(w_range), dist, device=_device(online_net)))
    fit = training.fit(recipe, {"unet": online_net, "target": target_net}, loss_fn, steps, lr, folder, seed=seed,
                       save_every=save_every, progress=progress, after_step=after,
                       on_save=(lambda step: on_save(step, online_net)) if on_save else None)
    return online_net.eval(), fit


def save_student(folder, student) -> Path:
    """Write a stage-2 student as the toy AnimateLCM: the motion adapter (diffusers format) and
    the LCM LoRA (diffusers' LoRA format), side by side, as the official AnimateLCM repository ships them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    extract_adapter(student).save_pretrained(folder, safe_serialization=True)
    save_unet_lora(folder, lora_state_dict(student))
    return folder


# ------------------------------------------------------------------------------------------
# Teacher-free adaptation: adapters trained against the video consistency model itself
# ------------------------------------------------------------------------------------------

ADAPTER_OBJECTIVES = ("consistency", "diffusion")


def controlled_call(unet, controlnet, scale: float = 1.0) -> Callable:
    """``(x, t, text, cond) -> eps`` of a UNetMotionModel steered by a ControlNet, frame by frame,
    as ``AnimateDiffControlNetPipeline`` runs them: the ControlNet sees every frame (B F, C, h, w)
    with its own conditioning image, and its residuals are added to the UNet's skip connections
    (times ``scale``, the pipeline's ``controlnet_conditioning_scale``).

    ``x`` (B, F, C, h, w) latents, ``t`` (B,), ``text`` (B, tokens, dim), ``cond`` (B, F, 3, H, W)
    conditioning images in [0, 1].
    """
    def call(x, t, text, cond):
        for net in (unet, controlnet):
            if _device(net) != x.device:
                net.to(x.device)
        b, f = x.shape[:2]
        frames_t, frames_text = t.repeat_interleave(f), text.repeat_interleave(f, dim=0)
        down, mid = controlnet(x.flatten(0, 1), frames_t, encoder_hidden_states=frames_text,
                               controlnet_cond=cond.flatten(0, 1).to(x), conditioning_scale=scale, return_dict=False)
        out = unet(x.permute(0, 2, 1, 3, 4), t, encoder_hidden_states=frames_text,
                   down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        return out.permute(0, 2, 1, 3, 4)

    return call


def consistency_training_loss(online: Callable, target: Callable, x0: torch.Tensor, text: torch.Tensor,
                              cond: torch.Tensor, alphas_cumprod: torch.Tensor, g: torch.Generator,
                              distance: Callable = pseudo_huber, solver_steps: int = SOLVER_STEPS,
                              device=None) -> torch.Tensor:
    """The teacher-free objective: consistency TRAINING on the video consistency model's grid.

    Both points lie on ONE noising path of the same clean latent with the same noise (no teacher
    solves the ODE between them):

        x_t    = sqrt(abar_t)    x0 + sqrt(1 - abar_t)    z
        x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) z,      t_prev = t - k
        L      = d( f_(theta, phi)(x_t, t, c), f_(theta, phi-)(x_prev, t_prev, c) )

    theta is the frozen consistency model, phi the adapter being trained, phi- its EMA (or a
    stop-gradient copy), c the condition. ``online``/``target``: ``(x, t, text, cond) -> eps``.
    """
    b = x0.shape[0]
    t, t_prev = grid_pairs(b, alphas_cumprod, solver_steps, g)
    z = torch.randn(x0.shape, generator=g)
    part = training.shard()
    x0, text, cond, t, t_prev, z = x0[part], text[part], cond[part], t[part], t_prev[part], z[part]
    if device is not None:
        x0, text, cond, t, t_prev, z, alphas_cumprod = (
            v.to(device) for v in (x0, text, cond, t, t_prev, z, alphas_cumprod))

    def noised(step):
        a = append_dims(alphas_cumprod[step], x0.ndim)
        return a.sqrt() * x0 + (1 - a).sqrt() * z

    x_t, x_prev = noised(t), noised(t_prev)
    pred = consistency_prediction(online(x_t, t, text, cond), x_t, t, alphas_cumprod)
    with torch.no_grad():
        goal = consistency_prediction(target(x_prev, t_prev, text, cond), x_prev, t_prev, alphas_cumprod)
    return distance(pred.float(), goal.float()).mean()


def diffusion_adapter_loss(model: Callable, x0: torch.Tensor, text: torch.Tensor, cond: torch.Tensor,
                           alphas_cumprod: torch.Tensor, g: torch.Generator, device=None) -> torch.Tensor:
    """The naive alternative: the ordinary diffusion loss ||eps_(theta, phi)(x_t, t, c) - z||^2,
    t ~ U{0..T-1}, with the adapter on the diffusion model (the teacher), as adapters are usually
    trained; the result is then plugged into the consistency model."""
    b = x0.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (b,), generator=g)
    z = torch.randn(x0.shape, generator=g)
    part = training.shard()
    x0, text, cond, t, z = x0[part], text[part], cond[part], t[part], z[part]
    if device is not None:
        x0, text, cond, t, z, alphas_cumprod = (v.to(device) for v in (x0, text, cond, t, z, alphas_cumprod))
    a = append_dims(alphas_cumprod[t], x0.ndim)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * z
    return torch.nn.functional.mse_loss(model(x_t, t, text, cond).float(), z.float())


EMPTY_CONDITION = 128  # uint8 mid-gray: "no condition on this frame" (the image-to-video adapter's later frames)


def as_conditioning(cond: torch.Tensor, frames: int) -> torch.Tensor:
    """Conditioning images as floats in [0, 1], one per frame (B, F, 3, H, W): uint8 maps are
    divided by 255. One image per video (B, 3, H, W), the image-to-video case, conditions frame 0
    only; frames 1 .. F-1 get the mid-gray :data:`EMPTY_CONDITION` image (the keyframe scheme of
    SparseCtrl, AnimateDiff's image-to-video ControlNet): the motion modules carry the image to
    the later frames. (AnimateLCM-I2V's image encoder instead sees the image on every frame, with a
    per-frame position embedding telling the frames apart: ``i2v.py``.)"""
    if cond.ndim == 4:
        empty = EMPTY_CONDITION if cond.dtype == torch.uint8 else EMPTY_CONDITION / 255.0
        keyframe = torch.full((cond.shape[0], frames, *cond.shape[1:]), empty, dtype=cond.dtype)
        keyframe[:, 0] = cond
        cond = keyframe
    return cond.float() / 255.0 if cond.dtype == torch.uint8 else cond.float()


def train_adapter(folder, controlnet, model, latents: torch.Tensor, conds: torch.Tensor, ids: torch.Tensor,
                  text: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int, objective: str = "consistency",
                  batch: int = 8, lr: float = 5e-4, ema: float = 0.95, distance: str = "huber", seed: int = 0,
                  save_every: int = 100, progress: bool = True, recipe: str | None = None,
                  solver_steps: int = SOLVER_STEPS):
    """Train a ControlNet-like adapter for video latents ``(N, F, C, h, w)``.

    ``objective="consistency"`` (teacher-free, AnimateLCM): ``model`` is the frozen video
    consistency model (a UNetMotionModel with its LCM LoRA); the loss is
    :func:`consistency_training_loss` with an EMA copy of the adapter (``ema`` = mu) as target.
    ``objective="diffusion"`` (the naive alternative): ``model`` is the frozen diffusion teacher
    and the loss :func:`diffusion_adapter_loss`.
    ``conds``: per-frame maps (N, F, 3, H, W) or one image per video (N, 3, H, W) for frame 0
    (:func:`as_conditioning`), uint8 or [0, 1].
    ``solver_steps`` (N): the consistency-training grid, k = 1000 // N between the two points
    (50, the LCM grid, by default; a coarser grid gives each step a larger, stronger jump).
    Checkpoints in ``folder`` resume exactly. Returns ``(controlnet, fit)``.
    """
    if objective not in ADAPTER_OBJECTIVES:
        raise UserError(f"unknown objective {objective!r}; choose 'consistency' (teacher-free) or 'diffusion' (naive)")
    dist = _check(steps, batch, (0.0, 0.0), distance)
    if latents.ndim != 5:
        raise UserError(f"video latents must be (videos, frames, channels, h, w), got {tuple(latents.shape)}")
    if len(conds) != len(latents):
        raise UserError(f"{len(latents)} videos but {len(conds)} conditions: give one condition per video")
    model = model.eval().requires_grad_(False)
    controlnet = controlnet.train().requires_grad_(True)
    frames = latents.shape[1]
    modules = {"controlnet": controlnet}
    if objective == "consistency":
        target_net = copy.deepcopy(controlnet).requires_grad_(False).eval()
        modules["target"] = target_net
        online, target = controlled_call(model, controlnet), controlled_call(model, target_net)

        def after(step):  # theta- <- mu theta- + (1 - mu) theta, after each optimizer step
            ema_update(target_net, controlnet, ema)

        def loss(x0, e, c, g):
            return consistency_training_loss(online, target, x0, e, c, alphas_cumprod, g, dist, solver_steps,
                                             device=_device(controlnet))
    else:
        eps, after = controlled_call(model, controlnet), None

        def loss(x0, e, c, g):
            return diffusion_adapter_loss(eps, x0, e, c, alphas_cumprod, g, device=_device(controlnet))

    def loss_fn(step, g):
        idx = torch.randint(0, len(latents), (batch,), generator=g)
        return loss(latents[idx], text[ids[idx]], as_conditioning(conds[idx], frames), g)

    fit = training.fit(recipe or f"adapter-{objective}", modules, loss_fn, steps, lr, folder, seed=seed,
                       save_every=save_every, progress=progress, after_step=after)
    return controlnet.eval(), fit



# ------------------------------------------------------------------------------------------
# Teacher-free adaptation of an image encoder: AnimateLCM-I2V's design
# ------------------------------------------------------------------------------------------

IMAGE_ENCODER_MOTION_SCALE = 0.8  # the scale of the encoder's per-frame position embedding (the official default)


def image_encoder_call(unet, encoder, condition: Callable, motion_scale: float = IMAGE_ENCODER_MOTION_SCALE) -> Callable:
    """``(x, t, text, image) -> eps`` of a UNetMotionModel steered by an image encoder, as
    AnimateLCM-I2V runs them::

        features = encoder(image, F, motion_scale)      # one map per down block, (B F, C_i, h_i, w_i)
        eps      = unet(x, t, text)  with features[i] added inside down block i

    ``x`` (B, F, C, h, w) latents, ``t`` (B,), ``text`` (B, tokens, dim), ``image`` (B, C, h, w)
    the image's latent (the first frame's). ``encoder(image, frames, motion_scale)`` returns the
    features; ``condition(unet, features)`` is a context manager that adds them while the UNet runs
    and removes itself afterwards (``functools.partial(i2v.image_condition, layer=...)``: where in
    the block they go is the driver's business, not the recipe's).
    """
    def call(x, t, text, image):
        for net in (unet, encoder):
            if _device(net) != x.device:
                net.to(x.device)
        f = x.shape[1]
        features = encoder(image.to(x), f, motion_scale)
        with condition(unet, features):
            out = unet(x.permute(0, 2, 1, 3, 4), t, encoder_hidden_states=text.repeat_interleave(f, dim=0)).sample
        return out.permute(0, 2, 1, 3, 4)

    return call


def train_image_encoder(folder, encoder, model, latents: torch.Tensor, ids: torch.Tensor, text: torch.Tensor,
                        alphas_cumprod: torch.Tensor, steps: int, condition: Callable, images: torch.Tensor | None = None,
                        image_std: torch.Tensor | None = None, motion_scale: float = IMAGE_ENCODER_MOTION_SCALE,
                        batch: int = 8, lr: float = 5e-4,
                        ema: float = 0.95, distance: str = "huber", seed: int = 0, save_every: int = 100,
                        progress: bool = True, recipe: str = "image-encoder-consistency",
                        solver_steps: int = SOLVER_STEPS, on_save: Callable | None = None):
    """Train an image encoder (AnimateLCM-I2V's) teacher-free, against the video consistency model.

    Consistency TRAINING (:func:`consistency_training_loss`), the condition being the image's latent
    ``z`` and the adapter phi the encoder, whose features enter the frozen consistency model theta
    (``model``: the UNetMotionModel with its LCM LoRA) through ``condition`` (:func:`image_encoder_call`)::

        z      = m + s_z n_z,                                     n_z ~ N(0, I)   (m, s_z: the image's latent
                                                                  mean and std; z = m without ``image_std``)
        x_t    = sqrt(abar_t)    x0 + sqrt(1 - abar_t)    n,      t ~ U{grid},  n ~ N(0, I)
        x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) n,      t_prev = t - k   (same n, same x0)
        f_(theta, phi)(x, t, c, z) = c_skip(t) x + c_out(t) x0_hat(eps_theta(x, t, c; E_phi(z, F, s)))
        L      = d( f_(theta, phi)(x_t, t, c, z),  f_(theta, phi-)(x_prev, t_prev, c, z) )
        phi-  <- mu phi- + (1 - mu) phi       after each step (an EMA copy of the encoder; mu = ``ema``)

    ``latents`` (N, F, C, h, w) clean video latents, ``ids`` their caption indices into ``text``;
    ``images`` (N, C, h, w) the image latents m (default ``latents[:, 0]``: each video's first frame,
    the image-to-video case); ``image_std`` (N, C, h, w) their VAE posterior std s_z: each step
    then draws a posterior sample, as the official pipeline encodes its image (a sample, not the
    mean); s = ``motion_scale`` (the position embedding's scale, fixed while training).
    ``solver_steps`` N: the grid, k = 1000 // N. d = pseudo-Huber (``distance``). Checkpoints in
    ``folder`` resume exactly; ``on_save(step, encoder)`` runs at each one (e.g. to measure the
    encoder while it trains). Returns ``(encoder, fit)``.
    """
    dist = _check(steps, batch, (0.0, 0.0), distance)
    if latents.ndim != 5:
        raise UserError(f"video latents must be (videos, frames, channels, h, w), got {tuple(latents.shape)}")
    images = latents[:, 0] if images is None else images
    if images.ndim != 4 or len(images) != len(latents):
        raise UserError(f"images must be one latent per video, (videos, channels, h, w); got {tuple(images.shape)} "
                        f"for {len(latents)} videos")
    if image_std is not None and image_std.shape != images.shape:
        raise UserError(f"image_std must have the images' shape {tuple(images.shape)}, got {tuple(image_std.shape)}")
    if len(ids) != len(latents):
        raise UserError(f"{len(latents)} videos but {len(ids)} captions: give one caption per video")
    if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 <= ema < 1:
        raise UserError(f"ema must be in [0, 1): the target encoder's rate mu, got {ema!r}")
    model = model.eval().requires_grad_(False)
    encoder = encoder.train().requires_grad_(True)
    target_net = copy.deepcopy(encoder).requires_grad_(False).eval()
    online = image_encoder_call(model, encoder, condition, motion_scale)
    target = image_encoder_call(model, target_net, condition, motion_scale)

    def after(step):  # phi- <- mu phi- + (1 - mu) phi, after each optimizer step
        ema_update(target_net, encoder, ema)

    def loss_fn(step, g):
        idx = torch.randint(0, len(latents), (batch,), generator=g)
        z = images[idx]
        if image_std is not None:  # a posterior sample of the image's latent
            z = z + image_std[idx] * torch.randn(z.shape, generator=g)
        return consistency_training_loss(online, target, latents[idx], text[ids[idx]], z, alphas_cumprod,
                                         g, dist, solver_steps, device=_device(encoder))

    fit = training.fit(recipe, {"encoder": encoder, "target": target_net}, loss_fn, steps, lr, folder, seed=seed,
                       save_every=save_every, progress=progress, after_step=after,
                       on_save=(lambda step: on_save(step, encoder)) if on_save else None)
    return encoder.eval(), fit


def motion_unet(unet, adapter):
    """AnimateDiff's inflation: the image UNet plus motion modules, spatial layers frozen."""
    with quiet_loading():  # from_unet2d's .to() warns about float32 modules it does not have
        model = UNetMotionModel.from_unet2d(unet, adapter)
    model.freeze_unet2d_params()
    return model


def motion_adapter_config(model) -> dict:
    """The ``MotionAdapter`` config of a ``UNetMotionModel``'s motion modules, read from the model's
    own config (so a full-size SD1.5 student and a toy one are both sized right)."""
    c = model.config
    return {
        "block_out_channels": tuple(c.block_out_channels),
        "motion_layers_per_block": c.layers_per_block,
        "motion_transformer_layers_per_block": c.temporal_transformer_layers_per_block,
        "motion_mid_block_layers_per_block": c.mid_block_layers,
        "motion_transformer_layers_per_mid_block": c.temporal_transformer_layers_per_mid_block,
        "motion_num_attention_heads": c.motion_num_attention_heads,
        "motion_norm_num_groups": c.norm_num_groups,  # the UNet runs its motion modules' norms with its own
        "motion_max_seq_length": c.motion_max_seq_length,
        "use_motion_mid_block": c.use_motion_mid_block,
    }


def extract_adapter(model):
    """The motion modules of a UNetMotionModel as a MotionAdapter (the same key names), sized
    from the model (:func:`motion_adapter_config`); LoRA layers on them, if any, are left out."""
    adapter = MotionAdapter(**motion_adapter_config(model))
    state = {k: v for k, v in model.state_dict().items() if "motion_modules" in k and "lora_" not in k}
    state = {k.replace(".base_layer.", "."): v for k, v in state.items()}  # peft-wrapped layers keep their weights here
    adapter.load_state_dict(state)  # strict: every adapter key must be there
    return adapter
