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
# # 02 · The LCM scheduler: timesteps, boundary scalings, multistep sampling, samplers compared
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/animatelcm-runnable/animatelcm-runnable/blob/main/notebooks/02_lcm_scheduler.ipynb)
#
# **What you will learn**
#
# - which timesteps an LCM visits for 1, 2, 4 and 8 steps, and why they come from a **skipping grid** of 50 points (k = 20)
# - the **boundary scalings** $c_\text{skip}(t)$ and $c_\text{out}(t)$ that make $f(x, 0) = x$ hold by construction
# - the **multistep sampling loop**: denoise to $\hat x_0$, re-noise with fresh noise to the next timestep, return $\hat x_0$ at the end; written out in `animatelcm_helpers.lcm` and proven equal to diffusers' `LCMScheduler`
# - how LCM and TCD on the distilled model compare with DDIM, Euler and DPM-Solver++ on the teacher at 1-8 steps
# - why the student runs **without classifier-free guidance**, and what the w-conditioned student does with w
#
# **Prerequisites:** notebook 01 (consistency functions) helps; Python and PyTorch basics.
#
# **Run time:** toy world on a CPU: about 1 minute (test mode < 1 minute); full world on a GPU: a few minutes (the sampler comparison is read from the toy tables).

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
import torch

from animatelcm_helpers import config, evaluation, lcm, media, pipelines, results

settings = config.setup(world=WORLD, test_mode=TEST_MODE)
print(settings)

# %% [markdown]
# ## 1. Which timesteps? The skipping grid
#
# LCM distillation never sees all 1000 timesteps of the teacher: it learns on a **skipping grid** of the DDIM solver,
# $t_n = n k - 1$ with $k = 1000 / 50 = 20$ (19, 39, ..., 999). At sampling time `LCMScheduler.set_timesteps(n)` takes
# $n$ points of that grid, evenly spaced, always starting at the top (999). `lcm.lcm_timesteps` is that rule, written
# out (and tested against diffusers for every step count).

# %%
# NBVAL_CHECK_OUTPUT
grid = lcm.skipping_grid()
print("skipping grid:", grid[:3], "...", grid[-2:], f"({len(grid)} points, k = {grid[1] - grid[0]})")
for n in (1, 2, 4, 8):
    print(f"{n} steps:", lcm.lcm_timesteps(n).tolist())

# %%
fig, ax = plt.subplots(figsize=(8, 2.2))
for row, n in enumerate((1, 2, 4, 8)):
    ax.scatter(lcm.lcm_timesteps(n), [row] * n, s=40)
ax.scatter(grid, [-1] * len(grid), s=6, c="gray")
ax.set_yticks(range(-1, 4), ["grid (50)", "1 step", "2 steps", "4 steps", "8 steps"])
ax.set_xlabel("timestep t"); ax.set_title("the timesteps an LCM visits"); plt.show()

# %% [markdown]
# ## 2. The boundary scalings
#
# The student is a consistency function $f(x_t, t) = c_\text{skip}(t)\, x_t + c_\text{out}(t)\, \hat x_0(x_t, t)$ with
# $c_\text{skip} = \sigma_d^2 / ((10t)^2 + \sigma_d^2)$, $c_\text{out} = 10t / \sqrt{(10t)^2 + \sigma_d^2}$, $\sigma_d = 0.5$.
# At $t = 0$ it is the identity; already at the grid's lowest point ($t = 19$) $c_\text{skip} \approx 7 \cdot 10^{-6}$, so at every
# timestep the sampler visits, $f$ is the model's $\hat x_0$ prediction.

