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
# # 07 · AnimateLCM-SVD-xt: image-to-video in 2 to 4 steps, and the "8% of SVD" claim counted
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/animatelcm-runnable/animatelcm-runnable/blob/main/notebooks/07_svd_xt.ipynb)
#
# **What you will learn**
#
# - the **AnimateLCM-SVD-xt scheduler**: Karras noise levels on a 40-point grid, the v-prediction boundary scalings, the model timestep 0.25 ln sigma, stochastic re-noising (`svd_scheduler.AnimateLCMSVDScheduler`, a real diffusers scheduler that saves and loads)
# - how `StableVideoDiffusionPipeline` runs with it, and what the **guidance ramp** over frames costs
# - the compute claim, **counted**: FLOPs of the real-size SVD-xt UNet and temporal VAE decoder at 25 frames 576x1024 on the meta device (no weights), and AnimateLCM-SVD-xt at 1/2/4/8 steps as a fraction of SVD-xt at 25 guided steps
#
# **Prerequisites:** notebooks 01 and 02 (consistency functions, LCM sampling); EDM's sigma parameterisation helps.
#
# **Run time:** toy world on a CPU: under a minute (the FLOP count needs no weights and no GPU); full world on a GPU (A100 class, 40 GB for fp16 at 576x1024): about a minute per 25-frame video at 4 steps after a 10 GB download.

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
import torch

from animatelcm_helpers import config, evaluation, media, svd, svd_scheduler
from animatelcm_helpers.toy import svd as toy_svd

settings = config.setup(world=WORLD, test_mode=TEST_MODE)
print(settings)

# %% [markdown]
# ## 1. Noise levels: a Karras grid of 40, and the steps chosen from it
#
# AnimateLCM-SVD-xt was distilled on $N = 40$ Karras noise levels
# $\sigma_i = (\sigma_\max^{1/\rho} + \tfrac{i}{N-1}(\sigma_\min^{1/\rho} - \sigma_\max^{1/\rho}))^\rho$ with $\sigma_\min = 0.002$,
# $\sigma_\max = 700$, $\rho = 7$. Sampling with $n$ steps takes the indices $0, 40/n, 2 \cdot 40/n, \ldots$

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
# ## 2. The consistency function in SVD's v-parameterisation
#
# With $\sigma_d = 1$: $c_\text{skip} = 1/(\sigma^2 + 1)$, $c_\text{out} = -\sigma/\sqrt{\sigma^2+1}$, the UNet sees
# $c_\text{in} x = x/\sqrt{\sigma^2+1}$ at the timestep $0.25 \ln\sigma$, and $f = c_\text{skip} x + c_\text{out} F$.
# One step of the scheduler returns $f$; between steps it re-noises, $x \leftarrow f + \sigma_\text{next} z$.

# %%
# NBVAL_CHECK_OUTPUT
for s in (0.002, 0.497, 13.68, 700.0):
    c_skip, c_out, c_in = svd_scheduler.scalings(torch.tensor(s))
    print(f"sigma {s:7.3f}: c_skip {c_skip.item():.6f}  c_out {c_out.item():+.6f}  c_in {c_in.item():.6f}  timestep {svd_scheduler.timestep_of(torch.tensor(s)).item():+.4f}")

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
# the toy teacher and student were trained). The input image is the first frame of a held-out Moving Digits video.

# %%
pipe = svd.load_svd()
print(pipe.svd_note)
from animatelcm_helpers.toy.data import MovingDigits, to_uint8
first = to_uint8(MovingDigits("test", num_frames=8)[0]["pixel_values"])[0]
result = svd.generate_svd(pipe, first, steps=4, seed=0, min_guidance=1.0, max_guidance=1.0)
print(f"{result.frames.shape[0]} frames, {result.unet_evaluations} UNet evaluations, {result.seconds:.2f} s")
media.show_frames(result.frames, title="4 steps, no guidance")

# %% [markdown]
# **The guidance ramp.** The official demo ramps the guidance over frames from 1.0 to 1.2. Any maximum above 1 turns on
# classifier-free guidance in the pipeline, so every step then costs **two** UNet evaluations:

# %%
# NBVAL_CHECK_OUTPUT
print("ramp over 8 frames:", np.round(svd.guidance_ramp(8, 1.0, 1.2).double().numpy().ravel(), 3).tolist())
ramped = svd.generate_svd(pipe, first, steps=4, seed=0, min_guidance=1.0, max_guidance=1.2)
print("UNet evaluations at 4 steps: no guidance", result.unet_evaluations, "| ramp 1.0 -> 1.2:", ramped.unet_evaluations)

