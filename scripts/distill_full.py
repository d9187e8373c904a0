"""AnimateLCM's two distillation stages at full scale (SD1.5), for ``accelerate launch``: the SD1.5
training code the official repository never released (G-U-N/AnimateLCM#21, #36).

    # stage 1: image consistency distillation of SD1.5 into an LCM-LoRA
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/distill_full.py stage1 \\
        --data /data/laion-aesthetic-512 --out runs/stage1 --steps 4000 --batch 96
    # stage 2: video consistency distillation (SD1.5 + AnimateDiff motion module teacher),
    # decoupled initialization from the stage-1 LoRA
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/distill_full.py stage2 \\
        --data /data/webvid-16f --out runs/stage2 --init-lora runs/stage1/lcm_lora.safetensors --steps 4000 --batch 16
    # the student, loaded and sampled like any model of the course:
    python -m animatelcm_helpers generate --world full --model runs/stage2 --prompt "a cat walking"
    # a dry run of either on the toy world's data and models, a few steps, any CPU:
    python scripts/distill_full.py stage1 --dry-run

Data: a folder in the Hugging Face "ImageFolder/VideoFolder" layout, ``metadata.jsonl`` (one
``{"file_name": ..., "text": ...}`` a line; ``caption`` for ``text`` works too) or
``metadata.csv`` (columns ``file_name`` and ``text``) beside the files it names, or the older
``captions.jsonl`` (``{"file": ..., "caption": ...}``); or a Hub dataset id in that layout
(``--data owner/name``, fetched with ``snapshot_download``, ``--data-revision``). Stage 1 reads
images, stage 2 videos (mp4/gif/npy through ``media.load_video``; the first ``--frames`` frames,
resized to ``--resolution``).

Each process encodes its own share of up to ``--limit`` items on its own device (the VAE's latent
mean times the scaling factor, the captions through the text encoder) into
``--out/encoded/<stage>-<rank>.safetensors``; every process then reads all shares (a rerun reuses
them). ``distill.distill_image`` / ``distill.distill_video`` train exactly as in the toy world:
checkpoints in ``--out/checkpoints`` resume, Ctrl-C keeps the last one.

Noise schedules: stage 1 distils SD1.5 on its own scaled-linear schedule; stage 2's teacher is
SD1.5 with AnimateDiff's motion module, which was trained, and is sampled, with linear betas
(``config.ANIMATEDIFF_SCHEDULE``), so stage 2 distils on the linear schedule, as the student is
then sampled. Stage 2 saves the student as AnimateLCM's repository does (a ``MotionAdapter``
sized from the student, its LCM LoRA) plus an ``animatelcm_spec.json`` naming the base, so that
``pipelines.load_t2v(out)`` loads it.

Hardware, as the paper reports it: stage 1 about 4 hours and stage 2 about 4 hours on 8 A100
(80 GB) GPUs; one 24 GB GPU runs stage 1 with ``--batch 8`` (gradient checkpointing is not
wired in). Under ``accelerate launch`` the batch is global: every process trains on its share
and the gradients are averaged (``training.shard``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from diffusers import MotionAdapter
from huggingface_hub import snapshot_download
from PIL import Image
from safetensors.torch import save_file

from animatelcm_helpers import config, distill, lcm, loading, media, pipelines, utils
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import recipes, zoo

INDEX_FILES = ("metadata.jsonl", "metadata.csv", "captions.jsonl")
LORA_FILE = "lcm_lora.safetensors"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["stage1", "stage2"])
    p.add_argument("--data", help="a folder with metadata.jsonl / metadata.csv / captions.jsonl, or a Hub dataset id")
    p.add_argument("--data-revision", default="main", help="the Hub dataset's revision (with a dataset id)")
    p.add_argument("--out", type=Path, default=Path("runs/distill"), help="checkpoints and results")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=None, help="global batch (default: 96 images / 16 videos; dry run: 4)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-4 stage 1, 2e-5 stage 2; toy: the toy defaults)")
    p.add_argument("--rank", type=int, default=64, help="LCM LoRA rank (the LCM-LoRA release uses 64)")
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--limit", type=int, default=10_000, help="items encoded into memory")
    p.add_argument("--init-lora", type=Path, help="stage 2: the stage-1 LoRA (decoupled initialization)")
    p.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is present")
    p.add_argument("--dry-run", action="store_true", help="toy data and models, 2 steps: checks the wiring anywhere")
    return p


# ------------------------------------------------------------------------------------------
# Data: a folder (or Hub dataset) of files with captions
# ------------------------------------------------------------------------------------------


def data_folder(data: str, revision: str) -> Path:
    """``data`` as a local folder: itself, or the Hub dataset ``data`` fetched into the cache."""
    folder = Path(data).expanduser()
    if folder.is_dir():
        return folder
    if folder.exists() or data.count("/") != 1:
        raise UserError(f"--data {data!r} is neither a folder nor a Hub dataset id (owner/name)")
    try:
        return Path(snapshot_download(data, repo_type="dataset", revision=revision,
                                      local_files_only=not config.hub_reachable()))
    except (OSError, ValueError) as err:
        raise UserError(f"could not fetch the dataset {data}@{revision}: {str(err).splitlines()[0]}") from None


def read_items(folder: Path, limit: int) -> list[dict]:
    """[{"file": path relative to folder, "caption": text}] from the folder's index (``INDEX_FILES``)."""
    index = next((folder / name for name in INDEX_FILES if (folder / name).is_file()), None)
    if index is None:
        raise UserError(f"{folder} has no {', '.join(INDEX_FILES)}: one line per file, e.g. "
                        '{"file_name": "0001.mp4", "text": "a cat walking"} in metadata.jsonl')
    if index.suffix == ".csv":
        with open(index, newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
    items = []
    for i, row in enumerate(rows[:limit]):
        file = row.get("file_name") or row.get("file")
        caption = row.get("text") if row.get("text") is not None else row.get("caption")
        if not file or caption is None:
            raise UserError(f"{index.name} line {i + 1} needs a file name and a caption (file_name and text), got {row}")
        if not (folder / file).is_file():
            raise UserError(f"{index.name} line {i + 1} names {file}, which is not in {folder}")
        items.append({"file": file, "caption": str(caption)})
    if not items:
        raise UserError(f"{index} lists no items: add at least one")
    return items


def pixels(folder: Path, item: dict, stage: str, size: int, frames: int) -> torch.Tensor:
    """An item as floats in [-1, 1]: (1, 3, size, size) for an image, (F, 3, size, size) for a video."""
    path = folder / item["file"]
    if stage == "stage1":
        img = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC))[None]
    else:
        video = media.load_video(path)[:frames]
        if len(video) < frames:
            raise UserError(f"{item['file']} has {len(video)} frames; stage 2 needs at least --frames {frames}")
        img = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in video])
    return torch.from_numpy(img).permute(0, 3, 1, 2).float() / 127.5 - 1


