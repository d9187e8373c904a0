"""Small shared utilities (the base layer): quiet loading, safe loading of safetensors files,
argument checks, seeding, FLOP counting, PSNR and LoRA files in diffusers' format.

Nothing here knows about a world, a model or a pipeline; every other module may import it.
"""

from __future__ import annotations

import contextlib
import secrets
import warnings
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import logging as dlog
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode
from transformers.utils import logging as tlog

from . import config
from .config import UserError


@contextlib.contextmanager
def quiet_loading():
    """Silence diffusers' and transformers' load-time chatter and progress bars (errors still show)."""
    state = (dlog.get_verbosity(), tlog.get_verbosity(), dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="huggingface_hub")
            # peft says so each time a second LoRA (a style next to the LCM LoRA) joins a model
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            yield
    finally:
        dlog.set_verbosity(state[0])
        tlog.set_verbosity(state[1])
        if state[2]:
            dlog.enable_progress_bar()
        if state[3]:
            tlog.enable_progress_bar()


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def load_safetensors(path, what: str = "weights") -> dict:
    """Read a safetensors file, refusing anything else: a pickle (.bin/.pt/.ckpt: loading one can
    run arbitrary code) or a corrupted/truncated file gets a clear error, never a deep traceback."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(f"{path.name} is a pickle file; this course loads safetensors only (a pickle can run code "
                        "when loaded). Convert it where you trust it, or use the .safetensors version of the weights")
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        with open(path, "rb") as f:
            head = f.read(2)
        kind = "a pickle file renamed .safetensors" if head[:1] == b"\x80" or head == b"PK" else "corrupted or truncated"
        raise UserError(f"{path} is not a readable safetensors file ({kind}: {err}); download or rebuild it") from None


def check_int(name: str, value, low: int, high: int | None = None, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise UserError(f"{name} must be a whole number, got {value!r}{hint}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise UserError(f"{name} must be {bounds}, got {value}{hint}")
    return int(value)


def check_range(name: str, value, low: float, high: float | None = None) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(value) or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise UserError(f"{name} must be {bounds}, got {value}")
    return value


def seeded(seed) -> tuple[int, torch.Generator]:
    """``(seed, CPU generator)`` for a user's seed; ``-1`` draws a random seed (returned, so the
    result can be made again). A CPU generator gives the same noise on any device."""
    seed = check_int("seed", seed, -1)
    if seed == -1:
        seed = secrets.randbelow(2**31)
    return seed, torch.Generator("cpu").manual_seed(seed)


def count_flops(fn, *args, **kwargs) -> int:
    """Total FLOPs of ``fn(*args, **kwargs)`` as PyTorch's ``FlopCounterMode`` counts them
    (matrix products and convolutions: a multiply-add is 2 FLOPs; element-wise work is free)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def psnr(a, b) -> float:
    """PSNR in dB of two uint8 images (or videos) of the same shape: 10 log10(255^2 / MSE)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise UserError(f"images of different shapes {a.shape} and {b.shape}")
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def save_unet_lora(folder: Path, unet_lora_state_dict: dict, weight_name: str = config.TOY_LCM_LORA) -> None:
    """Save a UNet LoRA (peft state dict) in diffusers' LoRA format (loadable with load_lora_weights)."""
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=unet_lora_state_dict, weight_name=weight_name, safe_serialization=True
    )
