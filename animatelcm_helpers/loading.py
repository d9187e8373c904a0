"""Loading a model's parts in either world (the lowest driver): a Hub id and revision in the full
world, a folder of the toy zoo in the toy world, both through diffusers' own ``from_pretrained``,
safetensors only; LoRAs through ``load_lora_weights``. Offline, a missing part is one clear error.

A base can also be ONE file in the original Stable Diffusion layout (a community DreamBooth
checkpoint, ``Weights(folder, weight_name=file)``): ``StableDiffusionPipeline.from_single_file``
converts it, its component configs and tokenizer taken from the world's diffusers layout
(:func:`layout_folder`: SD1.5's configs from the Hub cache, or the toy zoo's base folder).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from diffusers import MotionAdapter, StableDiffusionPipeline

from . import config, hub
from .checkpoint_formats import check_sd_checkpoint, check_weights_file
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


def load_motion_adapter(weights: Weights, dtype, motion_config: Weights | None = None,
                        what: str = "motion adapter"):
    """A ``MotionAdapter``: ``from_pretrained`` of a folder or repository (diffusers' layout), or,
    with ``motion_config`` given, ONE bare state-dict file (``weights.weight_name``, as
    AnimateDiff-Lightning ships its adapters) read into ``MotionAdapter.from_config(motion_config's
    config.json)``, every key required (a file for another architecture is one clear error)."""
    if motion_config is None:
        return from_pretrained(MotionAdapter, weights, what, dtype=dtype)

    def one_file(w: Weights, about: str) -> Path:
        return Path(resolve(w)[0]) / w.weight_name if w.local else Path(hub.hub_file(w, about))

    path = one_file(weights, what)
    adapter = MotionAdapter.from_config(json.loads(one_file(motion_config, f"{what}'s architecture").read_text()))
    state = load_safetensors(path, what)
    try:
        adapter.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = str(err).splitlines()
        first = (lines[1] if len(lines) > 1 else lines[0]).strip()
        first = first if len(first) <= 160 else first[:157] + "..."
        raise UserError(f"the {what} {weights.describe()} does not fit the architecture of "
                        f"{motion_config.describe()} ({first}); use the config.json of the model it was trained as") from None
    return adapter.to(dtype)


def load_base(weights: Weights, dtype, what: str = "base model", world: str | None = None,
              **parts) -> StableDiffusionPipeline:
    """A Stable Diffusion 1.5 base as a ``StableDiffusionPipeline`` without its safety checker and
    feature extractor: the AnimateDiff pipelines never use them, and loading the base through
    ``AnimateDiffPipeline.from_pretrained`` would download the checker (1.2 GB for epiCRealism) and
    fail offline without it. Video pipelines are made from it with ``from_pipe``. ``parts``
    replace components (e.g. ``unet=`` a distilled student).

    ``weights.weight_name`` set: a single-file checkpoint in the original SD layout (a local file,
    or one file of a Hub repository), read by :func:`load_single_file_base` into ``world``'s
    layout (default: the current world)."""
    if weights.weight_name:
        if weights.local:
            path = Path(weights.repo_id) / weights.weight_name
        else:
            path = Path(hub.hub_file(weights, what))
        return load_single_file_base(path, world or config.current().world, dtype, what, **parts)
    return from_pretrained(StableDiffusionPipeline, weights, what, dtype=dtype, safety_checker=None,
                           feature_extractor=None, requires_safety_checker=False, **parts)


# What a world's single-file bases must be (the layout's architecture), for the messages.
SINGLE_FILE_FAMILY = {"full": "Stable Diffusion 1.5", "toy": "toy-world (Moving Digits)"}


def layout_folder(world: str) -> Path:
    """The diffusers folder whose component configs and tokenizer a single-file checkpoint of
    ``world`` is read with: the toy zoo's base (toy world), or the snapshot of
    ``config.HUB[config.SINGLE_FILE_LAYOUT["full"]]`` holding exactly the files hub_files.json marks
    used by that key (``model_index.json``, ``*/config.json``, the scheduler and the tokenizer:
    kilobytes, fetched once; ``download sd15_layout`` prefetches them)."""
    key = config.SINGLE_FILE_LAYOUT[config.check_world(world)]
    if world == "toy":
        return Path(resolve(config.toy_weights(key))[0])
    weights, roots = config.HUB[key], set()
    try:
        for f in hub.files_for(key):
            local = Path(hub.hub_file(weights, "SD1.5 layout (component configs and tokenizer)", f.path))
            roots.add(local.parents[len(PurePosixPath(f.path).parts) - 1])
    except MissingWeightsError:
        raise MissingWeightsError(
            f"a single-file checkpoint is read with SD1.5's component configs and tokenizer ({weights.describe()}), "
            f"which are not on this machine and could not be fetched from the Hugging Face Hub. On a machine with "
            f"internet, run `python -m animatelcm_helpers download {key}` (a few kilobytes)") from None
    if len(roots) != 1:
        raise UserError(f"the SD1.5 layout files of {weights.describe()} are in {len(roots)} snapshots; "
                        "run `python -m animatelcm_helpers download sd15_layout` again")
    return roots.pop()


def load_single_file_base(path, world: str, dtype, what: str = "base model", **parts) -> StableDiffusionPipeline:
    """A single-file DreamBooth checkpoint (``.safetensors``, original SD names) as a
    ``StableDiffusionPipeline``: checked first from its header (a pickle, a missing file, SDXL, SD2,
    an inpainting UNet or another size is one ``UserError`` before anything loads), then
    ``StableDiffusionPipeline.from_single_file(path, config=layout_folder(world))`` offline, and
    checked after (every UNet, VAE and text encoder weight came from the file)."""
    path = check_weights_file(path, what)
    layout = layout_folder(world)
    family = SINGLE_FILE_FAMILY[world]
    unet_config = json.loads((layout / "unet" / "config.json").read_text())
    text_config = json.loads((layout / "text_encoder" / "config.json").read_text())
    check_sd_checkpoint(path, unet_config, int(text_config["hidden_size"]), family)
    try:
        with quiet_loading():
            pipe = StableDiffusionPipeline.from_single_file(
                str(path), config=str(layout), torch_dtype=dtype, safety_checker=None, feature_extractor=None,
                requires_safety_checker=False, local_files_only=True, **parts)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"could not read {path.name} as a {family} checkpoint ({first}); "
                        "use a DreamBooth checkpoint of that architecture") from None
    missing = [f"{name}.{n}" for name in ("unet", "vae", "text_encoder") if name not in parts
               for n, p in getattr(pipe, name).named_parameters() if p.is_meta]
    if missing:
        raise UserError(f"{path.name} lacks {len(missing)} weights of a {family} checkpoint, e.g. {missing[0]}: "
                        "it is incomplete; use the full DreamBooth file")
    return pipe


def load_lora(pipe, weights: Weights, adapter_name: str = LCM_ADAPTER) -> None:
    """Load a LoRA (diffusers' or kohya's format, safetensors) into ``pipe`` under ``adapter_name``.
    A file that does not fit the model is one ``UserError`` and leaves no half-loaded adapter."""
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
        _drop_adapter(pipe, adapter_name)
        if weights.local:
            raise UserError(f"could not load the LoRA {weights.weight_name} from {source}: {err}") from None
        raise missing_weights(weights, "LoRA") from None
    except (RuntimeError, ValueError, KeyError) as err:  # shapes or names of another architecture
        _drop_adapter(pipe, adapter_name)
        if "offline mode" in str(err) and not weights.weight_name:
            raise UserError(f"name the LoRA's file: {weights.repo_id}/FILE.safetensors (offline, diffusers cannot "
                            "guess which file of the repository is the LoRA)") from None
        raise UserError(f"the LoRA {weights.weight_name or weights.repo_id} does not fit this model's UNet "
                        f"({str(err).splitlines()[0][:200]}); use a LoRA trained for this base model") from None
    if adapter_name not in pipe.get_list_adapters().get("unet", []):
        _drop_adapter(pipe, adapter_name)
        raise UserError(f"the LoRA {weights.weight_name or weights.repo_id} has no layer this model's UNet has: "
                        "it was made for another architecture; use a LoRA trained for this base model")


def _drop_adapter(pipe, adapter_name: str) -> None:
    """Remove whatever a failed ``load_lora_weights`` left of ``adapter_name`` (peft layers that
    were injected before the error), so the pipeline works as before."""
    if any(adapter_name in names for names in pipe.get_list_adapters().values()):
        with quiet_loading(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # peft: "Adapter ... was active which is now deleted"
            pipe.delete_adapters(adapter_name)


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
# Frames decoded at a time: whole / offload / offload + chunking. SVD's temporal decoder mixes the frames of
# a chunk, so its chunk changes the video: 4, the official app's, wherever the memory allows; AnimateDiff's
# VAE decodes frame by frame, so its chunk only batches.
DECODE_CHUNKS = {"svd": (4, 4, 2), "t2v": (16, 8, 4)}


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
