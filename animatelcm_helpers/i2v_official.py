"""AnimateLCM-I2V on its official weights, in the full world: the files from the Hub, the
checkpoint converted ONCE into the cache, and the pipeline on any SD1.5 base with personal LoRAs.

The official repository ships no diffusers weights (``config.HUB["animatelcm_i2v"]``): one pickle,
``AnimateLCM_sd15_i2v.ckpt``, with the motion modules in AnimateDiff's original names and the image
encoder (``img_encoder.*``), and a kohya-style spatial LCM LoRA (``config.HUB["animatelcm_i2v_lora"]``).
:func:`converted_folder` reads the pickle once with ``torch.load(weights_only=True)``
(``i2v.convert_official_checkpoint``) and keeps the safetensors it writes in ``config.cache_dir()``,
named by the checkpoint's content hash (its Hugging Face cache blob), so every later load reads
safetensors only. The motion modules' attention heads and GroupNorm groups leave no trace in the
tensors' shapes; they are the text-to-video AnimateLCM adapter's (its ``config.json``,
``config.HUB["animatelcm_motion_config"]``: 8 and 32 for the real one), the architecture both share
(``inference-i2v.yaml``: ``num_attention_heads: 8``).

    pipe = i2v_official.pipeline(base="realistic-vision", loras=[("pixel-art", 0.8)])
    out = i2v.generate_i2v(pipe, image, "best quality", motion_scale=0.8, steps=4)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import config, hub, i2v, loading, pipelines

CACHE_FOLDER = "animatelcm-i2v"  # under config.cache_dir()


def converted_folder() -> Path:
    """The folder with ``motion_adapter/`` and ``image_encoder/`` (safetensors) converted from the
    official checkpoint; downloaded (when the Hub is reachable) and converted the first time, reused after."""
    ckpt = Path(hub.hub_file(config.HUB["animatelcm_i2v"], "AnimateLCM-I2V checkpoint"))
    motion = json.loads(Path(hub.hub_file(config.HUB["animatelcm_motion_config"],
                                          "AnimateLCM motion adapter config")).read_text())
    blob = Path(os.path.realpath(ckpt)).name  # the cache's blob: named by the file's hash
    out = config.cache_dir() / CACHE_FOLDER / blob[:24]
    if all((out / part / "config.json").is_file() for part in ("motion_adapter", "image_encoder")):
        return out
    return i2v.convert_official_checkpoint(ckpt, out, motion_heads=int(motion["motion_num_attention_heads"]),
                                           motion_norm_groups=int(motion["motion_norm_num_groups"]), overwrite=True)


def pipeline(base=None, loras=(), lcm_lora_weight: float = i2v.LCM_LORA_WEIGHT, device: str | None = None):
    """The official AnimateLCM-I2V as an ``AnimateDiffPipeline`` ready for ``i2v.generate_i2v``:
    ``base`` as ``load_t2v``'s (a name of ``config.BASES["full"]``, a Hub id, a single-file
    DreamBooth ``.safetensors``; default epiCRealism), its I2V LCM LoRA at ``lcm_lora_weight``
    (the demo's 0.8), ``loras`` personal LoRAs beside it (``pipelines.add_loras``)."""
    settings = config.with_world("full")
    weights = pipelines.base_weights(base, "full") if base is not None else config.BASES["full"]["epicrealism"]
    base_pipe = loading.load_base(weights, settings.dtype, world="full")
    pipe = i2v.image_to_video_pipeline("full", device, converted=converted_folder(),
                                       lcm_lora=config.HUB["animatelcm_i2v_lora"], lcm_lora_weight=lcm_lora_weight,
                                       base=base_pipe)
    pipelines.add_loras(pipe, loras, "full")
    return pipe
