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
# - the **multistep sampling loop**: denoise to $\hat x_0$, re-noise with fresh noise to the next timestep, return $\hat x_0$ at the end; written out in `animatelcm_helpers.lcm` (its source is on the page) and proven equal to diffusers' `LCMScheduler`
# - how LCM and TCD on the distilled model compare with DDIM, Euler and DPM-Solver++ on the teacher at 1-8 steps, with 95 % intervals
# - why the student runs **without classifier-free guidance**, and what the w-conditioned student does with w
#
# **Prerequisites:** notebook 01 (consistency functions) helps; Python and PyTorch basics.
#
# **Run time:** toy world on a CPU: about 3 minutes (test mode about 1 minute); full world on a GPU: a few minutes (the
# sampler comparison is read from the toy tables).
#
# **Notation and terms**: [docs/NOTATION.md](../docs/NOTATION.md) and [docs/GLOSSARY.md](../docs/GLOSSARY.md) (on Colab:
# [NOTATION.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/NOTATION.md),
# [GLOSSARY.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/GLOSSARY.md)).
# **Time here is a discrete diffusion timestep** $t \in \{0, \dots, 999\}$, larger is noisier, with
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,z$: $\bar\alpha_t$ ("alpha-bar") is the share of the signal's power
# left at $t$, close to 1 at $t = 0$ and close to 0 at $t = 999$. Notebook 01 wrote time as a noise level
# ($x = x_0 + \sigma z$, its $t$ was $\sigma$); the two are one thing: $x_t / \sqrt{\bar\alpha_t} = x_0 + \sigma_t z$ with
# $\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}$ (section 3 prints the map for this model).
#
# **What this notebook does not show.** The comparison of samplers is on the toy world (32 x 32 moving digits, 80
# videos a row): its faithfulness and Frechet numbers are analogues of the paper's CLIPSIM and FVD, not those numbers;
# the times are CPU times of tiny models, not GPU speed. The full world runs the same code (sections 1 to 3) but
# measures nothing here: sections 4 and 5 measure the toy world only.

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

from animatelcm_helpers import config, distill, evaluation, lcm, media, pipelines, results
from animatelcm_helpers import consistency as cm
from animatelcm_helpers.toy import metrics

settings = config.setup(world=WORLD, test_mode=TEST_MODE)
TOY = settings.world == "toy"  # the measuring stick (digit classifier, video features) reads toy videos only
print(settings)

# %% [markdown]
# ## 1. Which timesteps? The skipping grid
#
# LCM distillation (**LCD**, latent consistency distillation: notebook 01's consistency distillation on a latent
# diffusion model) never sees all 1000 timesteps of the teacher: it learns on a **skipping grid** of the teacher's
# DDIM solver (**DDIM**: the deterministic diffusion sampler; one DDIM step is one Euler step of the probability-flow ODE, notebook 01),
#
# $$k = \frac{1000}{L},\qquad t_j = j\,k - 1,\quad j = 1, \dots, L \qquad (L = 50:\ k = 20,\ t_j = 19, 39, \dots, 999).$$
#
# At sampling time `LCMScheduler.set_timesteps(n)` takes $n$ points of that grid, evenly spaced, always starting at
# the top (999): with the grid reversed ($t'_0 = 999, \dots, t'_{L-1} = k - 1$), step $i$ visits
#
# $$t_i = t'_{\lfloor i L / n \rfloor} = k\,(L - \lfloor i L / n \rfloor) - 1,\qquad i = 0, \dots, n-1 .$$
#
# `lcm.skipping_grid` and `lcm.lcm_timesteps` are that rule, written out (and tested against diffusers for every step
# count); in the code `original_steps` is $L$, `k` is $k$ and `steps` is $n$:

# %%
media.show_code(lcm.skipping_grid, lcm.lcm_timesteps)

# %%
# NBVAL_CHECK_OUTPUT
grid = lcm.skipping_grid()
print("skipping grid:", grid[:3], "...", grid[-2:], f"({len(grid)} points, k = {grid[1] - grid[0]})")
for n in (1, 2, 4, 8):
    print(f"{n} step{'s' * (n > 1)}:", lcm.lcm_timesteps(n).tolist())

