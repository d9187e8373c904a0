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
# - **multistep consistency sampling**, and how many teacher ODE steps one student step is worth, measured over several seeds with a 95 % interval
#
# Everything happens on 2-D points you can see, so every idea gets a picture; the functions used here
# (`animatelcm_helpers.consistency`) are the same ones the later notebooks apply to video latents, and their source is
# shown on the page after each formula.
#
# **Prerequisites**: Python and PyTorch basics; the idea of diffusion (add noise to data, learn to remove it).
# Notebook 00 (quickstart) is optional.
#
# **Run time**: toy CPU ~6 min (test mode < 2 min) / full GPU: same (this notebook is world-independent: it trains
# small MLPs on 2-D points on the CPU in either world).
#
# **Notation and terms**: the course's one notation is in [docs/NOTATION.md](../docs/NOTATION.md), its terms in
# [docs/GLOSSARY.md](../docs/GLOSSARY.md) (on Colab: [NOTATION.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/NOTATION.md),
# [GLOSSARY.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/GLOSSARY.md)).
# **Time in this notebook is a noise level**: $x_t = x_0 + t\,z$ ("variance exploding", $t = \sigma$ of NOTATION's
# convention 2), $t \in [\epsilon, T] = [0.002, 80]$, as in the consistency-models paper. Notebooks 02 to 06 use the discrete
# timesteps $t = 0 .. 999$ of Stable Diffusion with $\bar\alpha_t$ ("alpha-bar", the share of signal left,
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,z$); the two map by $\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}$
# (section 3 prints the map).
#
# **What this notebook does not show.** It works on 2-D points with networks of about 30,000 weights, not on video
# latents; the LCM form of the scalings is only computed and plotted here (an LCM is trained in notebooks 03 and 04);
# that CT adapts new modules without a teacher, as AnimateLCM's teacher-free adaptation does, is shown in notebook 05.
# The speed-up it measures (teacher ODE steps per student step) holds for this toy and one training run of each model:
# its intervals cover the sampling noise (new starting noise per seed), not retraining.

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
from animatelcm_helpers import lcm, media, toy2d
from animatelcm_helpers.toy import metrics

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
# **Noising.** Consistency models use the variance-exploding process of **EDM** (Karras et al. 2022, a formulation of
# diffusion on noise levels; [glossary](../docs/GLOSSARY.md)): a clean point $x_0$ becomes
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
# **The probability-flow ODE** (PF-ODE). The same marginals $p_t$ are produced by a *deterministic* flow (Song et al. 2021;
# in EDM form):
#
# $$\frac{dx}{dt} = \frac{x - D(x, t)}{t}.$$
#
# Start at $x_T = T z$ and integrate down to $\epsilon$: every starting point has exactly one trajectory, and its
# end is a sample. Solvers walk a grid of $N$ times, dense near the data (Karras et al. 2022), **indexed from the noisy
# end**:
#
# $$t_i = \Big(T^{1/\rho} + \tfrac{i}{N-1}\big(\epsilon^{1/\rho} - T^{1/\rho}\big)\Big)^{\rho},\qquad i = 0, \dots, N-1,\quad \rho = 7,
# \qquad t_0 = T > t_1 > \dots > t_{N-1} = \epsilon .$$
#
# An **Euler** step follows the slope $d(x, t) = (x - D(x, t))/t$: $x' = x + (t' - t)\, d(x, t)$. In this
# parameterisation it is exactly **DDIM**, the deterministic diffusion sampler the later notebooks use. A **Heun** step
# corrects it with the slope at the landing point: $x' = x + (t' - t)\,\tfrac12\big(d(x, t) + d(x_\text{Euler}, t')\big)$,
# two network evaluations (**NFE**, the cost unit of this notebook) a step.

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
# If we had it, one evaluation $f(T z, T)$ would be a sample. A network $F_\theta$ learns it in a form that satisfies the
# **boundary condition** $f(x, \epsilon) = x$ by construction:
#
# $$f_\theta(x, t) = c_\text{skip}(t)\, x + c_\text{out}(t)\, F_\theta(x, t),\qquad
# c_\text{skip}(t) = \frac{\sigma_\text{data}^2}{(t - \epsilon)^2 + \sigma_\text{data}^2},\quad
# c_\text{out}(t) = \frac{\sigma_\text{data}(t - \epsilon)}{\sqrt{t^2 + \sigma_\text{data}^2}}$$
#
# ($\sigma_\text{data} = 0.5$, $\epsilon = 0.002$): $c_\text{skip}(\epsilon) = 1$, $c_\text{out}(\epsilon) = 0$. The code, as
# the package runs it: `scalings_cm` is the pair of scalings, `consistency_function` the combination, with
# `model_out` $= F_\theta(x, t)$.

