"""The command line: quick experiments and checks from outside a notebook.

    python -m animatelcm_helpers generate --prompt "a seven moving left" --steps 4 --out seven.gif
    python -m animatelcm_helpers generate --prompt "a seven" --base my_base.safetensors --lora my_style.safetensors:0.8
    python -m animatelcm_helpers models
    python -m animatelcm_helpers download t2v svd     # a workshop's offline cache (or --all, or --list)

Mistakes in the arguments print one line (``error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import config, hub, media, pipelines
from .config import UserError
from .toy import zoo
from .toy.data import STYLES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m animatelcm_helpers",
        description="AnimateLCM, runnable: few-step video generation in the toy or the full world.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate a video from a text prompt")
    g.add_argument("--prompt", required=True, help="what the video shows, e.g. 'a seven moving left'")
    g.add_argument("--world", choices=config.WORLDS, help="toy (tiny models, any CPU) or full (Hub, GPU); default: automatic")
    g.add_argument("--model", default="animatelcm", help="model name (see `models`) or a saved pipeline folder")
    g.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    g.add_argument("--guidance", type=float, help="classifier-free guidance scale; 1 = none (default: the model's)")
    g.add_argument("--frames", type=int, help="number of frames (default: the model's)")
    g.add_argument("--height", type=int, help="height in pixels (a multiple of the VAE factor)")
    g.add_argument("--width", type=int, help="width in pixels (a multiple of the VAE factor)")
    g.add_argument("--lcm-lora-weight", type=float, help="weight of the LCM LoRA, 0..1 (default: the model's)")
    g.add_argument("--base", help="the base image model: a name (see `models`), a Hub id in diffusers' layout "
                   "(full world), or a single-file DreamBooth .safetensors on this machine (original SD layout)")
    g.add_argument("--lora", action="append", default=[], metavar="PATH_OR_ID[:ALPHA]",
                   help="a personal LoRA beside the LCM LoRA, at ALPHA (0..2, default 0.8): a name (see `models`; "
                        "toy: the styles), a LoRA .safetensors (diffusers' or kohya's format) or a Hub file "
                        "owner/name/FILE.safetensors; repeat for several")
    g.add_argument("--motion-lora", help="a motion LoRA that steers the motion (toy: left/right/up/down; "
                   "full: pan-left, tilt-up, zoom-in, ...)")
    g.add_argument("--motion-lora-weight", type=float, default=1.0, help="its weight, 0..2 (default 1)")
    g.add_argument("--negative-prompt", help="what the video should not show (used with guidance > 1)")
    g.add_argument("--seed", type=int, default=0, help="random seed; -1 draws one (default 0)")
    g.add_argument("--fps", type=int, default=8, help="frames per second of .gif/.mp4 output")
    g.add_argument("--out", default="video.gif", help="output file: .npy (uint8 F x H x W x 3), .gif or .mp4")
    m = sub.add_parser("models", help="list the models of each world")
    m.add_argument("--world", choices=config.WORLDS, help="only this world")
    d = sub.add_parser("download", help="fetch the full world's files once, so that it runs offline afterwards",
                       description="Fetch exactly the files the course reads (animatelcm_helpers/hub_files.json) into "
                                   "the Hugging Face cache (HF_HOME); afterwards the full world runs with HF_HUB_OFFLINE=1.")
    d.add_argument("names", nargs="*", help="bundles (" + ", ".join(hub.manifest()["bundles"]) + ") or parts "
                   "(see --list); default with --all: everything")
    d.add_argument("--all", action="store_true", help="every part in config.HUB")
    d.add_argument("--list", action="store_true", help="list the bundles and parts with their sizes, download nothing")
    return p


def cmd_download(args) -> int:
    if args.list:
        for name, keys in hub.manifest()["bundles"].items():
            files = [f for k in keys for f in hub.files_for(k)]
            print(f"{name:<13} {hub.size_of(files):>9,.0f} MB  {', '.join(keys)}")
        for key in config.HUB:
            files = hub.files_for(key)
            print(f"  {key:<26} {hub.size_of(files):>9,.0f} MB  {config.HUB[key].describe()}")
        return 0
    names = (["all"] if args.all else []) + list(args.names)
    if not names:
        raise UserError("name what to download: a bundle (" + ", ".join(hub.manifest()["bundles"]) + "), a part, "
                        "or --all (`download --list` shows them with their sizes)")
    got = hub.download(names)
    print(f"total: {len(got)} files, {hub.size_of([f for f, _ in got]):,.0f} MB, in the Hugging Face cache; "
          "the full world now runs offline (HF_HUB_OFFLINE=1)")
    return 0


def parse_lora(text: str) -> tuple[str, float]:
    """``--lora PATH_OR_ID[:ALPHA]`` -> (PATH_OR_ID, ALPHA); ALPHA defaults to 0.8 (the official demo's)
    and is read only when what follows the last ':' is a number (so ``C:\\loras\\x.safetensors`` is a path)."""
    lora, sep, tail = text.rpartition(":")
    if sep:
        try:
            return lora, float(tail)
        except ValueError:
            pass
    if not text.strip():
        raise UserError("--lora needs a LoRA: a name, a .safetensors path or a Hub file, optionally :ALPHA")
    return text, config.PERSONAL_LORA_ALPHA


def cmd_models(args) -> int:
    worlds = [args.world] if args.world else list(config.WORLDS)
    for world in worlds:
        print(f"{world} world:")
        for name, spec in config.MODELS[world].items():
            print(f"  {name:<11} {spec.description}")
            print(
                f"  {'':<11} {spec.scheduler} scheduler, {spec.steps} steps, guidance {spec.guidance}, "
                f"{spec.frames} frames at {spec.width}x{spec.height}"
            )
        print(f"  bases (--base): {', '.join(config.BASES[world])}, or a single-file .safetensors"
              + (", or a Hub id" if world == "full" else ""))
        loras = list(config.PERSONAL_LORAS[world]) or [s for s in STYLES if s != "plain"]
        print(f"  personal LoRAs (--lora NAME[:ALPHA]): {', '.join(loras)}, or a .safetensors file")
    if "toy" in worlds:
        print(f"toy zoo: {zoo.status()}")
    return 0


def cmd_generate(args) -> int:
    suffix = Path(args.out).suffix.lower()
    if suffix not in media.FORMATS:
        raise UserError(f"--out {args.out!r}: use a file name ending in {', '.join(media.FORMATS)}")
    config.setup(world=args.world)
    world = config.current().world
    if world == "toy":
        if not zoo.is_trained():
            print("note: the toy zoo is not trained yet; random-initialised stand-in weights make this video",
                  file=sys.stderr)
    loras = [parse_lora(text) for text in args.lora]
    pipe = pipelines.load_t2v(args.model, lcm_lora_weight=args.lcm_lora_weight, base=args.base, loras=loras)
    if args.motion_lora:
        pipelines.use_motion_lora(pipe, args.motion_lora, args.motion_lora_weight)
    result = pipelines.generate(
        pipe, args.prompt, steps=args.steps, guidance=args.guidance, frames=args.frames,
        height=args.height, width=args.width, seed=args.seed, negative_prompt=args.negative_prompt,
    )
    media.save_video(result.frames, args.out, fps=args.fps)
    f, h, w, _ = result.frames.shape
    print(
        f"wrote {args.out}: {f} frames {w}x{h}, {world} world, model {args.model}"
        + (f", base {args.base}" if args.base else "")
        + "".join(f", LoRA {lora} at {alpha:g}" for lora, alpha in loras)
        + (f", motion LoRA {args.motion_lora}" if args.motion_lora else "") + ", "
        f"{result.steps} steps, guidance {result.guidance:g}, seed {result.seed}, "
        f"{result.unet_evaluations} UNet evaluations, {result.seconds:.2f} s"
    )
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"generate": cmd_generate, "models": cmd_models, "download": cmd_download}[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