# %%
fig, ax = plt.subplots(figsize=(8, 2.2))
for row, n in enumerate((1, 2, 4, 8)):
    ax.scatter(lcm.lcm_timesteps(n), [row] * n, s=40)
ax.scatter(grid, [-1] * len(grid), s=6, c="gray")
ax.set_yticks(range(-1, 4), ["grid (50)", "1 step", "2 steps", "4 steps", "8 steps"])
ax.set_xlabel("timestep t"); ax.set_title("the timesteps an LCM visits"); plt.show()

# %% [markdown]
# The toy AnimateLCM samples on this 50-point grid. The official AnimateLCM text-to-video sampler (the full world's)
# sets `original_inference_steps=100`: a 100-point grid, $k = 10$, so its 4 steps are 999, 749, 499, 249 (try
# `lcm.lcm_timesteps(4, original_steps=100)`). Section 3 reads the grid from the loaded pipeline's scheduler.
#
# ## 2. The boundary scalings
#
# The student is a consistency function $f(x_t, t) = c_\text{skip}(t)\, x_t + c_\text{out}(t)\, \hat x_0(x_t, t)$ with
# $c_\text{skip} = \sigma_d^2 / ((10t)^2 + \sigma_d^2)$, $c_\text{out} = 10t / \sqrt{(10t)^2 + \sigma_d^2}$, $\sigma_d = 0.5$
# (notebook 01's LCM form; $\sigma_d$ is the data's standard deviation, `sigma_data`, and `timestep_scaling` the 10):

# %%
media.show_code(cm.scalings_lcm)

# %% [markdown]
# At $t = 0$ it is the identity; already at the grid's lowest point ($t = 19$) $c_\text{skip} \approx 7 \cdot 10^{-6}$, so at
# every timestep the sampler visits, $f$ is the model's $\hat x_0$ prediction.

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
# For each chosen timestep $t$ (and the next one, $t_\text{next}$): evaluate the model once (its noise prediction
# $\hat\epsilon$), form the clean estimate and the consistency function's output,
#
# $$\hat x_0 = \frac{x_t - \sqrt{1 - \bar\alpha_t}\,\hat\epsilon}{\sqrt{\bar\alpha_t}},\qquad
# \text{denoised} = c_\text{skip}(t)\, x_t + c_\text{out}(t)\, \hat x_0 = f(x_t, t),$$
#
# and unless it is the last step re-noise to the next timestep with **fresh** noise $z$,
#
# $$\text{prev\_sample} = \sqrt{\bar\alpha_{t_\text{next}}}\ \text{denoised} + \sqrt{1-\bar\alpha_{t_\text{next}}}\ z .$$
#
# The last step returns denoised. In the code `model_output` is $\hat\epsilon$, `sample` is $x_t$, `x0_hat`,
# `denoised`, `t_next` and `prev_sample` carry their names, and `alphas_cumprod[t]` is $\bar\alpha_t$;
# `lcm_sample` is the loop:

# %%
media.show_code(lcm.lcm_step, lcm.lcm_sample)

# %% [markdown]
# `lcm.sample_video` runs `lcm.lcm_sample` on the toy AnimateLCM's UNet; the same starting noise and the same
# generator through diffusers' `AnimateDiffPipeline` + `LCMScheduler` must give the same latents. First the
# pipeline's own schedule: its skipping grid and, at the timesteps it visits for 4 steps, $\bar\alpha_t$ and the noise
# level $\sigma_t$ of notebook 01's convention.

# %%
pipe = pipelines.load_t2v("animatelcm")
pipe.set_progress_bar_config(disable=True)
L = pipe.scheduler.config.original_inference_steps  # the grid this model samples on
abar = pipe.scheduler.alphas_cumprod
print(f"{type(pipe.scheduler).__name__}: {pipe.scheduler.config.beta_schedule} betas, a {L}-point skipping grid")
for t in lcm.lcm_timesteps(4, original_steps=L):
    print(f"  t = {t:3d}: alpha-bar = {abar[t].item():.4f}, sigma = {((1 - abar[t]) / abar[t]).sqrt().item():.3f}")