# %%
media.show_code(cm.scalings_cm, cm.consistency_function)

# %% [markdown]
# **The LCM form.** Latent consistency models (**LCM**: a latent diffusion model distilled into a consistency
# model; AnimateLCM is one) work on a diffusion model's discrete timesteps $t = 0, \dots, 999$; $F$ is the model's
# $x_0$ prediction and, with $u = 10\,t$ (`cm.scalings_lcm`),
#
# $$c_\text{skip}(t) = \frac{\sigma_\text{data}^2}{u^2 + \sigma_\text{data}^2},\qquad c_\text{out}(t) = \frac{u}{\sqrt{u^2 + \sigma_\text{data}^2}}.$$
#
# The boundary is $t = 0$; already at $t = 19$, the lowest point of the timestep grid an LCM samples on (notebook 02),
# the skip term has all but vanished (the printout).

# %%
# NBVAL_CHECK_OUTPUT
for t in (0.002, 0.5, 80.0):
    c_skip, c_out = cm.scalings_cm(t)
    print(f"CM   t = {t:<6}  c_skip = {c_skip:.6g}   c_out = {c_out:.6g}")
for t in (0, 19, 999):
    c_skip, c_out = cm.scalings_lcm(t)
    print(f"LCM  t = {t:<6}  c_skip = {c_skip:.6g}   c_out = {c_out:.6g}")

# %% [markdown]
# **The two time conventions, mapped.** A discrete timestep $t$ with signal share $\bar\alpha_t$ is the noise level
# $\sigma_t = \sqrt{(1 - \bar\alpha_t)/\bar\alpha_t}$ of this notebook's convention (divide $x_t$ by $\sqrt{\bar\alpha_t}$ and
# it reads $x_0 + \sigma_t z$). For Stable Diffusion 1.5's schedule (`lcm.alphas_cumprod`), at the timesteps an LCM visits
# (notebook 02): the noisiest one is far below this notebook's $T = 80$.

