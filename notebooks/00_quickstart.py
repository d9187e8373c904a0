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
# # 00 · Quickstart: a video in 4 steps with AnimateLCM
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/animatelcm-runnable/animatelcm-runnable/blob/main/notebooks/00_quickstart.ipynb)
#
# **What you will learn**
#
# - how the course's two worlds work: the **full** world (real Hub models on a GPU) and the **toy** world ("Moving Digits": tiny models of the same diffusers classes, on any CPU)
# - how AnimateLCM is assembled from diffusers parts: a base image model, a motion adapter, the LCM LoRA and the `LCMScheduler`
# - what each knob does: steps, seed, guidance, LCM LoRA weight, motion LoRA, frames
# - how to save a video and do the same from the command line
#
# **Prerequisites:** Python and a little PyTorch. No GPU needed: the toy world runs on a laptop CPU.
#
# **Run time:** toy world on a CPU: under a minute. Full world on a GPU: **unmeasured** (no GPU with the Hub was lent to
# this project's runs); section 2 prints the download it needs.
#
# **Notation and terms:** [docs/NOTATION.md](../docs/NOTATION.md) and [docs/GLOSSARY.md](../docs/GLOSSARY.md) (on Colab:
# [NOTATION.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/NOTATION.md),
# [GLOSSARY.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/GLOSSARY.md)). Every term in
# **bold** is in the glossary.
#
# **What this quickstart does not show.** It runs the toy world only; the full world's code path is the same, but nothing
# here was run on a GPU, and the seconds printed are CPU seconds of tiny models. Its videos are single examples: where a
# sentence says more than "this video", it quotes a measured table (80 videos, with 95 % intervals). In the toy world the
# **motion LoRA** hardly changes the motion (section 4 shows by how much): the prompt already picks the direction.

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
import numpy as np

from animatelcm_helpers import config, hub, loading, media, pipelines, results
from animatelcm_helpers.toy import metrics

settings = config.setup(world=WORLD, test_mode=TEST_MODE)
print(settings)

# %% [markdown]
# ## 1. The toy world: Moving Digits
#
# In the toy world everything is small enough for a CPU: 32x32 videos of handwritten digits (from scikit-learn's
# bundled `load_digits()`) moving left, right, up or down, captioned like prompts. Here are four training videos
# (`MovingDigits` builds them deterministically from a seed; the test split is held out for measuring).

# %%
# NBVAL_CHECK_OUTPUT
from animatelcm_helpers.toy.data import MovingDigits, to_uint8

data = MovingDigits("train", num_frames=8)
examples = [data[5 * k] for k in range(4)]  # item i moves in direction i % 4
for item in examples:
    print(item["caption"])

# %%
media.show_videos({item["caption"]: to_uint8(item["pixel_values"]) for item in examples})

# %% [markdown]
# ## 2. Load AnimateLCM
#
# AnimateLCM (the paper this course teaches) turns a text-to-image model into a video model that needs only a few
# sampling steps. For Stable Diffusion 1.5 it is four diffusers parts (the official recipe):
#
# 1. a **base image model** (`AnimateDiffPipeline.from_pretrained(base, motion_adapter=...)`): a personalized SD1.5 in the full world;
# 2. a **motion adapter** (`MotionAdapter`): temporal attention layers (**motion modules**) inserted after each spatial
#    block, so the frames of a video attend to each other; AnimateLCM distilled them with a consistency loss;
# 3. the **LCM LoRA** on the spatial layers (`load_lora_weights(..., adapter_name="lcm-lora")`). A **LoRA** is a small
#    low-rank update $W + \alpha BA$ added to a model's weights and switched by its weight $\alpha$; this one is stage 1 of
#    the paper, the image model distilled into a **consistency model** (one that maps a noisy sample straight to a clean one);
# 4. the **`LCMScheduler`**: consistency sampling in a handful of steps.
#
# `pipelines.load_t2v` does exactly this, in either world: in the full world from Hub ids (in `config.HUB`, with revisions), in the toy
# world from local folders laid out like those Hub repositories. Each world comes with its defaults:

