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
# - the **official AnimateLCM demo's three versions** in one app: text-to-video (base model, personal LoRA and its alpha, LCM LoRA alpha, prompt, negative prompt, steps, size, frames, CFG, seed), **AnimateLCM-I2V** (the image, motion scale and the same base and LoRA menus) and **AnimateLCM-SVD-xt** (the image, motion bucket, fps, the guidance ramp's min and max, frames, size, decoding chunk), and what each control costs in UNet evaluations
# - **personalization as a user brings it**: a DreamBooth base as one single-file `.safetensors` checkpoint and a style LoRA in kohya's format, loaded from files on this machine, the LoRA's alpha as a knob
# - the app built with **ipywidgets** from plain functions (`demo.validate_t2v`, `demo.run_t2v`, `demo.run_i2v`, `demo.run_svd`) that you can call from code, test, and reuse
# - how bad values get a one-line message instead of a traceback, and how to save a result as GIF or MP4
#
# **Prerequisites:** notebook 00 (the quickstart). Notebooks 03 to 07 explain what happens behind the knobs (05 and 06: AnimateLCM-I2V; 07: SVD-xt).
#
# **Run time:** toy world on a CPU: about a minute; full world on a GPU (T4 or better): a few minutes, most of it downloading the weights once (estimated, not measured).
#
# **Notation and terms**: the course's notation is in [docs/NOTATION.md](../docs/NOTATION.md), its terms in
# [docs/GLOSSARY.md](../docs/GLOSSARY.md) (on Colab: [NOTATION.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/NOTATION.md),
# [GLOSSARY.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/GLOSSARY.md)). A **DreamBooth
# base** is a fine-tuned Stable Diffusion 1.5 (a personal style or subject) that replaces the base image model; a **LoRA**
# is a low-rank update $W + \alpha BA$ of the model's weights, and its **alpha** $\alpha$ how much of it is added; the
# **LCM LoRA** is AnimateLCM's own spatial LoRA; **CFG** (classifier-free guidance) runs the model with and without the
# prompt at each step; a **UNet evaluation** is one call of the denoising network, the unit of cost.
#
# **What this notebook does not show**
#
# - *The full world's app at work.* Its tabs run on a GPU with the Hub's weights; here the toy world's app runs, and the
#   picture of the app (section 2) is the toy world's too.
# - *How good the videos are.* The app reports cost (steps, UNet evaluations, seconds); the quality of each setting is
#   measured in notebooks 03 to 07.

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

from animatelcm_helpers import config, demo, media, results, utils
from animatelcm_helpers.toy import metrics

settings = config.setup(world=WORLD, test_mode=TEST_MODE)
print(settings)

# %% [markdown]
# ## 1. The controls
#
# Each tab is data: a list of `demo.Field`s (name, kind, default, range), so the tables below are printed from the same
# lists the app is built from. The full world keeps the official demo's ranges and defaults; the toy world keeps the
# controls and scales the ranges to its 32x32 videos. The text-to-video tab:

# %%
def show_fields(fields):
    for f in fields:
        if f.kind == "choice":
            what = "menu: " + ", ".join(f.options)
        elif f.kind == "text":
            what = "text"
        elif f.kind == "image":
            what = f"an example image ({len(f.options)}) or an upload"
        else:
            what = f"{f.low} .. {f.high if f.high is not None else 'any'}"
        print(f"{f.label:<25} default {str(f.default):<22} {what}")

# %%
# NBVAL_CHECK_OUTPUT
show_fields(demo.t2v_fields(settings.world))

