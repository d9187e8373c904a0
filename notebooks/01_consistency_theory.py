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
# # 01 · Consistency theory: from the probability-flow ODE to one-step generation
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/animatelcm-runnable/animatelcm-runnable/blob/main/notebooks/01_consistency_theory.ipynb)
#
# **What you will learn**
#
# - how a diffusion model's **probability-flow ODE** carries noise to data, and why solving it takes many steps
# - what a **consistency function** is, and how the scalings $c_\text{skip}$ and $c_\text{out}$ make its boundary condition $f(x, \epsilon) = x$ hold by construction (in the consistency-model form and in the LCM form that AnimateLCM uses)
# - **consistency distillation (CD)**: a student learns from one ODE-solver step of a teacher, against an EMA target
# - **consistency training (CT)**: the same without a teacher, from data alone (the objective AnimateLCM uses for its teacher-free adaptation)
# - **multistep consistency sampling**, and how many teacher ODE steps one student step is worth, measured
#
# Everything happens on 2-D points you can see, so every idea gets a picture; the functions used here
# (`animatelcm_helpers.consistency`) are the same ones the later notebooks apply to video latents.
#
# **Prerequisites**: Python and PyTorch basics; the idea of diffusion (add noise to data, learn to remove it).
# Notebook 00 (quickstart) is optional.
#
# **Run time**: toy CPU ~3 min (test mode < 2 min) / full GPU: same (this notebook is world-independent: it trains
# small MLPs on 2-D points on the CPU in either world).

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
from animatelcm_helpers import config
settings = config.setup(world=WORLD, test_mode=TEST_MODE)
print(settings)

# %%
# %matplotlib inline
import time

import matplotlib.pyplot as plt
import torch

from animatelcm_helpers import consistency as cm
from animatelcm_helpers import toy2d

torch.manual_seed(0)
torch.set_num_threads(1)  # the networks here are tiny: one thread is faster than two (and shares the CPU better)

# Training lengths: normal mode trains longer for cleaner results; test mode (CI) is short.
TEACHER_STEPS = config.pick(3000, 600)
CD_STEPS = config.pick(1500, 500)
CT_STEPS = config.pick(2000, 600)
N_SAMPLES = 2000  # points per sample set, and held-out points to compare with
print(f"teacher {TEACHER_STEPS} steps, CD {CD_STEPS} steps, CT {CT_STEPS} steps")

# %% [markdown]
# ## 1. Data you can see
#
# Two moons, centred and scaled so that their standard deviation is $\sigma_\text{data} = 0.5$, the value the
# consistency-model scalings assume. A fixed split: the models train on the training points, and every
# quality number compares against the **held-out** points only.

# %%
# NBVAL_CHECK_OUTPUT
train, test = toy2d.make_data(n_train=4000, n_test=N_SAMPLES, seed=0)
print("train:", tuple(train.shape), "held-out:", tuple(test.shape), "std:", round(train.std().item(), 4))

# %% [markdown]
# **How we measure samples.** The sliced Wasserstein distance projects both point sets on many random
# directions $\theta$ and averages the 1-D Wasserstein distances (for equal-size sets: the mean gap between the
# sorted projections):
#
# $$SW_1(a, b) = \mathbb{E}_\theta\, \big[ W_1(\langle a, \theta\rangle, \langle b, \theta\rangle) \big].$$
#
# Lower is better. Two independent samples of the *same* distribution are not at distance 0: the training points
# against the held-out points give the floor that no model can beat.