# %%
pipe = pipelines.load_t2v("animatelcm")
if settings.world == "toy":
    from animatelcm_helpers.toy import zoo
    print("toy zoo:", zoo.status())
for world, spec in ((w, config.MODELS[w]["animatelcm"]) for w in ("toy", "full")):
    grid = dict(spec.scheduler_kwargs).get("original_inference_steps", 50)
    print(f"{world:4s}: {spec.steps} steps, guidance {spec.guidance}, {spec.frames} frames at {spec.height}x{spec.width}, "
          f"LCM LoRA weight {spec.lcm_lora_weight}, a {grid}-point skipping grid")
full_files = [f for key in ("epicrealism", "animatelcm_motion_adapter", "animatelcm_lcm_lora") for f in hub.files_for(key)]
print(f"the full world's download for this notebook: {hub.size_of(full_files) / 1e3:.1f} GB ({len(full_files)} files, once)")

# %%
# NBVAL_CHECK_OUTPUT
print(pipelines.describe(pipe))

# %% [markdown]
# ## 3. Generate
#
# `pipelines.generate` samples one video and reports what it cost: seconds and **UNet evaluations** (calls of the
# denoising network, the cost that counts). The model's defaults (printed above) come with it. The noise comes from a
# seeded CPU generator, so the same seed gives the same video.
#
# In the toy world this is the **distilled toy AnimateLCM**: its motion adapter and LCM LoRA were trained by the zoo's
# build with the paper's two stages (notebooks 03 and 04 show how, and measure it against the teacher).

# %%
result = pipelines.generate(pipe, "a seven moving left", seed=0)
media.show_video(result.frames, title="a seven moving left")
print(f"{result.frames.shape[0]} frames, {result.unet_evaluations} UNet evaluations, {result.seconds:.2f} s")

# %% [markdown]
# ## 4. What each knob does
#
# ### Steps
# Each step is one UNet evaluation (without guidance). A consistency model maps noise to a clean sample in one step; more
# steps re-noise that estimate with fresh noise and denoise it again from a lower noise level. The `LCMScheduler` takes
# its timesteps from a **skipping grid** (every $k$-th of the 1,000 training timesteps; the grid size is printed above).

# %%
step_videos = {}
for steps in (1, 2, 4, 8):
    step_videos[steps] = pipelines.generate(pipe, "a seven moving left", steps=steps, seed=0)
media.show_videos({f"{s} step{'s' * (s > 1)}": g.frames for s, g in step_videos.items()})

# %%
# NBVAL_CHECK_OUTPUT
for steps, g in step_videos.items():
    pipe.scheduler.set_timesteps(steps)
    print(f"{steps} step{'s' * (steps > 1)}: {g.unet_evaluations} UNet evaluation{'s' * (g.unet_evaluations > 1)}, timesteps {pipe.scheduler.timesteps.tolist()}")

# %%
for steps, g in step_videos.items():
    print(f"{steps} step{'s' * (steps > 1)}: {g.seconds:.2f} s")

# %% [markdown]
# One video shows little. Do more steps help? Notebook 04's table measured the toy AnimateLCM on 80 videos
# (40 prompts, 2 seeds): **digit** is the share whose digit a classifier reads as the prompt's, **direction** the share
# whose digit moves the prompt's way. With their 95 % intervals (a bootstrap over the videos; overlapping intervals are
# a **tie**, the course's rule):

# %%
motion_table = results.load("motion")["rows"]
plain = {r["steps"]: r for r in motion_table if r["label"] == "AnimateLCM (toy)"}
lines = []
for key in ("digit", "direction"):
    iv = {s: results.interval(plain[s], key) for s in (1, 4)}
    lines.append(f"- {key}: {iv[4]} at 4 steps against {iv[1]} at 1 step: **{metrics.compare(iv[4], iv[1])}** for 4 steps")
