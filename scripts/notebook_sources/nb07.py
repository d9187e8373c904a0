import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).parent))
from common import *

cells = [
header("07_svd_xt.ipynb", "07 · AnimateLCM-SVD-xt: image-to-video in 2 to 4 steps, and the \"8% of SVD\" claim counted",
  ["the **AnimateLCM-SVD-xt scheduler**: Karras noise levels on a 40-point grid, the v-prediction boundary scalings, the model timestep 0.25 ln sigma, stochastic re-noising (`svd.AnimateLCMSVDScheduler`, a real diffusers scheduler that saves and loads)",
   "how `StableVideoDiffusionPipeline` runs with it, and what the **guidance ramp** over frames costs",
   "the compute claim, **counted**: FLOPs of the real-size SVD-xt UNet and temporal VAE decoder at 25 frames 576x1024 on the meta device (no weights), and AnimateLCM-SVD-xt at 1/2/4/8 steps as a fraction of SVD-xt at 25 guided steps"],
  "notebooks 01 and 02 (consistency functions, LCM sampling); EDM's sigma parameterisation helps.",
  "toy world on a CPU: under a minute (the FLOP count needs no weights and no GPU); full world on a GPU (A100 class, 40 GB for fp16 at 576x1024): about a minute per 25-frame video at 4 steps after a 10 GB download."),
*start(),
code('''%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import torch

from animatelcm_helpers import config, media, svd

settings = config.setup(world=WORLD, test_mode=TEST_MODE)
print(settings)'''),
md('''## 1. Noise levels: a Karras grid of 40, and the steps chosen from it

AnimateLCM-SVD-xt was distilled on $N = 40$ Karras noise levels
$\\sigma_i = (\\sigma_\\max^{1/\\rho} + \\tfrac{i}{N-1}(\\sigma_\\min^{1/\\rho} - \\sigma_\\max^{1/\\rho}))^\\rho$ with $\\sigma_\\min = 0.002$,
$\\sigma_\\max = 700$, $\\rho = 7$. Sampling with $n$ steps takes the indices $0, 40/n, 2 \\cdot 40/n, \\ldots$'''),
code('''# NBVAL_CHECK_OUTPUT
for n in (1, 2, 4, 8):
    print(f"{n} step(s): indices {svd.step_indices(n).tolist()}, sigmas {np.round(svd.step_sigmas(n), 3).tolist()}")'''),
code('''grid = svd.karras_sigmas()
fig, ax = plt.subplots(figsize=(8, 2.4))
ax.semilogy(range(40), grid, ".", c="gray", label="the 40-point grid")
for n, m in ((1, "o"), (2, "s"), (4, "^"), (8, "x")):
    ax.semilogy(svd.step_indices(n), svd.step_sigmas(n), m, label=f"{n} steps", ms=8, mfc="none")
ax.set_xlabel("grid index"); ax.set_ylabel("sigma"); ax.legend(fontsize=7); plt.show()'''),
md('''## 2. The consistency function in SVD's v-parameterisation

With $\\sigma_d = 1$: $c_\\text{skip} = 1/(\\sigma^2 + 1)$, $c_\\text{out} = -\\sigma/\\sqrt{\\sigma^2+1}$, the UNet sees
$c_\\text{in} x = x/\\sqrt{\\sigma^2+1}$ at the timestep $0.25 \\ln\\sigma$, and $f = c_\\text{skip} x + c_\\text{out} F$.
One step of the scheduler returns $f$; between steps it re-noises, $x \\leftarrow f + \\sigma_\\text{next} z$.'''),
code('''# NBVAL_CHECK_OUTPUT
for s in (0.002, 0.497, 13.68, 700.0):
    c_skip, c_out, c_in = svd.scalings(torch.tensor(s))
    print(f"sigma {s:7.3f}: c_skip {c_skip.item():.6f}  c_out {c_out.item():+.6f}  c_in {c_in.item():.6f}  timestep {svd.timestep_of(torch.tensor(s)).item():+.4f}")'''),
code('''# NBVAL_CHECK_OUTPUT
import tempfile
scheduler = svd.AnimateLCMSVDScheduler()
scheduler.set_timesteps(4)
with tempfile.TemporaryDirectory() as d:
    scheduler.save_pretrained(d)
    again = svd.AnimateLCMSVDScheduler.from_pretrained(d)
again.set_timesteps(4)
print("saved and loaded, same sigmas:", torch.equal(scheduler.sigmas, again.sigmas), np.round(again.sigmas.double().numpy(), 3).tolist())'''),
md('''## 3. Image-to-video with `StableVideoDiffusionPipeline`

`svd.load_svd()` gives SVD-xt's own pipeline with the AnimateLCM-SVD-xt UNet and this scheduler (full world), or the same
pipeline class built from tiny toy parts (toy world). In the toy world the parts are **random-initialised** for now
(`pipe.svd_note` says so): the pictures below show the plumbing, not a trained model.'''),
code('''pipe = svd.load_svd()
print(pipe.svd_note)
from animatelcm_helpers.toy.data import MovingDigits, to_uint8
first = to_uint8(MovingDigits("test", num_frames=8)[0]["pixel_values"])[0]
result = svd.generate_svd(pipe, first, steps=4, seed=0, min_guidance=1.0, max_guidance=1.0)
print(f"{result.frames.shape[0]} frames, {result.unet_evaluations} UNet evaluations, {result.seconds:.2f} s")
media.show_frames(result.frames, title="4 steps, no guidance")'''),
md('''**The guidance ramp.** The official demo ramps the guidance over frames from 1.0 to 1.2. Any maximum above 1 turns on
classifier-free guidance in the pipeline, so every step then costs **two** UNet evaluations:'''),
code('''# NBVAL_CHECK_OUTPUT
print("ramp over 8 frames:", np.round(svd.guidance_ramp(8, 1.0, 1.2).double().numpy().ravel(), 3).tolist())
ramped = svd.generate_svd(pipe, first, steps=4, seed=0, min_guidance=1.0, max_guidance=1.2)
print("UNet evaluations at 4 steps: no guidance", result.unet_evaluations, "| ramp 1.0 -> 1.2:", ramped.unet_evaluations)'''),
md('''## 4. The claim, counted: what fraction of SVD-xt's work?

`svd.count_svd_flops` builds the **real-size** SVD-xt UNet (1.52 B parameters) and temporal VAE on PyTorch's meta device
(no weights, no memory) and counts the FLOPs of one UNet evaluation at 25 frames 576x1024 and of decoding the 25 frames
with `torch.utils.flop_counter.FlopCounterMode`. SVD-xt samples 25 Euler steps with classifier-free guidance: 50 UNet evaluations.'''),
code('''# NBVAL_CHECK_OUTPUT
flops = svd.count_svd_flops()
print(f"SVD-xt UNet: {flops['unet_params'] / 1e9:.2f} B parameters, {flops['unet_flops'] / 1e12:.1f} TFLOP per evaluation (25 frames, 576x1024)")
print(f"temporal VAE decode of 25 frames: {flops['vae_decode_flops'] / 1e12:.1f} TFLOP")
print(svd.format_cost_table(svd.cost_table(flops=flops)))'''),
md('''At 4 steps AnimateLCM-SVD-xt does **8.0%** of SVD-xt's UNet work (11.8% counting the VAE decode, which both pay once);
at 2 steps 4.0% (8.0%). Wall time follows the FLOPs on a GPU only roughly: `scripts/benchmark_svd.py` measures seconds per
video for both, in one run, on whatever machine it is given (on a CPU at reduced size).

## Summary

- The SVD-xt consistency model samples 1-8 of 40 Karras noise levels, with v-prediction boundary scalings and fresh noise between steps.
- `svd.AnimateLCMSVDScheduler` is a diffusers scheduler: it drops into `StableVideoDiffusionPipeline` and saves/loads its config.
- Counted, not quoted: 4 steps without guidance = 8.0% of SVD-xt's 25 guided steps (UNet work). The demo's guidance ramp doubles that.

## Exercises

1. Compute by hand the sigma at index 20 of the grid and check it against `svd.karras_sigmas()[20]`.
2. Count the FLOPs at 14 frames (SVD, not xt) with `svd.count_svd_flops(frames=14)`. Does the fraction change? Why not?
3. Run `python scripts/benchmark_svd.py` and compare the measured time ratio with the FLOP ratio. Which costs does FLOP counting leave out?'''),
]
write(cells, Path(__file__).parents[2] / "notebooks" / "07_svd_xt.ipynb")
