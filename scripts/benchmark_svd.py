"""Time AnimateLCM-SVD-xt against SVD-xt: seconds per video next to the counted-FLOP ratio.

    python scripts/benchmark_svd.py                   # a CUDA GPU: SVD-xt size, fp16, 25 frames 576x1024
    python scripts/benchmark_svd.py --small           # any machine: the toy-size UNet and VAE, float32
    python scripts/benchmark_svd.py --steps 1 2 4 8 --baseline-steps 25 --repeats 3

Rows: the baseline, SVD-xt's Euler sampler (``svd_scheduler.euler_baseline_scheduler``) at 25 steps with
classifier-free guidance (2 UNet evaluations a step, guidance ramp 1.0 -> 3.0 over frames), then
``AnimateLCMSVDScheduler`` at each of ``--steps`` without CFG (1 evaluation a step); ``--also-cfg``
adds the same steps with the demo's ramp 1.0 -> 1.2, which SVD's pipeline runs as CFG too.
Each row is one video: the sampling loop, then decoding all frames in chunks of
``--decode-chunk`` (the demo's 4). "time ratio" is the row's total time over the baseline's;
"FLOP ratio" the same ratio of ``svd.count_svd_flops`` counts (UNet evaluations x a UNet
evaluation + the decode).

RANDOM weights, nothing downloaded: the UNet (``UNetSpatioTemporalConditionModel``) and the
temporal VAE (``AutoencoderKLTemporalDecoder``) are built from SVD-xt's configs (or, with
``--small``, the toy ones) and called directly in a sampling loop written like the pipeline's,
not through ``StableVideoDiffusionPipeline``: there is no CLIP image encoder, the conditioning
image's latent and embedding are random tensors of the right shapes. Time does not depend on the
weights' values, so this measures what the real models cost. Without a CUDA GPU the script runs
the small benchmark and says so.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from animatelcm_helpers import svd_scheduler


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", nargs="+", type=int, default=[1, 2, 4, 8], help="AnimateLCM steps, one row each")
    p.add_argument("--baseline-steps", type=int, default=25, help="Euler steps of the SVD-xt baseline (with CFG)")
    p.add_argument("--frames", type=int, help="frames (default 25; 8 with --small)")
    p.add_argument("--height", type=int, help="pixels (default 576; 32 with --small)")
    p.add_argument("--width", type=int, help="pixels (default 1024; 32 with --small)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per row first")
    p.add_argument("--decode-chunk", type=int, default=4, help="frames the VAE decodes at a time (demo: 4)")
    p.add_argument("--small", action="store_true", help="toy-size UNet and VAE (automatic without CUDA)")
    p.add_argument("--also-cfg", action="store_true", help="add AnimateLCM rows with the demo's CFG ramp 1.0 -> 1.2")
    p.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    return p


def build(cls, cfg: dict, device: str, dtype: torch.dtype, seed: int = 0):
    """``cls(**cfg)`` with random weights, made directly on ``device`` (fast even at 1.5 B parameters)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls(**cfg)
    return model.to(device=device, dtype=dtype).eval()  # .to: a few parameters are made on the CPU


def toy_configs() -> tuple[dict, dict]:
    from animatelcm_helpers.toy import configs

    def plain(model):
        return {k: v for k, v in model.config.items() if not k.startswith("_")}

    return plain(configs.tiny_svd_unet()), plain(configs.tiny_temporal_vae())


def sample(unet, scheduler, cond: dict, steps: int, ramp, cfg: bool, generator) -> torch.Tensor:
    """The pipeline's denoising loop on one video: latents (1, F, 4, h, w) from s_max noise."""
    image_latents, embeds, time_ids = cond["image_latents"], cond["embeds"], cond["time_ids"]
    if cfg:  # unconditional half first, as the pipeline batches it
        image_latents = torch.cat([torch.zeros_like(image_latents), image_latents])
        embeds = torch.cat([torch.zeros_like(embeds), embeds])
        time_ids = torch.cat([time_ids, time_ids])
    scheduler.set_timesteps(steps, device=image_latents.device)
    shape = cond["image_latents"].shape
    latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(image_latents) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = torch.cat([latents] * 2) if cfg else latents
        x = torch.cat([scheduler.scale_model_input(x, t), image_latents], dim=2)
        out = unet(x, t, encoder_hidden_states=embeds, added_time_ids=time_ids, return_dict=False)[0]
        if cfg:
            uncond, cond_out = out.chunk(2)
            out = uncond + ramp * (cond_out - uncond)
        latents = scheduler.step(out, t, latents, generator=generator).prev_sample
    return latents


