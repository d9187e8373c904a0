"""AnimateLCM's initialisation ablation on the toy world, at equal training compute:

    python scripts/ablation_stage2.py [--steps 150] [--every 50] [--work /tmp/ablation]

Three arms distil the toy video teacher (``distill.distill_video``), all from the same data,
seed and batch:

  (a) decoupled      the stage-1 image LCM LoRA in the ONLINE student only; the EMA target starts
                     without it and takes it in through the EMA (the paper's strategy);
  (b) no stage 1     video consistency distillation from scratch (LoRA and motion modules from
                     zero), given the stage-1 training time on top as extra video steps (an
                     image step and a video step are timed side by side at the start);
  (c) LoRA in both   the stage-1 LoRA in the online student AND the target.

Every ``--every`` steps each arm's student is measured at 4 LCM steps without CFG (40 prompts x
1 seed: digit and direction faithfulness, Frechet distance). Writes
``animatelcm_helpers/results/ablation.json`` and prints the final table. Checkpoints resume.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from animatelcm_helpers import evaluation, utils


def step_seconds(train, n: int = 10, warm: int = 2) -> float:
    """Seconds per training step of ``train(folder, steps)``: (t(warm + n) - t(warm)) / n, each
    run in a fresh temporary folder, so the set-up (copies, first calls) cancels out."""
    import tempfile
    import time

    times = []
    for steps in (warm, warm + n):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            train(Path(tmp), steps)
            times.append(time.perf_counter() - t0)
    return (times[1] - times[0]) / n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=150, help="video distillation steps of arms (a) and (c)")
    p.add_argument("--every", type=int, default=50, help="measure the students every this many steps")
    p.add_argument("--work", type=Path, default=Path("/tmp/ablation"))
    p.add_argument("--arms", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    args = p.parse_args(argv)

    from diffusers import MotionAdapter

    from animatelcm_helpers import config, distill, pipelines, results
    from animatelcm_helpers.toy import recipes, zoo

    config.setup(world="toy")
    root = zoo.root()
    manifest = json.loads((root / "manifest.json").read_text())
    teacher_pipe = pipelines.load_t2v("teacher")
    from diffusers import UNet2DConditionModel

    with utils.quiet_loading():
        unet = UNet2DConditionModel.from_pretrained(root / "base" / "unet").eval()
        adapter = MotionAdapter.from_pretrained(root / "motion-adapter")
    tokenizer, text_encoder = teacher_pipe.tokenizer, teacher_pipe.text_encoder
    text = recipes.encode_text(tokenizer, text_encoder, recipes.all_captions())
    alphas = recipes.noise_scheduler().alphas_cumprod
    latents, ids = recipes.video_teacher_data(teacher_pipe.vae, 0, 2400)
    lora = distill.load_lora_state_dict(root / "image-lcm" / "lcm_lora.safetensors")

    # Equal compute: arm (b) gets stage 1's training time as extra video steps. Both step costs are
    # timed here, side by side in this process (the manifest's wall times depend on what else ran).
    image_latents, image_ids = recipes.image_teacher_data(teacher_pipe.vae, 0, 256)
    image_step_seconds = step_seconds(lambda folder, n: distill.distill_image(
        folder, unet, image_latents, image_ids, text, alphas, n, "lora", progress=False))
    video_step_seconds = step_seconds(lambda folder, n: distill.distill_video(
        folder, unet, adapter, latents, ids, text, alphas, n, init_lora=lora, progress=False))
    stage1_seconds = manifest["stages"]["stage1"]["steps"] * image_step_seconds
    extra = round(stage1_seconds / video_step_seconds)
    print(f"image step {image_step_seconds:.3f} s, video step {video_step_seconds:.3f} s: stage 1 = {extra} video steps", flush=True)
    arms = {
        "a": ("(a) decoupled: stage-1 LoRA in the online student only", dict(init_lora=lora, lora_in_target=False), args.steps),
        "b": ("(b) no stage 1: video distillation from scratch", dict(init_lora=None), args.steps + extra),
        "c": ("(c) stage-1 LoRA in online and target", dict(init_lora=lora, lora_in_target=True), args.steps),
    }
    out = {"what": "toy video distillation ablation; students measured at 4 LCM steps, no CFG, 40 prompts x 1 seed",
           "steps": args.steps, "extra_steps_for_b": extra, "stage1_steps": manifest["stages"]["stage1"]["steps"],
           "stage1_seconds": round(stage1_seconds, 1), "image_step_seconds": round(image_step_seconds, 3),
           "video_step_seconds": round(video_step_seconds, 3), "arms": {}, "created": results.stamp()}
    try:
        out["arms"] = results.load("ablation")["arms"]  # keep finished arms of an earlier run
    except config.UserError:
        pass
    for key in args.arms:
        label, kw, steps = arms[key]
        curve = []

        def measure(step, student, key=key, label=label, curve=curve, steps=steps):
            if step % args.every and step != steps:
                return
            student.eval()
            row = evaluation.evaluate(pipelines.with_unet(teacher_pipe, student, "lcm"), 4, 1.0, seeds=(0,), label=label)
            student.train()
            # the compute axis: stage 1's training time comes first for (a) and (c)
            spent = step * video_step_seconds + (0 if key == "b" else stage1_seconds)
            curve.append({"step": step, "compute_seconds": round(spent, 1),
                          **{k: row[k] for k in ("digit", "direction", "both", "frechet")}})
            print(f"[{key}] step {step}: {curve[-1]}", flush=True)

        student, fit = distill.distill_video(args.work / key, unet, adapter, latents, ids, text, alphas, steps, seed=0,
                                             save_every=args.every, progress=False, on_save=measure, **kw)
        out["arms"][key] = {"label": label, "steps": steps, "seconds": round(fit.total_seconds, 1), "curve": curve}
        results.save("ablation", out)
    print("| arm | video steps | digit | direction | Frechet |\n|---|---|---|---|---|")
    for key, arm in sorted(out["arms"].items()):
        last = arm["curve"][-1] if arm["curve"] else {}
        print(f"| {arm['label']} | {arm['steps']} | {last.get('digit')} | {last.get('direction')} | {last.get('frechet')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