# ------------------------------------------------------------------------------------------
# Encoding, each process its share, on its own device
# ------------------------------------------------------------------------------------------


def encode_share(base, folder: Path, items: list[dict], args, state: PartialState) -> dict:
    """Latents and text embeddings of this process's share of ``items`` (``items[rank::world]``)."""
    latents, text, order = [], [], list(range(state.process_index, len(items), state.num_processes))
    with torch.no_grad():
        for i in order:
            x = pixels(folder, items[i], args.stage, args.resolution, args.frames).to(state.device, base.vae.dtype)
            lat = base.vae.encode(x).latent_dist.mean * base.vae.config.scaling_factor
            latents.append(lat.float().cpu() if args.stage == "stage1" else lat.float().cpu()[None])
            text.append(base.encode_prompt(items[i]["caption"], state.device, 1, False)[0].float().cpu())
    return {"index": torch.tensor(order, dtype=torch.long),
            "latents": torch.cat(latents) if latents else torch.zeros(0),
            "text": torch.cat(text) if text else torch.zeros(0)}


def _stamp(args, items, state) -> dict:
    return {"stage": args.stage, "items": items, "resolution": args.resolution, "frames": args.frames,
            "processes": state.num_processes}


def write_share(base, folder: Path, items: list[dict], args, state: PartialState) -> None:
    """Encode this process's share into ``--out/encoded/<stage>-<rank>.safetensors`` (atomically);
    the main process records what was encoded (``<stage>.json``)."""
    out = args.out / "encoded"
    out.mkdir(parents=True, exist_ok=True)
    share = encode_share(base, folder, items, args, state)
    mine = out / f"{args.stage}-{state.process_index}.safetensors"
    tmp = mine.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in share.items()}, str(tmp))
    tmp.replace(mine)
    if state.is_main_process:
        (out / f"{args.stage}.json").write_text(json.dumps(_stamp(args, items, state)))


def read_shares(args, state: PartialState) -> tuple[torch.Tensor, torch.Tensor]:
    """Every process's share, back in item order: (latents, caption embeddings)."""
    out = args.out / "encoded"
    shares = [utils.load_safetensors(out / f"{args.stage}-{r}.safetensors") for r in range(state.num_processes)]
    shares = [s for s in shares if len(s["index"])]
    order = torch.cat([s["index"] for s in shares]).argsort()
    return torch.cat([s["latents"] for s in shares])[order], torch.cat([s["text"] for s in shares])[order]


def encoded_inputs(base, folder: Path, items: list[dict], args, state: PartialState) -> tuple[torch.Tensor, torch.Tensor]:
    """All items' latents and caption embeddings (in item order), encoded once across processes
    and kept in ``--out/encoded`` (a rerun reuses them when the item list is the same)."""
    meta = args.out / "encoded" / f"{args.stage}.json"
    mine = args.out / "encoded" / f"{args.stage}-{state.process_index}.safetensors"
    fresh = meta.is_file() and json.loads(meta.read_text()) == _stamp(args, items, state) and mine.is_file()
    state.wait_for_everyone()  # every process decides before the main one rewrites the record
    if not fresh:
        write_share(base, folder, items, args, state)
    state.wait_for_everyone()
    return read_shares(args, state)


