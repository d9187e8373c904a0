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
# **Run time:** toy world on a CPU: about a minute; full world on a GPU (T4 or better): a few minutes, most of it downloading about 5 GB of weights once.

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
from animatelcm_helpers import config, loading, media, pipelines

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
# AnimateLCM for Stable Diffusion 1.5 is four diffusers parts (the official recipe):
#
# 1. a **base image model** (`AnimateDiffPipeline.from_pretrained(base, motion_adapter=...)`): a personalized SD1.5 in the full world;
# 2. a **motion adapter** (`MotionAdapter`): temporal attention layers inserted after each spatial block, distilled with the consistency loss;
# 3. the **LCM LoRA** on the spatial layers (`load_lora_weights(..., adapter_name="lcm-lora")`, weight `0.8` in the official demo): the image consistency model from stage 1 of the paper;
# 4. the **`LCMScheduler`**: consistency sampling, a handful of steps, no classifier-free guidance needed.
#
# `pipelines.load_t2v` does exactly this, in either world: in the full world from Hub ids (in `config.HUB`, with revisions), in the toy
# world from local folders laid out like those Hub repositories.

# %%
pipe = pipelines.load_t2v("animatelcm")
if settings.world == "toy":
    from animatelcm_helpers.toy import zoo
    print("toy zoo:", zoo.status())

# %%
# NBVAL_CHECK_OUTPUT
print(pipelines.describe(pipe))

# %% [markdown]
# ## 3. Generate
#
# `pipelines.generate` samples one video and reports what it cost. The model's defaults come with it (toy: 4 steps, no guidance,
# 8 frames at 32x32; full: the official demo's 6 steps, guidance 1.5, 16 frames at 512x512). The noise comes from a seeded CPU
# generator, so the same seed gives the same video.
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
# steps re-noise the estimate and refine it. The `LCMScheduler` picks its timesteps from a 50-point skipping grid.

# %%
step_videos = {}
for steps in (1, 2, 4, 8):
    step_videos[steps] = pipelines.generate(pipe, "a seven moving left", steps=steps, seed=0)
media.show_videos({f"{s} steps": g.frames for s, g in step_videos.items()})

# %%
# NBVAL_CHECK_OUTPUT
for steps, g in step_videos.items():
    pipe.scheduler.set_timesteps(steps)
    print(f"{steps} steps: {g.unet_evaluations} UNet evaluations, timesteps {pipe.scheduler.timesteps.tolist()}")

# %%
for steps, g in step_videos.items():
    print(f"{steps} steps: {g.seconds:.2f} s")

# %% [markdown]
# ### Seed
# The seed fixes the starting noise. Same seed, same video (bit for bit on the same machine); another seed, another video.

# %%
media.show_videos({f"seed {s}": pipelines.generate(pipe, "a seven moving left", seed=s).frames for s in (0, 1, 2)})

# %% [markdown]
# ### Guidance
# Classifier-free guidance runs the UNet twice a step (with and without the prompt) and extrapolates. The consistency
# model was distilled from a *guided* teacher, so it needs no guidance: `guidance=1` means one evaluation a step.
# Anything above 1 doubles the cost.

# %%
guided = {g: pipelines.generate(pipe, "a seven moving left", guidance=g, seed=0) for g in (1.0, 1.5, 2.0)}
media.show_videos({f"guidance {g}": r.frames for g, r in guided.items()})

# %%
# NBVAL_CHECK_OUTPUT
for g, r in guided.items():
    print(f"guidance {g}: {r.unet_evaluations} UNet evaluations for {r.steps} steps")

# %% [markdown]
# ### LCM LoRA weight
# The LCM LoRA turns the base image model into a consistency model. Its weight (the demo's "LCM LoRA alpha") blends it in:
# at 0 the base model is sampled with a few-step consistency sampler it was never trained for.
# `set_adapters` is diffusers' own call; no reload needed. (With the toy stand-in, whose LCM LoRA is all zeros, the three
# videos are identical.)

# %%
lora_videos = {}
for weight in (0.0, 0.5, 1.0):
    pipe.set_adapters([loading.LCM_ADAPTER], [weight])
    lora_videos[f"LCM LoRA {weight}"] = pipelines.generate(pipe, "a seven moving left", seed=0).frames
pipe.set_adapters([loading.LCM_ADAPTER], [pipe.model_spec.lcm_lora_weight])
media.show_videos(lora_videos)

# %% [markdown]
# ### Motion LoRA
# AnimateDiff's motion modules attend over time but never see the text, so the prompt reaches the motion only through the
# image layers (here: the fading trail a moving digit leaves behind). A **motion LoRA** steers the motion directly: a
# small LoRA on the motion modules' temporal attention, trained on videos that all move one way (AnimateDiff's
# `pan-left`, `tilt-up`, ... in the full world; `left`, `right`, `up`, `down` in the toy world, trained on the video
# teacher). `pipelines.use_motion_lora` loads one next to the LCM LoRA and switches it on; `None` switches it off.
# It is a choice you make, as in a demo's motion menu: the prompt does not pick it for you.

# %%
motion = {"toy": "up", "full": "tilt-up"}[settings.world]
motion_videos = {}
for name in (None, motion):
    pipelines.use_motion_lora(pipe, name)
    motion_videos[f"motion LoRA: {name}"] = pipelines.generate(pipe, "a three moving up", seed=2).frames
pipelines.use_motion_lora(pipe, None)
print(pipe.adapter_weights)
media.show_videos(motion_videos)

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
# - A few steps, one UNet evaluation each, no classifier-free guidance.
# - The toy world runs the same code on tiny models of the same classes, offline, on any CPU.
#
# ## Exercises
#
# 1. Generate "a three moving up" with 1, 2 and 4 steps and three seeds. Which knob changes the video more?
# 2. Set `guidance=2.0` and count the UNet evaluations. How many would 25 guided steps of the teacher cost? (`pipelines.load_t2v("teacher")`)
# 3. Save a pipeline with `pipelines.save_pipeline(pipe, "my_animatelcm")` and load it back with `pipelines.load_t2v("my_animatelcm")`. Is the video bit-identical?
# 4. Run this notebook with `WORLD = "full"` on a GPU runtime (Colab: Runtime > Change runtime type > T4).