media.show_markdown("\n".join(lines))

# %% [markdown]
# ### Seed
# The seed fixes the starting noise. Same seed, same video (bit for bit on the same machine); another seed, another video.

# %%
seed_videos = {f"seed {s}": pipelines.generate(pipe, "a seven moving left", seed=s).frames for s in (0, 1, 2)}
print("seed 0 twice, bit-identical:", np.array_equal(seed_videos["seed 0"], result.frames))
media.show_videos(seed_videos)

# %% [markdown]
# ### Guidance
# **Classifier-free guidance** (CFG) runs the UNet twice a step (with and without the prompt) and moves the prediction away
# from the unconditional one by the scale `guidance` (1 means off). The consistency model was distilled from a *guided*
# teacher, so it can run without it: `guidance=1` is one evaluation a step, anything above 1 is two. The toy runs at 1;
# the official full-world demo's default is 1.5 (printed in section 2), so its 6 steps cost 12 evaluations.

# %%
guided = {g: pipelines.generate(pipe, "a seven moving left", guidance=g, seed=0) for g in (1.0, 1.5, 2.0)}
media.show_videos({f"guidance {g}": r.frames for g, r in guided.items()})

# %%
# NBVAL_CHECK_OUTPUT
for g, r in guided.items():
    print(f"guidance {g}: {r.unet_evaluations} UNet evaluations for {r.steps} steps")

# %% [markdown]
# ### LCM LoRA weight
# The LCM LoRA's weight (the demo's "LCM LoRA alpha") blends the stage-1 consistency model into the base: at 0 the base
# image model is sampled with a few-step consistency sampler it was never distilled for. `set_adapters` is diffusers' own
# call; no reload needed. The classifier and the centroid's path (the measures above) read each video:

# %%
lora_videos = {}
for weight in (0.0, 0.5, 1.0):
    pipe.set_adapters([loading.LCM_ADAPTER], [weight])
    lora_videos[f"LCM LoRA {weight}"] = pipelines.generate(pipe, "a seven moving left", seed=0).frames
pipe.set_adapters([loading.LCM_ADAPTER], [pipe.model_spec.lcm_lora_weight])
media.show_videos(lora_videos)
reference = lora_videos[f"LCM LoRA {pipe.model_spec.lcm_lora_weight}"].astype(float)
for name, frames in lora_videos.items():
    print(f"{name}: reads as digit {metrics.read_digits(frames[None])[0]}, moving {metrics.read_direction(frames[None])[0]}; "
          f"mean |difference| from weight {pipe.model_spec.lcm_lora_weight}: {np.abs(frames - reference).mean():.1f} of 255")

# %%
diffs = {name: np.abs(frames - reference).mean() for name, frames in lora_videos.items()}
same_reading = len({(metrics.read_digits(f[None])[0], metrics.read_direction(f[None])[0]) for f in lora_videos.values()}) == 1
media.show_markdown(
    f"The weight changes the video (by {diffs['LCM LoRA 0.0']:.1f} of 255 a pixel on average at weight 0), "
    + ("yet all three still read as the same digit moving the same way: on this one video and seed the toy does not "
       "show weight 0 failing. Nothing here measures it over many videos." if same_reading else
       "and the readings differ (above). One video is not a measurement."))

# %% [markdown]
# ### Motion LoRA
# The motion modules attend over time but never see the text, so the prompt reaches the motion only through the image
# layers (in the toy world: the fading trail a moving digit leaves behind). A **motion LoRA** is a small LoRA on the motion
# modules, trained on videos that all move one way: AnimateDiff's camera moves `pan-left`, `tilt-up`, ... in the full
# world; `left`, `right`, `up`, `down` in the toy world, trained on the video teacher. `pipelines.use_motion_lora` loads one
# next to the LCM LoRA and switches it on; `None` switches it off. It is a choice you make, as in a demo's motion menu:
# the prompt does not pick it for you. How far does it move the digit here?

