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
# # 05 · Teacher-free adaptation: training adapters against the video consistency model itself
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/animatelcm-runnable/animatelcm-runnable/blob/main/notebooks/05_teacher_free_adaptation.ipynb)
#
# **What you will learn**
#
# - why an adapter trained for a diffusion model (a ControlNet, an image encoder for image-to-video) fits a **consistency** model badly when sampled in 4 steps
# - AnimateLCM's **teacher-free adaptation**: the consistency-training objective, two points on ONE noising path (same clean latent, same noise), an EMA target, and no teacher model at all
# - two adapters trained that way on the toy AnimateLCM: an edge **ControlNet** (controlnet-aux Canny and line-art maps) and an **image-to-video** adapter (the image conditions the first frame, the motion modules carry it on)
# - the comparison with the naive way (the same adapters trained with the ordinary diffusion loss on the teacher, then used with 4 LCM steps), measured
#
# **Prerequisites:** notebooks 01 (consistency functions), 02 (LCM sampling) and 04 (the toy AnimateLCM); what a ControlNet is (a trainable copy of the UNet's encoder whose outputs are added to the UNet's skip connections).
#
# **Run time:** toy world on a CPU: about 1 minute (test mode < 2 minutes: a few real training steps, then the shipped adapters and the measured table); full world: the objective is the same, the training needs a GPU (see the summary).

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

from animatelcm_helpers import config, control, detectors, distill, evaluation, media, pipelines, results, utils
from animatelcm_helpers.toy import configs, recipes, zoo

settings = config.setup(world=WORLD, test_mode=TEST_MODE)
print(settings)
if settings.world == "full":
    print("Training here uses the toy world (tiny models); notebook 06 runs the full world's ControlNets.")

# %% [markdown]
# ## 1. The problem
#
# A ControlNet or an image encoder is trained with the diffusion loss, on a diffusion model, for a sampler that takes 25 to 50
# small steps. AnimateLCM's student jumps from noise to a clean video in 4 steps; the adapter's residuals were never trained
# for those jumps, and there is no teacher for the *adapted* model to distil from (the teacher has no such adapter). The paper's
# answer: train the adapter **against the consistency model itself** with the consistency-*training* objective:
#
# $$x_{t} = \sqrt{\bar\alpha_{t}}\,x_0 + \sqrt{1-\bar\alpha_{t}}\,z, \qquad x_{t-k} = \sqrt{\bar\alpha_{t-k}}\,x_0 + \sqrt{1-\bar\alpha_{t-k}}\,z,$$
# $$\mathcal{L} = d\big(f_{\theta,\phi}(x_{t}, t, c),\; f_{\theta,\phi^-}(x_{t-k}, t-k, c)\big)$$
#
# Both points lie on one noising path: the **same** clean latent $x_0$ and the **same** noise $z$, so no ODE solver (no teacher)
# is needed between them. $\theta$ is the frozen video consistency model (the toy AnimateLCM), $\phi$ the adapter, $\phi^-$ its EMA,
# $c$ the condition, $d$ the pseudo-Huber distance, $k$ the gap between the two points: $k = 20$ (the LCM grid, $N = 50$)
# for the edge ControlNet, $k = 100$ ($N = 10$, `solver_steps=10`) for the image-to-video adapter, which learned much faster
# with the larger gap. It is `distill.consistency_training_loss`.

# %% [markdown]
# ## 2. The data: videos, their control maps, their first frames
#
# `recipes.adapter_data` takes plain Moving Digits training videos, encodes them with the VAE, and makes control maps with
# controlnet-aux detectors that need no downloaded weights: Canny for half of the videos, line art (`LineartStandardDetector`)
# for the other half, so one edge ControlNet learns both. The image-to-video adapter's condition is the first frame, on
# frame 0 only: the later frames get a mid-gray "no condition" image (`distill.as_conditioning`), the keyframe scheme of
# SparseCtrl (the AnimateDiff authors' image-to-video ControlNet). The motion modules carry the image on to the later frames.
# The official AnimateLCM-I2V instead adds its image encoding to every frame; with this frame-by-frame ControlNet that pulls
# every frame toward frame 0 and fights the motion (exercise 3 tries it).

# %%
inputs = recipes.distillation_inputs("video", limit=8)  # the zoo's UNet, teacher motion adapter, captions, schedule
from diffusers import AutoencoderKL, MotionAdapter
vae = AutoencoderKL.from_pretrained(zoo.root() / "base" / "vae").eval()
data = recipes.adapter_data(vae, limit=config.pick(64, 16))
print({k: tuple(v.shape) for k, v in data.items()})

