"""The toy SVD-xt (the toy world's image-to-video model, notebook 07): its parts at toy size, its
data, the teacher's training (EDM with v-prediction, as SVD) and its consistency distillation with
the official AnimateLCM-SVD recipe (:mod:`animatelcm_helpers.svd_distill`). The zoo keeps both
in ``svd/``.
"""

from __future__ import annotations

import copy

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder, StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel

from .. import config, training
from ..config import UserError
from ..consistency import ema_update
from ..svd_distill import (
    CD_EMA,
    COND_DROP,
    added_time_ids,
    condition_latents,
    sample_guidance,
    svd_cd_loss,
    teacher_loss,
    training_sigmas,
)
from ..svd_scheduler import NUM_TRAIN_TIMESTEPS, euler_baseline_scheduler
from . import configs
from .data import MovingDigits, to_uint8

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

TOY_SVD = "svd"  # the toy zoo's folder for a trained toy SVD pipeline (diffusers layout)
TOY_TEACHER_FOLDER = "unet"  # inside the zoo's svd/ folder: the toy SVD-xt's own UNet (the teacher)
TOY_STUDENT_FOLDER = "animatelcm_unet"  # inside svd/: the distilled UNet (the toy AnimateLCM-SVD-xt)
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
    torch.manual_seed(seed)
    return UNetSpatioTemporalConditionModel(**toy_unet_config())


def toy_temporal_vae(seed: int = 0):
    """SVD's VAE class (AutoencoderKLTemporalDecoder) at toy size: factor 4, 32 channels, 0.32 M parameters."""
    torch.manual_seed(seed)
    return AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                                        block_out_channels=(32, 32, 32), layers_per_block=1, latent_channels=4,
                                        sample_size=32)


def toy_videos(split: str = "train", n: int = 2400, start: int = 0):
    """Moving Digits videos ``start .. start + n`` of a split (plain, trailed, 8 frames): pixels
    float32 (n, 8, 3, 32, 32) in [-1, 1], digits (n,), directions (list of n)."""
    ds = MovingDigits(split, kind="video", num_frames=config.SVD_SIZES["toy"][0])
    if not 0 <= start < start + n <= len(ds):
        raise UserError(f"the {split} split has {len(ds)} videos; cannot take {n} from {start}")
    items = [ds[i] for i in range(start, start + n)]
    pixels = torch.from_numpy(np.stack([it["pixel_values"] for it in items]))
    return pixels, torch.tensor([it["digit"] for it in items]), [it["direction"] for it in items]


def train_toy_vae(folder, steps: int, batch: int = 4, lr: float = 2e-3, seed: int = 0, kl_weight: float = 1e-6,
                  videos: int = 1200, progress: bool = True):
    """The toy temporal VAE on whole 8-frame videos (its decoder mixes frames): MSE + a small KL;
    then the scaling factor that gives the latents unit variance. Returns (vae, fit)."""
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
    firsts = to_uint8(pixels[:, 0].numpy())
    embeds = torch.cat([pipe._encode_image([PIL.Image.fromarray(f) for f in firsts[i : i + batch]], "cpu", 1, False)
                        for i in range(0, len(firsts), batch)])
    n, frames = pixels.shape[:2]
    lat = torch.cat([pipe.vae.encode(pixels[i : i + 64].flatten(0, 1)).latent_dist.mode()
                     for i in range(0, n, 64)])
    return {"image_embeds": embeds, "latents": lat.unflatten(0, (n, frames)) * pipe.vae.config.scaling_factor}


def _batch(data: dict, vae, pixels: torch.Tensor, idx: torch.Tensor, g: torch.Generator, drop: float):
    """One batch: clean latents, conditioning latents (noise-augmented first frames), embeddings,
    time ids; a share ``drop`` of samples gets the zero condition (SVD's unconditional input)."""
    x0, embeds = data["latents"][idx], data["image_embeds"][idx]
    cond = condition_latents(vae, pixels[idx, 0], g)
    if drop:
        keep = (torch.rand(len(idx), generator=g) >= drop).float()
        cond, embeds = cond * keep.reshape(-1, 1, 1, 1), embeds * keep.reshape(-1, 1, 1)
    return x0, cond, embeds, added_time_ids(len(idx), config.SVD_FPS["toy"])


def train_toy_svd_teacher(folder, pipe, pixels: torch.Tensor, steps: int, batch: int = 8, lr: float = 1e-3,
                          seed: int = 0, save_every: int = 200, progress: bool = True):
    """Train ``pipe.unet`` (image-to-video, the first frame as condition) on ``pixels`` (n, F, 3, H, W)
    with :func:`teacher_loss` at :func:`training_sigmas`, 10% of conditions dropped for guidance.
    Returns the fit; the UNet is trained in place."""
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


def distill_toy_svd(folder, pipe, teacher, pixels: torch.Tensor, steps: int, batch: int = 4, lr: float = 1e-4,
                    ema: float = CD_EMA, seed: int = 0, save_every: int = 100, progress: bool = True):
    """Consistency-distil ``teacher`` into a student initialised from it (and an EMA target, mu = 0.95),
    with :func:`cd_loss` at grid indices n ~ U{0 .. 38}, on ``pixels``' videos. Returns (student, fit)."""
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
        return svd_cd_loss(student, target_net, teacher, x0, cond, embeds, ids, index, noise,
                       sample_guidance(batch, frames, g))

    fit = training.fit("toy-svd-cd", {"unet": student, "target": target_net}, loss_fn, steps, lr, folder, seed=seed,
                       save_every=save_every, progress=progress,
                       after_step=lambda step: ema_update(target_net, student, ema))
    student.eval()
    return student, fit


def eval_set(n: int = EVAL_VIDEOS):
    """The fixed evaluation inputs: the first frames of test videos 0 .. n-1 (each test digit in
    all 4 directions) as uint8 (n, H, W, 3), with their digits and directions."""
    pixels, digits, directions = toy_videos("test", n)
    return to_uint8(pixels[:, 0].numpy()), digits.numpy(), directions
