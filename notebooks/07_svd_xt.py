# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · AnimateLCM-SVD-xt: image-to-video in 2 to 4 steps, and what its cost claim counts
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/animatelcm-runnable/animatelcm-runnable/blob/main/notebooks/07_svd_xt.ipynb)
#
# **What you will learn**
#
# - the **AnimateLCM-SVD-xt scheduler**: Karras noise levels on a 40-point grid, the v-prediction boundary scalings, the model timestep $0.25 \ln\sigma$, fresh noise between steps (`svd_scheduler.AnimateLCMSVDScheduler`, a real diffusers scheduler that saves and loads; its `step` is shown on the page)
# - how `StableVideoDiffusionPipeline` runs with it, what the model is conditioned on, and what the official app sets (fps, resize-and-crop, model offload)
# - the cost claim, taken apart: the UNet share is $n/50$ by construction ($2n/50$ with the official demo's **guidance ramp**, which turns classifier-free guidance on); FLOPs, counted on PyTorch's meta device, are needed only for what every video pays once (the VAE decode of 25 frames, the VAE encode of the input, the CLIP image encoder)
# - the official distillation recipe at toy size (`svd_distill.svd_cd_loss`, shown on the page), and how to read its table with 95 % intervals
#
# **Prerequisites:** notebooks 01 and 02 (consistency functions, LCM sampling); EDM's $\sigma$ parameterisation helps
# (section 1 maps it to the other notebooks' time).
#
# **Run time:** toy world on a CPU: about a minute and a half (test mode: under two minutes; the FLOP counts need no weights
# and no GPU). Full world on a GPU: **unmeasured** (no GPU was lent to this project's runs); section 3 prints the download size
# and the memory plan the package picks for a GPU's memory, both estimates.
#
# **Notation and terms**: the course's one notation is in [docs/NOTATION.md](../docs/NOTATION.md), its terms in
# [docs/GLOSSARY.md](../docs/GLOSSARY.md) (on Colab: [NOTATION.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/NOTATION.md),
# [GLOSSARY.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/GLOSSARY.md)).
# **Time in this notebook is a noise level $\sigma$** (NOTATION's convention 2, SVD-xt's EDM form $x = x_0 + \sigma z$):
# notebook 01 writes the same quantity $t$; notebooks 02 to 06 use discrete timesteps, which map to $\sigma$ by
# $\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}$ (section 1 prints the map). $n$ is the number of sampling steps, $N = 40$
# the number of grid points.
#
# **What this notebook does not show** (said here, shown with numbers where they come):
#
# - **No speed-up in seconds at full size.** The compute claim is counted (UNet evaluations, FLOPs); wall time on a GPU is
#   unmeasured. The toy's seconds are CPU seconds of tiny models, where fixed costs weigh more (exercise 4).
# - **No quality gap between the student and its teacher** on the toy's measures: on digit and direction every row of the
#   table is a tie at the table's sample size (section 5), the teacher at 1 and 2 steps included, so the toy does not show
#   that the undistilled teacher fails at few steps on these measures. The Frechet column, where the teacher at 1 and
#   2 steps is farthest from the real videos, has no stored interval, so this notebook draws no conclusion from it
#   (section 5 says, row by row, whether the table stores one).
# - **The digit is often lost, by teacher and student alike**: real videos of the same inputs are read right far more often
#   (section 5 prints both). That is the toy SVD's limit (a UNet of under a million parameters, trained on a CPU in
#   well under an hour), not AnimateLCM's.
# - **Direction does not separate the models**: the input image's trail shows the way, and every model follows it.
# - **The full world** is run here only against a fake Hub with tiny random weights (README, "The full world, tested
#   offline"); its memory figures are estimates.

# %%
# Colab: install the course's helpers only where they are missing.
import importlib.util, subprocess, sys
if importlib.util.find_spec("animatelcm_helpers") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           "git+https://github.com/animatelcm-runnable/animatelcm-runnable"])

# %% tags=["parameters"]
WORLD = None  # "toy" or "full"; None picks automatically (full only with a GPU and the Hub)
TEST_MODE = None  # True shortens training loops (CI sets ANIMATELCM_TEST_MODE=1)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import PIL.Image
import torch

from animatelcm_helpers import config, evaluation, hub, lcm, loading, media, results, svd, svd_distill, svd_scheduler, utils
from animatelcm_helpers.toy import metrics
from animatelcm_helpers.toy import svd as toy_svd

settings = config.setup(world=WORLD, test_mode=TEST_MODE)
print(settings)

# %% [markdown]
# ## 1. Noise levels: a Karras grid of 40, and the steps chosen from it
#
# SVD-xt is an [EDM](../docs/GLOSSARY.md) model: a sample at noise level $\sigma$ is $x = x_0 + \sigma z$ (larger is noisier).
# AnimateLCM-SVD-xt was distilled on $N = 40$ noise levels of the **Karras grid** (EDM's spacing, dense at low noise),
# indexed from the noisy end like notebook 01's $t_i$:
# $\sigma_i = (\sigma_\max^{1/\rho} + \tfrac{i}{N-1}(\sigma_\min^{1/\rho} - \sigma_\max^{1/\rho}))^\rho$, $i = 0 .. N-1$, with $\sigma_\min = 0.002$,
# $\sigma_\max = 700$, $\rho = 7$. Sampling with $n$ steps takes the indices $0, N/n, 2N/n, \ldots$ (`step_indices`: the stride is $N/n$,
# so 4 steps visit every 10th point and 8 steps every 5th).