# %% [markdown]
# ## 4. The claim, counted: what fraction of SVD-xt's work?
#
# `svd.count_svd_flops` builds the **real-size** SVD-xt UNet (1.52 B parameters) and temporal VAE on PyTorch's meta device
# (no weights, no memory) and counts the FLOPs of one UNet evaluation at 25 frames 576x1024 and of decoding the 25 frames
# with `torch.utils.flop_counter.FlopCounterMode`. SVD-xt samples 25 Euler steps with classifier-free guidance: 50 UNet evaluations.

# %%
# NBVAL_CHECK_OUTPUT
flops = svd.count_svd_flops()
print(f"SVD-xt UNet: {flops['unet_params'] / 1e9:.2f} B parameters, {flops['unet_flops'] / 1e12:.1f} TFLOP per evaluation (25 frames, 576x1024)")
print(f"temporal VAE decode of 25 frames: {flops['vae_decode_flops'] / 1e12:.1f} TFLOP")
print(svd.format_cost_table(svd.cost_table(flops=flops)))

# %% [markdown]
# At 4 steps AnimateLCM-SVD-xt does **8.0%** of SVD-xt's UNet work (11.8% counting the VAE decode, which both pay once);
# at 2 steps 4.0% (8.0%). Wall time follows the FLOPs on a GPU only roughly: `scripts/benchmark_svd.py` measures seconds per
# video for both, in one run, on whatever machine it is given (on a CPU at reduced size).

# %% [markdown]
# ## 5. A toy SVD, trained: teacher, consistency distillation, student
#
# The toy world has its own SVD-xt: the same `StableVideoDiffusionPipeline` parts at toy size (a factor-4
# `AutoencoderKLTemporalDecoder`, a tiny CLIP image tower, a 0.6 M-parameter `UNetSpatioTemporalConditionModel`), trained
# as SVD is: **image-to-video**, the first frame's VAE latent concatenated to the noisy latents of every frame, the
# image's CLIP embedding as cross-attention context, `added_time_ids` = (fps - 1, motion bucket, noise augmentation),
# EDM preconditioning with v-prediction ($c_\text{in} = 1/\sqrt{\sigma^2+1}$, timestep $0.25\ln\sigma$) on log-normal and
# Karras noise levels up to $\sigma_\max = 700$.
#
# **Which way does the digit go?** SVD has no prompt: the image decides. In Moving Digits the first frame already shows the
# motion: a moving digit leaves a fading afterimage trail behind it, and a digit that will travel 14 px starts at the
# far side of the canvas. The model must continue the motion its input shows. **Faithfulness** of a generated video: the
# classifier reads the input image's digit, and the centroid moves the way the input's video moved.

# %%
from animatelcm_helpers import results
from animatelcm_helpers.toy import metrics
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
print(teacher.svd_note)
slow = svd.generate_svd(teacher, images[pick[1]], steps=25, min_guidance=1.0, max_guidance=3.0, seed=0)
print(f"{slow.unet_evaluations} UNet evaluations, {slow.seconds:.2f} s; the digit moves:", metrics.read_direction(slow.frames[None])[0],
      "| asked:", directions[pick[1]])
media.show_frames(slow.frames, title="teacher, 25 Euler steps, guidance ramp 1 -> 3")

# %% [markdown]
# **Training, for real, in a few steps.** The zoo's teacher was trained with `toy_svd.train_toy_svd_teacher` (the
# EDM loss, which with $\lambda(\sigma) = (\sigma^2+1)/\sigma^2$ is plain MSE on the v-output) and distilled with
# `toy_svd.distill_toy_svd`, the official AnimateLCM-SVD recipe: a student initialised from the teacher, for a grid index
# $n \sim U\{0..38\}$ of the 40-point Karras grid one **Euler** step of the guided teacher from $\sigma_n$ to $\sigma_{n+1}$
# (guidance ramped over frames, `linspace(choice{1, 1.25, 1.5}, choice{2, 2.25, 2.5})`), the EMA target
# ($\mu = 0.95$) at $\sigma_{n+1}$, and the pseudo-Huber distance weighted by $(1/(\sigma_n - \sigma_{n+1}))^{0.1}$.
# The cell runs both loops on a few videos (checkpoints, resumable, as `python -m animatelcm_helpers.toy.build` runs them);
# the zoo's runs are in its manifest below. As in SVD, whose temporal decoder was fine-tuned on the frozen encoder of
# Stable Diffusion's VAE, the zoo's last stage fine-tunes the toy temporal decoder with its encoder frozen
# (`toy_svd.finetune_toy_decoder`, clips of 1 to 8 frames, as the pipeline decodes `decode_chunk_size` frames at a time):
# the latent space does not move, so the teacher and the student stay valid.

# %%
import copy, json, tempfile
from pathlib import Path
from animatelcm_helpers.toy import zoo