# %%
PROMPT = "a seven moving left"
ours, trajectory, x_T = lcm.sample_video(pipe, PROMPT, steps=4, seed=0, noise_seed=1, original_steps=L)
theirs = pipe(PROMPT, num_frames=pipe.model_spec.frames, height=pipe.model_spec.height, width=pipe.model_spec.width,
              num_inference_steps=4, guidance_scale=1.0, latents=x_T.clone(),
              generator=torch.Generator().manual_seed(1), output_type="latent").frames

# %%
# NBVAL_CHECK_OUTPUT
print("same latents as the pipeline (allclose at 1e-5):", torch.allclose(ours, theirs, atol=1e-5))

# %% [markdown]
# The input is the prompt; the output of each of the 4 steps is its predicted $\hat x_0$, decoded (rows: steps;
# columns: the 8 frames).

# %%
steps_decoded = [(t, lcm.decode(pipe, x0)) for t, x0 in trajectory]
media.show_markdown(f"**Prompt:** *{PROMPT}* (4 steps, no guidance)")
media.show_rows({f"step {i + 1}: x0 predicted at t = {t}": v for i, (t, v) in enumerate(steps_decoded)})

# %% [markdown]
# What the toy world's measuring stick reads in each row: the digit the classifier sees (and the probability it gives
# the asked seven), and the digit's motion (the slope of its centre of mass, in pixels a frame; the real videos move
# 2 px a frame, and a digit slower than a threshold, printed below, counts as not moving).

# %%
if TOY:
    read = []
    for i, (t, v) in enumerate(steps_decoded):
        vx, vy = metrics.velocity(v) or (float("nan"), float("nan"))
        read.append((i + 1, t, int(metrics.read_digits(v[None])[0]), metrics.digit_score(v[None], [PROMPT]),
                     vx, vy, metrics.read_direction(v[None])[0]))
        print(f"step {i + 1} (t = {t:3d}): digit read {read[-1][2]}, p(seven) = {read[-1][3]:.2f}, "
              f"motion ({vx:+.2f}, {vy:+.2f}) px/frame (x right, y down): {read[-1][6]}")
    print(f"(not moving: slower than metrics.MIN_SPEED = {metrics.MIN_SPEED} px a frame)")
    first, last = read[0], read[-1]
    speed = max(abs(last[4]), abs(last[5]))
    media.show_markdown(
        f"Step 1 is a blur: the classifier {'already ' if first[2] == 7 else ''}reads a {first[2]} (p(seven) = {first[3]:.2f}), and its centre of "
        f"mass drifts {first[6] or 'nowhere'} ({first[4]:+.2f}, {first[5]:+.2f} px a frame). The later steps, each "
        f"from a re-noised version of the previous estimate, refine it: after step {last[0]} the classifier reads a "
        f"{last[2]} with p(seven) = {last[3]:.2f}, and the digit moves {last[6] or 'nowhere'} at {speed:.2f} px a "
        f"frame, against the 2 px of the real videos. One video: section 4 measures many.")

# %% [markdown]
# ## 4. Samplers compared
#
# The same question the paper's table 1 asks, on the toy world: the distilled model with `LCMScheduler` and
# `TCDScheduler` against the **teacher** with DDIM, Euler and DPM-Solver++ at 1, 2, 4 and 8 steps. **TCD** (trajectory
# consistency distillation's sampler) is LCM's with a stochasticity $\gamma$ (0, 0.3, 0.6 here; 0 is DDIM-like);
# **DPM-Solver++** is a fast higher-order ODE solver, the paper's strongest few-step baseline. The teacher runs with
# **classifier-free guidance** (**CFG**: the model run with and without the prompt, the difference amplified by the
# scale `guidance_scale` = 7.5; two UNet evaluations a step); the student without (scale 1).
#
# The measures ([NOTATION.md](../docs/NOTATION.md), "Measures"): **digit** and **direction**, the fraction of videos
# whose digit a classifier reads as the prompt's and whose digit moves the prompt's way (the CLIPSIM analogue; higher is
# better), **both**, **digit p** (the mean probability of the asked digit), and **Frechet**, the Frechet distance between
# features of the generated and of real held-out videos (the FVD analogue; lower is better; **floor** is real against
# real), with the cost. Every comparison below states its sample size and 95 % interval (bootstrap over the videos,
# `metrics.bootstrap`); overlapping intervals are a **tie**. A Frechet distance's interval is the bootstrap's spread
# centred on the distance (`metrics.frechet_interval`): a resampled set repeats videos, the distance reads the repeats
# as missing variety, and the plain percentile interval sits above the distance it is for (it can miss
# it altogether). The live run's "holds / misses the table's value" (the stored rows keep no Frechet interval) is a
# rough check, not a verdict.
#
# First a **live run** on fresh seeds (2 and 3: seeds the stored tables did not use; test mode: seed 2 only), then the
# stored tables measured by `scripts/tables.py` on seeds 0 and 1 (80 videos a row: every digit times every direction,
# twice).