# %%
# NBVAL_CHECK_OUTPUT
for n in (1, 2, 4, 8):
    print(f"{n} step(s): indices {svd_scheduler.step_indices(n).tolist()}, sigmas {np.round(svd_scheduler.step_sigmas(n), 3).tolist()}")

# %%
grid = svd_scheduler.karras_sigmas()
fig, ax = plt.subplots(figsize=(8, 2.4))
ax.semilogy(range(40), grid, ".", c="gray", label="the 40-point grid")
for n, m in ((1, "o"), (2, "s"), (4, "^"), (8, "x")):
    ax.semilogy(svd_scheduler.step_indices(n), svd_scheduler.step_sigmas(n), m, label=f"{n} steps", ms=8, mfc="none")
ax.set_xlabel("grid index"); ax.set_ylabel("sigma"); ax.legend(fontsize=7); plt.show()

# %% [markdown]
# **The same time in the other notebooks' terms** ([NOTATION.md](../docs/NOTATION.md), "Time"). Stable Diffusion's discrete
# timestep $t$ with $\bar\alpha_t$ ([alpha-bar](../docs/GLOSSARY.md): the share of signal power left) is a noise level too:
# dividing $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,z$ by $\sqrt{\bar\alpha_t}$ gives $x_0 + \sigma_t z$ with
# $\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}$. SVD-xt's UNet is not told $\sigma$ itself but $0.25 \ln\sigma$ (EDM's
# $c_\text{noise}$); that number is the "timestep" its scheduler hands the pipeline.

# %%
abar = lcm.alphas_cumprod()  # SD1.5's scaled-linear schedule, discrete t = 0 .. 999
for t in (999, 499, 0):
    print(f"SD1.5 discrete t = {t:3d}: alpha-bar {abar[t].item():.4f} -> sigma {((1 - abar[t]) / abar[t]).sqrt().item():6.2f}")
print(f"SVD-xt's grid: sigma {svd_scheduler.SIGMA_MAX:g} down to {svd_scheduler.SIGMA_MIN:g}; "
      f"the UNet's timestep input 0.25 ln sigma runs {svd_scheduler.timestep_of(svd_scheduler.SIGMA_MAX):+.3f} .. "
      f"{svd_scheduler.timestep_of(svd_scheduler.SIGMA_MIN):+.3f}")

# %% [markdown]
# ## 2. The consistency function in SVD's v-parameterisation
#
# A [consistency function](../docs/GLOSSARY.md) $f(x, \sigma)$ maps a noisy sample to the clean end of its ODE trajectory.
# SVD's UNet $F$ is a [v-prediction](../docs/GLOSSARY.md) network; with $\sigma_d = 1$ the boundary scalings are
# $c_\text{skip} = 1/(\sigma^2 + 1)$, $c_\text{out} = -\sigma/\sqrt{\sigma^2+1}$, the UNet sees
# $c_\text{in} x = x/\sqrt{\sigma^2+1}$ at the timestep $0.25 \ln\sigma$, and $f = c_\text{skip} x + c_\text{out} v$ with $v = F(c_\text{in} x, 0.25\ln\sigma)$.
# One step of the scheduler from $\sigma$ to the next chosen level $\sigma_\text{next}$ returns $f$ and re-noises it with fresh
# noise, $x \leftarrow f + \sigma_\text{next} z$ (**multistep sampling**); the last step returns $f$. In the code, $x$ is `sample`,
# $v$ is `model_output` (the UNet's output on `scale_model_input`'s $c_\text{in} x$, combined by CFG when it is on), $\sigma$ and
# $\sigma_\text{next}$ are `self.sigmas[i]` and `self.sigmas[i + 1]`, $z$ is `noise`, and $f$ is `denoised`:

# %%
media.show_code(svd_scheduler.scalings, svd_scheduler.AnimateLCMSVDScheduler.step)

# %% [markdown]
# The boundary condition $f(x, \sigma_\min) \approx x$ holds because $c_\text{skip}(0.002) \approx 1$ and $c_\text{out}(0.002) \approx 0$; at
# $\sigma_\max$ the output is almost all network:

# %%
# NBVAL_CHECK_OUTPUT
for s in (0.002, 0.497, 13.68, 700.0):
    c_skip, c_out, c_in = svd_scheduler.scalings(torch.tensor(s))
    print(f"sigma {s:7.3f}: c_skip {c_skip.item():.6f}  c_out {c_out.item():+.6f}  c_in {c_in.item():.6f}  timestep {svd_scheduler.timestep_of(torch.tensor(s)).item():+.4f}")

# %% [markdown]
# It is a diffusers scheduler: its settings are a config that saves and loads.

# %%
# NBVAL_CHECK_OUTPUT
import tempfile
scheduler = svd_scheduler.AnimateLCMSVDScheduler()
scheduler.set_timesteps(4)
with tempfile.TemporaryDirectory() as d:
    scheduler.save_pretrained(d)
    again = svd_scheduler.AnimateLCMSVDScheduler.from_pretrained(d)
again.set_timesteps(4)
print("saved and loaded, same sigmas:", torch.equal(scheduler.sigmas, again.sigmas), np.round(again.sigmas.double().numpy(), 3).tolist())

# %% [markdown]
# ## 3. Image-to-video with `StableVideoDiffusionPipeline`
#
# `svd.load_svd()` gives SVD-xt's own pipeline with the AnimateLCM-SVD-xt UNet and this scheduler (full world), or the same
# pipeline class at toy size (toy world): the toy zoo's SVD-xt stand-in with its **distilled** UNet swapped in, exactly as the
# full world swaps the AnimateLCM-SVD-xt UNet into SVD-xt (`pipe.svd_note` says what was loaded; section 5 shows how
# the toy teacher and student were trained).
#
# **What the model is conditioned on.** SVD has no prompt. It sees the input image twice (its CLIP image embedding as
# cross-attention context, and its VAE latent concatenated to the noisy latents of every frame) and three numbers,
# `added_time_ids`: the frame rate minus one, the [motion bucket](../docs/GLOSSARY.md) (how much motion) and the
# [noise augmentation](../docs/GLOSSARY.md) added to the image. The input here is the first frame of a held-out Moving
# Digits video; it is shown beside the video made from it.