steps = 2 if settings.test_mode else 20
videos = toy_svd.toy_videos("train", 16)[0]
with tempfile.TemporaryDirectory() as work:
    parts = toy_svd.toy_parts(vae=teacher.vae, unet=copy.deepcopy(teacher.unet))
    fit = toy_svd.train_toy_svd_teacher(Path(work) / "teacher", parts, videos, steps=steps, batch=4, lr=1e-4)
    print("teacher loss (EDM, v):", np.round(fit.losses, 4).tolist()[:10])
    student, fit = toy_svd.distill_toy_svd(Path(work) / "student", teacher, teacher.unet, videos, steps=steps, batch=2)
    print("consistency distillation loss:", np.round(fit.losses, 4).tolist()[:10])
manifest = json.loads((zoo.root() / "manifest.json").read_text())["stages"]
for stage in ("svd_vae", "svd_teacher", "svd_student", "svd_decoder"):
    info = manifest[stage]
    print(f"zoo {stage}: {info['steps']} steps, {info['seconds']:.0f} s", {k: v for k, v in info.items() if k in ("psnr_test_db_before", "psnr_test_db", "final_loss")})

# %% [markdown]
# **The student**, loaded by `svd.load_svd()` above, samples with `AnimateLCMSVDScheduler` **without guidance**: one UNet
# evaluation a step. Side by side with the teacher, same input, same seed:

# %%
lcm = svd.load_svd(world="toy")
row = {"teacher, 25 steps + CFG": slow.frames}
for n in (1, 2, 4, 8):
    row[f"student, {n} step(s)"] = svd.generate_svd(lcm, images[pick[1]], steps=n, min_guidance=1.0, max_guidance=1.0, seed=0).frames
media.show_rows(row)

# %%
media.show_videos({k: v for k, v in row.items() if k in ("teacher, 25 steps + CFG", "student, 4 step(s)", "student, 1 step(s)")})

# %% [markdown]
# ### The table: faithfulness and cost at 1/2/4/8 steps
#
# Measured by `python scripts/tables.py svd` over held-out inputs (the first frames of test videos, every digit in all
# 4 directions, one seed each) and saved with the package (`animatelcm_helpers/results/svd.json`); `digit p` is the mean
# probability the classifier gives the input's digit; seconds are per video on the CPU that made it.

# %%
table = results.load("svd")
print(evaluation.format_svd_table(table["rows"]))
ratio = table["student_4_steps_over_teacher_25"]
n_table = table["rows"][0]["videos"]
print(f"{n_table} inputs. Student at 4 steps / teacher at 25 guided steps: digit {ratio['digit']:.2f}, digit p {ratio['score']:.2f}, "
      f"direction {ratio['direction']:.2f}; Frechet of {n_table} real videos (the floor): {table['frechet_floor']:.1f}")

# %% [markdown]
# And a live check on a few inputs (more in normal mode), with the same function:

# %%
n = 4 if settings.test_mode else 12
live = [evaluation.evaluate_svd(lcm, 4, n=n, label="AnimateLCM-SVD-xt (toy)", frechet=False)[0],
        evaluation.evaluate_svd(teacher, 25, 1.0, 3.0, n=n, label="SVD-xt teacher (toy), Euler", frechet=False)[0]]
print(evaluation.format_svd_table(live))

# %% [markdown]
# Read the table for the paper's claim at toy scale: the distilled student without guidance against the guided
# teacher at 25 steps (50 UNet evaluations), at a few percent of the UNet work.
#
# ## Summary
#
# - The SVD-xt consistency model samples 1-8 of 40 Karras noise levels, with v-prediction boundary scalings and fresh noise between steps.
# - `svd_scheduler.AnimateLCMSVDScheduler` is a diffusers scheduler: it drops into `StableVideoDiffusionPipeline` and saves/loads its config.
# - Counted, not quoted: 4 steps without guidance = 8.0% of SVD-xt's 25 guided steps (UNet work). The demo's guidance ramp doubles that.
# - In the toy world the whole recipe runs: an SVD teacher (image-to-video, EDM, v-prediction) and its consistency distillation (one guided Euler step to the adjacent Karras index, EMA target, weighted pseudo-Huber); the student samples without guidance.
#
# ## Exercises
#
# 1. Compute by hand the sigma at index 20 of the grid and check it against `svd_scheduler.karras_sigmas()[20]`.
# 2. Count the FLOPs at 14 frames (SVD, not xt) with `svd.count_svd_flops(frames=14)`. Does the fraction change? Why not?
# 3. Run `python scripts/benchmark_svd.py` and compare the measured time ratio with the FLOP ratio. Which costs does FLOP counting leave out?
# 4. Sample the toy student at 4 steps WITH the demo's guidance ramp (`max_guidance=1.2`). What does it cost, and does faithfulness move?
# 5. Distil with the weight power 0 instead of 0.1 (`svd_distill.CD_WEIGHT_POWER`) for a few hundred steps: which steps change most?