# %% [markdown]
# What they do (notebooks 00 to 04 show each one at work):
#
# - **model**: AnimateLCM, or in the full world its successor AnimateDiff-Lightning (one model per distilled step
#   count: 1, 2, 4, 8; notebook 09); choosing one sets steps, CFG and the LCM LoRA alpha to that model's;
# - **base model**: the base image model the motion modules animate: the world's menu (`config.BASES`: in the full world
#   epiCRealism, AnimateLCM's own, and other public SD1.5 DreamBooth bases; in the toy world the zoo's base), or
#   **a file on this machine**: the path of a single-file `.safetensors` checkpoint in the original SD layout, typed into
#   **base file** (section 5);
# - **personal LoRA** and its **LoRA alpha**: a personalized style stacked on the base at that weight (the official
#   demo's `0.8`), from the menu (toy world: the styles, LoRAs trained on still images only, notebook 04) or a file in
#   diffusers' or kohya's format (**LoRA file**);
# - **LCM LoRA alpha**: the weight of AnimateLCM's spatial LCM LoRA (the official demo's `0.8`; the toy world's `1.0`,
#   the weight the toy model was distilled with);
# - **motion LoRA** (not one of the official controls): a LoRA on the motion modules for one kind of motion, at weight 1
#   (full world: AnimateDiff's camera moves; toy world: the digit's four directions). You pick it: the prompt does not.
#   Measured on the toy AnimateLCM in the cell below;
# - **prompt** and **negative prompt** (the negative one matters only with CFG above 1);
# - **steps**: one UNet evaluation each; **CFG** above 1 turns on classifier-free guidance, **two** evaluations a step;
# - **width**, **height**, **frames**: the video's size (width and height multiples of 8);
# - **seed**: -1 draws one, and the app prints it so you can make the same video again.

# %%
motion_rows = results.load("motion")["rows"]
plain = next(r for r in motion_rows if r["label"] == "AnimateLCM (toy)" and r["steps"] == 4)
with_lora = next(r for r in motion_rows if r["label"] == "AnimateLCM (toy) + motion LoRAs" and r["steps"] == 4)
iv_plain, iv_lora = results.interval(plain, "direction"), results.interval(with_lora, "direction")
media.show_markdown(
    f"Motion LoRAs on the toy AnimateLCM at 4 steps (`python scripts/tables.py motion`, n = {plain['videos']} videos): the "
    f"asked direction is read in {iv_lora.format()} of the videos with the prompt's motion LoRA, {iv_plain.format()} "
    f"without (fraction [95 % interval]): a **{metrics.compare(iv_lora, iv_plain)}**.")

# %% [markdown]
# ## 2. The app
#
# The tabs are the entries of `demo.TABS` whose models exist in this world. Pick values and press **Generate**: a progress
# bar counts the steps, the video plays inline (an HTML5 `<video>`), the status line gives the seconds and UNet
# evaluations, and **Save GIF** / **Save MP4** write it to `outputs/demo/`.
#
# What the app looks like after **Generate** (a screenshot that `make test-browser` takes in headless Chromium; GitHub
# renders no widgets, so this picture is what a reader of the repository sees):
#
# ![The demo app in JupyterLab after Generate: the text-to-video tab's controls, the progress bar, the status line and the video](../docs/demo.png)
#
# The live app (in Jupyter, Colab or on nbviewer, which renders the stored widgets; GitHub shows no widgets):

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
# ## 3. The image-to-video tab: AnimateLCM-I2V
#
# The official AnimateLCM-I2V demo's controls (notebooks 05 and 06 explain the model: an image encoder whose features enter
# the UNet, with a per-frame position embedding times the **motion scale**): the image, the same base and LoRA menus as
# text-to-video, the prompt (officially "best quality"; in the toy world the caption says how the digit moves), motion
# scale, steps, CFG, frames and size. In the full world it runs the official weights (`i2v_official`, converted once from
# the Hub's checkpoint); in the toy world the zoo's encoder on the toy AnimateLCM (whose base is the only one it was trained on).

# %%
# NBVAL_CHECK_OUTPUT
show_fields(demo.i2v_fields(settings.world))

# %% [markdown]
# Run from code with the defaults and seed 0; the input image is the first row:

# %%
i2v_values = {**demo.defaults(demo.i2v_fields(settings.world)), "seed": 0}
moved = {"the image (input)": demo.read_image(i2v_values["image"])[None]}
for scale in (0.0, i2v_values["motion_scale"], 1.5):
    clip = demo.run_i2v({**i2v_values, "motion_scale": scale})
    moved[f"motion scale {scale}: {i2v_values['prompt']}"] = clip.frames
    print(f"motion scale {scale}: {demo.describe(clip)}; first-frame PSNR "
          f"{utils.psnr(clip.frames[0], moved['the image (input)'][0]):.1f} dB")
media.show_rows(moved)

# %% [markdown]
# ## 4. Bad values get a message, not a traceback
#
# Every value is checked before anything runs (`demo.validate_t2v`, `validate_i2v`, `validate_svd`); a bad one gets one
# line that says what to do. In the app the line appears under the Generate button in red.

# %%
# NBVAL_CHECK_OUTPUT
good = demo.defaults(demo.t2v_fields(settings.world))
for bad in ({"steps": 0}, {"width": good["width"] - 2}, {"prompt": "  "}, {"frames": 99}, {"cfg": 3.0},
            {"base": demo.FILE}, {"personal_lora": demo.FILE, "lora_file": "no/such/style.safetensors"}):
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
t2v.run()  # the good width again: the app shows a video and its status line again

# %% [markdown]
# ## 5. A base and a LoRA from files, as a user brings them
#
# Community DreamBooth bases come as one `.safetensors` file in the original Stable Diffusion layout, community LoRAs in
# kohya's format. To show the path without the Hub, `checkpoint_formats` writes the toy world's base and its neon style in
# exactly those formats (stand-ins for a downloaded file); the tab's menus then take them as **a file on this machine**.
# The base is read by diffusers' `from_single_file` (after a check that it is a SD1.5-shaped checkpoint of this world),
# the LoRA by diffusers' kohya conversion, beside the LCM LoRA at its own alpha.

# %%
from pathlib import Path

from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from animatelcm_helpers import checkpoint_formats
from animatelcm_helpers.toy import zoo
from animatelcm_helpers.utils import quiet_loading

files = Path("outputs/demo/my_files")
if settings.world == "toy":
    with quiet_loading():
        toy_base = StableDiffusionPipeline.from_pretrained(zoo.root() / "base", safety_checker=None,
                                                           requires_safety_checker=False)
    base_file = checkpoint_formats.export_single_file(toy_base, files / "my_toy_base.safetensors")
    lora_file = checkpoint_formats.export_kohya_lora(load_file(zoo.root() / "styles" / "neon.safetensors"),
                                                     files / "neon_kohya.safetensors")
    print("single-file base:", base_file, f"({len(checkpoint_formats.header(base_file))} tensors)")
    print("kohya LoRA:", lora_file, "keys like", next(iter(checkpoint_formats.header(lora_file))))
else:  # the full world: your own files (a SD1.5 DreamBooth checkpoint, a SD1.5 LoRA)
    base_file, lora_file = Path("my_base.safetensors"), Path("my_style_lora.safetensors")

# %% [markdown]
# The same text-to-video tab, with both files and the LoRA's alpha at `0`, `0.4` and `0.8`; the style is read on each
# video's first frame (`metrics.read_styles`), over one video per digit (test mode: three digits):

# %%
from animatelcm_helpers.toy.data import DIGIT_WORDS

mine = {**good, "base": demo.FILE, "base_file": str(base_file), "personal_lora": demo.FILE, "lora_file": str(lora_file)}
digits = DIGIT_WORDS[: config.pick(10, 3)]
neon, shown = {}, {}
for alpha in (0.0, 0.4, 0.8):
    reads = []
    for i, word in enumerate(digits):
        out = demo.run_t2v({**mine, "prompt": f"a {word} moving left", "lora_alpha": alpha, "seed": 100 + i})
        reads += metrics.read_styles(out.frames[:1])
        if i == 0:
            shown[f"LoRA alpha {alpha}: a {word} moving left"] = out.frames
    neon[alpha] = sum(r == "neon" for r in reads) / len(reads)