# %%
# NBVAL_CHECK_OUTPUT
abar = lcm.alphas_cumprod()  # SD1.5's "scaled-linear" betas, 1000 timesteps
for t in (999, 759, 499, 259, 19, 0):
    print(f"discrete t = {t:3d}: alpha-bar = {abar[t].item():.5f}, sigma = {((1 - abar[t]) / abar[t]).sqrt().item():.4f}")

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
# trajectory. CD (Song et al. 2023, algorithm 2) takes a training point $x_0$ and a grid index $n \in \{0, \dots, N-2\}$,
# sets $t = t_n$ and $t_\text{prev} = t_{n+1} < t$ (the next, less noisy time of the grid; "prev" as diffusers says
# it), noises $x_0$ to $t$, lets the teacher solve one step down to $t_\text{prev}$ (ODE solver $\Phi$, here Heun), and
# asks the student to give the same answer at both points:
#
# $$x_t = x_0 + t\, z,\qquad \hat x_{t_\text{prev}} = \Phi(x_t;\, t \to t_\text{prev}),\qquad
# \mathcal L_\text{CD} = \mathbb E\Big[\lambda(t)\, d\big(f_\theta(x_t, t),\ f_{\theta^-}(\hat x_{t_\text{prev}}, t_\text{prev})\big)\Big].$$
#
# The **target** network $\theta^-$ gets no gradient; it follows the student by an exponential moving average
# (**EMA**),
#
# $$\theta^- \leftarrow \mu\,\theta^- + (1 - \mu)\,\theta .$$
#
# Together with the boundary condition this pins $f$ down from the bottom of the grid: for the last pair,
# $t_\text{prev} = t_{N-1} = \epsilon$, the target $f_{\theta^-}(\hat x_\epsilon, \epsilon)$ *is* its input $\hat x_\epsilon$, so
# $f$ at $t_{N-2}$ learns the ODE's end; the pair above it then has a correct target, and so on up to $t_0 = T$.
#
# The distance $d$: the squared error $(a - b)^2$, or the **pseudo-Huber** distance LCM and AnimateLCM use,
# $d(a, b) = \sqrt{(a - b)^2 + c^2} - c$ ($c = 0.001$ there): quadratic for tiny errors, linear for large ones.
# Here CD uses the squared error and $\lambda = 1$, with $N = 18$ grid points, $\mu = 0.95$, and the student initialised
# from the teacher's weights ($N$ and $\mu$ as in the CM paper's CIFAR-10 runs). In the code, `f_online` is $f_\theta$, `f_target`
# $f_{\theta^-}$, `solver_step` $\Phi$, `distance` $d$ and `weight` $\lambda$; `toy2d.train_cd` calls `cd_loss`, then
# `ema_update`, once a training step.

# %%
media.show_code(cm.cd_loss, cm.ema_update)

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
# Without a teacher, CT replaces the ODE step by a one-sample estimate of the **score** $\nabla_x \log p_t(x)$ (the
# direction the ODE's slope is made of): both points of a pair are made from the **same** clean $x_0$ and the **same**
# noise $z$ (Song et al. 2023, algorithm 3):
#
# $$\mathcal L_\text{CT} = \mathbb E\Big[\lambda(t)\, d\big(f_\theta(x_0 + t\, z,\ t),\ f_{\theta^-}(x_0 + t_\text{prev}\, z,\ t_\text{prev})\big)\Big],
# \qquad t = t_n,\ t_\text{prev} = t_{n+1}.$$
#
# As the grid gets finer this pair converges to a pair on one PF-ODE trajectory, so CT learns the same consistency
# function, of the true data distribution instead of a teacher's. AnimateLCM trains its adapters (control,
# image-to-video) this way, against the consistency model itself (notebook 05). In the code `x0` is $x_0$, `noise`
# $z$, and `add_noise` the forward process $x_0 + t z$:

# %%
media.show_code(cm.ct_loss)

# %% [markdown]
# CT grows the grid during training: $N(k) = \big\lceil \sqrt{\tfrac{k}{K}((s_1 + 1)^2 - s_0^2) + s_0^2} - 1\big\rceil + 1$
# points at step $k$ of $K$ and an EMA rate $\mu(k) = \exp(s_0 \ln \mu_0 / N(k))$ (`cm.ct_schedule`). The CM paper uses
# $s_0 = 2$, $s_1 = 150$, $\mu_0 = 0.9$ and the squared error; for this short run `toy2d.train_ct` uses $s_1 = 100$ and
# three changes from the improved recipe of Song & Dhariwal (2023): no EMA in the target ($\mu_0 = 0$: the target is
# the student with its gradient stopped), the weight $\lambda(t) = 1 / (t - t_\text{prev})$ (`cm.weight_inverse_gap`), and
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

# %%
media.show_markdown(
    f"From the start of the trajectories ($t = T$), the teacher's $D$ lands {dist['teacher denoiser D'][0]:.3f} from "
    f"the trajectory's end on average, the CD student's $f$ {dist['CD student f'][0]:.3f} and the CT student's "
    f"{dist['CT student f'][0]:.3f}. $D$ only approaches the end as $t$ gets small; "
    f"the students' $f$ is already near it at $t = T$, which is what one-step generation needs.")