# %%
live_seeds = config.pick((2, 3), (2,))
live_steps = config.pick((1, 2, 4), (1, 4))
if TOY:
    live = [evaluation.evaluate(pipe, n, 1.0, seeds=live_seeds, label="AnimateLCM (toy)") for n in live_steps]
    teacher = pipelines.load_t2v("teacher")
    live += [evaluation.evaluate(teacher, n, 7.5, scheduler="ddim", seeds=live_seeds, label="teacher") for n in live_steps]
    print(evaluation.format_table(live))

# %%
# NBVAL_CHECK_OUTPUT
table = results.rows("table1") + results.rows("samplers")
keep = lambda r: r["steps"] in (1, 2, 4, 8)
print(evaluation.format_table([r for r in table if keep(r)]))


# %%
def find_row(label, scheduler, steps, rows=table):
    return next(r for r in rows if r["label"] == label and r["scheduler"] == scheduler and r["steps"] == steps)


shown = results.shown  # a row's value with its 95 % interval, or "(no interval stored)"


def versus(a, b, key):
    """'wins', 'ties' or 'loses' for row a against row b by the interval rule (`results.verdict`; a Frechet
    distance: lower is better), or 'not called (no interval stored)'."""
    v = results.verdict(a, b, key)
    return {"win": "wins", "tie": "ties", "loss": "loses"}.get(v, v)


def frechet_pair(a, b):
    """Two rows' Frechet distances and the verdict, or the bare values when either row stores no interval."""
    said = versus(a, b, "frechet")
    if said.startswith("not called"):
        return f"Frechet {a['frechet']:.1f} vs {b['frechet']:.1f} (no interval stored: not called)"
    return f"Frechet {shown(a, 'frechet', 1)} vs {shown(b, 'frechet', 1)} ({said})"


def steps_said(n):
    return f"{n} step{'s' * (n > 1)}"


def agreement(a, b, key):
    """Do two measurements of the same setting agree: 'intervals overlap' or 'intervals apart'."""
    ia, ib = results.interval(a, key), results.interval(b, key)
    if ia is None or ib is None:
        return "no interval stored"
    return "intervals overlap" if ia.overlaps(ib) else "intervals apart"


lines = []
for r in live if TOY else []:
    stored = find_row(r["label"], r["scheduler"], r["steps"])
    frechet = results.interval(r, "frechet")
    inside = ("" if frechet is None else
              f"; Frechet {frechet.format(1)} live, which {'holds' if frechet.low <= stored['frechet'] <= frechet.high else 'misses'} "
              f"the table's {stored['frechet']:.1f}")
    lines.append(f"- {r['label']} / {r['scheduler']}, {steps_said(r['steps'])}: direction {shown(r, 'direction')} live "
                 f"against {shown(stored, 'direction')} stored ({agreement(r, stored, 'direction')}); digit "
                 f"{shown(r, 'digit')} against {shown(stored, 'digit')} ({agreement(r, stored, 'digit')}){inside}.")
if TOY:
    media.show_markdown(f"**The live run against the table** ({live[0]['videos']} fresh videos a row against "
                        f"{table[0]['videos']}; 95 % intervals):\n\n" + "\n".join(lines))

# %% [markdown]
# **Wins and ties in the stored table.** The student (LCM) against the teacher's DDIM and DPM-Solver++ (the paper's
# baselines; the teacher's Euler rows above are within a few videos of its DDIM rows) at the same number of steps,
# and at the same number of UNet evaluations (the teacher's CFG doubles them: 8 student steps cost what 4
# guided teacher steps cost). The Frechet distance is quoted with its interval where the table stores one; without
# one it is not called a win.