# %%
video = evaluation.test_videos(1)[0][0]
i2v_cond = distill.as_conditioning(torch.from_numpy(video[0]).permute(2, 0, 1)[None], frames=len(video))[0]
media.show_rows({"a held-out video": video, "Canny maps": detectors.detect(video, "canny"),
                 "line-art maps": detectors.detect(video, "lineart"), "content shuffle": detectors.detect(video, "shuffle"),
                 "image-to-video condition": (i2v_cond.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()})

# %% [markdown]
# ## 3. The adapters and the frozen consistency model
#
# The ControlNet is diffusers' `ControlNetModel.from_unet` of the toy UNet: a trainable copy of its encoder, a small
# conditioning embedding that brings the 32x32 map down to the 8x8 latent grid (the VAE's factor 4), and zero-initialised
# output convolutions, so at the start it changes nothing. `distill.controlled_call` runs it frame by frame, as
# `AnimateDiffControlNetPipeline` does, and adds its residuals to the UNet's skip connections.

# %%
lcm_adapter = MotionAdapter.from_pretrained(zoo.root() / "animatelcm")
lora = distill.load_lora_state_dict(zoo.root() / "animatelcm" / config.TOY_LCM_LORA)
model = recipes.consistency_model(inputs["unet"], lcm_adapter, lora)  # the toy AnimateLCM, frozen
controlnet = configs.tiny_controlnet(inputs["unet"])
x0, text = data["latents"][:2], inputs["text"][data["ids"][:2]]
cond = distill.as_conditioning(data["edges"][:2], frames=8)
t = torch.tensor([499, 499])
noisy = x0 + torch.randn_like(x0)
with torch.no_grad():
    plain = recipes.video_eps(model, noisy, t, text)
    steered = distill.controlled_call(model, controlnet)(noisy, t, text, cond)
print(f"ControlNet: {sum(p.numel() for p in controlnet.parameters()):,} parameters; "
      f"at init it changes eps by {float((steered - plain).abs().max()):.1e} (zero convolutions)")

# %% [markdown]
# ## 4. Training, both ways, a few real steps
#
# `distill.train_adapter(objective="consistency")` is the teacher-free recipe: the loss above, an EMA target ($\mu = 0.95$),
# AdamW, resumable checkpoints. `objective="diffusion"` is the naive way: the ordinary noise-prediction loss
# $\lVert \epsilon_{\theta,\phi}(x_t, t, c) - z \rVert^2$ with the adapter on the **teacher** (base + AnimateDiff-style motion modules), which is how
# adapters are usually trained; the naive adapter is then plugged into AnimateLCM unchanged.

# %%
import shutil
from pathlib import Path

teacher_model = distill.motion_unet(inputs["unet"], inputs["adapter"]).eval()
STEPS = config.pick(30, 3)
fits = {}
for objective, frozen in (("consistency", model), ("diffusion", teacher_model)):
    folder = Path("outputs/adapter_demo") / objective
    shutil.rmtree(folder, ignore_errors=True)
    _, fits[objective] = distill.train_adapter(folder, configs.tiny_controlnet(inputs["unet"]), frozen, data["latents"],
                                               data["edges"], data["ids"], inputs["text"], inputs["alphas"], steps=STEPS,
                                               objective=objective, batch=4, progress=False)
    print(f"{objective:12s} {STEPS} steps in {fits[objective].seconds:.1f} s")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for ax, (objective, fit) in zip(axes, fits.items()):
    ax.plot(fit.losses); ax.set_title(f"{objective} loss (this run)"); ax.set_xlabel("step")
plt.show()

# %% [markdown]
# The zoo's build (stage `adapters`) trained all four adapters for longer: the edge ControlNet and the image-to-video
# adapter, each teacher-free and naive (same steps, same data, same seed). Their losses during that build:

# %%
import json
curves = json.loads((zoo.root() / "manifest.json").read_text())["stages"]["adapters"]
print({k: v for k, v in curves.items() if k.endswith(("_seconds", "_final_loss"))})

# %% [markdown]
# ## 5. The shipped adapters, side by side at 4 LCM steps
#
# Held-out videos: their Canny maps as the control, their caption as the prompt. Without control the digit goes wherever
# the model likes; with the teacher-free ControlNet it follows the edges; the naive one was trained for a 25-step teacher.

# %%
pipe = pipelines.load_t2v("animatelcm")
edges_free = control.controlnet_pipeline(control.load_controlnet("canny"), pipe=pipe)
edges_naive = control.controlnet_pipeline(control.load_controlnet("canny", naive=True), pipe=pipe)
videos, prompts = evaluation.test_videos(config.pick(3, 2), seed=1)
rows = {}
for video, prompt in zip(videos, prompts):
    maps = detectors.detect(video, "canny")
    rows[f"control: {prompt}"] = maps
    rows["no control"] = pipelines.generate(pipe, prompt, seed=0).frames
    rows["teacher-free ControlNet"] = out_free = control.generate_controlled(edges_free, prompt, maps, seed=0).frames
    rows["naive ControlNet"] = out_naive = control.generate_controlled(edges_naive, prompt, maps, seed=0).frames
    media.show_rows(rows); rows = {}
    print(f"edge F1: teacher-free {detectors.edge_f1(out_free, maps):.2f}, naive {detectors.edge_f1(out_naive, maps):.2f}")

# %% [markdown]
# Image-to-video: the first frame of a held-out video is the image, the caption says how it should move.

# %%
i2v_free = control.controlnet_pipeline(control.load_controlnet("i2v"), pipe=pipe)
i2v_naive = control.controlnet_pipeline(control.load_controlnet("i2v", naive=True), pipe=pipe)
for video, prompt in zip(videos, prompts):
    free = control.image_to_video(i2v_free, video[0], prompt, seed=0).frames
    naive = control.image_to_video(i2v_naive, video[0], prompt, seed=0).frames
    media.show_rows({f"the image, and the real video ({prompt})": video, "teacher-free I2V adapter": free, "naive I2V adapter": naive})
    print(f"first-frame PSNR: teacher-free {utils.psnr(free[0], video[0]):.1f} dB, naive {utils.psnr(naive[0], video[0]):.1f} dB")

# %% [markdown]
# ## 6. Measured: 40 held-out videos, one seed each (`python scripts/tables.py control`)
#
# `edge_f1`: the generated frames' Canny edges against the control's, matched within 1 pixel. `first_psnr`: the first
# generated frame against the real first frame. `digit` / `direction`: faithfulness to the caption (the metric nets of the zoo).

# %%
# NBVAL_CHECK_OUTPUT
table = results.load("control")["rows"]
print("| setting | steps | edge F1 | first-frame PSNR | digit | direction | UNet evals |\n|---|---:|---:|---:|---:|---:|---:|")
for r in table:
    if r["mode"] != "v2v":
        f1 = "-" if r["edge_f1"] is None else f"{r['edge_f1']:.2f}"
        print(f"| {r['label']} | {r['steps']} | {f1} | {r['first_psnr']:.1f} | {r['digit']:.2f} | {r['direction']:.2f} | {r['unet_evals']} |")


# %%
def pick(kind, mode):  # the AnimateLCM row of an adapter kind ("teacher-free" / "naive") in a mode
    return next(r for r in table if r["label"].startswith(f"AnimateLCM + {kind}") and r["mode"] == mode
                and (mode != "control" or "canny" in r["label"]))

plain = next(r for r in table if r["mode"] == "t2v")
free_c, naive_c = pick("teacher-free", "control"), pick("naive", "control")
free_i, naive_i = pick("teacher-free", "i2v"), pick("naive", "i2v")
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].bar(["no control", "naive", "teacher-free"], [plain["edge_f1"], naive_c["edge_f1"], free_c["edge_f1"]], color=["gray", "tab:orange", "tab:blue"])
axes[0].set_title("edge F1 at 4 LCM steps (Canny control)")
axes[1].bar(["no adapter", "naive", "teacher-free"], [plain["first_psnr"], naive_i["first_psnr"], free_i["first_psnr"]], color=["gray", "tab:orange", "tab:blue"])
axes[1].set_title("first-frame PSNR (dB), image-to-video at 4 steps")
plt.show()