# %% [markdown]
# ## 7. One step and a few steps
#
# **One step**: $x = f_\theta(T z, T)$. **Multistep consistency sampling** (CM algorithm 1, the LCM sampler) spends a
# few more evaluations to correct the first one: denoise, go back to a smaller time with fresh noise, denoise again.
# On descending times $\tau_0 = T > \tau_1 > \dots > \tau_{n-1}$ ($n$ steps; a grid of their own, not the Karras grid
# $t_i$ above):
#
# $$\hat x_0 \leftarrow f_\theta(T z, \tau_0);\qquad \text{for } i = 1, \dots, n-1:\quad x \leftarrow \hat x_0 + \sqrt{\tau_i^2 - \epsilon^2}\, z_i,\quad \hat x_0 \leftarrow f_\theta(x, \tau_i)$$
#
# with fresh noise $z_i$ each step; the answer is the last $\hat x_0$. In the code `ts` holds the $\tau_i$ and
# `renoise` is $\hat x_0 + \sqrt{\tau_i^2 - \epsilon^2}\, z_i$; the $\tau_i$ after $T$ are spread between 1 and 0.1
# (`toy2d.student_times`). Whether the extra steps pay off depends on how good the first one already is: section 8
# measures it, for each student. Below, the teacher's ODE solutions and the students' samples from the **same**
# starting noise (one seed: a picture, not a measurement).

# %%
media.show_code(cm.multistep_sample)

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
# One starting noise is one draw: two samplers a few thousandths apart on it may swap places on the next. So each
# sampler below runs on several seeds (a new starting noise $x_T$, and new re-noising draws, per seed; the held-out
# points stay the same), and each entry is the mean sliced Wasserstein distance over the seeds with its **95 %
# bootstrap interval** (`metrics.bootstrap`: resample the seeds with replacement, take the middle 95 % of the means).
# The course's rule for comparisons: a sampler **beats** another only when their intervals do not overlap;
# overlapping intervals are a **tie**. The teacher runs at more step counts than in section 7, with the network
# evaluations (NFE) each costs.
#
# Heun with very few steps can be *worse* than Euler: its corrector takes the slope at the landing time, and after one
# huge step from $T$ that slope is evaluated far from any trajectory, where $(x - D(x, t))/t$ with a tiny $t$ is
# enormous. (EDM's sampler therefore ends with an Euler step to $t = 0$; both solvers here end at $\epsilon$, as the
# consistency models do.)

# %%
SEEDS = list(range(config.pick(10, 3)))
TEACHER_STEPS_TABLE = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 50, 100]


def sw_per_seed(sample):
    """The sliced Wasserstein distance to the held-out points of ``sample(x_T, seed)``, for every seed."""
    return [toy2d.sliced_wasserstein(sample(toy2d.start_noise(N_SAMPLES, seed=1000 + s), s), test) for s in SEEDS]


start = time.perf_counter()
sw = {}
for solver in ("euler", "heun"):
    for n in TEACHER_STEPS_TABLE:
        sw[f"teacher {solver}", n] = sw_per_seed(lambda x, s: toy2d.teacher_sample(teacher, x, n, solver))
for name, net in (("CD student", cd_student), ("CT student", ct_student)):
    for n in STUDENT_STEPS:
        sw[name, n] = sw_per_seed(lambda x, s: toy2d.student_sample(net, x, n, seed=s))
iv = {key: metrics.bootstrap(values) for key, values in sw.items()}

print(f"sliced Wasserstein distance to {N_SAMPLES} held-out points: mean over {len(SEEDS)} seeds "
      f"[95 % interval] (floor {floor:.4f}); {time.perf_counter() - start:.0f} s\n")
print(f"{'steps':>5} | {'teacher Euler':>24} (NFE) | {'teacher Heun':>24} (NFE) | {'CD student':>24} | {'CT student':>24}")
for n in TEACHER_STEPS_TABLE:
    cd_q = iv["CD student", n].format(4) if ("CD student", n) in iv else ""
    ct_q = iv["CT student", n].format(4) if ("CT student", n) in iv else ""
    print(f"{n:5d} | {iv['teacher euler', n].format(4):>24} ({n:3d}) | {iv['teacher heun', n].format(4):>24} ({2 * n:3d}) "
          f"| {cd_q:>24} | {ct_q:>24}")


