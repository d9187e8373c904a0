"""The files users bring, as community sites distribute them: a DreamBooth base as ONE
``.safetensors`` file in the original Stable Diffusion layout, and a LoRA in kohya's format.

diffusers reads both (``StableDiffusionPipeline.from_single_file`` converts the original names,
``load_lora_weights`` converts kohya's); this module does the rest, world-free:

* **inspect** a file before anything loads it (:func:`check_weights_file`: a pickle is refused by
  its name, a missing or broken file said plainly; :func:`check_sd_checkpoint`: is it a Stable
  Diffusion 1.x checkpoint of the expected size, from its header's names and shapes only);
* **export** what the toy world's users would bring (:func:`export_single_file`: a diffusers
  ``StableDiffusionPipeline`` -> the original names, the inverse of what ``from_single_file``
  converts; :func:`export_kohya_lora`: a LoRA in diffusers/peft names -> kohya's).

The original layout (``ldm``'s ``openaimodel``, ``autoencoder``, ``FrozenCLIPEmbedder``) in one file::

    model.diffusion_model.*        the UNet:  input_blocks.<n>.<0: resnet | 1: attention>,
                                              middle_block.<0 | 1 | 2>, output_blocks.<n>.<...>, out.*
    first_stage_model.*            the VAE:   encoder/decoder.{down,up}.<i>.block.<j>, mid.block_1/attn_1/block_2
    cond_stage_model.transformer.* the CLIP text encoder, ``text_model.*`` as in transformers

with down level ``i`` (of L) and layer ``j`` (of ``layers_per_block`` = l) at input block
``1 + i (l + 1) + j`` (its downsampler at ``1 + i (l + 1) + l``), up level ``i`` layer ``j`` (of
l + 1) at output block ``i (l + 1) + j``, and the decoder's up levels numbered in reverse.

A kohya LoRA names each layer ``lora_unet_<module path, '.' -> '_'>`` (``lora_te_`` for the text
encoder) with ``.lora_down.weight`` (A), ``.lora_up.weight`` (B) and ``.alpha``; diffusers applies
``W x + w * (alpha / rank) * B A x`` with ``w`` the adapter's weight (the demo's LoRA alpha).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import UserError
from .utils import PICKLE_SUFFIXES

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."


# ------------------------------------------------------------------------------------------
# Inspecting a file before it is loaded
# ------------------------------------------------------------------------------------------


def check_weights_file(path, what: str = "weights") -> Path:
    """``path`` as a readable ``.safetensors`` file, or a one-line ``UserError``: a pickle
    (``.ckpt``/``.pt``/``.bin``/...) is refused by its name, BEFORE anything opens it (loading a
    pickle can run code); a missing file, a folder, another suffix, or a file whose header is not
    safetensors' (a renamed pickle, a truncated download) each get their own message."""
    path = Path(path).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(f"{path.name} is a pickle file ({path.suffix}); this course loads {what} from .safetensors "
                        "files only (loading a pickle can run code). Use the .safetensors version of the file")
    if not path.exists():
        raise UserError(f"no such file: {path} (give the path of a .safetensors file with the {what})")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the path of one .safetensors file with the {what}")
    if path.suffix.lower() != ".safetensors":
        raise UserError(f"{path.name} is not a .safetensors file; give the {what} as a .safetensors file")
    header(path)  # a readable header, or the error
    return path


