"""Recipes of the toy zoo: how each model of the toy world is trained, from scratch, on a CPU.

In order (each stage freezes what came before, as the real models were made):

1. ``vae``: a factor-4 AutoencoderKL on Moving Digits frames of every style (MSE + a small KL).
2. ``image_teacher``: a text-to-image latent diffusion UNet (epsilon prediction, the SD1.5 noise
   schedule, min-SNR-5 loss weighting) with the frozen tiny text encoder, on plain still digits
   ("a seven") and single frames of moving digits ("a seven moving left", whose trail shows the
   way); 10% of captions dropped for classifier-free guidance.
3. ``video_teacher``: AnimateDiff motion modules (a MotionAdapter) on the frozen image teacher,
   trained on plain Moving Digits videos; then ``motion_loras``: one LoRA per direction on those
   motion modules (AnimateDiff's motion LoRAs), trained on the videos that move that way.
4. ``style_<name>``: a LoRA on the image teacher per visual style, trained on styled still
   IMAGES only (the stand-in for personalized DreamBooth/LoRA bases).

All batches and noise come from ``training.generator(seed, step)``; every recipe resumes.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, MotionAdapter, UNet2DConditionModel
from peft import LoraConfig, get_peft_model_state_dict
from transformers import CLIPTextModel

from .. import detectors, distill, training
from ..config import UserError
from ..utils import quiet_loading
from . import configs, zoo
from .data import DIRECTIONS, STYLES, MovingDigits, caption, to_uint8

STYLE_LORA_RANK = 8
STYLE_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "proj_in", "proj_out")


def noise_scheduler():
    """The training-time view of the SD1.5 schedule (``add_noise``, alphas_cumprod)."""
    return DDPMScheduler.from_config(configs.sd_scheduler().config)


def all_captions() -> list[str]:
    caps = [""]
    for d in range(10):
        for direction in (None, *DIRECTIONS):
            for style in STYLES:
                caps.append(caption(d, direction, style))
    return caps


@torch.no_grad()
def encode_text(tokenizer, text_encoder, captions: list[str]) -> torch.Tensor:
    """(len(captions), tokens, dim) text embeddings, padded to the tokenizer's max length."""
    ids = tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids)[0]