media.show_rows(shown)
print("neon style read at alpha", neon, f"({len(digits)} videos each)")

# %% [markdown]
# The command line takes the same files: `python -m animatelcm_helpers generate --prompt "a seven moving left"
# --base my_toy_base.safetensors --lora neon_kohya.safetensors:0.8` (`--lora` is repeatable, `PATH_OR_NAME:ALPHA`).
#
# ## 6. What the knobs cost
#
# `demo.run_t2v` takes the same dict the app builds. Guidance doubles the UNet evaluations per step; the consistency model
# does not need it (notebook 02):

# %%
# NBVAL_CHECK_OUTPUT
for cfg in (1.0, 1.5):
    r = demo.run_t2v({**good, "seed": 0, "cfg": cfg, "steps": 4})
    print(f"CFG {cfg}: {r.unet_evaluations} UNet evaluations for {r.steps} steps")

# %% [markdown]
# A personal LoRA changes the look, not the cost. The menu's styles at alpha `0.8`, each video's UNet evaluations and the
# style read on its first frame (one video each: notebook 04 measures how often each style is read):

# %%
styled = {}
for name in demo.personal_loras(settings.world):
    r = demo.run_t2v({**good, "seed": 0, "personal_lora": name, "lora_alpha": 0.8})
    styled[name] = r.frames
    print(f"{name:8s} {r.unet_evaluations} UNet evaluations, style read: {metrics.read_styles(r.frames[:1])[0]}")
media.show_videos(styled)

# %% [markdown]
# ## 7. The SVD-xt tab: image-to-video
#
# AnimateLCM-SVD-xt animates an image in a few steps (notebook 07). The tab has the official app's controls:

# %%
# NBVAL_CHECK_OUTPUT
show_fields(demo.svd_fields(settings.world))

# %% [markdown]
# The guidance ramps over the frames from **min guidance** (the first frame) to **max guidance** (the last); above 1 it is
# classifier-free guidance, so each step costs two UNet evaluations. **frames per second** is the saved video's; the UNet
# itself is conditioned on the official fps. **frames decoded at a time** trades GPU memory for speed. The result's note
# says which model ran. The input image is the first row:

# %%
svd_values = {**demo.defaults(demo.svd_fields(settings.world)), "seed": 0}
clip = demo.run_svd(svd_values)
print(demo.describe(clip))
print(clip.note)
media.show_videos({"the image (input)": demo.read_image(svd_values["image"])[None], "animated": clip.frames})

# %% [markdown]
# An unreadable upload is a message too:

# %%
# NBVAL_CHECK_OUTPUT
try:
    demo.validate_svd({**svd_values, "image": b"this is not a PNG"})
except config.UserError as err:
    print("UserError:", err)

# %% [markdown]
# ## 8. Save
#
# `demo.save_result` writes `.gif` or `.mp4` (atomically: to a temporary file, then renamed), named by the prompt and seed so
# the seed can be read back from the file name.

# %%
for suffix in (".gif", ".mp4"):
    print("wrote", demo.save_result(t2v.result, "outputs/demo", t2v.checked["prompt"], suffix))