def full_inputs(args, state: PartialState) -> dict:
    """The teacher's parts and the data set, encoded (the full world's SD1.5, from config.HUB)."""
    settings = config.setup(world="full", device=str(state.device))
    base = loading.load_base(config.HUB["sd15"], torch.float32, "SD1.5 base").to(state.device)
    base.set_progress_bar_config(disable=True)
    folder = data_folder(args.data, args.data_revision)
    items = read_items(folder, args.limit)
    latents, text = encoded_inputs(base, folder, items, args, state)
    with torch.no_grad():
        empty = base.encode_prompt("", state.device, 1, False)[0].float().cpu()
    out = {"unet": base.unet.cpu(), "latents": latents, "ids": torch.arange(1, len(items) + 1),
           "text": torch.cat([empty, text]), "settings": settings}
    if args.stage == "stage1":  # SD1.5's own (scaled-linear) schedule
        out["alphas"] = base.scheduler.alphas_cumprod.float()
    else:  # AnimateDiff's: the motion modules were trained, and the student is sampled, with linear betas
        kwargs = dict(config.ANIMATEDIFF_SCHEDULE)
        out["alphas"] = lcm.alphas_cumprod(kwargs["beta_start"], kwargs["beta_end"], kwargs["beta_schedule"])
        out["adapter"] = loading.from_pretrained(MotionAdapter, config.HUB["animatediff_motion_adapter"],
                                                 "teacher motion adapter", dtype=torch.float32)
    return out


# ------------------------------------------------------------------------------------------
# Saving the student so that load_t2v takes it
# ------------------------------------------------------------------------------------------


def save_video_student(folder: Path, student, base_weights) -> Path:
    """Stage 2's student as AnimateLCM ships its model (the motion adapter in diffusers' format, the
    LCM LoRA beside it) plus the spec ``pipelines.load_t2v(folder)`` reads: the base, the sampler
    (LCM on the linear schedule and the 50-point grid it was distilled on), the demo's defaults."""
    distill.save_student(folder, student)
    spec = config.model_spec("animatelcm", "full")
    schedule = dict(spec.scheduler_kwargs) | {"original_inference_steps": distill.SOLVER_STEPS}
    spec = replace(spec, name=folder.name, description=f"distilled by scripts/distill_full.py into {folder}",
                   base=base_weights, motion_adapter=config.Weights(str(folder.resolve()), revision=None, local=True),
                   lcm_lora=config.Weights(str(folder.resolve()), revision=None, local=True,
                                           weight_name=config.TOY_LCM_LORA),
                   lcm_lora_weight=1.0, steps=4, guidance=1.0, scheduler_kwargs=tuple(schedule.items()))
    return pipelines.write_spec(folder, spec, "parts")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        state = PartialState(cpu=args.cpu)
        if args.dry_run:
            data = recipes.distillation_inputs("image" if args.stage == "stage1" else "video", limit=32)
            args.steps, batch, lr, rank = 2, args.batch or 4, args.lr, distill.LCM_LORA_RANK
        else:
            if args.data is None:
                raise UserError("--data is required (or --dry-run for the toy world)")
            data = full_inputs(args, state)
            batch = args.batch or (96 if args.stage == "stage1" else 16)
            lr, rank = args.lr or (1e-4 if args.stage == "stage1" else 2e-5), args.rank
        args.out.mkdir(parents=True, exist_ok=True)
        kwargs = {"lr": lr} if lr else {}
        if args.stage == "stage1":
            student, fit = distill.distill_image(args.out / "checkpoints", data["unet"], data["latents"], data["ids"],
                                                 data["text"], data["alphas"], args.steps, "lora", batch=batch, rank=rank,
                                                 save_every=args.save_every, **kwargs)
            if state.is_main_process:
                utils.save_unet_lora(args.out, distill.lora_state_dict(student), LORA_FILE)
        else:
            lora = distill.load_lora_state_dict(args.init_lora) if args.init_lora else None
            if args.dry_run and lora is None:
                lora = distill.load_lora_state_dict(zoo.root() / "image-lcm" / LORA_FILE)
            student, fit = distill.distill_video(args.out / "checkpoints", data["unet"], data["adapter"], data["latents"],
                                                 data["ids"], data["text"], data["alphas"], args.steps, init_lora=lora,
                                                 batch=batch, rank=rank, save_every=args.save_every, **kwargs)
            if state.is_main_process:
                if args.dry_run:
                    distill.save_student(args.out, student)
                else:
                    save_video_student(args.out, student, config.HUB["sd15"])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.stage}: {fit.steps} steps in {fit.seconds:.1f} s, last loss {fit.losses[-1]:.5f}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