# %%
motion = {"toy": "up", "full": "tilt-up"}[settings.world]
motion_videos = {}
for name in (None, motion):
    pipelines.use_motion_lora(pipe, name)
    motion_videos[f"motion LoRA: {name}"] = pipelines.generate(pipe, "a three moving up", seed=2).frames
pipelines.use_motion_lora(pipe, None)
print("after use_motion_lora(pipe, None), the LoRA weights:", pipe.adapter_weights)  # the motion LoRA stays loaded, at 0
media.show_videos(motion_videos)
rise = {}
for label, frames in motion_videos.items():
    path = metrics.centroid_path(frames)  # (x, y) per frame; y grows downwards
    rise[label] = path[0, 1] - path[-1, 1]
    print(f"{label}: the digit rises {rise[label]:.1f} px over {len(frames)} frames, read as moving {metrics.read_direction(frames[None])[0]}")

# %%
lora_row = {r["steps"]: r for r in motion_table if r["label"] == "AnimateLCM (toy) + motion LoRAs"}
without, with_lora = results.interval(plain[4], "direction"), results.interval(lora_row[4], "direction")
change = rise[f"motion LoRA: {motion}"] - rise["motion LoRA: None"]
media.show_markdown(
    f"On this video the LoRA changes the rise from {rise['motion LoRA: None']:.1f} to {rise[f'motion LoRA: {motion}']:.1f} px "
    + ("(under a pixel): here it hardly steers the motion, which the prompt already sets. " if abs(change) < 1 else
       f"({change:+.1f} px). ")
    + f"Over notebook 04's 80 videos at 4 steps, each with the prompt's own motion LoRA, the direction is right {with_lora} "
    f"with the LoRA against {without} without: **{metrics.compare(with_lora, without)}**. In the full world the camera LoRAs "
    "are AnimateDiff's way to pick a camera move; that is not measured here.")

# %% [markdown]
# ### Frames
# The motion modules attend over time up to their maximum sequence length (`motion_max_seq_length`); ask for more and you
# get a clear error instead of a broken video.

# %%
long = pipelines.generate(pipe, "a seven moving left", frames=min(16, pipelines.max_frames(pipe)), seed=0)
media.show_video(long.frames, title=f"{long.frames.shape[0]} frames")

# %%
# NBVAL_CHECK_OUTPUT
try:
    pipelines.generate(pipe, "a seven moving left", frames=pipelines.max_frames(pipe) + 1)
except config.UserError as err:
    print("UserError:", err)

# %% [markdown]
# ## 5. Save and share
#
# `media.save_video` writes `.gif`, `.mp4` (with the ffmpeg that imageio-ffmpeg ships) or `.npy` (the uint8 array), atomically.
# All frames of a video as one picture:

# %%
from pathlib import Path

Path("outputs").mkdir(exist_ok=True)
for suffix in (".gif", ".mp4", ".npy"):
    print("wrote", media.save_video(result.frames, Path("outputs") / f"seven_moving_left{suffix}"))
media.show_frames(result.frames, title="frames, left to right")