# %% [markdown]
# The code now finds, for one step of each student, the fewest teacher ODE steps that are **not worse** (a tie or
# better, by the interval rule) and reports the rest as wins, losses or ties, as the intervals say.

# %%
def fewest_teacher_steps(solver, target):
    """The fewest teacher ODE steps (of the table) that tie or beat ``target`` (an Interval; lower is better)."""
    return next((n for n in TEACHER_STEPS_TABLE
                 if metrics.compare(iv[f"teacher {solver}", n], target, higher_is_better=False) != "loss"), None)


def verdict(a, b):
    """'beats', 'ties' or 'loses to': a against b, by their intervals (lower SW is better)."""
    return {"win": "beats", "tie": "ties", "loss": "loses to"}[metrics.compare(iv[a], iv[b], higher_is_better=False)]


lines = []
match = {}
for name in ("CD student", "CT student"):
    one = iv[name, 1]
    for solver, nfe_per_step in (("euler", 1), ("heun", 2)):
        n = fewest_teacher_steps(solver, one)
        match[name, solver] = n
        if n is None:
            lines.append(f"- 1 step of the {name} (SW {one.format(4)}) beats the teacher's {solver.capitalize()} ODE "
                         f"at every step count of the table, up to {TEACHER_STEPS_TABLE[-1]} steps.")
        else:
            below = f"beats the teacher's {solver.capitalize()} ODE below {n} steps; at" if n > TEACHER_STEPS_TABLE[0] else "at"
            top = TEACHER_STEPS_TABLE[-1]
            lines.append(f"- 1 step of the {name} (SW {one.format(4)}) {below} {n} steps ({n * nfe_per_step} NFE, "
                         f"SW {iv[f'teacher {solver}', n].format(4)}) the teacher {verdict((f'teacher {solver}', n), (name, 1))} it; "
                         f"at {top} steps the teacher {verdict((f'teacher {solver}', top), (name, 1))} it.")
for name in ("CD student", "CT student"):
    word = {"beats": "beat", "ties": "tie", "loses to": "lose to"}[verdict((name, 2), (name, 1))]
    lines.append(f"- 2 steps of the {name} {word} 1 step of it "
                 f"({iv[name, 2].format(4)} against {iv[name, 1].format(4)}).")
media.show_markdown(f"Over {len(SEEDS)} seeds, 95 % intervals:\n\n" + "\n".join(lines))

# %%
plt.figure(figsize=(8, 4.5))
steps = torch.tensor(TEACHER_STEPS_TABLE)


def with_bars(keys, nfe, fmt, label):
    mean = [iv[k].value for k in keys]
    err = [[iv[k].value - iv[k].low for k in keys], [iv[k].high - iv[k].value for k in keys]]
    plt.errorbar(nfe, mean, yerr=err, fmt=fmt, capsize=2, label=label)