# %% [markdown]
# ## Summary
#
# - Adapters meet a consistency model at sampling time: a ControlNet's residuals steer every one of its few big jumps.
# - Teacher-free adaptation trains the adapter **on** the consistency model with consistency training: two points of one
#   noising path (same $x_0$, same $z$), an EMA target, no teacher. `distill.train_adapter(objective="consistency")`.
# - The naive alternative, diffusion loss on the teacher, is one flag away (`objective="diffusion"`); the table above
#   compares the two at 4 LCM steps on held-out videos.
# - Full world: the same function trains an SD1.5-size ControlNet against the real AnimateLCM; it needs a GPU and a video set
#   with control maps (hours on one A100 class GPU, by the paper's setup); notebook 06 uses the Hub's SD1.5 ControlNets.
#
# ## Exercises
#
# 1. Train the edge ControlNet teacher-free with `ema=0.0` (a stop-gradient target) for the same steps and compare losses.
# 2. The naive adapter was trained on the teacher. Train one with `objective="diffusion"` on the consistency model `model`
#    instead: is it better or worse than the naive one at 4 LCM steps? Why might that be?
# 3. Train the image-to-video adapter the official way, the image on every frame: pass `data["first"][:, None].expand(-1, 8, -1, -1, -1)`
#    as the conditions (and the image repeated in the pipeline). Compare the first-frame PSNR and the direction with the shipped one.
# 4. Condition the image-to-video adapter on a styled first frame (`MovingDigits(..., styles=("neon",))`): does the style carry over?