# %%
pipe = svd.load_svd()
print(pipe.svd_note)
from animatelcm_helpers.toy.data import MovingDigits, to_uint8
first = to_uint8(MovingDigits("test", num_frames=8)[0]["pixel_values"])[0]
result = svd.generate_svd(pipe, first, steps=4, seed=0, min_guidance=1.0, max_guidance=1.0)
print(f"conditioning: the image, fps - 1 = {pipe.svd_fps - 1}, motion bucket {config.SVD_DEMO['motion_bucket_id']}, "
      f"noise augmentation {config.SVD_DEMO['noise_aug_strength']}")
print(f"{result.frames.shape[0]} frames, {result.unet_evaluations} UNet evaluations, {result.seconds:.2f} s")
media.show_rows({"input image": first[None], "4 steps, no guidance": result.frames})

# %% [markdown]
# **The guidance ramp.** [Classifier-free guidance](../docs/GLOSSARY.md) (CFG) runs the UNet with and without the image
# condition and moves the prediction by a scale $s$ ($s = 1$: no guidance). SVD's pipeline gives every frame its own scale,
# a linear **ramp** from `min_guidance` on the first frame to `max_guidance` on the last. The official demo ramps from 1.0
# to 1.2. Any maximum above 1 turns classifier-free guidance on in the pipeline, so every step then costs **two** UNet
# evaluations:

# %%
# NBVAL_CHECK_OUTPUT
print("ramp over 8 frames:", np.round(svd.guidance_ramp(8, 1.0, 1.2).double().numpy().ravel(), 3).tolist())
ramped = svd.generate_svd(pipe, first, steps=4, seed=0, min_guidance=1.0, max_guidance=1.2)
print("UNet evaluations at 4 steps: no guidance", result.unet_evaluations, "| ramp 1.0 -> 1.2:", ramped.unet_evaluations)

# %% [markdown]
# **The official app's settings** (`animatelcm_svd/app.py` of the AnimateLCM repository, which the full world follows):
#
# - it passes no `fps`, so diffusers' default of 7 applies and the UNet is conditioned on fps - 1 = 6; the toy SVD was
#   trained at 8 frames a second, so the toy world conditions on 7 (`config.SVD_FPS`);
# - it resizes the input to cover 1024 x 576 keeping its aspect ratio and crops the middle (`svd.fit_image`;
#   `StableVideoDiffusionPipeline` alone would squeeze the image instead);
# - it runs with **model offload** (`enable_model_cpu_offload`: one model on the GPU at a time, the rest in CPU memory).
#   `loading.memory_plan` picks offload and the **decoding chunk** (frames the temporal VAE decodes at a time) from the GPU's
#   memory. Its thresholds are estimates from the weights' sizes, **unmeasured** (README, "The full world, tested offline"):
#   `scripts/benchmark_full.py` measures the peak where a GPU is lent.

# %%
print("fps the UNet is conditioned on (fps - 1):", {world: fps - 1 for world, fps in config.SVD_FPS.items()})
print("the official demo's values:", config.SVD_DEMO)
photo = PIL.Image.new("RGB", (1600, 1200))  # a 4:3 photo
print("a 1600 x 1200 photo, fit_image(photo, 1024, 576) ->", svd.fit_image(photo, 1024, 576).size)
for gib in (80, 40, 24, 16):
    print(f"memory plan for a {gib} GiB GPU (estimate):", loading.memory_plan("svd", "cuda", total_gib=gib))
files = [f for key in hub.expand(["svd"]) for f in hub.files_for(key)]
print(f"full-world download (the 'svd' bundle, {len(files)} files): {hub.size_of(files) / 1e3:.1f} GB")

# %% [markdown]
# ## 4. The claim, taken apart: what fraction of SVD-xt's work?
#
# SVD-xt samples 25 Euler steps with classifier-free guidance: 50 UNet evaluations. AnimateLCM-SVD-xt at $n$ steps without
# guidance makes $n$, so its share of the UNet work is $n/50$ **by construction**, with no counting (each evaluation is the
# same network on the same input size); with the demo's ramp it makes $2n$, a share of $2n/50$. What FLOPs add is the
# work every video pays **once**, whatever the steps: the temporal VAE decoding the 25 frames, the VAE encoding the input
# image, and the CLIP image encoder. `svd.count_svd_flops` builds the **real-size** SVD-xt UNet (1.52 B parameters) and
# temporal VAE on PyTorch's **meta device** (tensors with shapes and no data: no weights, no memory) and counts, with
# `torch.utils.flop_counter.FlopCounterMode` (a multiply-add is 2 FLOPs), one UNet evaluation at 25 frames 576x1024 and the
# decode of the 25 frames:

# %%
# NBVAL_CHECK_OUTPUT
flops = svd.count_svd_flops()
print(f"SVD-xt UNet: {flops['unet_params'] / 1e9:.2f} B parameters, {flops['unet_flops'] / 1e12:.1f} TFLOP per evaluation (25 frames, 576x1024)")
print(f"temporal VAE decode of 25 frames: {flops['vae_decode_flops'] / 1e12:.1f} TFLOP")
print(svd.format_cost_table(svd.cost_table(flops=flops)))