with_bars([("teacher euler", n) for n in TEACHER_STEPS_TABLE], steps, "o-", "teacher ODE, Euler (NFE = steps)")
with_bars([("teacher heun", n) for n in TEACHER_STEPS_TABLE], 2 * steps, "s-", "teacher ODE, Heun (NFE = 2 x steps)")
with_bars([("CD student", n) for n in STUDENT_STEPS], STUDENT_STEPS, "D-", "CD student (NFE = steps)")
with_bars([("CT student", n) for n in STUDENT_STEPS], STUDENT_STEPS, "^-", "CT student (NFE = steps)")
plt.axhline(floor, c="gray", ls=":", label="floor: data vs data")
plt.xscale("log"); plt.yscale("log")
plt.xlabel("network evaluations (NFE)"); plt.ylabel("sliced Wasserstein to held-out (lower is better)")
plt.title(f"sample quality against cost (mean and 95 % interval over {len(SEEDS)} seeds)")
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
# - **Consistency distillation** (`cd_loss`) trains $f$ from *one* teacher ODE step at a time, against an EMA target;
#   **consistency training** (`ct_loss`) needs no teacher: both points of a pair share the same $x_0$ and the same noise.
# - The student samples in **one** network evaluation, or a few with multistep sampling; section 8 measured, in this
#   run and over several seeds, how many teacher ODE steps that one step is worth, calling a win only where the
#   intervals separate.
# - AnimateLCM does this on video latents: CD from a video diffusion teacher (LCM form, DDIM solver with a
#   skipping step, pseudo-Huber distance; notebooks 03 and 04), and CT to adapt new modules without a teacher
#   (notebook 05). The functions of `animatelcm_helpers.consistency` shown here are the ones those notebooks reuse.
#
# ## Exercises
#
# 1. **Break the boundary condition on purpose.** Retrain CD with scalings that ignore it,
#    `broken = lambda t: (torch.zeros_like(t), torch.ones_like(t))` (so $f = F$), e.g.
#    `toy2d.train_cd(teacher, train, steps=CD_STEPS, scalings=broken)`, and sample with
#    `toy2d.student_sample(net, x_T, 1, scalings=broken)`. What happens to the loss and to the samples? Why does a
#    function that outputs the same constant everywhere minimise the CD loss, and what in the normal parameterisation
#    rules it out? (Hint: the target of the last pair of the grid, section 4.)
# 2. **The EMA rate.** Retrain CD with `mu=0.0`, `0.95` and `0.999`, and CT with the CM paper's settings
#    (`mu0=0.9, s1=150, weighting=None, distance=cm.l2`) against the same with `mu0=0.0`. Compare the losses and the
#    1-step quality. Why does a slow target make learning slow, and why might it stop a collapse?
# 3. **The skipping step.** LCM and AnimateLCM take the teacher step across $k = 20$ of 1000 timesteps. Here, train CD
#    on a finer grid with `n_grid=60` and `skip=1`, `skip=5`, `skip=15`. What does a larger $k$ trade (the teacher
#    step's error against how many steps the target needs to "propagate" the boundary condition up the grid)? Try
#    `solver="euler"` too.
# 4. **Read the table.** From section 8 alone: how many network evaluations does the teacher's Heun solver need before
#    it is no longer beaten by one step of the CD student, and what speed-up in NFE is that?
# 5. **The CT schedule by hand.** With the CM paper's settings ($s_0 = 2$, $s_1 = 150$, $\mu_0 = 0.9$), compute $N(k)$
#    and $\mu(k)$ at $k/K = 3/4$ from the formula of section 5, then check with `cm.ct_schedule(75, 100)`.
#
# ## Solutions
#
# <details><summary>Solutions (open after trying the exercises)</summary>
#
# 1. With `broken` scalings nothing ties $f$ to its input at $t = \epsilon$, and the CD loss has a trivial minimiser: a
#    network that outputs one constant point for every input makes both sides of every pair equal (loss 0), whatever
#    the data. In the normal parameterisation $f(x, \epsilon) = x$ exactly, so the target of the last pair is the
#    teacher's $\hat x_\epsilon$ itself, which is not a constant: a constant $f$ would pay a large loss there, and the
#    correct end propagates up the grid. The cell below measures both runs: the loss, the 1-step quality, and the
#    spread of the 1-step samples (their standard deviation per coordinate, beside the data's), which shows whether the broken student
#    has shrunk towards a point or only lost its anchor; its answer says which, from the numbers.
# 2. The target $\theta^-$ moves by a share $1 - \mu$ of the gap a step: with $\mu = 0.999$ the boundary information
#    climbs the grid about fifty times slower than with $\mu = 0.95$, so after the same number of steps the student is
#    worse (it may hardly have left its starting point, the teacher's weights). With $\mu = 0$ the target is the
#    student itself (stop-gradient): the information moves fastest, but the target also jumps with every noisy step.
#    A slow target is a fixed point to aim at, which damps the feedback loop in which the student chases its own output
#    (the way a collapse starts). The cell below compares the three after equally long runs, and the CT pair.
# 3. A larger skip makes each teacher step longer (more solver error in the target), but the boundary condition
#    needs fewer pairs to climb from $\epsilon$ to $T$ ($N/k$ of them). The cell below measures the three skips with
#    Heun, and the largest skip with Euler too, and says which is best. A skip of 1 needs 60 pairs to carry the boundary
#    up the grid, which a short run may not have done; a skip of 15 takes Heun across 15 grid points, and Heun's
#    corrector takes the slope at the landing point, which after a long step lies far off the trajectory (the failure
#    section 8 shows for Heun with few steps), so Euler may do better there. Whether it does, the answer below says:
#    how much a long teacher step costs depends on the solver, not only on its length.
# 4. The cell below reads it from section 8's intervals.
# 5. $N = \lceil\sqrt{0.75\,(151^2 - 4) + 4} - 1\rceil + 1$ and $\mu = \exp(2 \ln 0.9 / N)$; the cell below computes both.
#
# </details>
#
# The cells below compute the answers. The training runs are shorter than the notebook's (`SOLUTION_STEPS` each, all
# the same length, so compare them with each other, not with sections 4 and 5), and the 1-step quality is measured
# on the same seeds as section 8.

