"""The toy model zoo: folders laid out like the Hub repositories the full world uses.

::

    <root>/base/                 like the SD1.5 base: model_index.json, vae/, text_encoder/,
                                 tokenizer/, unet/, scheduler/  (a Stable Diffusion folder)
    <root>/motion-adapter/       like the AnimateDiff v1.5.2 motion adapter (the teacher's)
    <root>/animatelcm/           like the AnimateLCM repository: the motion adapter at the root, plus
                                 AnimateLCM_sd15_t2v_lora.safetensors (the spatial LCM LoRA)
    <root>/manifest.json         what made each folder (recipe, seed, sha256 of every file)

Trained weights ship inside the package (``animatelcm_helpers/toy/weights``) once the zoo's
recipes have run. Until then, :func:`root` builds a RANDOM-INITIALISED stand-in zoo in the
cache (same classes, same layout, seeded), so every loader, pipeline and test runs for real;
its videos are noise, and :func:`is_trained` says so.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig, get_peft_model_state_dict

from .. import config
from ..utils import quiet_loading, save_unet_lora
from . import configs

SHIPPED = Path(__file__).resolve().parent / "weights"
RANDOM_ZOO_VERSION = "random-init-v2"
LCM_LORA_FILE = config.TOY_LCM_LORA
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


# Trained by a build stage but left out of the shipped zoo (its measured rows stay in results/): room under 25 MB
# for notebook 09's successor LoRAs. The build's work folder keeps it (<work>/adapters/model/<name>).
NOT_SHIPPED = {"i2v-adapter-naive": "the keyframe I2V ControlNet trained the naive way (diffusion loss on the teacher), "
                                    "measured in results/i2v.json and control.json"}


def is_trained(folder: Path | None = None) -> bool:
    """True when the zoo at ``folder`` (default: the one in use) holds trained weights."""
    folder = Path(folder) if folder else root()
    manifest = folder / "manifest.json"
    return manifest.exists() and json.loads(manifest.read_text()).get("trained", False)


ZOO_ENV = "ANIMATELCM_TOY_ZOO"


def status(folder: Path | None = None) -> str:
    """One line on the zoo in use: trained or random stand-ins, and what is still a stand-in."""
    folder = Path(folder) if folder else root()
    if not is_trained(folder):
        return "RANDOM-INITIALISED stand-ins: the toy zoo is not trained yet, so toy videos are noise"
    manifest = json.loads((folder / "manifest.json").read_text())
    where = "shipped with the package" if folder == SHIPPED else str(folder)
    note = f"; animatelcm: {manifest['animatelcm']}" if "animatelcm" in manifest else ""
    return f"trained ({where}){note}"


def root() -> Path:
    """The zoo in use: ``ANIMATELCM_TOY_ZOO`` if set (e.g. a rebuilt zoo), else the shipped
    trained one if present, else a random-init one in the cache."""
    if os.environ.get(ZOO_ENV):
        folder = Path(os.environ[ZOO_ENV])
        if not (folder / "manifest.json").exists():
            raise config.UserError(
                f"{ZOO_ENV}={folder} is not a toy zoo (no manifest.json); build one with "
                "`python -m animatelcm_helpers.toy.build --out FOLDER` or unset the variable"
            )
        return folder
    if (SHIPPED / "manifest.json").exists():
        return SHIPPED
    folder = config.cache_dir() / f"toy-zoo-{RANDOM_ZOO_VERSION}"
    if not (folder / "manifest.json").exists():
        build_random_zoo(folder)
    return folder


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def save_base(folder: Path, vae, text_encoder, tokenizer, unet, scheduler) -> None:
    """Save an image model in the Stable Diffusion folder layout (model_index.json + parts)."""
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)


def random_lora_state_dict(unet, rank: int = 4, seed: int = 0, scale: float = 0.02) -> dict:
    """A LoRA on the UNet's attention projections with small random A and B (a stand-in)."""
    unet = copy.deepcopy(unet)  # peft wraps layers in place; keep the caller's UNet clean
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LORA_TARGETS)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return get_peft_model_state_dict(unet)


def zero_lora_state_dict(unet, rank: int = 4) -> dict:
    """A LoRA in the LCM LoRA's format whose B matrices are zero: loads, changes nothing."""
    state = random_lora_state_dict(unet, rank=rank)
    return {k: (torch.zeros_like(v) if "lora_B" in k else v) for k, v in state.items()}


def build_random_zoo(folder: Path, seed: int = 0) -> Path:
    """Write a random-initialised zoo to ``folder`` (atomically: built aside, then renamed)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))

    try:
        with warnings.catch_warnings(), quiet_loading():
            warnings.simplefilter("ignore")
            unet = configs.tiny_unet(seed)
            save_base(
                tmp / "base",
                vae=configs.tiny_vae(seed),
                text_encoder=configs.tiny_text_encoder(seed),
                tokenizer=configs.tiny_tokenizer(),
                unet=unet,
                scheduler=configs.sd_scheduler(),
            )
            configs.tiny_motion_adapter(seed + 1).save_pretrained(tmp / "motion-adapter")
            configs.tiny_motion_adapter(seed + 2).save_pretrained(tmp / "animatelcm")
            save_unet_lora(tmp / "animatelcm", random_lora_state_dict(unet, seed=seed + 3))
        manifest = {
            "zoo": RANDOM_ZOO_VERSION,
            "trained": False,
            "recipe": "random initialisation (animatelcm_helpers.toy.zoo.build_random_zoo)",
            "seed": seed,
            "files": file_hashes(tmp),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if folder.exists():  # another process finished first: keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