# %% [markdown]
# `count_svd_flops` leaves out the two encoders. They are counted here the same way: the VAE's encoder on the
# 576x1024 input, and SVD-xt's image encoder (CLIP ViT-H/14 at 224 px, its `image_encoder/config.json` written out below;
# its parameter count matches the Hub file's size, 2 bytes a parameter in fp16). The pipeline runs each once a video,
# guided or not (the unconditional branch uses zeros, not a second encoding).

# %%
from diffusers import AutoencoderKLTemporalDecoder
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

clip_config = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
                               patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu")
with torch.device("meta"):
    clip = CLIPVisionModelWithProjection(clip_config).to("meta").eval()
vae = svd.on_meta(AutoencoderKLTemporalDecoder, svd.svd_xt_vae_config())
with torch.device("meta"), torch.no_grad():
    encoders = {"CLIP image encoder, 224 px": utils.count_flops(clip, torch.empty(1, 3, 224, 224)),
                "VAE encoder, 576x1024": utils.count_flops(vae.encode, torch.empty(1, 3, 576, 1024))}
clip_file = next(f for f in files if f.path == "image_encoder/model.fp16.safetensors")
print(f"CLIP image encoder: {sum(p.numel() for p in clip.parameters()) / 1e9:.3f} B parameters = "
      f"{2 * sum(p.numel() for p in clip.parameters()) / 1e9:.2f} GB in fp16 (the Hub file: {clip_file.size_mb / 1e3:.2f} GB)")
for name, value in encoders.items():
    print(f"{name}: {value / 1e12:.2f} TFLOP, once a video")

# %% [markdown]
# The full table, both ways the student can run (without CFG, and with the demo's ramp), as fractions of SVD-xt's
# 50 evaluations. With $U$ one UNet evaluation, $D$ the decode and $E$ the two encoders:
# $\text{share} = (e\,U + D + E) / (50\,U + D + E)$ for $e$ evaluations. The cell checks its no-CFG columns against
# `svd.cost_table`.

# %%
U, D, E = flops["unet_flops"], flops["vae_decode_flops"], sum(encoders.values())


def share(evals, once):
    """The fraction of SVD-xt's work (25 Euler steps with CFG: 50 UNet evaluations) that `evals` evaluations are."""
    return (evals * U + once) / (50 * U + once)


lines = ["| model | steps | guidance | UNet evals | UNet work | + VAE decode | + decode and encoders |", "|---|---:|---|---:|---:|---:|---:|",
         "| SVD-xt, Euler | 25 | ramp 1 -> 3 (CFG) | 50 | 100.0% | 100.0% | 100.0% |"]
costs = {}
for n in (1, 2, 4, 8):
    for guidance, evals in (("none", n), ("ramp 1.0 -> 1.2 (CFG)", 2 * n)):
        costs[n, guidance != "none"] = (evals / 50, share(evals, D), share(evals, D + E))
        lines.append(f"| AnimateLCM-SVD-xt | {n} | {guidance} | {evals} | " + " | ".join(f"{100 * c:.1f}%" for c in costs[n, guidance != "none"]) + " |")
print("\n".join(lines))
for row in svd.cost_table(flops=flops)[1:]:  # the helper's rows (no CFG) agree
    assert np.allclose(costs[row["steps"], False][:2], (row["unet_fraction"], row["fraction_with_vae"]))

# %%
plain, ramp = costs[4, False], costs[4, True]
media.show_markdown(
    f"At 4 steps without guidance AnimateLCM-SVD-xt does **{100 * plain[0]:.1f}%** of SVD-xt's UNet work "
    f"({100 * plain[2]:.1f}% counting everything each video pays once). **The official demo runs with the ramp**, "
    f"so it does **{100 * ramp[0]:.1f}%** ({100 * ramp[2]:.1f}%): the share without guidance holds only with "
    f"`max_guidance=1`. The encoders add {E / 1e12:.1f} TFLOP a video against {D / 1e12:.1f} for the decode: they move the "
    f"last column by at most {100 * max(c[2] - c[1] for c in costs.values()):.1f} points. Wall time follows the FLOPs only "
    "roughly (exercise 4 compares the toy's CPU seconds): `scripts/benchmark_svd.py` measures seconds per video for both models in one run, on whatever machine it is "
    "given (on a CPU at reduced size).")

# %% [markdown]
# ## 5. A toy SVD, trained: teacher, consistency distillation, student
#
# The toy world has its own SVD-xt: the same `StableVideoDiffusionPipeline` parts at toy size (a factor-4
# `AutoencoderKLTemporalDecoder`, a tiny CLIP image tower, a `UNetSpatioTemporalConditionModel` of under a million
# parameters, printed below), trained as SVD is: **image-to-video**, the first frame's VAE latent concatenated to the noisy
# latents of every frame, the image's CLIP embedding as cross-attention context, `added_time_ids` = (fps - 1, motion
# bucket, noise augmentation), EDM preconditioning with v-prediction ($c_\text{in} = 1/\sqrt{\sigma^2+1}$, timestep
# $0.25\ln\sigma$) on log-normal and Karras noise levels up to $\sigma_\max = 700$. The toy's fps, motion bucket and noise
# augmentation are fixed at one value each (every toy video moves at one speed), so they carry no information here.
#
# **Which way does the digit go?** SVD has no prompt: the image decides. In Moving Digits the first frame already shows the
# motion: a moving digit leaves a fading afterimage trail behind it, and a digit that will travel 14 px starts at the
# far side of the canvas. The model must continue the motion its input shows. **Faithfulness** of a generated video: the
# classifier reads the input image's digit, and the centroid moves the way the input's video moved.