@torch.no_grad()
def encode_pixels(vae, pixels: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """VAE latent means times the scaling factor, for (N, 3, H, W) pixels in [-1, 1]."""
    out = [vae.encode(pixels[i : i + batch]).latent_dist.mean for i in range(0, len(pixels), batch)]
    return torch.cat(out) * vae.config.scaling_factor


def stack(dataset: MovingDigits, limit: int | None = None):
    """All items of a data set as one tensor plus captions, digits, directions, styles."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    items = [dataset[i] for i in range(n)]
    pixels = torch.from_numpy(np.stack([it["pixel_values"] for it in items]))
    meta = {k: [it[k] for it in items] for k in ("caption", "digit", "direction", "style")}
    return pixels, meta


def min_snr_weights(scheduler, t: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """min(SNR, gamma) / SNR for epsilon prediction: caps the weight of low-noise steps."""
    ac = scheduler.alphas_cumprod[t]
    snr = ac / (1 - ac)
    return torch.clamp(snr, max=gamma) / snr


def dropped(caption_ids: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """Replace a fraction ``p`` of caption indices by 0 (the empty caption), for CFG."""
    keep = torch.rand(caption_ids.shape, generator=g) >= p
    return torch.where(keep, caption_ids, torch.zeros_like(caption_ids))


# ------------------------------------------------------------------------------------------
# 1. VAE
# ------------------------------------------------------------------------------------------


def vae_data(seed: int = 0, limit: int | None = None) -> torch.Tensor:
    """Still images of every style and frames of moving (trailed) digits, as one pixel tensor."""
    parts = [stack(MovingDigits("train", kind="image", styles=tuple(STYLES), seed=seed), limit)[0],
             stack(MovingDigits("train", kind="frame", seed=seed), limit)[0]]
    return torch.cat(parts)


def train_vae(folder, steps: int, batch: int = 32, lr: float = 2e-3, seed: int = 0, kl_weight: float = 1e-6,
              limit: int | None = None, progress: bool = True):
    vae = configs.tiny_vae(seed)
    pixels = vae_data(seed, limit)

    def loss_fn(step, g):
        idx = torch.randint(0, len(pixels), (batch,), generator=g)
        x = pixels[idx]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)
        recon = vae.decode(z).sample
        return F.mse_loss(recon, x) + kl_weight * posterior.kl().mean()

    fit = training.fit("toy-vae", {"vae": vae}, loss_fn, steps, lr, folder, seed=seed, progress=progress)
    vae.eval()
    # the scaling factor that gives latents unit variance (SD1.5's 0.18215 was found the same way)
    with torch.no_grad():
        z = encode_pixels(vae, pixels[:2048]) / vae.config.scaling_factor
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    return vae, fit


def vae_psnr(vae, pixels: torch.Tensor) -> float:
    """PSNR (dB) of the VAE's reconstruction of images (n, 3, H, W) in [-1, 1]."""
    with torch.no_grad():
        recon = vae.decode(vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
    mse = F.mse_loss((recon + 1) / 2, (pixels + 1) / 2).item()
    return 10 * np.log10(1.0 / mse)


# ------------------------------------------------------------------------------------------
# 2. Image teacher
# ------------------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _caption_index():
    caps = all_captions()
    return caps, {c: i for i, c in enumerate(caps)}


def image_teacher_data(vae, seed: int = 0, limit: int | None = None):
    """Latents and caption indices: plain still digits and single frames of moving digits."""
    caps, index = _caption_index()
    latents, ids = [], []
    for ds in (MovingDigits("train", kind="image", seed=seed), MovingDigits("train", kind="image", seed=seed + 1),
               MovingDigits("train", kind="frame", seed=seed)):
        pixels, meta = stack(ds, limit)
        latents.append(encode_pixels(vae, pixels))
        ids.append(torch.tensor([index[c] for c in meta["caption"]]))
    return torch.cat(latents), torch.cat(ids)


def diffusion_loss(unet_call, x0, text, scheduler, g, min_snr: float | None = 5.0):
    """Epsilon-prediction loss at uniformly drawn timesteps, min-SNR weighted."""
    b = x0.shape[0]
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    xt = scheduler.add_noise(x0, noise, t)
    eps = unet_call(xt, t, text)
    per = ((eps - noise) ** 2).flatten(1).mean(1)
    w = min_snr_weights(scheduler, t, min_snr) if min_snr else torch.ones_like(per)
    return (w * per).mean()


def captioned_loss_fn(eps_fn, latents, ids, text, scheduler, batch: int, drop: float = 0.0):
    """The loss of one training step of a text-conditioned recipe: draw ``batch`` latents and
    their captions, drop a fraction ``drop`` of the captions (for CFG), :func:`diffusion_loss`."""
    def loss_fn(step, g):
        idx = torch.randint(0, len(latents), (batch,), generator=g)
        cap = dropped(ids[idx], g, drop) if drop else ids[idx]
        return diffusion_loss(eps_fn, latents[idx], text[cap], scheduler, g)

    return loss_fn


def train_image_teacher(folder, vae, tokenizer, text_encoder, steps: int, batch: int = 64, lr: float = 1e-3,
                        seed: int = 0, drop: float = 0.1, limit: int | None = None, progress: bool = True):
    unet = configs.tiny_unet(seed)
    scheduler = noise_scheduler()
    latents, ids = image_teacher_data(vae, seed, limit)
    text = encode_text(tokenizer, text_encoder, _caption_index()[0])

    loss_fn = captioned_loss_fn(lambda x, t, e: unet(x, t, encoder_hidden_states=e).sample,
                                latents, ids, text, scheduler, batch, drop)
    fit = training.fit("toy-image-teacher", {"unet": unet}, loss_fn, steps, lr, folder, seed=seed,
                       warmup=100, progress=progress)
    return unet.eval(), fit


# ------------------------------------------------------------------------------------------
# 3. Video teacher
# ------------------------------------------------------------------------------------------


def video_teacher_data(vae, seed: int = 0, limit: int | None = None, num_frames: int = 8):
    """Video latents (N, F, C, h, w) and caption indices of plain Moving Digits videos."""
    _, index = _caption_index()
    pixels, meta = stack(MovingDigits("train", kind="video", num_frames=num_frames, seed=seed), limit)
    n, f = pixels.shape[:2]
    latents = encode_pixels(vae, pixels.flatten(0, 1)).unflatten(0, (n, f))
    return latents, torch.tensor([index[c] for c in meta["caption"]])


def zero_init_motion_outputs(adapter):
    """Zero the output projection of every motion module (AnimateDiff's initialization): the
    inflated UNet starts out as exactly the image model applied frame by frame."""
    with torch.no_grad():
        for name, module in adapter.named_modules():
            if name.endswith("proj_out") and isinstance(module, torch.nn.Linear):
                module.weight.zero_()
                module.bias.zero_()
    return adapter


def video_eps(model, xt, t, text):
    """Call a UNetMotionModel on (B, F, C, h, w) latents; the text repeats per frame."""
    b, f = xt.shape[:2]
    sample = xt.permute(0, 2, 1, 3, 4)  # (B, C, F, h, w), the layout UNetMotionModel takes
    text = text.repeat_interleave(f, dim=0)
    return model(sample, t, encoder_hidden_states=text).sample.permute(0, 2, 1, 3, 4)


def train_video_teacher(folder, unet, vae, tokenizer, text_encoder, steps: int, batch: int = 16, lr: float = 5e-4,
                        seed: int = 0, drop: float = 0.1, limit: int | None = 2400, progress: bool = True):
    model = distill.motion_unet(unet, zero_init_motion_outputs(configs.tiny_motion_adapter(seed)))
    scheduler = noise_scheduler()
    latents, ids = video_teacher_data(vae, seed, limit)
    text = encode_text(tokenizer, text_encoder, _caption_index()[0])

    loss_fn = captioned_loss_fn(lambda x, t, e: video_eps(model, x, t, e), latents, ids, text, scheduler, batch, drop)
    fit = training.fit("toy-video-teacher", {"unet": model}, loss_fn, steps, lr, folder, seed=seed,
                       warmup=100, progress=progress)
    return distill.extract_adapter(model), model.eval(), fit


@torch.no_grad()
def prompt_sensitivity(model, latents, text_a, text_b, t: int, seed: int = 0) -> float:
    """How much the predicted noise changes between two prompts on the same noisy input:
    ||eps(x_t, a) - eps(x_t, b)|| / ||eps(x_t, a)||. Cheap and early: 0 means the prompt is ignored."""
    scheduler = noise_scheduler()
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=g)
    tt = torch.full((latents.shape[0],), t)
    xt = scheduler.add_noise(latents, noise, tt)
    ea = video_eps(model, xt, tt, text_a.expand(latents.shape[0], -1, -1))
    eb = video_eps(model, xt, tt, text_b.expand(latents.shape[0], -1, -1))
    return float((ea - eb).norm() / ea.norm())


MOTION_LORA_RANK = 16
# the temporal attention and feed-forward layers of every motion module (their proj_in / proj_out
# are called with a keyword argument that peft's LoRA layers do not take)
MOTION_TARGETS = r".*motion_modules.*\.(to_q|to_k|to_v|to_out\.0|ff\.net\.0\.proj|ff\.net\.2)"


def train_motion_lora(folder, direction: str, unet, adapter, latents, ids, text, steps: int, batch: int = 8,
                      lr: float = 3e-3, seed: int = 0, rank: int = MOTION_LORA_RANK, drop: float = 0.1,
                      targets: str = MOTION_TARGETS, progress: bool = True):
    """A motion LoRA (AnimateDiff's pan-left / tilt-up kind): a peft LoRA on the motion modules
    of the video teacher (``unet`` + ``adapter``; all their own weights frozen), trained with the
    teacher's loss on the videos among ``latents`` (:func:`video_teacher_data`, captions ``ids``
    into ``text``) that move ``direction``. Loaded next to the motion adapter with
    ``load_lora_weights``, it biases the motion prior toward that direction, which the motion
    modules cannot read from the prompt (they have no text cross-attention).
    Returns the LoRA's state dict (peft names, ``down_blocks.0.motion_modules...``) and the fit."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    captions = _caption_index()[0]
    keep = torch.tensor([captions[i].endswith(f"moving {direction}") for i in ids.tolist()])
    if not keep.any():
        raise ValueError(f"no video in the data moves {direction}")
    model = distill.motion_unet(unet, adapter)
    model.requires_grad_(False)
    model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets),
                      adapter_name=direction)
    model.set_adapter(direction)
    loss_fn = captioned_loss_fn(lambda x, t, e: video_eps(model, x, t, e), latents[keep], ids[keep], text,
                                noise_scheduler(), batch, drop)
    fit = training.fit(f"toy-motion-lora-{direction}", {"unet": model}, loss_fn, steps, lr, folder, seed=seed,
                       warmup=20, progress=progress)
    return get_peft_model_state_dict(model, adapter_name=direction), fit


# ------------------------------------------------------------------------------------------
# 4. Styles: a LoRA per visual style, on still styled IMAGES only
# ------------------------------------------------------------------------------------------


def style_data(vae, style: str, seed: int = 0, limit: int | None = None):
    _, index = _caption_index()
    pixels, meta = stack(MovingDigits("train", kind="image", styles=(style,), seed=seed), limit)
    return encode_pixels(vae, pixels), torch.tensor([index[c] for c in meta["caption"]])


def train_style(folder, style: str, unet, vae, tokenizer, text_encoder, steps: int, batch: int = 32,
                lr: float = 1e-3, seed: int = 0, rank: int = STYLE_LORA_RANK, limit: int | None = None,
                progress: bool = True) -> tuple[dict, training.FitResult]:
    """A peft LoRA (attention and resnet convs) on the frozen image teacher, trained on
    "a seven in <style> style" still images. Returns its state dict (peft names) and the fit."""
    unet = copy.deepcopy(unet)  # peft wraps layers in place; keep the caller's UNet clean
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=list(STYLE_TARGETS)), adapter_name=style)
    unet.set_adapter(style)
    scheduler = noise_scheduler()
    latents, ids = style_data(vae, style, seed, limit)
    text = encode_text(tokenizer, text_encoder, _caption_index()[0])

    loss_fn = captioned_loss_fn(lambda x, t, e: unet(x, t, encoder_hidden_states=e).sample,
                                latents, ids, text, scheduler, batch)
    fit = training.fit(f"toy-style-{style}", {"unet": unet}, loss_fn, steps, lr, folder, seed=seed, progress=progress)
    return get_peft_model_state_dict(unet, adapter_name=style), fit


# ------------------------------------------------------------------------------------------
# 5. What the distillation notebooks train on: the zoo's teachers and their training data
# ------------------------------------------------------------------------------------------


def distillation_inputs(kind: str = "image", limit: int | None = None, seed: int = 0) -> dict:
    """The zoo's teacher parts and training latents for stage 1 (``kind="image"``: stills and
    frames) or stage 2 (``"video"``: videos, plus the teacher's motion adapter). Returns a dict
    with ``unet``, ``latents``, ``ids``, ``text`` (every caption's embedding; ``text[0]`` is the
    empty caption), ``alphas`` (alphas_cumprod) and, for videos, ``adapter``."""
    if kind not in ("image", "video"):
        raise UserError(f"kind must be 'image' (stage 1) or 'video' (stage 2), got {kind!r}")
    root = zoo.root()
    with quiet_loading():
        vae = AutoencoderKL.from_pretrained(root / "base" / "vae").eval()
        out = {"unet": UNet2DConditionModel.from_pretrained(root / "base" / "unet").eval()}
        if kind == "video":
            out["adapter"] = MotionAdapter.from_pretrained(root / "motion-adapter")
        text_encoder = CLIPTextModel.from_pretrained(root / "base" / "text_encoder").eval()
    tokenizer = configs.tiny_tokenizer()
    if kind == "image":
        out["latents"], out["ids"] = image_teacher_data(vae, seed, limit)
    else:
        out["latents"], out["ids"] = video_teacher_data(vae, seed, limit or 2400)
    out["text"] = encode_text(tokenizer, text_encoder, all_captions())
    out["alphas"] = noise_scheduler().alphas_cumprod
    return out


# ------------------------------------------------------------------------------------------
# 6. What the teacher-free adapters train on: videos, their control maps, first frames
# ------------------------------------------------------------------------------------------

ADAPTER_DETECTORS = ("canny", "lineart")  # the edge ControlNet sees both, half the videos each


def adapter_data(vae, seed: int = 0, limit: int | None = None, num_frames: int = 8) -> dict:
    """Plain Moving Digits training videos for the adapters: ``latents`` (N, F, C, h, w), caption
    ``ids``, ``edges`` (N, F, 3, H, W) uint8 control maps (Canny for even videos, line art for
    odd ones, from controlnet-aux) and ``first`` (N, 3, H, W) uint8 first frames (image-to-video)."""
    _, index = _caption_index()
    pixels, meta = stack(MovingDigits("train", kind="video", num_frames=num_frames, seed=seed), limit)
    n, f = pixels.shape[:2]
    latents = encode_pixels(vae, pixels.flatten(0, 1)).unflatten(0, (n, f))
    frames = to_uint8(pixels.numpy())  # (N, F, H, W, 3)
    edges = torch.stack([detectors.as_maps_tensor(detectors.detect(frames[i], ADAPTER_DETECTORS[i % 2])) for i in range(n)])
    first = torch.from_numpy(frames[:, 0]).permute(0, 3, 1, 2).contiguous()
    return {"latents": latents, "ids": torch.tensor([index[c] for c in meta["caption"]]), "edges": edges, "first": first}


@torch.no_grad()
def i2v_encoder_data(vae, seed: int = 0, limit: int | None = None, num_frames: int = 8, batch: int = 512) -> dict:
    """What the image encoder (AnimateLCM-I2V's design) trains on: the videos of :func:`adapter_data`
    (``latents`` (N, F, C, h, w), caption ``ids``) and their first frames as the VAE encodes an image
    for image-to-video: ``image_mean`` and ``image_std`` (N, C, h, w), the posterior's mean and std
    times the scaling factor (the official pipeline feeds the encoder a posterior SAMPLE)."""
    _, index = _caption_index()
    pixels, meta = stack(MovingDigits("train", kind="video", num_frames=num_frames, seed=seed), limit)
    n, f = pixels.shape[:2]
    latents = encode_pixels(vae, pixels.flatten(0, 1)).unflatten(0, (n, f))
    first = [vae.encode(pixels[i : i + batch, 0]).latent_dist for i in range(0, n, batch)]
    scale = vae.config.scaling_factor
    return {"latents": latents, "ids": torch.tensor([index[c] for c in meta["caption"]]),
            "image_mean": torch.cat([d.mean for d in first]) * scale, "image_std": torch.cat([d.std for d in first]) * scale}


def adapter_controlnet(unet, seed: int = 0):
    """A fresh ControlNet adapter for the toy UNet (``configs.tiny_controlnet``) whose conditioning
    embedding's last conv starts small (N(0, 0.02), seeded) instead of zero. The zero output convs
    alone already make the adapter a no-op at the start; a second zero layer in series only
    delays learning, which matters for a few hundred steps on a CPU."""
    net = configs.tiny_controlnet(unet, seed)
    with torch.no_grad():
        conv = net.controlnet_cond_embedding.conv_out
        conv.weight.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(seed))
    return net


def consistency_model(unet, adapter, lora: dict):
    """The frozen video consistency model the teacher-free adapters train against: the image
    UNet + the AnimateLCM motion modules + its LCM LoRA (weight 1, as the toy world samples it)."""
    return distill.video_student(unet, adapter, lora=lora).requires_grad_(False).eval()
