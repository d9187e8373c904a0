"""The training loop every recipe shares: accelerate, tqdm, checkpoints that resume exactly.

Read it top to bottom (nanoGPT style)::

    for step in range(start, steps):
        loss = loss_fn(step, generator(seed, step))   # the recipe: one batch, one loss
        accelerator.backward(loss); optimizer.step(); optimizer.zero_grad()
        every `save_every` steps: save_checkpoint(...)  # atomically

Determinism without saved random state: the batch and the noise of step ``s`` come from a
generator seeded by ``(seed, s)``, so a run resumed from a checkpoint at step ``s`` continues
exactly as the uninterrupted run would have.

Checkpoints are safetensors (models and optimizer tensors) plus JSON (step, losses, recipe),
written to a temporary folder and renamed into place: a crash never leaves half a checkpoint.
A checkpoint from another recipe is refused with a clear message.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .config import UserError
from .utils import load_safetensors

CHECKPOINT = "checkpoint"


def generator(seed: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The random stream of one training step: seeded by (seed, step)."""
    return torch.Generator(device).manual_seed((seed * 1_000_003 + step) % (2**63 - 1))


def rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng((seed, step))


_SHARD = slice(None)  # this process's share of a batch: set by fit() under accelerate launch


def shard() -> slice:
    """The slice of a (global) batch this process trains on: ``slice(rank, None, processes)``
    under ``accelerate launch``, everything otherwise. A recipe draws its whole batch from the
    step's generator (the same on every process), then keeps ``batch[training.shard()]``; with
    the gradients averaged across processes, N processes train exactly like one process with
    the whole batch (up to float rounding)."""
    return _SHARD


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(folder: Path, recipe: str, step: int, modules: dict, opt, losses: list, extra: dict | None = None) -> Path:
    """Write ``folder/checkpoint`` atomically: modules and optimizer as safetensors, the rest JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=folder))
    try:
        for name, module in modules.items():
            state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(state, tmp / f"{name}.safetensors")
        tensors, opt_meta = _flatten_optimizer(opt)
        save_file(tensors or {"_empty": torch.zeros(1)}, tmp / "optimizer.safetensors")
        meta = {"recipe": recipe, "step": step, "losses": losses, "optimizer": opt_meta, **(extra or {})}
        (tmp / "state.json").write_text(json.dumps(meta))
        final, old = folder / CHECKPOINT, folder / (CHECKPOINT + ".old")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder / CHECKPOINT


def load_checkpoint(folder: Path, recipe: str, modules: dict, opt) -> tuple[int, list]:
    """Restore modules and optimizer from ``folder/checkpoint``; returns (step, losses).
    (``checkpoint_seconds(folder)`` tells the training time the checkpoint already holds.)"""
    path = folder / CHECKPOINT
    if not path.exists() and (folder / (CHECKPOINT + ".old")).exists():
        path = folder / (CHECKPOINT + ".old")  # a crash between the two renames
    meta_file = path / "state.json"
    if not meta_file.exists():
        raise UserError(f"{path} is not a checkpoint of this course (no state.json); delete it to start over")
    meta = json.loads(meta_file.read_text())
    if meta.get("recipe") != recipe:
        raise UserError(
            f"the checkpoint in {folder} was made by recipe {meta.get('recipe')!r}, not {recipe!r}: "
            "resume it with its own recipe, or choose another output folder"
        )
    for name, module in modules.items():
        file = path / f"{name}.safetensors"
        if not file.exists():
            raise UserError(f"the checkpoint in {folder} has no {name}.safetensors; it is incomplete, delete it")
        module.load_state_dict(load_safetensors(file, "checkpoint"))
    tensors = load_safetensors(path / "optimizer.safetensors", "checkpoint")
    tensors.pop("_empty", None)
    opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    return int(meta["step"]), list(meta["losses"])


def checkpoint_seconds(folder: Path) -> float:
    """Seconds of training that the checkpoint in ``folder`` holds (0 without one)."""
    meta = folder / CHECKPOINT / "state.json"
    return float(json.loads(meta.read_text()).get("seconds", 0.0)) if meta.exists() else 0.0


def has_checkpoint(folder: Path) -> bool:
    """A checkpoint folder is there (complete or not: :func:`load_checkpoint` judges it)."""
    return (folder / CHECKPOINT).exists() or (folder / (CHECKPOINT + ".old")).exists()


# ------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    losses: list = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0  # this call
    resumed_from: int = 0
    total_seconds: float = 0.0  # all calls, across interruptions


def fit(
    recipe: str,
    modules: dict[str, torch.nn.Module],
    loss_fn: Callable[[int, torch.Generator], torch.Tensor],
    steps: int,
    lr: float,
    folder: str | Path,
    seed: int = 0,
    save_every: int = 500,
    weight_decay: float = 0.0,
    warmup: int = 0,
    progress: bool = True,
    on_save: Callable[[int], None] | None = None,
    after_step: Callable[[int], None] | None = None,
) -> FitResult:
    """Train the trainable parameters of ``modules`` for ``steps`` steps of ``loss_fn``.

    ``loss_fn(step, generator)`` draws its batch and noise from ``generator`` and returns the
    loss. Resumes from ``folder/checkpoint`` when there is one. AdamW with a linear warm-up and
    cosine decay to 10% of ``lr``. Ctrl-C saves a checkpoint at the current step, then re-raises.
    ``after_step(step)`` runs after each optimizer step, before any checkpoint (an EMA update
    goes there, so a checkpoint always holds the online and target weights of the same step).
    """
    if not isinstance(steps, int) or steps < 1:
        raise UserError(f"steps must be a whole number of at least 1, got {steps!r}")
    folder = Path(folder)
    accelerator = Accelerator()
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    if not params:
        raise UserError(f"recipe {recipe!r} has nothing to train: every parameter is frozen")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def lr_at(step):
        if warmup and step < warmup:
            return lr * (step + 1) / warmup
        progress_ = (step - warmup) / max(1, steps - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_))))

    start, losses, before = 0, [], 0.0
    if has_checkpoint(folder):
        start, losses = load_checkpoint(folder, recipe, modules, opt)
        before = checkpoint_seconds(folder)
    opt = accelerator.prepare(opt)
    for m in modules.values():
        if any(p.device != accelerator.device for p in m.parameters()):
            m.to(accelerator.device)
    result = FitResult(losses=losses, resumed_from=start)
    global _SHARD
    world, main = accelerator.num_processes, accelerator.is_main_process
    _SHARD = slice(accelerator.process_index, None, world) if world > 1 else slice(None)
    t0 = time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=recipe, disable=not progress, leave=False)
    step = start
    try:
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            with accelerator.autocast():  # bf16/fp16 when the accelerate config asks for it
                loss = loss_fn(step, generator(seed, step))
            accelerator.backward(loss)
            if world > 1:  # data parallel: every process steps with the mean gradient
                for p in params:
                    if p.grad is not None:
                        p.grad = accelerator.reduce(p.grad, reduction="mean")
                loss = accelerator.reduce(loss.detach(), reduction="mean")
            opt.step()
            opt.zero_grad(set_to_none=True)
            if after_step:
                after_step(step)
            losses.append(float(loss.detach()))
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if (step + 1) % save_every == 0 or step + 1 == steps:
                elapsed = before + time.perf_counter() - t0
                if main:
                    save_checkpoint(folder, recipe, step + 1, modules, opt, losses, {"seconds": elapsed})
                accelerator.wait_for_everyone()
                if on_save and main:
                    on_save(step + 1)
    except KeyboardInterrupt:
        done = len(losses)
        save_checkpoint(folder, recipe, done, modules, opt, losses, {"seconds": before + time.perf_counter() - t0})
        print(f"interrupted: checkpoint saved at step {done} in {folder}; run again to resume")
        raise
    finally:
        bar.close()
        _SHARD = slice(None)
    result.steps = steps
    result.seconds = time.perf_counter() - t0
    result.total_seconds = before + result.seconds
    return result