# %% [markdown]
# ## Summary
#
# - The app is the official demo's three versions over the same functions the course uses: `pipelines.load_t2v` and
#   `pipelines.generate` (text-to-video), `i2v.generate_i2v` (AnimateLCM-I2V), `svd.generate_svd` (SVD-xt), with the base and
#   LoRA menus (`pipelines.add_lora`) taking the world's names or files on this machine.
# - Each control is data (`demo.Field`), each tab is data (`demo.TABS`), and the work is plain functions: `validate_*` checks
#   the values with one-line messages, `run_*` makes the video and reports seconds and UNet evaluations.
# - CFG above 1 doubles the cost of every step (so does SVD-xt's guidance ramp above 1); a personal LoRA changes the look
#   at no cost.
#
# ## Exercises
#
# 1. Make the same video with 1, 2, 4 and 8 steps (seed 0). How do the UNet evaluations and the seconds grow? (Notebook 04's
#    table says how the quality changes.)
# 2. Set CFG to `1.5` and `2.0`: how do the UNet evaluations change?
# 3. Try each personal LoRA at alpha `0.4`, `0.8` and `1.6`. At which alphas is the style read, and does the digit stay
#    readable (`metrics.read_digits`)?
# 4. In the SVD-xt tab, set the motion bucket to `1` and to `255` (seed 0). Does the digit move further
#    (`metrics.velocity`: the centroid's speed)?
# 5. Add a tab: write `fields`, `validate` and `run` functions for a new use and make a `demo.Tab` of them (for example a
#    still-image tab: text-to-video with one frame). `demo.tab_widget(tab)` builds it; appending it to `demo.TABS` puts it in
#    the app.
#
# ## Solutions
#
# <details><summary>Solutions (open after trying the exercises)</summary>
#
# 1. One UNet evaluation a step without CFG, so 1, 2, 4, 8; the seconds grow about in proportion (the first cell below).
# 2. Two evaluations a step with CFG above 1, whatever its value: 8 for 4 steps at `1.5` and at `2.0` (the same cell).
# 3. The second cell below reads the style and the digit of each video (one video each: a first look, not a measurement).
# 4. The third cell below measures the speed of the digit's centroid (a line fitted to its path) at both buckets: the same
#    in the toy world, whose SVD-xt was trained with one fixed motion bucket (`svd_distill.added_time_ids`'s default), so
#    it has not learnt what the bucket means; the real SVD-xt was trained across buckets (more is more motion).
# 5. The last cell below builds a still-image tab from the text-to-video functions and runs it.
#
# </details>

# %%
for steps in (1, 2, 4, 8):
    r = demo.run_t2v({**good, "seed": 0, "steps": steps})
    print(f"1. {steps} steps: {r.unet_evaluations} UNet evaluations, {r.seconds:.2f} s")
for cfg in (1.5, 2.0):
    r = demo.run_t2v({**good, "seed": 0, "cfg": cfg})
    print(f"2. CFG {cfg}: {r.unet_evaluations} UNet evaluations for {r.steps} steps")

# %%
for name in [n for n in demo.personal_loras(settings.world) if n != demo.NO_LORA]:
    for alpha in (0.4, 0.8, 1.6):
        r = demo.run_t2v({**good, "seed": 0, "personal_lora": name, "lora_alpha": alpha})
        print(f"3. {name} at {alpha}: style read {metrics.read_styles(r.frames[:1])[0]}, "
              f"digit read {DIGIT_WORDS[metrics.read_digits(r.frames[None])[0]]} (asked: {good['prompt'].split()[1]})")

# %%
for bucket in (1, 255):
    r = demo.run_svd({**svd_values, "motion_bucket_id": bucket})
    v = metrics.velocity(r.frames)
    speed = "no digit found" if v is None else f"{float(np.hypot(*v)):.2f} px a frame"
    print(f"4. motion bucket {bucket}: the digit's centroid moves {speed}")

# %%
def still_fields(world):
    return [f for f in demo.t2v_fields(world) if f.name not in ("frames", "motion_lora")]


def still_validate(values, world):
    return demo.validate_t2v({**values, "frames": 1}, world)


still = demo.Tab("Still image", still_fields, still_validate, demo.run_t2v, stem=lambda v: v["prompt"])
box = demo.tab_widget(still, settings.world)
box.controls["seed"].value = 0
box.run()
print("5.", box.message)