# %%
from animatelcm_helpers.toy.data import DIRECTIONS

images, digits, directions = toy_svd.eval_set(8)
pick = [directions.index(d) for d in DIRECTIONS]  # one input per direction
real = toy_svd.toy_videos("test", 8)[0]
media.show_rows({f"{directions[i]} (real video)": to_uint8(real[i].numpy()) for i in pick})
print("the inputs are the first frames; their trail points away from where the digit goes")

# %% [markdown]
# **The teacher** samples as SVD-xt does: 25 Euler steps with classifier-free guidance ramped over the frames
# (SVD's defaults, 1.0 on the first frame to 3.0 on the last): 50 UNet evaluations a video.

# %%
teacher = svd.load_toy_svd_teacher()
print(teacher.svd_note, f"| UNet: {sum(p.numel() for p in teacher.unet.parameters()) / 1e6:.2f} M parameters")
slow = svd.generate_svd(teacher, images[pick[1]], steps=25, min_guidance=1.0, max_guidance=3.0, seed=0)
print(f"{slow.unet_evaluations} UNet evaluations, {slow.seconds:.2f} s; the digit moves:", metrics.read_direction(slow.frames[None])[0],
      "| asked:", directions[pick[1]])
media.show_rows({"input image": images[pick[1]][None], "teacher, 25 Euler steps, guidance ramp 1 -> 3": slow.frames})

# %% [markdown]
# **The distillation loss.** The zoo's teacher was trained with `toy_svd.train_toy_svd_teacher` (the EDM loss, which
# with $\lambda(\sigma) = (\sigma^2+1)/\sigma^2$ is plain MSE on the v-output) and distilled with `toy_svd.distill_toy_svd`,
# the official AnimateLCM-SVD recipe ([CD](../docs/GLOSSARY.md), consistency distillation). A student is initialised from
# the teacher; the **target** $f^-$ is an [EMA](../docs/GLOSSARY.md) copy of the student ($\mu = 0.95$). For each video
# of the batch, a grid index $n \sim U\{0..N-2\}$ (in this loss only, $n$ is a grid index, the code's `index`, not a step
# count) and fresh noise $z$:
#
# $$x_n = x_0 + \sigma_n z, \qquad v = v_u + s_f\,(v_c - v_u), \qquad D = c_\text{skip}(\sigma_n)\,x_n + c_\text{out}(\sigma_n)\,v,$$
# $$x_{n+1} = x_n + (\sigma_{n+1} - \sigma_n)\,\frac{x_n - D}{\sigma_n}, \qquad
#   \mathcal L = \Big(\frac{1}{\sigma_n - \sigma_{n+1}}\Big)^{0.1}\, d\big(f(x_n, \sigma_n),\ f^-(x_{n+1}, \sigma_{n+1})\big)$$
#
# The teacher's guided v-prediction ($v_c$ with the image condition, $v_u$ with zeros, per-frame scale $s_f$ from the ramp
# `linspace(choice{1, 1.25, 1.5}, choice{2, 2.25, 2.5})`, the code's `guidance`, which its docstring calls $w_f$) takes
# one **Euler** step of the ODE from $\sigma_n$ to the adjacent $\sigma_{n+1}$; the student at $\sigma_n$ is pulled toward
# the target at $\sigma_{n+1}$ under the [pseudo-Huber](../docs/GLOSSARY.md) distance $d$ ($c = 0.001$). Student and
# target run **without** guidance: the guidance is baked in. In the code, $\sigma_n, \sigma_{n+1}$ are `s_n`, `s_next`;
# $x_n, x_{n+1}$ are `x_n`, `x_next`; $D$ is `d`; $f$ is `pred` and $f^-$ is `aim`:

# %%
media.show_code(svd_distill.svd_cd_loss, svd_distill.cd_weight)

# %% [markdown]
# **Training, for real, in a few steps.** The cell runs both loops on a few videos (checkpoints, resumable, as
# `python -m animatelcm_helpers.toy.build` runs them); the zoo's runs are in its manifest below. As in SVD, whose temporal
# decoder was fine-tuned on the frozen encoder of Stable Diffusion's VAE, the zoo's last stage fine-tunes the toy
# temporal decoder with its encoder frozen (`toy_svd.finetune_toy_decoder`, clips of 1 to 8 frames, as the pipeline
# decodes `decode_chunk_size` frames at a time): the latent space does not move, so the teacher and the student stay valid.

# %%
import copy, json, tempfile
from pathlib import Path
from animatelcm_helpers.toy import zoo

steps = 2 if settings.test_mode else 20
videos = toy_svd.toy_videos("train", 16)[0]
with tempfile.TemporaryDirectory() as work:
    parts = toy_svd.toy_parts(vae=teacher.vae, unet=copy.deepcopy(teacher.unet))
    fit = toy_svd.train_toy_svd_teacher(Path(work) / "teacher", parts, videos, steps=steps, batch=4, lr=1e-4, progress=False)
    print("teacher loss (EDM, v):", np.round(fit.losses, 4).tolist()[:10])
    student, fit = toy_svd.distill_toy_svd(Path(work) / "student", teacher, teacher.unet, videos, steps=steps, batch=2,
                                           progress=False)
    print("consistency distillation loss:", np.round(fit.losses, 4).tolist()[:10])
manifest = json.loads((zoo.root() / "manifest.json").read_text())["stages"]
for stage in ("svd_vae", "svd_teacher", "svd_student", "svd_decoder"):
    info = manifest[stage]
    print(f"zoo {stage}: {info['steps']} steps, {info['seconds']:.0f} s", {k: v for k, v in info.items() if k in ("psnr_test_db_before", "psnr_test_db", "final_loss")})