# %% [markdown]
# The command line does the same from a terminal (it prints the cost too):
#
# ```bash
# python -m animatelcm_helpers generate --prompt "a seven moving left" --steps 4 --seed 0 --out seven.gif
# python -m animatelcm_helpers models        # what each world has
# ```
#
# ## Summary
#
# - AnimateLCM = base image model + motion adapter + LCM LoRA + `LCMScheduler`, all stock diffusers parts.
# - A few steps, one UNet evaluation each without classifier-free guidance (the toy's default; the official full-world
#   demo turns guidance on at 1.5, two evaluations a step).
# - The toy world runs the same code on tiny models of the same classes, offline, on any CPU.
# - Next: notebook 01 (what a consistency model is), or this notebook with `WORLD = "full"` on a GPU runtime (Colab:
#   Runtime > Change runtime type > T4).
#
# ## Exercises
#
# 1. Generate "a three moving up" with 1, 2 and 4 steps and three seeds. Which knob changes the video more, steps or
#    seed? (Measure it: the mean absolute pixel difference between two videos.)
# 2. Set `guidance=2.0` and count the UNet evaluations. How many does the teacher's default cost
#    (`pipelines.load_t2v("teacher")`: 25 DDIM steps with guidance), and what share of it is the student's default?
# 3. Save a pipeline with `pipelines.save_pipeline(pipe, folder)` and load it back with `pipelines.load_t2v(folder)`.
#    Is the video bit-identical? If not, how far apart?
# 4. From the seconds printed for 1, 2, 4 and 8 steps, estimate what one step costs and what a video costs whatever the
#    steps (fit a straight line).
#
# ## Solutions
#
# <details><summary>Solutions (open after trying the exercises)</summary>
#
# 1. The cell below measures both: the mean absolute pixel difference between seeds (same steps) and between step
#    counts (same seed), over the three seeds and the three step counts.
# 2. `guidance=2.0` doubles the evaluations (section 4). The teacher's 25 guided steps are 2 x 25 = 50 evaluations; the
#    cell below counts them and gives the share.
# 3. The cell below saves, reloads and compares. `save_pipeline` fuses the LoRA into the weights ($W + \alpha BA$ computed
#    once), which changes the order of the floating-point operations, so the frames could differ in the last bits; the
#    cell prints whether they are identical (here they are) and the largest difference.
# 4. The cell below fits seconds = a + b x steps: b is one step (one UNet evaluation at this size), a the fixed cost of a
#    video (text encoding, VAE decode, the pipeline's own work).
#
# </details>

# %%
seeds, step_counts = (0, 1, 2), (1, 2, 4)
vids = {(n, s): pipelines.generate(pipe, "a three moving up", steps=n, seed=s).frames.astype(float)
        for n in step_counts for s in seeds}
across_seeds = np.mean([np.abs(vids[n, a] - vids[n, b]).mean() for n in step_counts for a in seeds for b in seeds if a < b])
across_steps = np.mean([np.abs(vids[a, s] - vids[b, s]).mean() for s in seeds for a in step_counts for b in step_counts if a < b])
print(f"1. mean |difference|, of 255: between seeds {across_seeds:.1f}, between step counts {across_steps:.1f}: "
      f"the {'seed' if across_seeds > across_steps else 'step count'} changes the video more")

# %%
teacher = pipelines.load_t2v("teacher")
teacher_run = pipelines.generate(teacher, "a three moving up", steps=config.pick(teacher.model_spec.steps, 2), seed=0)
teacher_evals = teacher_run.unet_evaluations * teacher.model_spec.steps // teacher_run.steps  # test mode: 2 steps, scaled
print(f"2. guidance 2.0: {guided[2.0].unet_evaluations} evaluations for 4 steps; the teacher's default "
      f"({teacher.model_spec.steps} steps, guidance {teacher.model_spec.guidance}): {teacher_evals}; "
      f"the student's default is {result.unet_evaluations / teacher_evals:.0%} of it")

# %%
import tempfile

with tempfile.TemporaryDirectory() as folder:
    copy = pipelines.load_t2v("animatelcm")  # save_pipeline fuses the LoRA into the pipeline it saves
    pipelines.save_pipeline(copy, folder)
    again = pipelines.generate(pipelines.load_t2v(folder), "a seven moving left", seed=0).frames
print(f"3. bit-identical: {np.array_equal(again, result.frames)}; largest difference "
      f"{np.abs(again.astype(int) - result.frames.astype(int)).max()} of 255")

# %%
slope, intercept = np.polyfit(list(step_videos), [g.seconds for g in step_videos.values()], 1)
print(f"4. seconds = {intercept:.3f} + {slope:.3f} x steps: one step {slope:.3f} s, a video's fixed cost {intercept:.3f} s (this CPU)")
