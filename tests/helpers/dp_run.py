"""Run by tests/test_multiprocess.py, once alone and once under `accelerate launch` with 2 CPU
processes: a few steps of stage-1 and of stage-2 LCD on tiny models; the main process writes the
losses and weight checksums to the JSON file given as argv[1]."""

import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from animatelcm_helpers import distill  # noqa: E402
from animatelcm_helpers.toy import configs, recipes  # noqa: E402

torch.set_num_threads(1)
out = sys.argv[1]
g = torch.Generator().manual_seed(0)
latents, ids = torch.randn(16, 4, 8, 8, generator=g), torch.randint(1, 12, (16,), generator=g)
text = recipes.encode_text(configs.tiny_tokenizer(), configs.tiny_text_encoder(0), recipes.all_captions()[:12])
student, fit = distill.distill_image(out + ".ckpt", configs.tiny_unet(0), latents, ids, text,
                                     recipes.noise_scheduler().alphas_cumprod, steps=3, variant="lora", batch=4,
                                     save_every=100, progress=False)
videos = torch.randn(8, 2, 4, 8, 8, generator=g)
video_student, video_fit = distill.distill_video(out + ".video.ckpt", configs.tiny_unet(0), configs.tiny_motion_adapter(0),
                                                 videos, ids[:8], text, recipes.noise_scheduler().alphas_cumprod, steps=2,
                                                 init_lora=distill.lora_state_dict(student), batch=4, save_every=100,
                                                 progress=False)
if int(os.environ.get("RANK", "0")) == 0:
    lora = distill.lora_state_dict(student)
    motion = {k: v for k, v in video_student.state_dict().items() if "motion_modules" in k}
    with open(out, "w") as f:
        json.dump({"losses": fit.losses, "lora_sum": float(sum(v.double().abs().sum() for v in lora.values())),
                   "video_losses": video_fit.losses,
                   "motion_sum": float(sum(v.double().abs().sum() for v in motion.values())),
                   "world": int(os.environ.get("WORLD_SIZE", "1"))}, f)