# %% [markdown]
# **The student**, loaded by `svd.load_svd()` above, samples with `AnimateLCMSVDScheduler` **without guidance**: one UNet
# evaluation a step. Side by side with the teacher, same input (first row), same seed:

# %%
lcm_pipe = svd.load_svd(world="toy")
row = {"input image": images[pick[1]][None], "teacher, 25 steps + CFG": slow.frames}
for n in (1, 2, 4, 8):
    row[f"student, {n} step(s)"] = svd.generate_svd(lcm_pipe, images[pick[1]], steps=n, min_guidance=1.0, max_guidance=1.0, seed=0).frames
media.show_rows(row)

# %%
still = np.repeat(images[pick[1]][None], slow.frames.shape[0], axis=0)  # the input, held for the length of a video
media.show_videos({"input image": still, **{k: v for k, v in row.items() if k in ("teacher, 25 steps + CFG", "student, 4 step(s)", "student, 1 step(s)")}})

# %% [markdown]
# ### The table: faithfulness and cost at 1/2/4/8 steps
#
# Measured by `python scripts/tables.py svd` over held-out inputs (the first frames of test videos: 50 test digits, each
# in all 4 directions, one seed each) and saved with the package (`animatelcm_helpers/results/svd.json`). The columns
# ([NOTATION.md](../docs/NOTATION.md), "Measures"): **digit**, the fraction of videos whose digit the classifier reads as
# the input's; **digit p**, the mean probability it gives the input's digit; **direction**, the fraction whose centroid
# moves the way the input's video moved; **both**; **Frechet**, the [Frechet distance](../docs/GLOSSARY.md) between
# features of the generated and of real held-out videos (the toy's FVD; lower is better; its **floor** is real videos
# against real); seconds are per video on the CPU that made it.

# %%
table = results.load("svd")
print(evaluation.format_svd_table(table["rows"]))
ratio = table["student_4_steps_over_teacher_25"]
n_table = table["rows"][0]["videos"]
print(f"{n_table} inputs. Student at 4 steps / teacher at 25 guided steps: digit {ratio['digit']:.2f}, digit p {ratio['score']:.2f}, "
      f"direction {ratio['direction']:.2f}; Frechet of {n_table} real videos (the floor): {table['frechet_floor']:.1f}")

# %% [markdown]
# **With 95 % intervals** (the course's rule, [GLOSSARY.md](../docs/GLOSSARY.md) "interval, tie": a bootstrap over the
# videos; overlapping intervals are a tie). `results.interval` gives a row's interval: the stored one where the table has
# it, else, for a fraction, the bootstrap from the fraction and the count; for a Frechet distance without a stored
# interval it gives none, and then no Frechet claim is made. The real videos of the same inputs are read as a ceiling.

# %%
STUDENT, TEACHER = "AnimateLCM-SVD-xt (toy)", "SVD-xt teacher (toy), Euler"


def table_row(label, n):
    return next(r for r in table["rows"] if r["label"] == label and r["steps"] == n)


def shown(iv, digits=2):
    return "no interval stored" if iv is None else f"{iv.format(digits)} (n = {iv.n})"


for r in table["rows"]:
    print(f"{r['label']:28s} {r['steps']:2d} steps | digit {shown(results.interval(r, 'digit'))} | "
          f"direction {shown(results.interval(r, 'direction'))} | Frechet {r['frechet']:.1f}: {shown(results.interval(r, 'frechet'), 1)}")
n_real = config.pick(n_table, 8)
real_pixels, real_digits, _ = toy_svd.toy_videos("test", n_real)
real_read = metrics.bootstrap((metrics.read_digits(to_uint8(real_pixels.numpy())) == real_digits.numpy()).astype(float))
print(f"real videos of the first {n_real} inputs, digit read right: {shown(real_read)}")

# %%
NAMES = {"digit": "digit", "direction": "direction", "frechet": "Frechet"}


def verdict(a, b, key):
    """'a against b' on `key`: both values with their intervals and the rule's word (win / loss / tie), or no claim."""
    ia, ib = results.interval(a, key), results.interval(b, key)
    if ia is None or ib is None:
        return f"{NAMES[key]} {a[key]:.1f} against {b[key]:.1f}, no interval stored: no claim"
    word = metrics.compare(ia, ib, higher_is_better=key != "frechet")
    return f"{NAMES[key]} {shown(ia)} against {shown(ib)}: **{word}**"


pairs = [("the claim: student at 4 steps, no CFG, against the teacher at 25 guided steps", table_row(STUDENT, 4), table_row(TEACHER, 25)),
         ("few steps: student at 1 step against the teacher at 1 step", table_row(STUDENT, 1), table_row(TEACHER, 1)),
         ("student at 8 steps against the student at 4 steps", table_row(STUDENT, 8), table_row(STUDENT, 4)),
         ("student at 8 steps against the teacher at 4 steps", table_row(STUDENT, 8), table_row(TEACHER, 4))]
lines = [f"- {what}: " + "; ".join(verdict(a, b, k) for k in ("digit", "direction", "frechet")) for what, a, b in pairs]
all_pairs = [(a, b) for i, a in enumerate(table["rows"]) for b in table["rows"][i + 1:]]
tied = {key: all(metrics.compare(results.interval(a, key), results.interval(b, key)) == "tie" for a, b in all_pairs)
        for key in ("digit", "direction")}
lines.append(f"- all {len(all_pairs)} pairs of the table's {len(table['rows'])} rows: "
             + "; ".join(f"{key}: {'every pair a **tie**' if t else 'at least one pair **apart**'}" for key, t in tied.items()))
