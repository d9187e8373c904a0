"""Tiny configs of every diffusers / transformers class the course uses, and an offline tokenizer.

The toy world uses the SAME classes as the full world, only small: a factor-4 VAE on 32x32
frames (8x8 latents with 4 channels), a 2-layer CLIP text encoder, a two-block UNet with
cross-attention, AnimateDiff motion modules, a ControlNet whose conditioning embedding
downsamples by the VAE's factor, and the Stable Video Diffusion parts.

Every ``tiny_*`` function returns a freshly initialised model, seeded, so that two calls with
the same seed give identical weights.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLTemporalDecoder,
    ControlNetModel,
    DDIMScheduler,
    MotionAdapter,
    UNet2DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from .data import DIGIT_WORDS, DIRECTIONS, STYLES

SIZE = 32  # pixels per side of a toy frame
VAE_FACTOR = 4  # pixels per latent pixel
LATENT_CHANNELS = 4
TEXT_DIM = 64  # text encoder width = the UNet's cross-attention width
MAX_TOKENS = 16  # tokenizer.model_max_length and the text encoder's positions
MAX_FRAMES = 16  # motion modules' maximum sequence length
BLOCKS = (32, 64)  # UNet channels per resolution level

WORDS = (
    ("a", "an", "moving", "in", "style", "digit", "bad", "quality", "video", "of")
    + DIGIT_WORDS
    + DIRECTIONS
    + tuple(STYLES)
)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2 / CLIP)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def tokenizer_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style byte-level BPE vocabulary: every byte (so any text tokenizes), plus one token
    per toy word, built by left-to-right merges ("s e", "se v", "sev e", "seve n</w>")."""
    tokens = [BOS, EOS]
    for ch in _byte_alphabet():
        tokens += [ch, ch + "</w>"]
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            merge = (left, right)
            if merge not in merges:
                merges.append(merge)
            left = left + right
            if left not in tokens:
                tokens.append(left)
    return {t: i for i, t in enumerate(tokens)}, merges


def tiny_tokenizer():
    vocab, merges = tokenizer_vocab()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)


def tiny_text_encoder(seed: int = 0):
    vocab, _ = tokenizer_vocab()
    cfg = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=TEXT_DIM,
        intermediate_size=2 * TEXT_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_DIM,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[EOS],
    )
    torch.manual_seed(seed)
    return CLIPTextModel(cfg).eval()


def tiny_vae(seed: int = 0):
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=SIZE,
    )


def tiny_unet(seed: int = 0, time_cond_proj_dim: int | None = None):
    """The toy image UNet (the SD1.5 stand-in); ``time_cond_proj_dim`` adds LCD's w-embedding."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=SIZE // VAE_FACTOR,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=BLOCKS,
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=(2, 4),
        time_cond_proj_dim=time_cond_proj_dim,
    )


def tiny_motion_adapter(seed: int = 0):
    torch.manual_seed(seed)
    return MotionAdapter(
        block_out_channels=BLOCKS,
        motion_layers_per_block=1,
        motion_mid_block_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=8,
        motion_max_seq_length=MAX_FRAMES,
        use_motion_mid_block=True,
    )


def tiny_controlnet(unet, seed: int = 0):
    """A ControlNet from the toy UNet; its conditioning embedding downsamples by the VAE's
    factor (entries - 1 = log2(4)), and its output convs start at zero (ControlNet's rule)."""
    torch.manual_seed(seed)
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 32))


def tiny_svd_unet(seed: int = 0, num_frames: int = 8):
    torch.manual_seed(seed)
    return UNetSpatioTemporalConditionModel(
        sample_size=SIZE // VAE_FACTOR,
        in_channels=2 * LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=BLOCKS,
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=3 * 8,
        layers_per_block=1,
        cross_attention_dim=32,
        transformer_layers_per_block=1,
        num_attention_heads=(2, 4),
        num_frames=num_frames,
    )


def tiny_temporal_vae(seed: int = 0):
    torch.manual_seed(seed)
    return AutoencoderKLTemporalDecoder(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        sample_size=SIZE,
    )


def tiny_image_encoder(seed: int = 0):
    """CLIP vision tower for SVD. Its input stays 224x224 because StableVideoDiffusionPipeline
    resizes the conditioning image to 224 before encoding; 32-pixel patches keep it tiny."""
    cfg = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=224,
        patch_size=32,
        projection_dim=32,
    )
    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(cfg).eval()


def tiny_feature_extractor():
    return CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})


def sd_scheduler():
    """The Stable Diffusion 1.5 noise schedule (scaled-linear betas 0.00085..0.012, 1000 steps)."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
