"""Loading a model's parts in either world (the lowest driver): a Hub id and revision in the full
world, a folder of the toy zoo in the toy world, both through diffusers' own ``from_pretrained``,
safetensors only; LoRAs through ``load_lora_weights``. Offline, a missing part is one clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from . import config
from .config import UserError, Weights
from .hub import MissingWeightsError, missing_weights
from .toy import zoo
from .utils import load_safetensors, quiet_loading

LCM_ADAPTER = "lcm-lora"


def resolve(weights: Weights) -> tuple[str, dict]:
    """(path or repo id, keyword arguments for from_pretrained) for a component's weights."""
    if weights.local:
        path = Path(weights.repo_id)
        path = path if path.is_absolute() else zoo.root() / path
        if not path.exists():
            raise MissingWeightsError(
                f"the toy zoo has no folder {weights.repo_id!r} (looked in {path.parent}); "
                "rebuild the zoo (see README, 'The toy model zoo') or delete the folder to get a fresh one"
            )
        return str(path), {"local_files_only": True}
    kwargs = {"revision": weights.revision}
    if not config.hub_reachable():  # use the local cache only: fail fast instead of retrying
        kwargs["local_files_only"] = True
    if weights.subfolder:
        kwargs["subfolder"] = weights.subfolder
    return weights.repo_id, kwargs


def from_pretrained(cls, weights: Weights, what: str, **kwargs):
    """``cls.from_pretrained`` for either world, safetensors only (``weights.variant``'s files where
    it names one), with a clear error offline."""
    source, extra = resolve(weights)
    if weights.variant:
        extra["variant"] = weights.variant
    try:
        with quiet_loading():
            return cls.from_pretrained(source, use_safetensors=True, **extra, **kwargs)
    except UserError:
        raise
    except (OSError, ValueError) as err:
        if weights.local:
            raise UserError(
                f"could not load the {what} from the folder {source}: {err}. "
                "If it is the toy zoo's cache, delete the folder to rebuild it."
            ) from None
        if isinstance(err, OSError):
            raise missing_weights(weights, what) from None
        raise UserError(f"could not load the {what} {weights.describe()}: {err}") from None


def load_base(weights: Weights, dtype, what: str = "base model", **parts) -> StableDiffusionPipeline:
    """A Stable Diffusion 1.5 base as a ``StableDiffusionPipeline`` without its safety checker and
    feature extractor: the AnimateDiff pipelines never use them, and loading the base through
    ``AnimateDiffPipeline.from_pretrained`` would download the checker (1.2 GB for epiCRealism) and
    fail offline without it. Video pipelines are made from it with ``from_pipe``. ``parts``
    replace components (e.g. ``unet=`` a distilled student)."""
    return from_pretrained(StableDiffusionPipeline, weights, what, dtype=dtype, safety_checker=None,
                           feature_extractor=None, requires_safety_checker=False, **parts)


def load_lora(pipe, weights: Weights, adapter_name: str = LCM_ADAPTER) -> None:
    """Load a LoRA (diffusers' or kohya's format, safetensors) into ``pipe`` under ``adapter_name``."""
    source, extra = resolve(weights)
    extra.pop("subfolder", None)
    if weights.local and weights.weight_name:
        load_safetensors(Path(source) / weights.weight_name, "LoRA")  # refuse pickles and broken files first
    try:
        with quiet_loading():
            pipe.load_lora_weights(
                source, weight_name=weights.weight_name, adapter_name=adapter_name, **extra
            )
    except OSError as err:
        if weights.local:
            raise UserError(f"could not load the LoRA {weights.weight_name} from {source}: {err}") from None
        raise missing_weights(weights, "LoRA") from None
    except (RuntimeError, ValueError, KeyError) as err:  # shapes or names of another architecture
        raise UserError(f"the LoRA {weights.weight_name or weights.repo_id} does not fit this model's UNet "
                        f"({str(err).splitlines()[0][:200]}); use a LoRA trained for this base model") from None
    if adapter_name not in pipe.get_list_adapters().get("unet", []):
        raise UserError(f"the LoRA {weights.weight_name or weights.repo_id} has no layer this model's UNet has: "
                        "it was made for another architecture; use a LoRA trained for this base model")


# ------------------------------------------------------------------------------------------
# Memory that fits: offload and decoding chunks picked from the GPU's memory
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryPlan:
    """How a pipeline runs on its device: ``offload`` (``enable_model_cpu_offload``: one model on
    the GPU at a time), ``forward_chunking`` (the UNet's feed-forward layers in chunks) and the
    VAE's ``decode_chunk_size`` (frames decoded at a time); ``why`` says what it was picked for."""

    offload: bool
    forward_chunking: bool
    decode_chunk_size: int
    why: str


# GPU memory (GiB) at or above which a full-size pipeline runs whole on the GPU, and the plans below
# it. ESTIMATES from the weights in float16 (SVD-xt: UNet 3.0 + image encoder 1.3 + VAE 0.2 GB;
# AnimateDiff: UNet + motion modules 2.6 + text encoder 0.25 + VAE 0.16 GB) and diffusers' SVD guide
# (offload + forward chunking + small decode chunks: under 8 GB). Unmeasured: scripts/benchmark_full.py
# measures the peak with and without offload where a GPU is lent (README, "Full world on a GPU").
WHOLE_ON_GPU_GIB = {"svd": 40.0, "t2v": 20.0}
OFFLOAD_ONLY_GIB = {"svd": 24.0, "t2v": 12.0}
DECODE_CHUNKS = {"svd": (8, 4, 2), "t2v": (16, 8, 4)}  # whole / offload / offload + chunking


def gpu_memory_gib(device) -> float | None:
    """Total memory of a CUDA device in GiB; None for a CPU (or no CUDA)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(device.index or 0).total_memory / 2**30


def memory_plan(kind: str, device, total_gib: float | None = None) -> MemoryPlan:
    """The plan for a ``kind`` ("svd" or "t2v") pipeline on ``device`` (``total_gib``: its memory,
    default read from the device). A CPU runs whole; a GPU runs whole from ``WHOLE_ON_GPU_GIB``,
    with model offload from ``OFFLOAD_ONLY_GIB``, and below that (a 16 GB T4) with offload and
    feed-forward chunking and the smallest decoding chunks."""
    if kind not in WHOLE_ON_GPU_GIB:
        raise UserError(f"unknown pipeline kind {kind!r}; use 'svd' or 't2v'")
    whole, offload, small = DECODE_CHUNKS[kind]
    total_gib = gpu_memory_gib(device) if total_gib is None else total_gib
    if total_gib is None:
        return MemoryPlan(False, False, whole, f"{device}: no GPU memory to save")
    if total_gib >= WHOLE_ON_GPU_GIB[kind]:
        return MemoryPlan(False, False, whole, f"{total_gib:.0f} GiB GPU: the whole pipeline on it")
    if total_gib >= OFFLOAD_ONLY_GIB[kind]:
        return MemoryPlan(True, False, offload, f"{total_gib:.0f} GiB GPU: model offload")
    return MemoryPlan(True, True, small, f"{total_gib:.0f} GiB GPU: model offload, feed-forward chunking, "
                      f"{small} frames decoded at a time")


def place(pipe, device, plan: MemoryPlan):
    """Put ``pipe`` on ``device`` as ``plan`` says (``pipe.memory_plan`` records it)."""
    if plan.offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if plan.forward_chunking:
        pipe.unet.enable_forward_chunking()
    pipe.memory_plan, pipe.run_device = plan, str(device)
    return pipe