ceiling = {label: metrics.compare(real_read, results.interval(table_row(label, steps), "digit")) for label, steps in ((STUDENT, 4), (TEACHER, 25))}
lines.append(f"- real videos of the first {n_real} inputs against both, digit: {shown(real_read)}: **{ceiling[STUDENT]}** against "
             f"the student at 4 steps, **{ceiling[TEACHER]}** against the teacher at 25 (the toy SVD's limit, both models')")
media.show_markdown("\n".join(lines))

# %%
s8, s4, t4 = table_row(STUDENT, 8), table_row(STUDENT, 4), table_row(TEACHER, 4)
ties = [metrics.compare(results.interval(a, "digit"), results.interval(b, "digit")) == "tie" for a, b in ((s8, s4), (s8, t4))]
c_skip_last = {n: float(svd_scheduler.scalings(float(svd_scheduler.step_sigmas(n)[-1]))[0]) for n in (4, 8)}
extra = [x for x in svd_scheduler.step_sigmas(8) if x not in set(svd_scheduler.step_sigmas(4))]  # the levels only 8 steps visit
media.show_markdown(
    f"**Is the student worse at 8 steps than at 4?** Its digit reads {s8['digit']:.2f} against {s4['digit']:.2f}, and the "
    f"teacher at 4 steps reads {t4['digit']:.2f}. "
    + ("Both differences are **ties** at n = " + str(s8['videos']) + ": the table does not show that 8 steps are worse, "
       "so there is no drop to explain; the Frechet differences have no stored interval and are not evidence either. "
       if all(ties) else "At least one difference is outside the intervals; this notebook leaves it **unexplained**. ")
    + f"What the grid does say is how little 8 steps can add: they visit every 5th grid point, adding sigma "
    f"{', '.join(f'{x:.3f}' for x in extra)} to the 4 steps' levels, and the last of them starts where c_skip is "
    f"{c_skip_last[8]:.3f} (4 steps end at sigma {svd_scheduler.step_sigmas(4)[-1]:.3f}, c_skip {c_skip_last[4]:.3f}): "
    "that step hands back mostly its input. Each extra step is one more evaluation of an imperfect student on fresh "
    "noise. That is a reason to expect no gain from 8 steps, not a measured cause of a loss.")

# %% [markdown]
# And a live check on a few inputs (more in normal mode), with the same function:

# %%
n = 4 if settings.test_mode else 12
live = [evaluation.evaluate_svd(lcm_pipe, 4, n=n, label="AnimateLCM-SVD-xt (toy)", frechet=False)[0],
        evaluation.evaluate_svd(teacher, 25, 1.0, 3.0, n=n, label="SVD-xt teacher (toy), Euler", frechet=False)[0]]
print(evaluation.format_svd_table(live))

# %%
live_digits = sorted(set(toy_svd.eval_set(n)[1].tolist()))
lines = [f"**The live check re-measures a small corner of the table.** It re-makes the table's first {n} inputs (the same "
         f"inputs and seeds: {n // 4} digit image(s) of the class(es) {', '.join(map(str, live_digits))}, each in 4 directions), "
         f"while the table averages over {n_table // 4} digit images of all ten classes: the two need not agree. With their intervals:"]
for r, label, steps in ((live[0], STUDENT, 4), (live[1], TEACHER, 25)):
    lines.append(f"- {label}, {steps} steps: live digit {shown(results.interval(r, 'digit'))}, table "
                 f"{shown(results.interval(table_row(label, steps), 'digit'))}: "
                 f"{'overlapping: a tie' if metrics.compare(results.interval(r, 'digit'), results.interval(table_row(label, steps), 'digit')) == 'tie' else 'apart: a difference by the rule'}.")
lines.append(f"- student against teacher in the live check: "
             f"{metrics.compare(results.interval(live[0], 'digit'), results.interval(live[1], 'digit'))} on digit.")
media.show_markdown("\n".join(lines))

