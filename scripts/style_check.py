"""Are the toy styles visible, and do digits stay readable? (the zoo's image-only style LoRAs)

    python scripts/style_check.py [--steps 25] [--guidance 7.5] [--seeds 0 1]

For each style, the image teacher (the zoo's base) draws "a <digit> in <style> style" for every
digit and seed, once with the style's LoRA (weight 0.8, the demo's personal-LoRA default) and
once without; prints the fraction whose style `metrics.read_styles` recognises and whose digit
the metric classifier reads.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from animatelcm_helpers import utils


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--weight", type=float, default=0.8)
    args = p.parse_args(argv)

    from diffusers import StableDiffusionPipeline

    from animatelcm_helpers import config, pipelines
    from animatelcm_helpers.toy import metrics, zoo
    from animatelcm_helpers.toy.data import DIGIT_WORDS, STYLES

    config.setup(world="toy")
    with utils.quiet_loading():
        pipe = StableDiffusionPipeline.from_pretrained(zoo.root() / "base", safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = pipelines.make_scheduler("ddim", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    print("| style | LoRA | style read | digit read |\n|---|---|---|---|")
    for style in (s for s in STYLES if s != "plain"):
        prompts = [f"a {w} in {style} style" for w in DIGIT_WORDS for _ in args.seeds]
        digits = [d for d in range(10) for _ in args.seeds]
        for with_lora in (False, True):
            if with_lora:
                with utils.quiet_loading():
                    pipe.load_lora_weights(str(zoo.root() / "styles"), weight_name=f"{style}.safetensors", adapter_name=style)
                pipe.set_adapters([style], [args.weight])
            gens = [torch.Generator().manual_seed(1000 * s + d) for d in range(10) for s in args.seeds]
            with torch.inference_mode():
                images = pipe(prompts, height=32, width=32, num_inference_steps=args.steps,
                              guidance_scale=args.guidance, generator=gens, output_type="np").images
            images = np.clip(np.round(images * 255), 0, 255).astype(np.uint8)
            style_ok = np.mean([r == style for r in metrics.read_styles(images)])
            digit_ok = np.mean(metrics.read_digits(images[:, None]) == np.array(digits))
            print(f"| {style} | {'yes' if with_lora else 'no'} | {style_ok:.2f} | {digit_ok:.2f} |", flush=True)
            if with_lora:
                pipe.delete_adapters(style)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
