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
# # 06 · Controlled generation: ControlNet, image-to-video and video-to-video with AnimateLCM
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/animatelcm-runnable/animatelcm-runnable/blob/main/notebooks/06_controlled_generation.ipynb)
#
# **What you will learn**
#
# - control maps from **controlnet-aux** detectors (Canny, line art, content shuffle; OpenPose, depth and HED need the Hub's weights) and how to hand them to a pipeline (PIL or floats in [0, 1], never raw uint8 arrays)
# - diffusers' own **`AnimateDiffControlNetPipeline`** with the AnimateLCM motion adapter and LCM LoRA: control in 4 steps, and control strength as a knob, measured by edge F1
# - **video-to-video** with `AnimateDiffVideoToVideoPipeline`: how strength trades keeping the input's digit and motion against following a new style
# - **image-to-video** with the teacher-free adapter of notebook 05, and the full world's cells (SD1.5 ControlNets from the Hub) that run unchanged on a GPU
#
# **Prerequisites:** notebook 05 (where the toy adapters come from) helps; notebook 00 (generating with AnimateLCM).
#
# **Run time:** toy world on a CPU: about 1 minute (test mode < 2 minutes); full world on a GPU: about a minute per setting after downloading the SD1.5 ControlNets (`download control`: a ControlNet is about `0.7` GB in float16).

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

from animatelcm_helpers import config, control, detectors, evaluation, media, pipelines, results
from animatelcm_helpers.toy import metrics

settings = config.setup(world=WORLD, test_mode=TEST_MODE)
print(settings)

# %% [markdown]
# ## 1. Control maps
#
# `detectors.detect(video, kind)` runs a controlnet-aux detector on every frame and returns PIL images of the frames' size,
# which is what the ControlNet pipelines take. (A raw uint8 array would be passed through *unscaled* by diffusers' image
# processor: 0..255 where the ControlNet expects 0..1. `detectors.conditioning_frames` converts anything to PIL.)

# %%
videos, prompts = evaluation.test_videos(4, seed=2)
video, prompt = videos[0], prompts[0]
print(prompt)
media.show_rows({"video": video, "canny": detectors.detect(video, "canny"), "lineart": detectors.detect(video, "lineart"),
                 "shuffle": detectors.detect(video, "shuffle")})

# %% [markdown]
# OpenPose, depth (MiDaS) and HED need their weights from the Hub (`config.HUB["annotators"]`). Offline, the helper says
# what to do instead of failing deep inside controlnet-aux:

# %%
try:
    detectors.detect(video, "openpose")
except config.UserError as err:
    print("UserError:", err)

# %% [markdown]
# ## 2. ControlNet + AnimateLCM in 4 steps
#
# `control.controlnet_pipeline` builds diffusers' `AnimateDiffControlNetPipeline` from the loaded AnimateLCM pipeline (its
# motion adapter, its LCM LoRA, its LCM scheduler) and a ControlNet: in the toy world the teacher-free edge ControlNet of
# notebook 05, in the full world `lllyasviel/control_v11p_sd15_canny` from the Hub (`config.HUB`).

# %%
pipe = pipelines.load_t2v("animatelcm")
edges = control.controlnet_pipeline(control.load_controlnet("canny"), pipe=pipe)
maps = detectors.detect(video, "canny")
out = control.generate_controlled(edges, prompt, maps, scale=1.0, seed=0)
media.show_rows({"control (Canny)": maps, f"AnimateLCM + ControlNet, 4 steps: {prompt}": out.frames})
print(f"{out.unet_evaluations} UNet evaluations, {out.seconds:.2f} s, edge F1 {detectors.edge_f1(out.frames, maps):.2f}")

# %% [markdown]
# The same edges, a different digit in the prompt: the control fixes *where* the strokes go, the prompt still has a say.

# %%
word = prompt.split()[1]  # "a seven moving left" -> "seven"
other = prompt.replace(word, "one" if word != "one" else "four", 1)
swapped = control.generate_controlled(edges, other, maps, seed=0)
media.show_rows({f"same control, prompt: {other}": swapped.frames})

# %% [markdown]
# ## 3. Control strength as a knob
#
# `scale` is diffusers' `controlnet_conditioning_scale`: the ControlNet's residuals are multiplied by it. Edge F1 against the
# control over the four held-out videos, at each scale:

# %%
scales = (0.0, 0.5, 1.0, 1.5)
f1 = {s: [] for s in scales}
shown = {}
for i, (v, p) in enumerate(zip(videos[:config.pick(4, 2)], prompts)):
    m = detectors.detect(v, "canny")
    for s in scales:
        frames = control.generate_controlled(edges, p, m, scale=s, seed=0).frames
        f1[s].append(detectors.edge_f1(frames, m))
        if i == 0:
            shown[f"scale {s}"] = frames
media.show_rows(shown)
for s in scales:
    print(f"scale {s}: edge F1 {np.mean(f1[s]):.2f}")