# %% [markdown]
# ## Summary
#
# - The SVD-xt consistency model samples 1 to 8 of 40 Karras noise levels ($\sigma$, EDM's time; discrete $t$ maps to it by
#   $\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}$), with v-prediction boundary scalings and fresh noise between steps.
# - `svd_scheduler.AnimateLCMSVDScheduler` is a diffusers scheduler: it drops into `StableVideoDiffusionPipeline` and saves and
#   loads its config; its `step` is the two lines of the formula.
# - The UNet share is $n/50$ by construction: 8.0 % at 4 steps **without** guidance, 16.0 % with the official demo's ramp
#   (maximum 1.2, so CFG is on). Counting FLOPs is needed only for the work paid once a video (decode, encodes).
# - In the toy world the whole recipe runs: an SVD teacher (image-to-video, EDM, v-prediction) and its consistency
#   distillation (one guided Euler step to the adjacent Karras index, EMA target, weighted pseudo-Huber); the student
#   samples without guidance. On digit and direction, every comparison in its table is a tie at its sample size: the student at
#   4 steps matches the teacher at 25 guided steps within the intervals, but the toy cannot tell them apart from the
#   teacher at 1 step either.
#
# ## Exercises
#
# 1. Compute by hand the sigma at index 20 of the grid and check it against `svd_scheduler.karras_sigmas()[20]`.
# 2. SD1.5's discrete $t = 999$ is $\sigma \approx 14.6$ (section 1). Which of the 4-step noise levels of AnimateLCM-SVD-xt are
#    noisier than anything SD1.5 ever samples from?
# 3. Count the FLOPs at 14 frames (SVD, not xt) with `svd.count_svd_flops(frames=14)`. Does the 4-step share of the UNet
#    work change? Does the share with the decode?
# 4. From the table's `s / video` column, compute the CPU wall-time ratio of the student at 4 steps to the teacher at
#    25 guided steps and compare it with their UNet-evaluation ratio. Why is the time ratio larger?
# 5. Sample the toy student at 4 steps WITH the demo's ramp (`max_guidance=1.2`) on the live check's inputs. What does it
#    cost, and does faithfulness move (with intervals)?
# 6. The loss weight is $(1/(\sigma_n - \sigma_{n+1}))^{0.1}$ (`svd_distill.cd_weight`). Compute it for the noisiest pair
#    ($n = 0$) and the cleanest ($n = 38$): which pairs does it favour, and by what factor?
# 7. A 1600 x 1200 (4:3) photo goes into the official app. What does `svd.fit_image` do to it at 1024 x 576, and what
#    share of the photo's height is lost?
#
# ## Solutions
#
# <details><summary>Solutions (open after trying the exercises)</summary>
#
# 1. $\sigma_{20} = (700^{1/7} + \tfrac{20}{39}(0.002^{1/7} - 700^{1/7}))^7$; the cell below computes it both ways.
# 2. 700 and 128.6 (indices 0 and 10); 13.68 (index 20) is just below SD1.5's largest. SVD-xt starts from far more noise:
#    its first step must invent the whole layout from the image condition alone.
# 3. The UNet share does not change: it is a ratio of evaluation counts ($4/50$), and every evaluation shrinks by the same
#    factor. The share with the decode does not move either (the cell below counts it: the same to two decimals),
#    because the UNet evaluation and the decode both grow in proportion to the number of frames.
# 4. The cell below computes both ratios. The time ratio is larger because each video pays fixed costs once whatever the
#    steps (image encoding, VAE decode, the pipeline's own work), and at toy size they are a large part of a
#    4-step video.
# 5. Twice the UNet evaluations (section 3 counted them). The cell below measures faithfulness on the same inputs and
#    seeds, with intervals: compare them by the rule.
# 6. The cell below computes the weights: the smallest gaps (the clean end) get the largest weights, so the loss does not
#    drown the small differences of low-noise pairs under the large ones of high-noise pairs.
# 7. It resizes to 1024 x 768 (width fitted, aspect kept) and crops the middle 576 rows: 96 rows are lost at the top and
#    96 at the bottom, a quarter of the height (the cell below checks it). diffusers' pipeline alone would squeeze the
#    photo to 16:9 instead.
#
# </details>

# %%
i, N, rho = 20, svd_scheduler.NUM_TRAIN_TIMESTEPS, svd_scheduler.RHO
by_hand = (svd_scheduler.SIGMA_MAX ** (1 / rho) + i / (N - 1) * (svd_scheduler.SIGMA_MIN ** (1 / rho) - svd_scheduler.SIGMA_MAX ** (1 / rho))) ** rho
print(f"1. by hand {by_hand:.4f}, karras_sigmas()[20] {svd_scheduler.karras_sigmas()[20]:.4f}")
sd_max = ((1 - abar[999]) / abar[999]).sqrt().item()
print(f"2. SD1.5's largest sigma {sd_max:.2f}; 4-step levels above it:",
      [round(float(s), 3) for s in svd_scheduler.step_sigmas(4) if s > sd_max])

# %%
frames_3 = config.pick(14, 25)  # test mode: the 25-frame count, already made (and cached) in section 4
f14 = svd.count_svd_flops(frames=frames_3)
for label, f in (("25 frames", flops), (f"{frames_3} frames", f14)):
    u, d = f["unet_flops"], f["vae_decode_flops"]
    print(f"3. {label}: UNet {u / 1e12:.1f} TFLOP, decode {d / 1e12:.1f} TFLOP | 4 steps: UNet work {4 / 50:.1%}, "
          f"with the decode {(4 * u + d) / (50 * u + d):.2%}")
s4_row, t25_row = table_row(STUDENT, 4), table_row(TEACHER, 25)
print(f"4. CPU seconds, student 4 / teacher 25: {s4_row['seconds'] / t25_row['seconds']:.2f}; "
      f"UNet evaluations: {s4_row['unet_evals']} / {t25_row['unet_evals']} = {s4_row['unet_evals'] / t25_row['unet_evals']:.2f}")

# %%
with_ramp = evaluation.evaluate_svd(lcm_pipe, 4, 1.0, 1.2, n=n, label="AnimateLCM-SVD-xt (toy), demo ramp", frechet=False)[0]
print(evaluation.format_svd_table([live[0], with_ramp]))
for key in ("digit", "direction"):
    a, b = results.interval(with_ramp, key), results.interval(live[0], key)
    print(f"5. {key}: with the ramp {shown(a)}, without {shown(b)}: {metrics.compare(a, b)}")

# %%
w = svd_distill.cd_weight(grid[:-1], grid[1:])
print(f"6. weight at n = 0 (sigma {grid[0]:.0f} -> {grid[1]:.1f}): {w[0]:.3f}; at n = 38 (sigma {grid[38]:.4f} -> "
      f"{grid[39]:.4f}): {w[38]:.3f}; ratio {w[38] / w[0]:.1f}")
fitted = svd.fit_image(photo, 1024, 576)
print(f"7. 1600 x 1200 -> resized to 1024 x {int(1024 / (1600 / 1200))}, cropped to {fitted.size[0]} x {fitted.size[1]}: "
      f"{1 - 576 / int(1024 / (1600 / 1200)):.0%} of the height lost")
