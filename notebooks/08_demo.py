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
# # 08 · The demo: AnimateLCM's controls in one app
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/animatelcm-runnable/animatelcm-runnable/blob/main/notebooks/08_demo.ipynb)
#
# **What you will learn**
#
# - the **official AnimateLCM demo's controls** (base model, personal LoRA and its alpha, LCM LoRA alpha, prompt, negative prompt, steps, size, frames, CFG, seed) and what each one costs in UNet evaluations
# - the app built with **ipywidgets** from plain functions (`demo.validate_t2v`, `demo.run_t2v`, `demo.run_svd`) that you can call from code, test, and reuse
# - the **AnimateLCM-SVD-xt** tab: image, motion bucket, steps
# - how bad values get a one-line message instead of a traceback, and how to save a result as GIF or MP4
#
# **Prerequisites:** notebook 00 (the quickstart). Notebooks 03, 04 and 07 explain what happens behind the knobs.
#
# **Run time:** toy world on a CPU: under a minute; full world on a GPU (T4 or better): a few minutes, most of it downloading the weights once (estimated).

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
from animatelcm_helpers import config, demo, media

settings = config.setup(world=WORLD, test_mode=TEST_MODE)
print(settings)

# %% [markdown]
# ## 1. The controls
#
# The official demo (Gradio, on the Hugging Face Hub) has a text-to-video tab with these controls; the toy world keeps the
# controls and scales the ranges to its 32x32 videos. Each tab is data: a list of `demo.Field`s (name, kind, default, range),
# so the table below is printed from the same list the app is built from.

# %%
# NBVAL_CHECK_OUTPUT
for f in demo.t2v_fields(settings.world):
    if f.kind == "choice":
        what = "menu: " + ", ".join(f.options)
    elif f.kind == "text":
        what = "text"
    else:
        what = f"{f.low} .. {f.high if f.high is not None else 'any'}"
    print(f"{f.label:<16} default {str(f.default):<22} {what}")

# %% [markdown]
# What they do (notebooks 00 to 04 show each one at work):
#
# - **base model** and **motion module**: the world's AnimateLCM (a base image model + the distilled motion adapter);
# - **personal LoRA** and its **alpha**: a personalized style stacked on the base. In the toy world the styles are LoRAs
#   trained on still images only (notebook 03): stylized video without stylized video data, the paper's title claim;
# - **LCM LoRA alpha**: how much of the image consistency model (stage 1) is blended in;
# - **motion LoRA** (an addition to the official controls): a LoRA on the motion modules that steers the motion, which
#   the text cannot reach directly (notebook 00); in the full world AnimateDiff's camera moves, in the toy world the
#   digit's four directions. You pick it: the prompt does not;
# - **steps**: one UNet evaluation each; **CFG** above 1 turns on classifier-free guidance, **two** evaluations a step;
# - **seed**: -1 draws one, and the app prints it so you can make the same video again.
#
# ## 2. The app
#
# The tabs are the entries of `demo.TABS` whose models exist in this world (an image-to-video tab joins them where the
# I2V adapter of notebook 06 exists). Pick values and press **Generate**. A progress bar counts the steps, the video plays
# inline (an HTML5 `<video>`), the status line gives the seconds and UNet evaluations, and **Save GIF** / **Save MP4** write it to `outputs/demo/`.

# %%
print("tabs here:", [tab.title for tab in demo.available_tabs(settings.world)])

# %%
ui = demo.app(settings.world)
ui

# %% [markdown]
# The buttons call plain Python, so the app can be driven from code too. Here is the same Generate as a click, with seed 0
# (the app above now shows this video too):

# %%
t2v = ui.tabs["Text-to-video"]
t2v.controls["seed"].value = 0
t2v.run()  # what the Generate button does
print(demo.describe(t2v.result))
media.show_video(t2v.result.frames, title=t2v.checked["prompt"])

# %% [markdown]
# ## 3. Bad values get a message, not a traceback
#
# Every value is checked before anything runs (`demo.validate_t2v`); a bad one gets one line that says what to do. In the app
# the line appears under the Generate button in red.