# %%
# NBVAL_CHECK_OUTPUT
floor = toy2d.sliced_wasserstein(train[:N_SAMPLES], test)
print(f"SW floor (train vs held-out, {N_SAMPLES} points each): {floor:.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), sharex=True, sharey=True)
for ax, pts, name in zip(axes, (train, test), ("training points", "held-out points")):
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
    ax.set_title(f"{name} ({len(pts)})")
    ax.set_aspect("equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. A diffusion teacher and its probability-flow ODE
#
# **Noising.** Consistency models use the variance-exploding process of EDM (Karras et al. 2022): a clean
# point $x_0$ becomes
#
# $$x_t = x_0 + t\, z, \qquad z \sim \mathcal N(0, I), \qquad t \in [\epsilon, T] = [0.002, 80].$$
#
# **Denoiser.** The teacher is a small MLP $F$ wrapped in EDM's preconditioning, so that its output
# $D(x, t) \approx \mathbb E[x_0 \mid x_t = x]$ is well scaled at every noise level:
#
# $$D(x, t) = c_\text{skip}(t)\, x + c_\text{out}(t)\, F\big(c_\text{in}(t)\, x,\ \tfrac14 \ln t\big),\quad
# c_\text{skip} = \frac{\sigma_\text{data}^2}{t^2 + \sigma_\text{data}^2},\quad
# c_\text{out} = \frac{t\, \sigma_\text{data}}{\sqrt{t^2 + \sigma_\text{data}^2}},\quad
# c_\text{in} = \frac{1}{\sqrt{t^2 + \sigma_\text{data}^2}}.$$
#
# It is trained by denoising score matching, $\mathcal L = \mathbb E\big[\lambda(t)\, \lVert D(x_t, t) - x_0\rVert^2\big]$
# with $\lambda(t) = (t^2 + \sigma_\text{data}^2) / (t\, \sigma_\text{data})^2$ and $\ln t$ drawn from a normal
# distribution (`toy2d.train_teacher`).

# %%
start = time.perf_counter()
teacher, teacher_losses = toy2d.train_teacher(train, steps=TEACHER_STEPS, seed=0, progress=False)
print(f"teacher: {sum(p.numel() for p in teacher.parameters()):,} parameters, "
      f"final loss {sum(teacher_losses[-100:]) / 100:.3f}, {time.perf_counter() - start:.0f} s")

# %%
plt.figure(figsize=(5, 3))
plt.plot(teacher_losses, lw=0.5)
plt.yscale("log")
plt.xlabel("training step")
plt.ylabel("weighted denoising loss")
plt.title("teacher training")
plt.show()

# %% [markdown]
# **The probability-flow ODE.** The same marginals $p_t$ are produced by a *deterministic* flow (Song et al. 2021;
# in EDM form):
#
# $$\frac{dx}{dt} = \frac{x - D(x, t)}{t}.$$
#
# Start at $x_T = T z$ and integrate down to $\epsilon$: every starting point has exactly one trajectory, and its
# end is a sample. Solvers walk a grid of times, dense near the data (Karras et al. 2022):
#
# $$t_i = \Big(T^{1/\rho} + \tfrac{i}{n-1}\big(\epsilon^{1/\rho} - T^{1/\rho}\big)\Big)^{\rho},\qquad i = 0, \dots, n-1,\quad \rho = 7.$$
#
# An **Euler** step (DDIM, in this parameterisation) follows the slope $d(x, t) = (x - D(x, t))/t$:
# $x' = x + (t' - t)\, d(x, t)$. A **Heun** step corrects it with the slope at the landing point:
# $x' = x + (t' - t)\,\tfrac12\big(d(x, t) + d(x_\text{Euler}, t')\big)$, two network evaluations (NFE) a step.

# %%
# NBVAL_CHECK_OUTPUT
print("karras_grid(5): ", [round(t, 4) for t in cm.karras_grid(5).tolist()])
grid18 = cm.karras_grid(18)
print("karras_grid(18):", [round(t, 3) for t in grid18[:4].tolist()], "...", [round(t, 4) for t in grid18[-3:].tolist()])

# %%
x_T = toy2d.start_noise(N_SAMPLES, seed=123)  # the same starting noise for every sampler below
x_ode, ode_ts, ode_path = toy2d.teacher_sample(teacher, x_T, 50, "heun", return_path=True)
path = torch.stack(ode_path)  # (51 times, points, 2)

show_at = [0, 10, 20, 30, 40, 50]
fig, axes = plt.subplots(1, len(show_at), figsize=(16, 2.9))
for ax, i in zip(axes, show_at):
    ax.scatter(path[i, :, 0], path[i, :, 1], s=1, alpha=0.5)
    ax.set_title(f"t = {ode_ts[i].item():.3g}")
fig.suptitle("the teacher's PF-ODE carries noise (t = 80) to data (t = 0.002): Heun, 50 steps", y=1.03)
plt.tight_layout()
plt.show()

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for k in range(40):
    axes[0].plot(ode_ts, path[:, k, 0], lw=0.8)
axes[0].set_xscale("log")
axes[0].set_yscale("symlog", linthresh=1.0)
axes[0].invert_xaxis()
axes[0].set_xlabel("t (log scale; sampling runs left to right, from noise to data)")
axes[0].set_ylabel("first coordinate of x_t")
axes[0].set_title("40 trajectories: one coordinate against t")

late = ode_ts <= 2.0  # the last part of each trajectory, where the structure appears
axes[1].scatter(test[:, 0], test[:, 1], s=1, c="lightgray")
for k in range(60):
    axes[1].plot(path[late, k, 0], path[late, k, 1], lw=0.8)
    axes[1].scatter(path[-1, k, 0], path[-1, k, 1], s=8, c="k")
axes[1].set_xlim(-1.6, 1.6); axes[1].set_ylim(-1.0, 1.0); axes[1].set_aspect("equal")
axes[1].set_title("60 trajectories from t = 2 to t = 0.002 (black: ends)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The consistency function and its boundary condition
#
# Each trajectory $\{x_t\}_{t \in [\epsilon, T]}$ has an origin $x_\epsilon$. The **consistency function** maps
# *every* point of a trajectory to that origin (Song et al. 2023):
#
# $$f(x_t, t) = x_\epsilon \quad\text{for all } t \in [\epsilon, T], \qquad\text{hence}\qquad f(x_t, t) = f(x_{t'}, t') \ \text{(self-consistency)}.$$
#
# If we had it, one evaluation $f(T z, T)$ would be a sample. A network learns it in a form that satisfies the
# **boundary condition** $f(x, \epsilon) = x$ by construction:
#
# $$f_\theta(x, t) = c_\text{skip}(t)\, x + c_\text{out}(t)\, F_\theta(x, t),\qquad
# c_\text{skip}(t) = \frac{\sigma_\text{data}^2}{(t - \epsilon)^2 + \sigma_\text{data}^2},\quad
# c_\text{out}(t) = \frac{\sigma_\text{data}(t - \epsilon)}{\sqrt{t^2 + \sigma_\text{data}^2}}$$
#
# (`cm.scalings_cm`, $\sigma_\text{data} = 0.5$, $\epsilon = 0.002$): $c_\text{skip}(\epsilon) = 1$, $c_\text{out}(\epsilon) = 0$.
#
# **The LCM form.** Latent consistency models (and AnimateLCM) work on a DDPM model's discrete timesteps
# $t = 0, \dots, 999$; $F$ is the model's $x_0$ prediction and, with $u = 10\,t$ (`cm.scalings_lcm`),
#
# $$c_\text{skip}(t) = \frac{\sigma_\text{data}^2}{u^2 + \sigma_\text{data}^2},\qquad c_\text{out}(t) = \frac{u}{\sqrt{u^2 + \sigma_\text{data}^2}}.$$
#
# The boundary is $t = 0$; already at the first timestep a sampler uses the skip term has all but vanished.

# %%
# NBVAL_CHECK_OUTPUT
for t in (0.002, 0.5, 80.0):
    c_skip, c_out = cm.scalings_cm(t)
    print(f"CM   t = {t:<6}  c_skip = {c_skip:.6g}   c_out = {c_out:.6g}")
for t in (0, 19, 999):
    c_skip, c_out = cm.scalings_lcm(t)
    print(f"LCM  t = {t:<6}  c_skip = {c_skip:.6g}   c_out = {c_out:.6g}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
t = torch.logspace(-2.7, 1.9, 300)
c_skip, c_out = cm.scalings_cm(t)
axes[0].plot(t, c_skip, label="c_skip")
axes[0].plot(t, c_out, label="c_out")
axes[0].axvline(cm.EPS, c="gray", ls=":", label="eps")
axes[0].set_xscale("log"); axes[0].set_xlabel("t"); axes[0].set_title("CM scalings (sigma_data 0.5, eps 0.002)")
axes[0].legend()
steps = torch.arange(0, 60, dtype=torch.float32)
c_skip, c_out = cm.scalings_lcm(steps)
axes[1].plot(steps, c_skip, label="c_skip")
axes[1].plot(steps, c_out, label="c_out")
axes[1].set_xlabel("discrete timestep t (of 0..999)"); axes[1].set_title("LCM scalings (u = 10 t)")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Consistency distillation (CD): learn from the teacher's ODE
#
# We cannot evaluate $x_\epsilon$ for a training point, but the teacher can move a point *one step* along its
# trajectory. CD (Song et al. 2023, algorithm 2) takes a training point $x_0$, a grid index $n$, noises it to the
# larger time $t_n$, lets the teacher solve one step down to $t_{n+1}$ (ODE solver $\Phi$, here Heun), and asks the
# student to give the same answer at both points:
#
# $$x_{t_n} = x_0 + t_n z,\qquad \hat x_{t_{n+1}} = \Phi(x_{t_n};\, t_n \to t_{n+1}),\qquad
# \mathcal L_\text{CD} = \mathbb E\Big[\lambda(t_n)\, d\big(f_\theta(x_{t_n}, t_n),\ f_{\theta^-}(\hat x_{t_{n+1}}, t_{n+1})\big)\Big].$$
#
# The target network $\theta^-$ gets no gradient; it follows the student by an exponential moving average,
#
# $$\theta^- \leftarrow \mu\,\theta^- + (1 - \mu)\,\theta .$$
#
# Together with the boundary condition this pins $f$ down from the bottom: at $t_1 \approx \epsilon$ the target
# *is* its input, one step up it is learned, and so on up the grid. (`cm.cd_loss`, `cm.ema_update`; here with
# $N = 18$ grid points, $\mu = 0.95$, the student initialised from the teacher's weights, as in the CM paper.)
#
# The distance $d$: the squared error $(a - b)^2$, or the pseudo-Huber distance LCM and AnimateLCM use,
# $d(a, b) = \sqrt{(a - b)^2 + c^2} - c$ ($c = 0.001$ there): quadratic for tiny errors, linear for large ones.
# CD here uses the squared error; CT below uses the pseudo-Huber distance.

# %%
# NBVAL_CHECK_OUTPUT
gaps = torch.tensor([0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], dtype=torch.float64)
zeros = torch.zeros_like(gaps)
print("a - b        ", "  ".join(f"{g:9.0e}" for g in gaps.tolist()))
print("L2           ", "  ".join(f"{v:9.2e}" for v in cm.l2(gaps, zeros).tolist()))
print("pseudo-Huber ", "  ".join(f"{v:9.2e}" for v in cm.pseudo_huber(gaps, zeros, c=0.001).tolist()))

# %%
start = time.perf_counter()
cd_student, cd_losses = toy2d.train_cd(teacher, train, steps=CD_STEPS, n_grid=18, mu=0.95, solver="heun", seed=1, progress=False)
print(f"CD: final loss {sum(cd_losses[-100:]) / 100:.2e}, {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## 5. Consistency training (CT): no teacher, data alone
#
# Without a teacher, CT replaces the ODE step by the one-sample estimate of the score: both points of a pair are
# made from the **same** clean $x_0$ and the **same** noise $z$ (Song et al. 2023, algorithm 3):
#
# $$\mathcal L_\text{CT} = \mathbb E\Big[\lambda(t_n)\, d\big(f_\theta(x_0 + t_n z,\ t_n),\ f_{\theta^-}(x_0 + t_{n+1} z,\ t_{n+1})\big)\Big].$$
#
# As the grid gets finer this pair converges to a pair on one PF-ODE trajectory, so CT learns the same consistency
# function, of the true data distribution instead of a teacher's. AnimateLCM trains its adapters (control,
# image-to-video) this way, against the consistency model itself.
#
# CT grows the grid during training: $N(k) = \big\lceil \sqrt{\tfrac{k}{K}((s_1 + 1)^2 - s_0^2) + s_0^2} - 1\big\rceil + 1$
# points at step $k$ of $K$ and an EMA rate $\mu(k) = \exp(s_0 \ln \mu_0 / N(k))$ (`cm.ct_schedule`). The CM paper uses
# $s_0 = 2$, $s_1 = 150$, $\mu_0 = 0.9$ and the squared error; for this short run `toy2d.train_ct` uses $s_1 = 100$ and
# three changes from the improved recipe of Song & Dhariwal (2023): no EMA in the target ($\mu_0 = 0$: the target is
# the student with its gradient stopped), the weight $\lambda(t_n) = 1 / (t_n - t_{n+1})$ (`cm.weight_inverse_gap`), and
# the pseudo-Huber distance (with $c = 0.01$, for points of this scale).

# %%
# NBVAL_CHECK_OUTPUT
K = 100
for k in (0, 25, 50, 100):
    n_paper, mu_paper = cm.ct_schedule(k, K)  # s0 = 2, s1 = 150, mu0 = 0.9
    n_toy, mu_toy = cm.ct_schedule(k, K, s0=2, s1=100, mu0=0.0)
    print(f"k/K = {k / K:.2f}: paper N = {n_paper:3d}, mu = {mu_paper:.4f} | this notebook N = {n_toy:3d}, mu = {mu_toy:.1f}")

# %%
start = time.perf_counter()
ct_student, ct_losses = toy2d.train_ct(train, steps=CT_STEPS, seed=2, progress=False)
print(f"CT: final loss {sum(ct_losses[-100:]) / 100:.2e}, {time.perf_counter() - start:.0f} s")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
for ax, losses, name in zip(axes, (cd_losses, ct_losses), ("CD (from the teacher)", "CT (from data alone)")):
    ax.plot(losses, lw=0.5)
    ax.set_yscale("log"); ax.set_xlabel("training step"); ax.set_title(f"{name}: loss")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. What the consistency function learns along a trajectory
#
# Take the teacher's own trajectories from section 2 (Heun, 50 steps) and evaluate, at every time $t_i$ on them,
#
# - the teacher's denoiser $D(x_{t_i}, t_i)$: the *average* clean point that could have produced $x_{t_i}$;
# - the students' consistency functions $f(x_{t_i}, t_i)$: ideally the trajectory's own end $x_\epsilon$, whatever $t_i$.
#
# The left plot shows how far each is from the end of the trajectory. The CD student learned *this teacher's*
# trajectories; the CT student never saw the teacher: it learned the consistency function of the data, whose
# trajectories are close to the teacher's but not the same.

# %%
with torch.no_grad():
    end = path[-1]
    dist = {"teacher denoiser D": [], "CD student f": [], "CT student f": []}
    preds = {name: [] for name in dist}
    for i, t_i in enumerate(ode_ts.tolist()):
        x_i = path[i]
        outs = {
            "teacher denoiser D": toy2d.denoiser(teacher, x_i, t_i),
            "CD student f": toy2d.consistency_fn(cd_student, x_i, t_i),
            "CT student f": toy2d.consistency_fn(ct_student, x_i, t_i),
        }
        for name, out in outs.items():
            dist[name].append((out - end).norm(dim=1).mean().item())
            preds[name].append(out[:3])

fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
for name, d in dist.items():
    axes[0].plot(ode_ts, d, label=name)
axes[0].set_xscale("log"); axes[0].set_yscale("log"); axes[0].invert_xaxis()
axes[0].set_xlabel("t on the trajectory"); axes[0].set_ylabel("mean distance to the trajectory's end")
axes[0].set_title("prediction of the end, from every point of the trajectory")
axes[0].legend()

ax = axes[1]
ax.scatter(test[:, 0], test[:, 1], s=1, c="lightgray")
colors = ["tab:blue", "tab:orange", "tab:green"]
for k in range(3):
    keep = ode_ts <= 2.0
    ax.plot(path[keep, k, 0], path[keep, k, 1], c=colors[k], lw=1)
    d_pred = torch.stack([p[k] for p in preds["teacher denoiser D"]])
    f_pred = torch.stack([p[k] for p in preds["CD student f"]])
    ax.scatter(d_pred[:, 0], d_pred[:, 1], marker="x", s=14, c=colors[k], alpha=0.6)
    ax.scatter(f_pred[:, 0], f_pred[:, 1], marker="o", s=30, facecolors="none", edgecolors=colors[k])
    ax.scatter(end[k, 0], end[k, 1], marker="*", s=150, c="k")
ax.set_xlim(-1.6, 1.6); ax.set_ylim(-1.0, 1.0); ax.set_aspect("equal")
ax.set_title("3 trajectories (lines, t <= 2): D(x_t, t) (x) wanders,\nCD's f(x_t, t) (o) stays at the end (*)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. One step and a few steps
#
# **One step**: $x = f_\theta(T z, T)$. **Multistep consistency sampling** (CM algorithm 1, the LCM sampler) spends a
# few more evaluations to correct the first one: denoise, go back to a smaller time with fresh noise, denoise again,
#
# $$x_0 \leftarrow f_\theta(x, t_1);\qquad \text{for } t = t_2, t_3, \dots:\quad x \leftarrow x_0 + \sqrt{t^2 - \epsilon^2}\, z,\quad x_0 \leftarrow f_\theta(x, t)$$
#
# (`cm.multistep_sample`; the times after $T$ are spread between 1 and 0.1, `toy2d.student_times`). Whether the
# extra steps pay off depends on how good the first one already is: the table in section 8 tells, for each student.
# Below, the teacher's ODE solutions and the students' samples from the **same** starting noise.

# %%
print("student times:", {n: [round(t, 3) for t in toy2d.student_times(n).tolist()] for n in (1, 2, 4, 8)})
STEPS_SHOWN = [1, 2, 4, 8, 50]
STUDENT_STEPS = [1, 2, 4, 8]
samples = {}
for solver in ("euler", "heun"):
    for n in STEPS_SHOWN:
        samples[f"teacher {solver}", n] = toy2d.teacher_sample(teacher, x_T, n, solver)
for name, net in (("CD student", cd_student), ("CT student", ct_student)):
    for n in STUDENT_STEPS:
        samples[name, n] = toy2d.student_sample(net, x_T, n, seed=7)
quality = {key: toy2d.sliced_wasserstein(x, test) for key, x in samples.items()}

rows = ["teacher euler", "teacher heun", "CD student", "CT student"]
fig, axes = plt.subplots(len(rows), len(STEPS_SHOWN), figsize=(12, 9.2), sharex=True, sharey=True)
for r, name in enumerate(rows):
    for c, n in enumerate(STEPS_SHOWN):
        ax = axes[r, c]
        if (name, n) in samples:
            x = samples[name, n]
            ax.scatter(x[:1000, 0], x[:1000, 1], s=1, alpha=0.5)  # half the points keep the figure light
            ax.set_title(f"{name}, {n} step{'s' if n > 1 else ''}: SW {quality[name, n]:.3f}", fontsize=9)
        else:
            ax.scatter(test[:1000, 0], test[:1000, 1], s=1, alpha=0.5, c="gray")
            ax.set_title("held-out data (reference)", fontsize=9)
        ax.set_xlim(-1.6, 1.6); ax.set_ylim(-1.1, 1.1)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 8. How many teacher steps is one student step worth?
#
# The table gives the sliced Wasserstein distance to the held-out points (lower is better; the floor is two samples
# of the data itself) for the teacher's ODE at more step counts, with the network evaluations (NFE) each costs, and
# for the students. Then the code finds the smallest number of teacher ODE steps that is at least as good as **one**
# step of each student.
#
# Heun with very few steps can be *worse* than Euler: its corrector takes the slope at the landing time, and after one
# huge step from $T$ that slope is evaluated far from any trajectory, where $(x - D(x, t))/t$ with a tiny $t$ is
# enormous. (EDM's sampler therefore ends with an Euler step to $t = 0$; both solvers here end at $\epsilon$, as the
# consistency models do.)

# %%
TEACHER_STEPS_TABLE = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 50, 100]
for solver in ("euler", "heun"):
    for n in TEACHER_STEPS_TABLE:
        if (f"teacher {solver}", n) not in quality:
            quality[f"teacher {solver}", n] = toy2d.sliced_wasserstein(toy2d.teacher_sample(teacher, x_T, n, solver), test)

print(f"sliced Wasserstein distance to {N_SAMPLES} held-out points (floor {floor:.4f})\n")
print(f"{'steps':>5} | {'teacher Euler':>13} (NFE) | {'teacher Heun':>12} (NFE) | {'CD student':>10} | {'CT student':>10}")
for n in TEACHER_STEPS_TABLE:
    cd_q = f"{quality['CD student', n]:10.4f}" if ("CD student", n) in quality else f"{'':10}"
    ct_q = f"{quality['CT student', n]:10.4f}" if ("CT student", n) in quality else f"{'':10}"
    print(f"{n:5d} | {quality['teacher euler', n]:13.4f} ({n:3d}) | {quality['teacher heun', n]:12.4f} ({2 * n:3d}) | {cd_q} | {ct_q}")


# %%
def steps_to_match(solver, target):
    """The fewest teacher ODE steps (of the table) whose samples are at least as good as `target`."""
    return next((n for n in TEACHER_STEPS_TABLE if quality[f"teacher {solver}", n] <= target), None)

for name in ("CD student", "CT student"):
    one = quality[name, 1]
    for solver, nfe_per_step in (("euler", 1), ("heun", 2)):
        n = steps_to_match(solver, one)
        if n:
            print(f"1 step of the {name} (SW {one:.4f}) is as good as the teacher's ODE at "
                  f"{n} {solver.capitalize()} steps ({n * nfe_per_step} NFE)")
        else:
            print(f"1 step of the {name} (SW {one:.4f}) beats the teacher's ODE at every step count tried "
                  f"with {solver.capitalize()}, up to {TEACHER_STEPS_TABLE[-1]} steps")

beats = all(quality["CD student", 1] < quality[f"teacher {s}", n] for s in ("euler", "heun") for n in (1, 2, 4))
print(f"\n1-step CD student beats the teacher's ODE (Euler and Heun) at 1, 2 and 4 steps: {beats}")

# %%
plt.figure(figsize=(8, 4.5))
steps = torch.tensor(TEACHER_STEPS_TABLE)
plt.plot(steps, [quality["teacher euler", n] for n in TEACHER_STEPS_TABLE], "o-", label="teacher ODE, Euler (NFE = steps)")
plt.plot(2 * steps, [quality["teacher heun", n] for n in TEACHER_STEPS_TABLE], "s-", label="teacher ODE, Heun (NFE = 2 x steps)")
plt.plot(STUDENT_STEPS, [quality["CD student", n] for n in STUDENT_STEPS], "D-", label="CD student (NFE = steps)")
plt.plot(STUDENT_STEPS, [quality["CT student", n] for n in STUDENT_STEPS], "^-", label="CT student (NFE = steps)")
plt.axhline(floor, c="gray", ls=":", label="floor: data vs data")
plt.xscale("log"); plt.yscale("log")
plt.xlabel("network evaluations (NFE)"); plt.ylabel("sliced Wasserstein to held-out (lower is better)")
plt.title("sample quality against cost")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Summary
#
# - A diffusion model samples by solving its **probability-flow ODE** $dx/dt = (x - D(x,t))/t$ from noise to data;
#   with few solver steps the solution is poor (the table's first rows), because the slope changes a lot between
#   grid points.
# - A **consistency function** maps every point of a trajectory to its origin. Written as
#   $f = c_\text{skip} x + c_\text{out} F$ with $c_\text{skip}(\epsilon) = 1$, $c_\text{out}(\epsilon) = 0$ (CM form) or
#   the LCM form on discrete timesteps, it satisfies the boundary condition $f(x, \epsilon) = x$ for any network $F$.
# - **Consistency distillation** trains $f$ from *one* teacher ODE step at a time, against an EMA target; **consistency
#   training** needs no teacher: both points of a pair share the same $x_0$ and the same noise.
# - The student samples in **one** network evaluation, or a few with multistep sampling; section 8 measured, in this
#   run, how many teacher ODE steps that one step is worth.
# - AnimateLCM does exactly this on video latents: CD from a video diffusion teacher (LCM form, DDIM solver with a
#   skipping step, pseudo-Huber distance), and CT to adapt new modules without a teacher. The functions of
#   `animatelcm_helpers.consistency` used here are the ones the next notebooks reuse.
#
# ## Exercises
#
# 1. **Break the boundary condition on purpose.** Retrain CD with scalings that ignore it,
#    `broken = lambda t: (torch.zeros_like(t), torch.ones_like(t))` (so $f = F$), e.g.
#    `toy2d.train_cd(teacher, train, steps=CD_STEPS, scalings=broken)`, and sample with
#    `toy2d.student_sample(net, x_T, 1, scalings=broken)`. What happens to the loss and to the samples? Why does a
#    function that outputs the same constant everywhere minimise the CD loss, and what in the normal parameterisation
#    rules it out? (Hint: look at the target at the smallest grid time.)
# 2. **The EMA rate.** Retrain CD with `mu=0.0`, `0.95` and `0.999`, and CT with the CM paper's settings
#    (`mu0=0.9, s1=150, weighting=None, distance=cm.l2`) against the same with `mu0=0.0`. Compare the losses and the 1-step quality. Why
#    does a slow target make learning slow, and why might it stop a collapse?
# 3. **The skipping step.** LCM and AnimateLCM take the teacher step across $k = 20$ of 1000 timesteps. Here, train CD
#    on a finer grid with `n_grid=60` and `skip=1`, `skip=5`, `skip=15`. What does a larger $k$ trade (the teacher
#    step's error against how many steps the target needs to "propagate" the boundary condition up the grid)? Try
#    `solver="euler"` too.