def header(path) -> dict[str, tuple[int, ...]]:
    """{name: shape} of a safetensors file, read from its header only (no tensor is loaded)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        with open(path, "rb") as raw:
            head = raw.read(2)
        kind = "a pickle renamed .safetensors" if head[:1] == b"\x80" or head == b"PK" else "corrupted or truncated"
        raise UserError(f"{path} is not a readable safetensors file ({kind}: {err}); download it again") from None


def checkpoint_kind(names) -> str:
    """What a single file holds, from its tensor names: "sd" (a Stable Diffusion 1.x/2.x
    checkpoint in the original layout), "sdxl", "sd2" (OpenCLIP text encoder), "lora", "diffusers"
    (a diffusers-format state dict), or "unknown"."""
    names = list(names)
    if any(n.startswith("conditioner.embedders.") for n in names):
        return "sdxl"
    if any(n.startswith("cond_stage_model.model.") for n in names):
        return "sd2"
    if any(n.startswith(UNET_PREFIX) for n in names):
        return "sd"
    if any(n.startswith(("lora_unet_", "lora_te")) or ".lora_A." in n or ".lora_down." in n for n in names):
        return "lora"
    if any(n.startswith(("down_blocks.", "unet.", "encoder.down_blocks.")) for n in names):
        return "diffusers"
    return "unknown"


def check_sd_checkpoint(path, unet_config: dict, text_hidden_size: int, family: str = "Stable Diffusion 1.5") -> None:
    """Refuse (one ``UserError``) a single-file checkpoint that is not a ``family`` base of the
    layout's size, from its header: SDXL / SD2 / a LoRA / a diffusers state dict by their names;
    a UNet-only file; an inpainting UNet (9 input channels); and a UNet, cross-attention or text
    encoder width that differs from the layout's (``unet_config``, ``text_hidden_size``)."""
    path = Path(path)
    shapes = header(path)
    kind = checkpoint_kind(shapes)
    what = {"sdxl": "an SDXL checkpoint (its text encoders are conditioner.embedders.*)",
            "sd2": "a Stable Diffusion 2.x checkpoint (its text encoder is OpenCLIP, cond_stage_model.model.*)",
            "lora": "a LoRA, not a base model: give it as a LoRA (--lora / the LoRA menu)",
            "diffusers": "a state dict in diffusers' names, not a single-file checkpoint in the original layout",
            "unknown": "not a Stable Diffusion checkpoint in the original layout (no model.diffusion_model.* names)"}
    if kind != "sd":
        raise UserError(f"{path.name} is {what[kind]}; the base must be a {family} DreamBooth checkpoint "
                        "(.safetensors, original layout)")
    for prefix, part in ((VAE_PREFIX, "VAE"), (CLIP_PREFIX, "text encoder")):
        if not any(n.startswith(prefix) for n in shapes):
            raise UserError(f"{path.name} has no {part} ({prefix}*): it is not a complete {family} checkpoint; "
                            "use the full DreamBooth file (UNet, VAE and text encoder)")
    conv_in = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is None:
        raise UserError(f"{path.name} lacks {UNET_PREFIX}input_blocks.0.0.weight: not a {family} checkpoint")
    found = {
        "UNet input channels": conv_in[1],
        "UNet width": conv_in[0],
        "cross-attention width": next((s[1] for n, s in shapes.items()
                                       if n.startswith(UNET_PREFIX) and n.endswith("attn2.to_k.weight")), None),
        "text encoder width": next((s[1] for n, s in shapes.items()
                                    if n.startswith(CLIP_PREFIX) and n.endswith("token_embedding.weight")), None),
    }
    expected = {"UNet input channels": unet_config["in_channels"], "UNet width": unet_config["block_out_channels"][0],
                "cross-attention width": unet_config["cross_attention_dim"], "text encoder width": text_hidden_size}
    if found["UNet input channels"] == 9 and expected["UNet input channels"] == 4:
        raise UserError(f"{path.name} is an inpainting checkpoint (9 UNet input channels); use the plain "
                        f"(text-to-image) {family} checkpoint")
    for name, value in found.items():
        if value is not None and value != expected[name]:
            raise UserError(f"{path.name} has {name} {value}, {family} has {expected[name]}: it is a checkpoint "
                            f"of another architecture; use a {family} DreamBooth checkpoint")


# ------------------------------------------------------------------------------------------
# Exporting a diffusers pipeline as one file in the original layout
# ------------------------------------------------------------------------------------------

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
           ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _rename(rest: str, table) -> str:
    head, _, tail = rest.partition(".")
    for new, old in table:
        if head == new:
            return f"{old}.{tail}"
    return rest


def unet_to_original(state: dict, config: dict) -> dict:
    """A diffusers ``UNet2DConditionModel`` state dict -> ``model.diffusion_model.*`` names (the
    inverse of diffusers' ``convert_ldm_unet_checkpoint`` for the config's block layout)."""
    l = int(config["layers_per_block"])
    attention_up = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for key, value in state.items():
        m = re.match(r"(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)", key)
        if key.rsplit(".", 1)[0] in _UNET_TOP:
            name = _UNET_TOP[key.rsplit(".", 1)[0]] + "." + key.rsplit(".", 1)[1]
        elif m:
            blocks, i, part, j, rest = m[1], int(m[2]), m[3], int(m[4]), m[5]
            if blocks == "down_blocks":
                if part == "downsamplers":
                    name = f"input_blocks.{1 + i * (l + 1) + l}.0.op.{rest.removeprefix('conv.')}"
                else:
                    sub = "0" if part == "resnets" else "1"
                    rest = _rename(rest, _RESNET) if part == "resnets" else rest
                    name = f"input_blocks.{1 + i * (l + 1) + j}.{sub}.{rest}"
            elif part == "upsamplers":
                name = f"output_blocks.{i * (l + 1) + l}.{2 if attention_up[i] else 1}.{rest}"
            else:
                sub = "0" if part == "resnets" else "1"
                rest = _rename(rest, _RESNET) if part == "resnets" else rest
                name = f"output_blocks.{i * (l + 1) + j}.{sub}.{rest}"
        elif (m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)):
            if m[1] == "resnets":
                name = f"middle_block.{2 * int(m[2])}.{_rename(m[3], _RESNET)}"
            else:
                name = f"middle_block.1.{m[3]}"
        else:
            raise UserError(f"the UNet has a weight {key} the original SD layout has no place for "
                            "(only SD1.x-style UNets can be exported)")
        out[UNET_PREFIX + name] = value
    return out