# %%
# NBVAL_CHECK_OUTPUT
good = demo.defaults(demo.t2v_fields(settings.world))
for bad in ({"steps": 0}, {"width": good["width"] - 2}, {"prompt": "  "}, {"frames": 99}, {"cfg": 3.0}):
    try:
        demo.validate_t2v({**good, **bad}, settings.world)
    except config.UserError as err:
        print(f"{bad}: {err}")

# %%
# NBVAL_CHECK_OUTPUT
t2v.controls["width"].value = good["width"] - 2
t2v.run()
print("the app says:", t2v.message)
t2v.controls["width"].value = good["width"]

# %% [markdown]
# ## 4. What the knobs cost
#
# `demo.run_t2v` takes the same dict the app builds. Guidance doubles the UNet evaluations per step; the consistency model
# does not need it (notebook 02):

# %%
# NBVAL_CHECK_OUTPUT
for cfg in (1.0, 1.5):
    r = demo.run_t2v({**good, "seed": 0, "cfg": cfg, "steps": 4})
    print(f"CFG {cfg}: {r.unet_evaluations} UNet evaluations for {r.steps} steps")

# %% [markdown]
# A personal LoRA changes the look, not the cost. In the toy world these styles were learnt from still images only, then
# stacked on the video model at alpha 0.8 (the official demo's default):

# %%
styled = {}
for name in demo.personal_loras(settings.world):
    styled[name] = demo.run_t2v({**good, "seed": 0, "personal_lora": name, "lora_alpha": 0.8}).frames
media.show_videos(styled)

# %% [markdown]
# ## 5. The SVD-xt tab: image-to-video
#
# AnimateLCM-SVD-xt animates an image in a few steps (notebook 07). The demo's guidance ramps over frames from `1.0` to `1.2`, so
# each step costs two UNet evaluations. In the toy world the SVD model is **random-initialised** unless the zoo has a trained
# one: the result's note says which, and a random one makes noise (it still runs the full world's code).

# %%
svd_values = {**demo.defaults(demo.svd_fields(settings.world)), "seed": 0}
clip = demo.run_svd(svd_values)
print(demo.describe(clip))
print(clip.note)
media.show_videos({"the image": demo.read_image(svd_values["image"])[None], "animated": clip.frames})

# %% [markdown]
# An unreadable upload is a message too:

# %%
# NBVAL_CHECK_OUTPUT
try:
    demo.validate_svd({**svd_values, "image": b"this is not a PNG"})
except config.UserError as err:
    print("UserError:", err)

# %% [markdown]
# ## 6. Save
#
# `demo.save_result` writes `.gif` or `.mp4` (atomically: to a temporary file, then renamed), named by the prompt and seed so
# the seed can be read back from the file name.

# %%
for suffix in (".gif", ".mp4"):
    print("wrote", demo.save_result(t2v.result, "outputs/demo", t2v.checked["prompt"], suffix))

# %% [markdown]
# ## Summary
#
# - The app is the official demo's controls over the same functions the course uses: `pipelines.load_t2v`, `pipelines.generate`,
#   `pipelines.add_style`, `svd.generate_svd`.
# - Each control is data (`demo.Field`), each tab is data (`demo.TABS`), and the work is plain functions: `validate_*` checks
#   the values with one-line messages, `run_*` makes the video and reports seconds and UNet evaluations.
# - CFG above 1 doubles the cost of every step; a personal LoRA changes the look at no cost.
#
# ## Exercises
#
# 1. In the app, make the same video with 1, 2, 4 and 8 steps (seed 0). Where does it stop getting better? Compare with
#    notebook 04's table.
# 2. Set CFG to 1.5 and 2.0: how do the video and the UNet evaluations change?
# 3. Try each personal LoRA at alpha `0.4`, `0.8` and `1.6`. When does the digit stop being readable?
# 4. Upload an image of your own (a PNG) in the SVD-xt tab. What does the motion bucket change?
# 5. Add a tab: write `fields`, `validate` and `run` functions for a new model and append a `demo.Tab` to `demo.TABS`.
#    The image-to-video tab (AnimateLCM + the I2V adapter of notebook 06) is such an entry: it appears only where the
#    toy zoo has that adapter (`demo.i2v_available`).
