"""Run by tests/test_kill_resume.py: stage-1 LCD on tiny models, 8 steps, a checkpoint every 2;
each step sleeps a little so the test can SIGKILL it mid-run. Writes the final LoRA (safetensors)
to argv[2] when it finishes; argv[1] is the checkpoint folder."""

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from animatelcm_helpers import distill  # noqa: E402
from animatelcm_helpers.toy import configs, recipes  # noqa: E402

torch.set_num_threads(1)
folder, out = sys.argv[1], sys.argv[2]
original = distill.lcd_loss


def slow(*args, **kwargs):
    time.sleep(0.25)
    return original(*args, **kwargs)


distill.lcd_loss = slow
g = torch.Generator().manual_seed(0)
latents, ids = torch.randn(16, 4, 8, 8, generator=g), torch.randint(1, 12, (16,), generator=g)
text = recipes.encode_text(configs.tiny_tokenizer(), configs.tiny_text_encoder(0), recipes.all_captions()[:12])
student, fit = distill.distill_image(folder, configs.tiny_unet(0), latents, ids, text, recipes.noise_scheduler().alphas_cumprod,
                                     steps=8, variant="lora", batch=4, save_every=2, progress=False)
save_file({k: v.contiguous() for k, v in distill.lora_state_dict(student).items()}, out)
print("resumed_from", fit.resumed_from)