# %%
student = "AnimateLCM (toy)"
lines = []
for n in (1, 2, 4, 8):
    s = find_row(student, "lcm", n)
    for sched in ("ddim", "dpm++"):
        tch = find_row("teacher", sched, n)
        lines.append(f"- {steps_said(n)}, LCM vs {sched.upper()}: digit {shown(s, 'digit')} vs {shown(tch, 'digit')} "
                     f"({versus(s, tch, 'digit')}); direction {shown(s, 'direction')} vs {shown(tch, 'direction')} "
                     f"({versus(s, tch, 'direction')}); {frechet_pair(s, tch)}.")
for n in (2, 4, 8):
    s, tch = find_row(student, "lcm", n), find_row("teacher", "dpm++", n // 2)
    lines.append(f"- {s['unet_evals']} UNet evaluations each: LCM {n} steps vs DPM++ {steps_said(n // 2)} with CFG: direction "
                 f"{shown(s, 'direction')} vs {shown(tch, 'direction')} ({versus(s, tch, 'direction')}).")
for n in (4, 8):
    s = find_row(student, "lcm", n)
    for gamma in ("0", "0.3", "0.6"):
        tcd = find_row(f"{student}, TCD gamma {gamma}", "tcd", n)
        lines.append(f"- {n} steps, TCD gamma {gamma} vs LCM: direction {shown(tcd, 'direction')} vs "
                     f"{shown(s, 'direction')} ({versus(tcd, s, 'direction')}).")
media.show_markdown(f"Stored rows of {s['videos']} videos, 95 % intervals; the verdict is the first model's:\n\n" + "\n".join(lines))

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
        ivs = [results.interval(r, key) for r in rs]
        err = None if None in ivs else [[r[key] - iv.low for r, iv in zip(rs, ivs)], [iv.high - r[key] for r, iv in zip(rs, ivs)]]
        ax.errorbar([r["steps"] for r in rs], [r[key] for r in rs], yerr=err, fmt=style, capsize=2,
                    label=f"{label.replace('AnimateLCM (toy)', 'student')} / {sched}")
for ax, key in zip(axes, ("digit faithfulness", "direction faithfulness", "Frechet distance (lower is better)")):
    ax.set_xscale("log", base=2); ax.set_xlabel("steps"); ax.set_title(key)
axes[2].set_yscale("log"); axes[0].legend(fontsize=6)
fig.suptitle(f"stored tables, {table[0]['videos']} videos a row (bars: 95 % intervals where known)", y=1.04)
plt.show()

# %% [markdown]
# ## 5. Why no classifier-free guidance?
#
# A guided step evaluates the UNet twice (with and without the prompt). The student has the guidance **distilled in**:
# during distillation its target was the teacher's guided ODE, in LCM's convention $w = s - 1$ for a CFG scale $s$
# (the teacher's $s = 7.5$ is $w = 6.5$), with $w$ drawn around it (`distill.W_RANGE`, printed below). So it runs at
# guidance 1, one evaluation a step. The cost, counted in the stored table:

# %%
# NBVAL_CHECK_OUTPUT
for r in [r for r in results.rows("table1") if (r["label"], r["steps"]) in (("AnimateLCM (toy)", 4), ("teacher", 25), ("teacher", 50)) and r["scheduler"] in ("lcm", "ddim")]:
    print(f"{r['label']:18s} {r['scheduler']:5s} {r['steps']:2d} steps, CFG {r['guidance']:g}: {r['unet_evals']:3d} UNet evaluations")
print("w range of the toy video student's distillation (distill.W_RANGE['lora']):", distill.W_RANGE["lora"])

# %% [markdown]
# The full LCD student of stage 1 (notebook 03; an image model) has a **w-embedding** instead: $w$ is an input of the
# network, so one network serves every guidance strength, still one evaluation a step. The `guidance_scale` argument is
# $w + 1$ and goes into the embedding, not into CFG (the table counts the evaluations). Below, the input prompts (the
# ten digits) and the images it draws for them at four values of $w$ (4 steps, one seed), then the measured table over
# more seeds.

# %%
from diffusers import UNet2DConditionModel
from animatelcm_helpers.toy import zoo

W_VALUES = (0.0, 2.0, 6.5, 12.0)
if TOY:
    full = pipelines.load_t2i(unet=UNet2DConditionModel.from_pretrained(zoo.root() / "image-lcm" / "full", torch_dtype=torch.float32))
    full.set_progress_bar_config(disable=True)
    prompts = list(metrics.IMAGE_PROMPTS)
    drawn = {}
    for w in W_VALUES:
        images = full(prompt=prompts, num_inference_steps=4, guidance_scale=w + 1.0, output_type="np",
                      height=full.model_spec.height, width=full.model_spec.width,
                      generator=[torch.Generator().manual_seed(i) for i in range(len(prompts))]).images
        drawn[f"w = {w:g} (guidance_scale {w + 1:g})"] = media.float_to_uint8(np.asarray(images))
    media.show_markdown("**Prompts**, left to right: " + ", ".join(f"*{p}*" for p in prompts))
    media.show_rows(drawn)

# %%
if TOY:
    w_rows = [evaluation.evaluate(full, 4, w + 1.0, seeds=config.pick((0, 1, 2, 3), (0,)), label=f"full student, w = {w:g}")
              for w in W_VALUES]
    print(evaluation.format_table(w_rows))
    lo, hi = w_rows[0], w_rows[-1]
    media.show_markdown(
        f"Over {lo['videos']} images a row: the digit is read right in a fraction {shown(lo, 'digit')} of them at w = 0 "
        f"and {shown(hi, 'digit')} at w = 12 ({versus(hi, lo, 'digit')}); the mean probability of the asked digit goes "
        f"from {lo['score']:.3f} to {hi['score']:.3f} (no interval measured), and the image Frechet distance from "
        f"{shown(lo, 'frechet', 1)} to {shown(hi, 'frechet', 1)} (w = 12 {versus(hi, lo, 'frechet')} "
        f"against w = 0, lower is better). "
        + ("Larger w moves the images away from the real ones' statistics, as strong guidance does in a diffusion "
           "model (less variety), at no extra evaluation." if versus(hi, lo, "frechet") == "loses"
           else "So w changes the images less than these intervals can tell apart."))

# %% [markdown]
# ## Summary
#
# - An LCM samples on the skipping grid it was distilled on: with $L = 50$, 1 step is t = 999, 4 steps are 999, 759,
#   499, 259 (`lcm.lcm_timesteps`; the official text-to-video sampler uses $L = 100$).
# - $c_\text{skip}$, $c_\text{out}$ pin $f(x, 0) = x$; at the visited timesteps $f$ is the $\hat x_0$ prediction.
# - Multistep sampling = denoise, re-noise with fresh noise, repeat (`lcm.lcm_step`, `lcm.lcm_sample`); it equals
#   diffusers' `LCMScheduler`.
# - The student needs no CFG: one UNet evaluation a step. Section 4 lists, with 95 % intervals, where few-step LCM
#   sampling beats the teacher's samplers and where it ties; a Frechet difference without a stored interval is not
#   called a win.
#
# ## Exercises
#
# 1. Print `lcm.lcm_timesteps(3)` and `lcm.lcm_timesteps(4, original_steps=25)`. Predict them first from the rule of
#    section 1.
# 2. Sample with `lcm.sample_video(pipe, PROMPT, steps=4, noise_seed=s)` for three values of `s` with the same `seed`,
#    and with three values of `seed` with the same `noise_seed`. Which of the two changes the video more, and why?
# 3. Add TCD with gamma 0.3 at 4 steps to the live table (`scheduler="tcd", call_kwargs={"eta": 0.3}`). Does it beat,
#    tie or lose to LCM on direction?
# 4. Give the student guidance 2.0: how many UNet evaluations per step now, and is the video better (by the interval
#    rule)?
# 5. From the stored table alone: at the same cost of 8 UNet evaluations, which is better on direction, the student
#    at 8 steps or DPM-Solver++ at 4 steps with CFG?
#
# ## Solutions
#
# <details><summary>Solutions (open after trying the exercises)</summary>
#
# 1. The rule $t_i = k(L - \lfloor iL/n \rfloor) - 1$: for $n = 3$, $L = 50$, $k = 20$ the indices are 0, 16, 33, so
#    999, 679, 339; for $L = 25$, $k = 40$, $n = 4$ the indices are 0, 6, 12, 18, so 999, 759, 519, 279. The cell below
#    prints both.
# 2. `seed` draws the starting noise $x_T$ at $t = 999$, the only input of the first step, whose $\hat x_0$ every later
#    step starts from; `noise_seed` draws only the re-noising noise of the later steps, which enters at smaller $t$
#    ($\bar\alpha_t$ larger: more of the previous estimate survives the re-noising). So one expects `seed` to matter
#    more. The cell below measures both changes as the mean absolute pixel difference from the first video.
# 3. and 4. The cells below run them on the live seeds and apply the interval rule. With guidance above 1 the pipeline
#    runs CFG: two UNet evaluations a step, and the student was not distilled for it.
# 5. 8 UNet evaluations are the student's 8 steps and DPM-Solver++'s 4 guided steps; the cell below compares their
#    direction intervals.
#
# </details>

# %%
print("3 steps:", lcm.lcm_timesteps(3).tolist(), "| 4 steps on a 25-point grid:", lcm.lcm_timesteps(4, original_steps=25).tolist())


# %%
def video(seed, noise_seed):
    latents, _, _ = lcm.sample_video(pipe, PROMPT, steps=4, seed=seed, noise_seed=noise_seed, original_steps=L)
    return lcm.decode(pipe, latents).astype(np.float64)


base = video(0, 1)
by_noise = [np.abs(video(0, s) - base).mean() for s in (2, 3, 4)]
by_seed = [np.abs(video(s, 1) - base).mean() for s in (1, 2, 3)]
media.show_markdown(
    f"Mean absolute pixel difference (0 to 255) from the video of seed 0, noise_seed 1: other noise_seeds "
    f"{', '.join(f'{d:.1f}' for d in by_noise)}; other seeds {', '.join(f'{d:.1f}' for d in by_seed)}. "
    f"The starting noise changes the video {'more' if min(by_seed) > max(by_noise) else 'not always more'} than the re-noising draws.")

# %%
if TOY:
    tcd_row = evaluation.evaluate(pipe, 4, 1.0, scheduler="tcd", call_kwargs={"eta": 0.3}, seeds=live_seeds,
                                  label="AnimateLCM (toy), TCD gamma 0.3")
    cfg_row = evaluation.evaluate(pipe, 4, 2.0, seeds=live_seeds, label="AnimateLCM (toy), guidance 2")
    lcm_row = find_row("AnimateLCM (toy)", "lcm", 4, rows=live)
    print(evaluation.format_table([lcm_row, tcd_row, cfg_row]))
    media.show_markdown(
        f"**3.** TCD gamma 0.3 at 4 steps, direction {shown(tcd_row, 'direction')} against LCM's {shown(lcm_row, 'direction')} "
        f"on the same {lcm_row['videos']} videos: it {versus(tcd_row, lcm_row, 'direction')}.\n\n"
        f"**4.** Guidance 2: {cfg_row['unet_evals'] // 4} UNet evaluations a step ({cfg_row['unet_evals']} for 4 steps); "
        f"direction {shown(cfg_row, 'direction')}, digit {shown(cfg_row, 'digit')} against {shown(lcm_row, 'direction')} and "
        f"{shown(lcm_row, 'digit')} without: on direction it {versus(cfg_row, lcm_row, 'direction')}, on digit it "
        f"{versus(cfg_row, lcm_row, 'digit')}, at {cfg_row['unet_evals'] // lcm_row['unet_evals']} times the cost.")

# %%
s8, d4 = find_row("AnimateLCM (toy)", "lcm", 8), find_row("teacher", "dpm++", 4)
media.show_markdown(
    f"**5.** Both cost {s8['unet_evals']} UNet evaluations; direction: student {shown(s8, 'direction')}, "
    f"DPM-Solver++ {shown(d4, 'direction')} ({s8['videos']} videos each): the student {versus(s8, d4, 'direction')}.")