# %% [markdown]
# Line-art maps go to the same ControlNet (it was trained on both):

# %%
lineart = detectors.detect(video, "lineart")
out = control.generate_controlled(edges, prompt, lineart, seed=0)
media.show_rows({"control (line art)": lineart, "AnimateLCM + ControlNet": out.frames})
print(f"edge F1 {detectors.edge_f1(out.frames, maps):.2f} (against the video's Canny edges)")

# %% [markdown]
# ## 4. Video-to-video: keep the motion, change the style
#
# `AnimateDiffVideoToVideoPipeline` noises the input video's latents to `strength` of the schedule and denoises from there,
# so it runs about `strength x steps` UNet evaluations. Here with the neon style LoRA (trained on still images only) on the
# toy AnimateLCM, 8 LCM steps:

# %%
pipelines.add_style(pipe, "neon", 0.8)
v2v = control.video_to_video_pipeline(pipe=pipe)
shown = {"input": video}
for strength in (0.25, 0.5, 0.75, 1.0):
    out = control.video_to_video(v2v, video, f"{prompt} in neon style", strength=strength, steps=8, seed=0)
    shown[f"strength {strength} ({out.unet_evaluations} UNet evaluations)"] = out.frames
media.show_rows(shown)

# %% [markdown]
# Measured over 40 held-out videos (`python scripts/tables.py control`): the digit and the motion of the input (read by
# the metric nets against the input's caption) and the style read on the first frame (`metrics.read_styles`):

# %%
# NBVAL_CHECK_OUTPUT
v2v_rows = [r for r in results.load("control")["rows"] if r["mode"] == "v2v"]
print("| strength | UNet evals | digit kept | direction kept | neon style read |\n|---:|---:|---:|---:|---:|")
for r in v2v_rows:
    print(f"| {r['strength']} | {r['unet_evals']} | {r['digit']:.2f} | {r['direction']:.2f} | {r['style']:.2f} |")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
xs = [r["strength"] for r in v2v_rows]
for key in ("digit", "direction", "style"):
    ax.plot(xs, [r[key] for r in v2v_rows], "-o", label=key)
ax.set_xlabel("strength"); ax.set_title("video-to-video: what is kept, what changes"); ax.legend(); plt.show()

# %% [markdown]
# ## 5. Image-to-video with the teacher-free adapter
#
# The image is the control of the first frame (the later frames get the "no condition" image, notebook 05); the motion
# modules carry it on and the prompt says which way the digit moves. The same image, four directions:

# %%
pipe.delete_adapters("neon"); pipe.adapter_weights.pop("neon")
i2v = control.controlnet_pipeline(control.load_controlnet("i2v"), pipe=pipe)
image = video[0]
digit = prompt[: prompt.index(" moving")]
shown = {"the image": image[None]}
for direction in ("left", "right", "up", "down"):
    shown[f"{digit} moving {direction}"] = control.image_to_video(i2v, image, f"{digit} moving {direction}", seed=0).frames
media.show_rows(shown)
clips = np.stack([v for k, v in shown.items() if k != "the image"])
print("direction read:", metrics.read_direction(clips))

# %% [markdown]
# ## 6. The full world
#
# The same helpers with the Hub's models: SD1.5 ControlNets (v1.1) on the real AnimateLCM, Canny maps from controlnet-aux,
# 512x512, 16 frames. These cells run only in the full world (a GPU and the Hub); in the toy world they print what they would do.

# %%
if settings.world == "full":
    full_pipe = pipelines.load_t2v("animatelcm")
    canny_full = control.controlnet_pipeline(control.load_controlnet("canny"), pipe=full_pipe)
    source = media.load_video("my_video.mp4")[:16]  # any 16 frames of your own, 512x512
    out = control.generate_controlled(canny_full, "a dancer on a beach, golden hour", detectors.detect(source, "canny"),
                                      scale=0.8, steps=6, guidance=1.5, seed=0)
    media.show_video(out.frames)
else:
    print("full world only: control.load_controlnet('canny') ->", config.HUB["controlnet_canny"].describe())

# %% [markdown]
# ## Summary
#
# - `detectors.detect` gives PIL control maps; `control.controlnet_pipeline` puts any ControlNet on AnimateLCM with diffusers'
#   own `AnimateDiffControlNetPipeline`; `generate_controlled(..., scale=)` makes control strength a knob.
# - `control.video_to_video` re-renders a video: low strength keeps the input's digit and motion, high strength follows the
#   new prompt and style (the table above gives the trade-off, measured).
# - `control.image_to_video` animates one image with the teacher-free adapter of notebook 05.
#
# ## Exercises
#
# 1. Use content-shuffle maps as the control with the edge ControlNet. What does a ControlNet do with a map it was never trained on?
# 2. Find the smallest control scale whose edge F1 is within 0.05 of scale 1.0.
# 3. In video-to-video, compare 8 steps at strength 0.5 with 4 steps at strength 1.0: same UNet evaluations, different results. Why?
