"""The toy zoo's successor stages (notebook 09): two successors of AnimateLCM and their control,
each a small LoRA trained on top of the toy AnimateLCM with the data and teacher of stage 2.

    phased       successors.phased_loss, 4 phases        sampled with TCD, eta = 0 (edge to edge)
    adversarial  LCD + a latent discriminator's term     sampled with LCM, as AnimateLCM
    lcd          LCD alone (the control: same LoRA, steps, data and teacher)

Each stage trains in ``<work>/<name>/run`` (``training.fit`` checkpoints: an interrupted stage
resumes exactly), logs every step to ``<work>/<name>/log.jsonl`` and writes its LoRA (diffusers'
format, float16) to ``<work>/<name>/model/<name>.safetensors``; :func:`write_successors` copies
them into a zoo's ``successors/`` folder. ``toy.build`` can call :func:`successor_stages` like
its other stages; ``scripts/successors.py`` runs them and measures the table.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers import AutoencoderKL, MotionAdapter
from safetensors.torch import save_file

from .. import config, distill, loading, pipelines, successors
from ..config import UserError, Weights
from ..utils import load_safetensors, quiet_loading, save_unet_lora
from . import recipes, zoo

FOLDER = "successors"  # in the zoo: successors/<name>.safetensors
NAMES = ("phased", "adversarial", "lcd")
SHIPPED = ("phased", "adversarial")  # the control (lcd) is measured, not shipped: the zoo stays under 25 MB
RECIPES = {  # the keyword arguments of successors.train_successor, and how each one samples
    "phased": {"kind": "phased", "phases": successors.PHASES},
    "adversarial": {"kind": "adversarial", "weight": successors.ADVERSARIAL_WEIGHT,
                    "timesteps": successors.ADVERSARIAL_TIMESTEPS, "judge": "frames"},
    "lcd": {"kind": "lcd"},
}
SAMPLERS = {"phased": ("tcd", {"eta": 0.0}), "adversarial": ("lcm", {}), "lcd": ("lcm", {})}
LABELS = {"phased": "phased (PCM, 4 phases)", "adversarial": "adversarial (LCD + discriminator)",
          "lcd": "control (LCD, same LoRA and steps)"}
TRAINING = {"batch": 8, "lr": 1e-3, "rank": successors.SUCCESSOR_RANK, "ema": 0.95}
STEPS = 400  # stage 2's budget (the zoo's stage2: 400 steps, batch 8)
TEST_STEPS = 2
SAVE_EVERY = 25


def inputs(limit: int | None = None, seed: int = 0, cache: str | Path | None = None) -> dict:
    """What the successors train on: stage 2's teacher and videos (``recipes.distillation_inputs("video")``)
    plus the toy AnimateLCM they start from (``lcm_adapter``, ``lcm_lora``) from the zoo in use.
    ``cache``: a safetensors file keeping the encoded videos between runs (encoding 2,400 videos
    takes minutes on a busy CPU); written on the first call, read after."""
    cache = Path(cache) if cache else None
    if cache is not None and cache.exists():
        data = recipes.distillation_inputs("video", limit=1, seed=seed)  # the models and captions, one video
        stored = load_safetensors(cache, "cached training videos")
        data["latents"], data["ids"] = stored["latents"], stored["ids"]
    else:
        data = recipes.distillation_inputs("video", limit=limit, seed=seed)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            save_file({"latents": data["latents"].contiguous(), "ids": data["ids"].contiguous()}, cache)
    with quiet_loading():
        data["lcm_adapter"] = MotionAdapter.from_pretrained(zoo.root() / "animatelcm")
    data["lcm_lora"] = distill.load_lora_state_dict(zoo.root() / "animatelcm" / config.TOY_LCM_LORA)
    with quiet_loading():
        data["vae"] = AutoencoderKL.from_pretrained(zoo.root() / "base" / "vae").eval()
    return data


def _check_name(name: str) -> str:
    if name not in RECIPES:
        raise UserError(f"unknown successor {name!r}; choose one of {', '.join(NAMES)}")
    return name


def recipe_kwargs(name: str, data: dict) -> dict:
    """train_successor's keyword arguments for ``name``: "judge": "frames" gives it the VAE (its
    discriminator judges decoded frames), "latents" none."""
    recipe = dict(RECIPES[name])
    judge = recipe.pop("judge", None)
    if judge == "frames":
        recipe["vae"] = data["vae"]
    return recipe


def weight_file(work: Path, name: str) -> Path:
    return Path(work) / name / "model" / f"{name}.safetensors"


def train_stage(work, name: str, steps: int, data: dict, seed: int = 0, progress: bool = True,
                on_save: Callable | None = None) -> dict:
    """Train (or resume) one successor in ``<work>/<name>``; write its LoRA and ``info.json``.
    Returns the stage's manifest entry: recipe, steps, seconds (training, all runs; the time of
    ``on_save(step, student)`` checks is recorded in ``check_seconds.jsonl`` and left out), final
    loss, file hash."""
    name, work = _check_name(name), Path(work)
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    log_file = folder / "log.jsonl"

    def log(step, parts):
        with open(log_file, "a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 1), **parts}) + "\n")

    timing = folder / "check_seconds.jsonl"

    def timed(step, student):  # a check's time is not training time: recorded, then subtracted
        start = time.perf_counter()
        on_save(step, student)
        with open(timing, "a") as f:
            f.write(json.dumps({"step": step, "seconds": round(time.perf_counter() - start, 2)}) + "\n")

    student, fit = successors.train_successor(
        folder / "run", unet=data["unet"], teacher_adapter=data["adapter"], adapter=data["lcm_adapter"],
        lcm_lora=data["lcm_lora"], latents=data["latents"], ids=data["ids"], text=data["text"],
        alphas_cumprod=data["alphas"], steps=steps, seed=seed, save_every=min(SAVE_EVERY, steps), progress=progress,
        on_save=timed if on_save else None, log=log, **recipe_kwargs(name, data), **TRAINING)
    checks = sum(json.loads(line)["seconds"] for line in timing.read_text().splitlines()) if timing.exists() else 0.0
    out = weight_file(work, name)
    save_unet_lora(out.parent, successors.successor_state_dict(student), weight_name=out.name)
    tail = fit.losses[-20:]
    info = {"recipe": f"successors.train_successor({', '.join(f'{k}={v!r}' for k, v in RECIPES[name].items())})"
                      " on the toy AnimateLCM (motion adapter + LCM LoRA frozen)",
            "data": "the video teacher's training videos (stage 2's)", "teacher": "the toy video teacher, guided DDIM",
            **{k: v for k, v in TRAINING.items()}, "steps": steps, "seed": seed,
            "seconds": round(fit.total_seconds - checks, 1), "check_seconds": round(checks, 1), "final_loss": round(float(np.mean(tail)), 5),
            "saved_dtype": "float16", "threads": torch.get_num_threads(),
            "file": f"{FOLDER}/{out.name}", "sha256": zoo.sha256(out), "bytes": out.stat().st_size,
            "loss_curve": [round(float(np.mean(fit.losses[i:i + 5])), 5) for i in range(0, len(fit.losses), 5)]}
    (folder / "info.json").write_text(json.dumps(info, indent=1))
    return info


def successor_stages(work, steps: int = STEPS, names=NAMES, limit: int | None = None, seed: int = 0,
                     progress: bool = True, on_save: Callable | None = None, cache: str | Path | None = None) -> dict:
    """Every successor stage in turn (each resumes, or is skipped once its ``info.json`` records
    ``steps``): ``{name: manifest entry}``. ``on_save(name, step, student)`` runs at each checkpoint."""
    work, done, data = Path(work), {}, None
    for name in names:
        info_file = Path(work) / _check_name(name) / "info.json"
        if info_file.exists() and json.loads(info_file.read_text()).get("steps") == steps:
            done[name] = json.loads(info_file.read_text())
            continue
        data = data or inputs(limit, seed, cache)
        hook = (lambda step, student, name=name: on_save(name, step, student)) if on_save else None
        done[name] = train_stage(work, name, steps, data, seed, progress, hook)
    return done


def write_successors(zoo_folder, work, names=SHIPPED) -> dict:
    """Copy the trained successor LoRAs into ``<zoo_folder>/successors/``; returns {relative path: sha256}."""
    target = Path(zoo_folder) / FOLDER
    target.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name in names:
        src = weight_file(work, _check_name(name))
        if not src.exists():
            raise UserError(f"{src} is missing: train the {name} successor first (scripts/successors.py)")
        shutil.copyfile(src, target / src.name)
        hashes[f"{FOLDER}/{src.name}"] = zoo.sha256(target / src.name)
    manifest = Path(zoo_folder) / "manifest.json"
    if manifest.is_file():  # the zoo's manifest lists every file with its hash: the new ones too
        info = json.loads(manifest.read_text())
        info["files"] = zoo.file_hashes(Path(zoo_folder))
        tmp = manifest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(manifest)
    return hashes


def successor_weights(name: str, folder: str | Path | None = None) -> Weights:
    """Where a successor's LoRA is: ``folder/<name>.safetensors`` (default: the zoo's successors/)."""
    _check_name(name)
    return Weights(str(folder) if folder else FOLDER, revision=None, weight_name=f"{name}.safetensors", local=True)


def load_successor(name: str, folder: str | Path | None = None, pipe=None):
    """The toy AnimateLCM pipeline (``pipelines.load_t2v("animatelcm")``, or ``pipe``) with the
    successor's LoRA loaded (adapter ``name``, weight 1, beside the LCM LoRA) and its sampler
    (:data:`SAMPLERS`: the phased one samples with TCD at eta 0, deterministic)."""
    pipe = pipe or pipelines.load_t2v("animatelcm")
    loading.load_lora(pipe, successor_weights(name, folder), adapter_name=name)
    pipelines.set_adapter_weight(pipe, name, 1.0)
    return use_sampler(pipe, name)


def use_sampler(pipe, name: str):
    """Give ``pipe`` the sampler of successor ``name`` (``pipe.model_spec.scheduler`` follows)."""
    kind, _ = SAMPLERS[_check_name(name)]
    pipe.scheduler = pipelines.make_scheduler(kind, pipe.scheduler.config)
    pipe.model_spec = replace(pipe.model_spec, scheduler=kind)
    return pipe


def with_student(pipe, student, name: str):
    """A pipeline sharing ``pipe``'s parts with an in-memory ``student`` (being trained) and the
    successor's sampler: for checks during training."""
    kind, _ = SAMPLERS[_check_name(name)]
    return pipelines.with_unet(pipe, student, kind, spec=replace(pipe.model_spec, scheduler=kind))