_VAE_TOP = {"conv_norm_out": "norm_out"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_original(state: dict, config: dict) -> dict:
    """A diffusers ``AutoencoderKL`` state dict -> ``first_stage_model.*`` names (the inverse of
    diffusers' ``convert_ldm_vae_checkpoint``: the decoder's up levels reversed, the mid
    attention's linear weights as 1x1 convolutions, ``conv_shortcut`` as ``nin_shortcut``)."""
    n_up = len(config["up_block_types"])
    out = {}
    for key, value in state.items():
        name = key
        if (m := re.match(r"(encoder|decoder)\.conv_norm_out\.(.+)", key)):
            name = f"{m[1]}.norm_out.{m[2]}"
        elif (m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key)):
            name = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif (m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key)):
            name = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif (m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key)):
            name = f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif (m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key)):
            name = f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif (m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key)):
            name = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif (m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)", key)):
            name = f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
            if m[3] == "weight" and value.ndim == 2:
                value = value[:, :, None, None]  # the original's 1x1 convolutions
        elif not re.match(r"(encoder|decoder)\.(conv_in|conv_out)\.|(quant_conv|post_quant_conv)\.", key):
            raise UserError(f"the VAE has a weight {key} the original SD layout has no place for")
        out[VAE_PREFIX + name] = value
    return out


def text_encoder_to_original(state: dict) -> dict:
    """A transformers ``CLIPTextModel`` state dict -> ``cond_stage_model.transformer.text_model.*``."""
    return {CLIP_PREFIX + (k if k.startswith("text_model.") else "text_model." + k): v
            for k, v in state.items() if not k.endswith("position_ids")}


def export_single_file(pipe, path, dtype: torch.dtype | None = None) -> Path:
    """Write ``pipe``'s UNet, VAE and text encoder (a ``StableDiffusionPipeline`` in diffusers'
    layout) as ONE ``.safetensors`` file in the original SD layout, as DreamBooth checkpoints are
    distributed (``dtype``: e.g. float16 to halve it; default: the weights' own). Written
    atomically. ``StableDiffusionPipeline.from_single_file(path, config=<the diffusers folder>)``
    reads it back."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"export to a .safetensors file, got {path.name}")
    state = {**unet_to_original(pipe.unet.state_dict(), dict(pipe.unet.config)),
             **vae_to_original(pipe.vae.state_dict(), dict(pipe.vae.config)),
             **text_encoder_to_original(pipe.text_encoder.state_dict())}
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in state.items()}
    return _save(state, path)


def _save(state: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------
# Exporting a LoRA in kohya's format
# ------------------------------------------------------------------------------------------

_PEFT_KEY = re.compile(r"^(unet|text_encoder)\.(.+)\.lora_(A|B)\.weight$")


def export_kohya_lora(state: dict, path) -> Path:
    """A LoRA in diffusers/peft names (``unet.<module>.lora_A.weight`` / ``lora_B``, what
    ``save_lora_weights`` writes; ``text_encoder.*`` too) -> kohya's names in one ``.safetensors``
    file: ``lora_unet_<module with _>.lora_down.weight`` (A), ``.lora_up.weight`` (B) and
    ``.alpha`` = rank, so that alpha / rank = 1: the file applies the same ``W + w B A`` as the
    diffusers one (which carries no alpha, i.e. alpha = rank)."""
    out = {}
    for key, value in state.items():
        m = _PEFT_KEY.match(key)
        if not m:
            raise UserError(f"{key} is not a LoRA weight in diffusers' names (unet.<module>.lora_A.weight)")
        prefix = "lora_unet_" if m[1] == "unet" else "lora_te_"
        name = prefix + m[2].replace(".", "_")
        out[f"{name}.lora_{'down' if m[3] == 'A' else 'up'}.weight"] = value.detach().cpu().contiguous()
        if m[3] == "A":
            out[f"{name}.alpha"] = torch.tensor(float(value.shape[0]), dtype=value.dtype)
    return _save(out, Path(path))
