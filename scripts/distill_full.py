"""AnimateLCM's two distillation stages at full scale (SD1.5), for ``accelerate launch``.

    # stage 1: image consistency distillation of SD1.5 into an LCM-LoRA
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/distill_full.py stage1 \\
        --data /data/laion-aesthetic-512 --out runs/stage1 --steps 4000 --batch 96
    # stage 2: video consistency distillation (SD1.5 + AnimateDiff motion module teacher),
    # decoupled initialization from the stage-1 LoRA
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/distill_full.py stage2 \\
        --data /data/webvid-16f --out runs/stage2 --init-lora runs/stage1/lcm_lora.safetensors --steps 4000 --batch 16
    # a dry run of either on the toy world's data and models, a few steps, any CPU:
    python scripts/distill_full.py stage1 --dry-run

Data (full world): a folder with ``captions.jsonl`` (one ``{"file": ..., "caption": ...}`` a line)
and the files it names: images (stage 1) or videos (stage 2, read with mediapy; the first
``--frames`` frames, resized to ``--resolution``). Up to ``--limit`` items are encoded once with
the VAE and the text encoder, then ``distill.distill_image`` / ``distill.distill_video`` train
exactly as in the toy world (checkpoints in ``--out`` resume; Ctrl-C keeps the last one).

Hardware, as the paper reports it: stage 1 about 4 hours and stage 2 about 4 hours on 8 A100
(80 GB) GPUs; one 24 GB GPU runs stage 1 with ``--batch 8`` (gradient checkpointing is not
wired in). Under ``accelerate launch`` the batch is global: every process trains on its share
and the gradients are averaged (``training.shard``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["stage1", "stage2"])
    p.add_argument("--data", type=Path, help="folder with captions.jsonl and the images/videos it names")
    p.add_argument("--out", type=Path, default=Path("runs/distill"), help="checkpoints and results")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=None, help="global batch (default: 96 images / 16 videos; dry run: 4)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-4 stage 1, 2e-5 stage 2; toy: the toy defaults)")
    p.add_argument("--rank", type=int, default=64, help="LCM LoRA rank (the LCM-LoRA release uses 64)")
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--limit", type=int, default=10_000, help="items encoded into memory")
    p.add_argument("--init-lora", type=Path, help="stage 2: the stage-1 LoRA (decoupled initialization)")
    p.add_argument("--dry-run", action="store_true", help="toy data and models, 2 steps: checks the wiring anywhere")
    return p


def read_items(folder: Path, limit: int) -> list[dict]:
    from animatelcm_helpers.config import UserError

    index = folder / "captions.jsonl"
    if not index.is_file():
        raise UserError(f"{folder} has no captions.jsonl: one JSON object a line, {{\"file\": ..., \"caption\": ...}}")
    items = [json.loads(line) for line in index.read_text().splitlines() if line.strip()][:limit]
    if not items:
        raise UserError(f"{index} lists no items: add at least one")
    return items


def full_inputs(args) -> dict:
    """Encode the data set with SD1.5's VAE and text encoder (the full world's teacher)."""
    import numpy as np
    import torch
    from diffusers import AnimateDiffPipeline, MotionAdapter, StableDiffusionPipeline
    from PIL import Image

    from animatelcm_helpers import config, media, pipelines

    config.setup(world="full")
    device = config.current().device
    pipe = pipelines.from_pretrained(StableDiffusionPipeline, config.HUB["sd15"], "SD1.5 base",
                                     safety_checker=None, requires_safety_checker=False).to(device)
    items = read_items(args.data, args.limit)
    size = args.resolution

    def pixels(item):
        path = args.data / item["file"]
        if args.stage == "stage1":
            img = Image.open(path).convert("RGB").resize((size, size))
            return torch.from_numpy(np.asarray(img)).permute(2, 0, 1)[None]
        frames = media.load_video(path)[: args.frames]
        frames = np.stack([np.asarray(Image.fromarray(f).resize((size, size))) for f in frames])
        return torch.from_numpy(frames).permute(0, 3, 1, 2)

    latents, text = [], []
    with torch.no_grad():
        for item in items:
            x = pixels(item).to(device, torch.float32) / 127.5 - 1
            lat = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
            latents.append(lat.cpu() if args.stage == "stage1" else lat.cpu()[None])
        captions = [""] + [it["caption"] for it in items]
        for i in range(0, len(captions), 64):
            text.append(pipe.encode_prompt(captions[i : i + 64], device, 1, False)[0].cpu())
    out = {"unet": pipe.unet.cpu(), "latents": torch.cat(latents), "ids": torch.arange(1, len(items) + 1),
           "text": torch.cat(text), "alphas": pipe.scheduler.alphas_cumprod}
    if args.stage == "stage2":
        out["adapter"] = pipelines.from_pretrained(MotionAdapter, config.HUB["animatediff_motion_adapter"], "teacher motion adapter")
    return out


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from animatelcm_helpers import distill
    from animatelcm_helpers.config import UserError
    from animatelcm_helpers.toy import recipes, zoo

    try:
        if args.dry_run:
            data = recipes.distillation_inputs("image" if args.stage == "stage1" else "video", limit=32)
            args.steps, batch, lr, rank = 2, args.batch or 4, args.lr, distill.LCM_LORA_RANK
        else:
            if args.data is None:
                raise UserError("--data is required (or --dry-run for the toy world)")
            data = full_inputs(args)
            batch = args.batch or (96 if args.stage == "stage1" else 16)
            lr, rank = args.lr or (1e-4 if args.stage == "stage1" else 2e-5), args.rank
        args.out.mkdir(parents=True, exist_ok=True)
        if args.stage == "stage1":
            kwargs = {"lr": lr} if lr else {}
            student, fit = distill.distill_image(args.out / "checkpoints", data["unet"], data["latents"], data["ids"], data["text"],
                                                 data["alphas"], args.steps, "lora", batch=batch, rank=rank, **kwargs)
            zoo.save_unet_lora(args.out, distill.lora_state_dict(student), "lcm_lora.safetensors")
        else:
            lora = distill.load_lora_state_dict(args.init_lora) if args.init_lora else None
            if args.dry_run and lora is None:
                lora = distill.load_lora_state_dict(zoo.root() / "image-lcm" / "lcm_lora.safetensors")
            student, fit = distill.distill_video(args.out / "checkpoints", data["unet"], data["adapter"], data["latents"], data["ids"],
                                                 data["text"], data["alphas"], args.steps, init_lora=lora, batch=batch,
                                                 rank=rank, **({"lr": lr} if lr else {}))
            distill.save_student(args.out, student)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.stage}: {fit.steps} steps in {fit.seconds:.1f} s, last loss {fit.losses[-1]:.5f}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