# %%
# NBVAL_CHECK_OUTPUT
t, c_skip, c_out = lcm.scaling_curves()
print(f"c_skip(0) = {c_skip[0]:.3g}, c_out(0) = {c_out[0]:.3g}; c_skip(19) = {c_skip[19]:.2e}, c_out(19) = {c_out[19]:.6f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(t[:60], c_skip[:60], label="c_skip"); ax.plot(t[:60], c_out[:60], label="c_out")
ax.axvline(19, ls=":", c="gray"); ax.text(20, 0.5, "lowest grid point t = 19")
ax.set_xlabel("timestep t (first 60 of 1000)"); ax.legend(); plt.show()

# %% [markdown]
# ## 3. The sampling loop, and proof that it is diffusers' `LCMScheduler`
#
# For each chosen timestep $t_i$: evaluate the model once, form $\hat x_0 = f(x, t_i)$, and unless it is the last step
# re-noise to the next timestep with **fresh** noise, $x \leftarrow \sqrt{\bar\alpha_{t_{i+1}}}\, \hat x_0 + \sqrt{1-\bar\alpha_{t_{i+1}}}\, z$.
# The last step returns $\hat x_0$. `lcm.sample_video` runs this loop (`lcm.lcm_sample`) on the toy AnimateLCM's UNet;
# the same starting noise and the same generator through `AnimateDiffPipeline` + `LCMScheduler` must give the same latents.

# %%
pipe = pipelines.load_t2v("animatelcm")
pipe.set_progress_bar_config(disable=True)
PROMPT = "a seven moving left"
ours, trajectory, x_T = lcm.sample_video(pipe, PROMPT, steps=4, seed=0, noise_seed=1)
theirs = pipe(PROMPT, num_frames=8, height=32, width=32, num_inference_steps=4, guidance_scale=1.0,
              latents=x_T.clone(), generator=torch.Generator().manual_seed(1), output_type="latent").frames

# %%
# NBVAL_CHECK_OUTPUT
print("same latents as the pipeline (allclose at 1e-5):", torch.allclose(ours, theirs, atol=1e-5))

# %% [markdown]
# The predicted $\hat x_0$ after each of the 4 steps, decoded (rows: steps; columns: frames). The first step already
# lays out the digit and its motion; the later ones refine it from re-noised versions of it.

# %%
media.show_rows({f"step {i + 1}: x0 predicted at t = {t}": lcm.decode(pipe, x0) for i, (t, x0) in enumerate(trajectory)})

# %% [markdown]
# ## 4. Samplers compared
#
# The same question the paper's table 1 asks, on the toy world: the distilled model with `LCMScheduler` and `TCDScheduler`
# (gamma 0, 0.3, 0.6; no CFG) against the **teacher** with DDIM, Euler and DPM-Solver++ (CFG 7.5) at 1, 2, 4 and 8 steps.
# Digit and direction faithfulness (higher is better), Frechet distance to real videos (lower is better), and cost.
#
# First a small live run (test mode: one seed), then the full tables measured by `scripts/tables.py` (80 videos a row).

# %%
live = []
seeds = config.pick((0, 1), (0,))
for n in config.pick((1, 2, 4), (1, 4)):
    live.append(evaluation.evaluate(pipe, n, 1.0, seeds=seeds, label="AnimateLCM (toy)"))
teacher = pipelines.load_t2v("teacher")
for n in config.pick((1, 2, 4), (1, 4)):
    live.append(evaluation.evaluate(teacher, n, 7.5, scheduler="ddim", seeds=seeds, label="teacher"))
print(evaluation.format_table(live))

# %%
# NBVAL_CHECK_OUTPUT
table = results.rows("table1") + results.rows("samplers")
keep = lambda r: r["steps"] in (1, 2, 4, 8)
print(evaluation.format_table([r for r in table if keep(r)]))

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
groups = {}
for r in table:
    if keep(r):
        groups.setdefault((r["label"], r["scheduler"]), []).append(r)
for (label, sched), rs in groups.items():
    rs = sorted(rs, key=lambda r: r["steps"])
    style = "-o" if "AnimateLCM" in label else "--s"
    for ax, key in zip(axes, ("digit", "direction", "frechet")):
        ax.plot([r["steps"] for r in rs], [r[key] for r in rs], style, label=f"{label.replace('AnimateLCM (toy)', 'student')} / {sched}")
for ax, key in zip(axes, ("digit faithfulness", "direction faithfulness", "Frechet distance (lower is better)")):
    ax.set_xscale("log", base=2); ax.set_xlabel("steps"); ax.set_title(key)
axes[2].set_yscale("log"); axes[0].legend(fontsize=6); plt.show()

# %% [markdown]
# ## 5. Why no classifier-free guidance?
#
# A guided step evaluates the UNet twice (with and without the prompt). The student has the guidance **distilled in**: the
# teacher's guided ODE (w = 6.5, CFG 7.5) is what it learned to follow, so it runs at guidance 1, one evaluation a step.
# The cost, measured: 4 student steps cost 4 UNet evaluations; the teacher's 25 guided DDIM steps cost 50.

# %%
# NBVAL_CHECK_OUTPUT
for r in [r for r in results.rows("table1") if (r["label"], r["steps"]) in (("AnimateLCM (toy)", 4), ("teacher", 25), ("teacher", 50)) and r["scheduler"] in ("lcm", "ddim")]:
    print(f"{r['label']:18s} {r['scheduler']:5s} {r['steps']:2d} steps, CFG {r['guidance']:g}: {r['unet_evals']:3d} UNet evaluations")

# %% [markdown]
# The full LCD student of stage 1 (notebook 03) has a **w-embedding** instead: one network for every guidance strength,
# still one evaluation a step. Here it draws digits (images, 4 steps) at several w; the `guidance_scale` argument is
# w + 1 and goes into the embedding, not into CFG (count the evaluations).

# %%
from diffusers import UNet2DConditionModel
from animatelcm_helpers.toy import zoo

if settings.world == "toy":
    full = pipelines.load_t2i(unet=UNet2DConditionModel.from_pretrained(zoo.root() / "image-lcm" / "full", torch_dtype=torch.float32))
    w_rows = [evaluation.evaluate(full, 4, w + 1.0, seeds=config.pick((0, 1, 2, 3), (0,)), label=f"full student, w = {w:g}")
              for w in (0.0, 2.0, 6.5, 12.0)]
    print(evaluation.format_table(w_rows))

# %% [markdown]
# ## Summary
#
# - An LCM samples on the 50-point skipping grid it was distilled on: 1 step is t = 999, 4 steps are 999, 759, 499, 259.
# - $c_\text{skip}$, $c_\text{out}$ pin $f(x, 0) = x$; at the visited timesteps $f$ is the $\hat x_0$ prediction.
# - Multistep sampling = denoise, re-noise with fresh noise, repeat; `lcm.lcm_sample` equals diffusers' `LCMScheduler`.
# - The student needs no CFG: one UNet evaluation a step. The tables above show where few-step LCM sampling beats the teacher's samplers, and where it does not.
#
# ## Exercises
#
# 1. Print `lcm.lcm_timesteps(3)` and `lcm.lcm_timesteps(4, original_steps=25)`. Predict them first from the rule.
# 2. Sample with `lcm.sample_video(pipe, PROMPT, steps=4, noise_seed=s)` for three values of `s` with the same `seed`. What changes, and why only a little?
# 3. Add TCD with gamma 0.3 at 4 steps to the live table (`scheduler="tcd", call_kwargs={"eta": 0.3}`).
# 4. Give the student guidance 2.0: how many UNet evaluations per step now, and is the video better?