def decode(vae, latents: torch.Tensor, chunk: int) -> torch.Tensor:
    z = latents.flatten(0, 1) / vae.config.scaling_factor
    return torch.cat([vae.decode(z[i : i + chunk], num_frames=len(z[i : i + chunk])).sample for i in range(0, len(z), chunk)])


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_row(unet, vae, scheduler, cond, steps, ramp, cfg, args, device) -> tuple[float, float]:
    """Median (sampling seconds, decoding seconds) for one video."""
    times = []
    for run in range(args.warmup + args.repeats):
        generator = torch.Generator("cpu").manual_seed(run)
        sync(device)
        t0 = time.perf_counter()
        latents = sample(unet, scheduler, cond, steps, ramp, cfg, generator)
        sync(device)
        t1 = time.perf_counter()
        decode(vae, latents, args.decode_chunk)
        sync(device)
        if run >= args.warmup:
            times.append((t1 - t0, time.perf_counter() - t1))
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from animatelcm_helpers import svd
    from animatelcm_helpers.config import UserError
    from animatelcm_helpers.pipelines import quiet_loading

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    small = args.small or not device.startswith("cuda")
    if small and not args.small:
        print(f"no CUDA GPU (device {device}): running the SMALL benchmark (toy-size models); "
              "pass --device cuda on a GPU machine for SVD-xt size")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    unet_cfg, vae_cfg = toy_configs() if small else (svd.svd_xt_unet_config(), svd.svd_xt_vae_config())
    frames = args.frames or (8 if small else 25)
    height, width = args.height or (32 if small else 576), args.width or (32 if small else 1024)
    try:
        for n in args.steps:
            svd_scheduler.step_indices(n)
        if args.baseline_steps < 1 or args.repeats < 1 or args.warmup < 0 or args.decode_chunk < 1:
            raise UserError("--baseline-steps, --repeats and --decode-chunk must be at least 1, --warmup at least 0")
        flops = svd.count_svd_flops(frames, height, width, unet_cfg, vae_cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if frames > unet_cfg["num_frames"]:
        print(f"note: {frames} frames is more than the {unet_cfg['num_frames']} the UNet's config was made for")

    with quiet_loading():  # diffusers warns about casting with .to(); nothing here must stay float32
        unet = build(UNetSpatioTemporalConditionModel, unet_cfg, device, dtype)
        vae = build(AutoencoderKLTemporalDecoder, vae_cfg, device, dtype, seed=1)
    factor = svd.vae_factor(vae_cfg)
    g = torch.Generator("cpu").manual_seed(0)
    latent_shape = (1, frames, vae_cfg["latent_channels"], height // factor, width // factor)
    cond = {
        "image_latents": torch.randn(latent_shape, generator=g).to(device, dtype),
        "embeds": torch.randn(1, 1, unet_cfg["cross_attention_dim"], generator=g).to(device, dtype),
        "time_ids": torch.tensor([[8 - 1, 80, 0.02]], device=device, dtype=dtype),  # fps - 1, motion bucket, aug
    }

    def ramp(lo, hi):
        return svd.guidance_ramp(frames, lo, hi).to(device, dtype).reshape(1, frames, 1, 1, 1)

    rows = [("SVD-xt Euler", svd_scheduler.euler_baseline_scheduler(), args.baseline_steps, True, ramp(1.0, 3.0))]
    rows += [("AnimateLCM-SVD-xt", svd_scheduler.AnimateLCMSVDScheduler(), n, False, None) for n in args.steps]
    if args.also_cfg:
        rows += [("AnimateLCM-SVD-xt, ramp 1->1.2", svd_scheduler.AnimateLCMSVDScheduler(), n, True, ramp(1.0, 1.2)) for n in args.steps]

    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    params = sum(p.numel() for p in unet.parameters())
    print(f"device: {name} | dtype: {str(dtype).removeprefix('torch.')} | "
          f"{'SMALL (toy-size models)' if small else 'SVD-xt size'}: UNet {params / 1e6:,.1f} M params, "
          f"{frames} frames {height}x{width}, decode chunk {args.decode_chunk} | random weights | "
          f"median of {args.repeats} after {args.warmup} warm-up")
    unet_f, vae_f = flops["unet_flops"], flops["vae_decode_flops"]
    print(f"counted: {unet_f / 1e12:.4g} TFLOP a UNet evaluation, {vae_f / 1e12:.4g} TFLOP the decode\n")
    print("| sampler | steps | CFG | UNet evals | sampling s | decode s | total s | time ratio | FLOP ratio "
          "| UNet time ratio | UNet FLOP ratio |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = None
    with torch.inference_mode():
        for label, scheduler, steps, cfg, gramp in rows:
            unet_s, vae_s = time_row(unet, vae, scheduler, cond, steps, gramp, cfg, args, device)
            evals = steps * (2 if cfg else 1)
            base = base or (unet_s, vae_s, evals)
            total, base_total = unet_s + vae_s, base[0] + base[1]
            flop_ratio = (evals * unet_f + vae_f) / (base[2] * unet_f + vae_f)
            print(f"| {label} | {steps} | {'yes' if cfg else 'no'} | {evals} | {unet_s:.3f} | {vae_s:.3f} | {total:.3f} "
                  f"| {100 * total / base_total:.1f}% | {100 * flop_ratio:.1f}% | {100 * unet_s / base[0]:.1f}% "
                  f"| {100 * evals / base[2]:.1f}% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