# %%
SOLUTION_STEPS = config.pick(500, 100)


def one_step(net, scalings=cm.scalings_cm):
    """The 1-step SW of a student over the seeds of section 8, as an Interval."""
    return metrics.bootstrap(sw_per_seed(lambda x, s: toy2d.student_sample(net, x, 1, seed=s, scalings=scalings)))


def final(losses):
    return sum(losses[-50:]) / len(losses[-50:])


def broken(t):
    return torch.zeros_like(t), torch.ones_like(t)  # f = F: no boundary condition


start = time.perf_counter()
runs, spread = {}, {}
for label, kwargs in {"normal, mu 0.95": {}, "broken boundary": {"scalings": broken},
                      "mu 0": {"mu": 0.0}, "mu 0.999": {"mu": 0.999},
                      "N 60, skip 1": {"n_grid": 60, "skip": 1}, "N 60, skip 5": {"n_grid": 60, "skip": 5},
                      "N 60, skip 15": {"n_grid": 60, "skip": 15},
                      "N 60, skip 15, Euler": {"n_grid": 60, "skip": 15, "solver": "euler"}}.items():
    net, losses = toy2d.train_cd(teacher, train, steps=SOLUTION_STEPS, progress=False, **kwargs)
    scalings = kwargs.get("scalings", cm.scalings_cm)
    runs["CD " + label] = (final(losses), one_step(net, scalings))
    if label in ("normal, mu 0.95", "broken boundary"):  # the spread of the 1-step samples (seed 0 of section 8)
        spread[label] = toy2d.student_sample(net, toy2d.start_noise(N_SAMPLES, seed=1000), 1, seed=0,
                                             scalings=scalings).std(dim=0).mean().item()
ct_paper = dict(s1=150, weighting=None, distance=cm.l2)
for label, mu0 in (("paper, mu0 0.9", 0.9), ("paper, mu0 0", 0.0)):
    net, losses = toy2d.train_ct(train, steps=SOLUTION_STEPS, mu0=mu0, progress=False, **ct_paper)
    runs["CT " + label] = (final(losses), one_step(net))
print(f"{SOLUTION_STEPS} training steps a run, {time.perf_counter() - start:.0f} s\n")
print(f"{'run':24} | {'final loss':>10} | 1-step SW over {len(SEEDS)} seeds [95 %]")
for label, (loss, q) in runs.items():
    print(f"{label:24} | {loss:10.2e} | {q.format(4)}")


# %%
def vs(a, b):
    return {"win": "better than", "tie": "a tie with", "loss": "worse than"}[
        metrics.compare(runs[a][1], runs[b][1], higher_is_better=False)]


def best(labels):
    """The label with the lowest 1-step SW, and whether its interval is apart from every other's."""
    top = min(labels, key=lambda k: runs[k][1].value)
    return top, all(vs(top, k) == "better than" for k in labels if k != top)


mus = ["CD mu 0", "CD normal, mu 0.95", "CD mu 0.999"]
skips = ["CD N 60, skip 1", "CD N 60, skip 5", "CD N 60, skip 15"]
(mu_best, mu_clear), (skip_best, skip_clear) = best(mus), best(skips)
lower = "lower" if runs["CD broken boundary"][0] < runs["CD normal, mu 0.95"][0] else "higher"
media.show_markdown(
    f"**1.** Broken boundary: final loss {runs['CD broken boundary'][0]:.2e}, {lower} than the "
    f"{runs['CD normal, mu 0.95'][0]:.2e} with the boundary condition; 1-step SW {runs['CD broken boundary'][1].format(4)}, "
    f"{vs('CD broken boundary', 'CD normal, mu 0.95')} the normal run's {runs['CD normal, mu 0.95'][1].format(4)}; "
    f"the spread of its 1-step samples is {spread['broken boundary']:.3f} against {spread['normal, mu 0.95']:.3f} for the "
    f"normal run (data: {train.std(dim=0).mean().item():.3f}): "
    + (f"{spread['broken boundary'] / train.std(dim=0).mean().item():.0%} of the data's, so the broken student's samples "
       "shrink towards a point (the trivial minimiser pulls; a single point would have spread 0).\n\n"
       if spread["broken boundary"] < 0.8 * train.std(dim=0).mean().item() else
       "about the data's, so the broken student has lost its anchor without collapsing.\n\n")
    + f"**2.** CD 1-step SW: mu 0 {runs['CD mu 0'][1].format(4)}, mu 0.95 {runs['CD normal, mu 0.95'][1].format(4)}, "
    f"mu 0.999 {runs['CD mu 0.999'][1].format(4)}: the best is {mu_best.removeprefix('CD ')}"
    f"{', its interval apart from both others' if mu_clear else ', tied with another'}. For comparison, the teacher's "
    f"1-step Euler ODE has {iv['teacher euler', 1].format(4)}. CT with the paper's settings: mu0 0.9 "
    f"{runs['CT paper, mu0 0.9'][1].format(4)}, mu0 0 {runs['CT paper, mu0 0'][1].format(4)} "
    f"(mu0 0 is {vs('CT paper, mu0 0', 'CT paper, mu0 0.9')} mu0 0.9).\n\n"
    f"**3.** N = 60 with Heun: skip 1 {runs['CD N 60, skip 1'][1].format(4)}, skip 5 {runs['CD N 60, skip 5'][1].format(4)}, "
    f"skip 15 {runs['CD N 60, skip 15'][1].format(4)}: the best is {skip_best.removeprefix('CD N 60, ')}"
    f"{', its interval apart from both others' if skip_clear else ', tied with another'}. Skip 15 with Euler: "
    f"{runs['CD N 60, skip 15, Euler'][1].format(4)}, {vs('CD N 60, skip 15, Euler', 'CD N 60, skip 15')} Heun's"
    + (f"; Heun across 15 grid points is the worst of all {len(runs)} runs." if max(runs, key=lambda k: runs[k][1].value)
       == "CD N 60, skip 15" else "."))

# %%
n_heun = match["CD student", "heun"]
if n_heun is None:
    answer = (f"no step count of the table: the CD student's one step beats the teacher's Heun ODE up to "
              f"{TEACHER_STEPS_TABLE[-1]} steps ({2 * TEACHER_STEPS_TABLE[-1]} NFE), a speed-up of more than "
              f"{2 * TEACHER_STEPS_TABLE[-1]} times.")
else:
    answer = (f"{n_heun} Heun steps, {2 * n_heun} NFE (the first row where the intervals overlap or the teacher is "
              f"better): one student evaluation is worth {2 * n_heun} teacher evaluations here.")
n_paper, mu_paper = cm.ct_schedule(75, 100)
media.show_markdown(f"**4.** {answer}\n\n**5.** N = {n_paper}, mu = {mu_paper:.4f} at k/K = 3/4.")
