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
# - **video-to-video** with `AnimateDiffVideoToVideoPipeline`: how strength trades keeping the input's digit and motion against following a new style, measured with intervals
# - **image-to-video with AnimateLCM-I2V**: the official design (an image encoder whose features enter the UNet, notebook 05) on diffusers' `AnimateDiffPipeline`, its motion scale as a knob; in the toy world the zoo's encoder, in the full world the official weights (converted once from the Hub's checkpoint); and the full world's cells (SD1.5 ControlNets from the Hub) that run unchanged on a GPU
#
# **Prerequisites:** notebook 05 (where the toy adapters and the toy image encoder come from) helps; notebook 00 (generating with AnimateLCM).
#
# **Run time:** toy world on a CPU: about 2 minutes (test mode < 2 minutes); full world on a GPU: about a minute per setting after downloading the SD1.5 ControlNets (`download control`: a ControlNet is about `0.7` GB in float16) and the AnimateLCM-I2V checkpoint.
#
# **Notation and terms**: the course's notation is in [docs/NOTATION.md](../docs/NOTATION.md), its terms in
# [docs/GLOSSARY.md](../docs/GLOSSARY.md) (on Colab: [NOTATION.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/NOTATION.md),
# [GLOSSARY.md](https://github.com/animatelcm-runnable/animatelcm-runnable/blob/main/docs/GLOSSARY.md)). A **ControlNet** is
# a trainable copy of the UNet's encoder that reads a **control map** (edges, a pose, depth) and adds its outputs to the
# UNet's skip connections; a **LoRA** is a low-rank update $W + \alpha BA$ of the model's weights (the LCM LoRA, style
# LoRAs). **Content shuffle** is a controlnet-aux "detector" that randomly warps an image (a control map that keeps the
# colours and textures but not the layout). **Edge F1** scores how well a video's Canny edges follow the control's (matched
# within 1 pixel, 1 = exactly); **first-frame PSNR** how close an image-to-video output's first frame is to the input
# image (dB, higher is closer); **digit** / **direction** the fractions of videos whose digit the toy classifier reads as
# the prompt's / that move the prompt's way. Measured comparisons give a **95 % interval** (bootstrap over the videos);
# overlapping intervals are a **tie**.
#
# **What this notebook does not show**
#
# - *The full world's results.* Its cells run only with a GPU and the Hub; nothing here measures SD1.5 ControlNets or
#   the official AnimateLCM-I2V weights.
# - *Large samples in the live cells.* The live comparisons use 4 videos (their intervals are wide); the measured tables
#   (40 held-out videos) come from `scripts/tables.py` and are printed with their intervals.

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

from animatelcm_helpers import config, control, detectors, evaluation, i2v, i2v_official, media, pipelines, results, utils
from animatelcm_helpers.toy import metrics
from animatelcm_helpers.toy.data import DIGIT_WORDS

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
# notebook 05, in the full world `lllyasviel/control_v11p_sd15_canny` from the Hub (`config.HUB`). The control maps are
# shown above the video they steer.

# %%
pipe = pipelines.load_t2v("animatelcm")
edges = control.controlnet_pipeline(control.load_controlnet("canny"), pipe=pipe)
maps = detectors.detect(video, "canny")
out = control.generate_controlled(edges, prompt, maps, scale=1.0, seed=0)
media.show_rows({"control (Canny)": maps, f"AnimateLCM + ControlNet, 4 steps: {prompt}": out.frames})
print(f"{out.unet_evaluations} UNet evaluations, {out.seconds:.2f} s, edge F1 {detectors.edge_f1(out.frames, maps):.2f}")

# %% [markdown]
# The same edges, a different digit in the prompt. Does the prompt still have a say once the control fixes where the
# strokes go? The classifier reads the digit of both videos:

# %%
word = prompt.split()[1]  # "a seven moving left" -> "seven"
other = prompt.replace(word, "one" if word != "one" else "four", 1)
swapped = control.generate_controlled(edges, other, maps, seed=0)
media.show_rows({"control (Canny)": maps, f"prompt: {prompt}": out.frames, f"same control, prompt: {other}": swapped.frames})
read = [DIGIT_WORDS[d] for d in metrics.read_digits(np.stack([out.frames, swapped.frames]))]
media.show_markdown(f"Digit read: **{read[0]}** under the prompt '{prompt}', **{read[1]}** under '{other}' "
                    f"(edge F1 {detectors.edge_f1(out.frames, maps):.2f} and {detectors.edge_f1(swapped.frames, maps):.2f}): "
                    + ("the prompt changed the digit the classifier reads." if read[0] != read[1] else
                       "the control wins here: both read as the same digit."))

# %% [markdown]
# ## 3. Control strength as a knob
#
# `scale` is diffusers' `controlnet_conditioning_scale`: the ControlNet's residuals are multiplied by it. Edge F1 against the
# control over the four held-out videos (test mode: two), at each scale, with its 95 % interval over the videos (a wide one:
# few videos):

# %%
scales = (0.0, 0.5, 1.0, 1.5)
f1 = {s: [] for s in scales}
shown = {"control (Canny)": maps}
for i, (v, p) in enumerate(zip(videos[:config.pick(4, 2)], prompts)):
    m = detectors.detect(v, "canny")
    for s in scales:
        frames = control.generate_controlled(edges, p, m, scale=s, seed=0).frames
        f1[s].append(detectors.edge_f1(frames, m))
        if i == 0:
            shown[f"scale {s}"] = frames
media.show_rows(shown)
f1_iv = {s: metrics.bootstrap(f1[s]) for s in scales}
for s in scales:
    print(f"scale {s}: edge F1 {f1_iv[s].format()}")
media.show_markdown(f"Against scale 1.0 on these {len(f1[1.0])} videos: " + "; ".join(
    f"scale {s} a **{metrics.compare(f1_iv[s], f1_iv[1.0])}**" for s in scales if s != 1.0) + ".")

# %% [markdown]
# Line-art maps go to the same ControlNet (it was trained on both):

# %%
lineart = detectors.detect(video, "lineart")
out_la = control.generate_controlled(edges, prompt, lineart, seed=0)
media.show_rows({"control (line art)": lineart, "AnimateLCM + ControlNet": out_la.frames})
print(f"edge F1 {detectors.edge_f1(out_la.frames, maps):.2f} (against the video's Canny edges)")

# %% [markdown]
# ## 4. Video-to-video: keep the motion, change the style
#
# `AnimateDiffVideoToVideoPipeline` noises the input video's latents to `strength` of the schedule and denoises from there,
# so it runs about `strength x steps` UNet evaluations. Here with the neon style LoRA (trained on still images only) on the
# toy AnimateLCM, 8 LCM steps; the input video is the first row:

# %%
pipelines.add_style(pipe, "neon", 0.8)
v2v = control.video_to_video_pipeline(pipe=pipe)
shown = {"input": video}
for strength in (0.25, 0.5, 0.75, 1.0):
    out_v = control.video_to_video(v2v, video, f"{prompt} in neon style", strength=strength, steps=8, seed=0)
    shown[f"strength {strength} ({out_v.unet_evaluations} UNet evaluations)"] = out_v.frames
media.show_rows(shown)

# %% [markdown]
# Measured over 40 held-out videos (`python scripts/tables.py control`): the digit and the motion of the input (read by
# the metric nets against the input's caption) and the style read on the first frame (`metrics.read_styles`), each a
# fraction of the 40 with its 95 % interval (`results.interval`: from the fraction and the count):

# %%
# NBVAL_CHECK_OUTPUT
v2v_rows = [r for r in results.load("control")["rows"] if r["mode"] == "v2v"]
print("| strength | UNet evals | digit kept | direction kept | neon style read |\n|---:|---:|---:|---:|---:|")
for r in v2v_rows:
    print(f"| {r['strength']} | {r['unet_evals']} | {results.interval(r, 'digit').format()} | "
          f"{results.interval(r, 'direction').format()} | {results.interval(r, 'style').format()} |")

# %%
low, high = v2v_rows[0], v2v_rows[-1]
verdict = {k: metrics.compare(results.interval(high, k), results.interval(low, k)) for k in ("digit", "direction", "style")}
best_style = max(v2v_rows, key=lambda r: r["style"])
media.show_markdown(
    f"From strength {low['strength']} to {high['strength']} (n = {low['videos']} each): the style read goes "
    f"{low['style']:.2f} -> {high['style']:.2f} (**{verdict['style']}** for the higher strength), the digit kept "
    f"{low['digit']:.2f} -> {high['digit']:.2f} ({verdict['digit']}), the direction kept {low['direction']:.2f} -> "
    f"{high['direction']:.2f} ({verdict['direction']}). The most style is read at strength {best_style['strength']} "
    f"({best_style['style']:.2f}); against strength {high['strength']} that is a "
    f"{metrics.compare(results.interval(best_style, 'style'), results.interval(high, 'style'))}.")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
xs = [r["strength"] for r in v2v_rows]
for key in ("digit", "direction", "style"):
    ivs = [results.interval(r, key) for r in v2v_rows]
    ax.errorbar(xs, [iv.value for iv in ivs], yerr=[[iv.value - iv.low for iv in ivs], [iv.high - iv.value for iv in ivs]],
                fmt="-o", capsize=3, label=key)
ax.set_xlabel("strength"); ax.set_title("video-to-video: what is kept, what changes (95 % intervals)"); ax.legend(); plt.show()

# %% [markdown]
# ## 5. Image-to-video with AnimateLCM-I2V
#
# AnimateLCM-I2V (notebook 05) is AnimateLCM plus an **image encoder**: the image's VAE latent goes through a small
# residual network, each frame gets a position embedding times the **motion scale**, and the resulting features are
# added inside the UNet's down blocks, before the motion modules, while diffusers' `AnimateDiffPipeline` samples as for
# text-to-video (`i2v.image_condition` adds them for the duration of the call). `i2v.image_to_video_pipeline()` is the
# world's model: in the toy world the toy AnimateLCM + the zoo's encoder (trained teacher-free), in the full world the
# official checkpoint converted once (`i2v_official`, section 6). `i2v.generate_i2v` takes the official knobs: motion
# scale (`0.8`), steps (`4`), guidance (`1`: none), and the official colour correction (`match_colors`: each frame's hue,
# saturation and brightness moved towards the image's; off here, so the frames are the model's own). The input image is
# the first row; the same image, four directions:

# %%
pipe.delete_adapters("neon")
del pipe.adapter_weights["neon"]  # the style is gone: its weight too
i2v_pipe = i2v.image_to_video_pipeline() if settings.world == "toy" else i2v_official.pipeline()
image = video[0]
digit = prompt[: prompt.index(" moving")]
directions = ("left", "right", "up", "down")
shown = {"the image (input)": image[None]}
for direction in directions:
    shown[f"{digit} moving {direction}"] = i2v.generate_i2v(i2v_pipe, image, f"{digit} moving {direction}", steps=4,
                                                           seed=0, match_colors=False).frames
media.show_rows(shown)
clips = np.stack([v for k, v in shown.items() if k != "the image (input)"])
psnr = [utils.psnr(c[0], image) for c in clips]
moved = metrics.read_direction(clips)
print("first-frame PSNR (dB):", [round(p, 1) for p in psnr])
print("direction read:", moved)

# %%
i2v_rows = results.load("i2v")["rows"]
no_image = next(r for r in i2v_rows if r["design"] == "none")
floor = results.interval(no_image, "first_psnr")
media.show_markdown(
    f"First-frame PSNR of the four videos: {', '.join(f'{p:.1f}' for p in psnr)} dB; AnimateLCM without any image scores "
    f"{floor.format(1)} dB on the table's {no_image['videos']} videos, so "
    f"{sum(p > floor.high for p in psnr)} of the 4 start above that interval. The direction read matches the prompt in "
    f"{sum(m == d for m, d in zip(moved, directions))} of 4.")

# %% [markdown]
# The motion scale is the official demo's slider (`0` to `1.5`): how strongly each frame's position embedding is added to
# the image features. The same image and prompt at its two ends and its default:

# %%
shown = {f"the image (input); prompt: {prompt}": image[None]}
for scale in (0.0, 0.8, 1.5):
    shown[f"motion scale {scale}"] = i2v.generate_i2v(i2v_pipe, image, prompt, motion_scale=scale, steps=4, seed=0,
                                                      match_colors=False).frames
media.show_rows(shown)

# %% [markdown]
# Measured over 40 held-out videos (`python scripts/tables.py i2v`, the same videos as notebook 05's tables; the image is
# each video's first frame, seed = video index, 4 steps, no CFG), with 95 % intervals:

# %%
# NBVAL_CHECK_OUTPUT
def cell(r, key, digits=2):
    iv = results.interval(r, key)
    return iv.format(digits) if iv else f"{r[key]:.{digits}f} (no interval stored)"

print("| model | motion scale | colour correction | first-frame PSNR (dB) | digit | direction |\n|---|---:|---|---:|---:|---:|")
for r in i2v_rows:
    scale = f"{r['motion_scale']:g}" if "motion_scale" in r else "-"
    print(f"| {r['label']} | {scale} | {'yes' if r.get('match_colors') else 'no'} | {cell(r, 'first_psnr', 1)} | "
          f"{cell(r, 'digit')} | {cell(r, 'direction')} |")

# %%
enc = sorted((r for r in i2v_rows if r["design"] == "official" and not r["match_colors"]), key=lambda r: r["motion_scale"])
default = next(r for r in enc if r["motion_scale"] == i2v.MOTION_SCALE)
media.show_markdown("Against the default motion scale " + f"{default['motion_scale']:g}: " + "; ".join(
    f"scale {r['motion_scale']:g}: first-frame PSNR {r['first_psnr']:.1f} dB "
    f"(**{metrics.compare(results.interval(r, 'first_psnr'), results.interval(default, 'first_psnr'))}**), direction "
    f"{r['direction']:.2f} (**{metrics.compare(results.interval(r, 'direction'), results.interval(default, 'direction'))}**)"
    for r in enc if r is not default) + ".")

# %% [markdown]
# ## 6. The full world
#
# The same helpers with the Hub's models: SD1.5 ControlNets (v1.1) on the real AnimateLCM, Canny maps from controlnet-aux,
# 512x512, 16 frames; and the official AnimateLCM-I2V (`config.HUB["animatelcm_i2v"]`): `i2v_official.pipeline` downloads
# its checkpoint once, converts it (read once with torch's weights-only unpickler, written as safetensors into the cache)
# and builds the pipeline on a SD1.5 base with its own LCM LoRA at `0.8`; a personal base or LoRA goes in as in notebook 08.
# These cells run only in the full world (a GPU and the Hub); in the toy world they print what they would do.

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

# %%
if settings.world == "full":
    official = i2v_official.pipeline()  # base: epiCRealism; i2v_official.pipeline(base=..., loras=[(name_or_file, alpha)])
    my_image = "my_image.png"  # any image of your own; resized and centre-cropped to 512x512
    clip = i2v.generate_i2v(official, my_image, i2v.PROMPT, motion_scale=i2v.MOTION_SCALE, steps=i2v.STEPS, seed=0)
    media.show_videos({"the image": i2v.resize_and_crop(i2v.as_pil(my_image), 512, 512), "AnimateLCM-I2V": clip.frames})
else:
    print("full world only: AnimateLCM-I2V ->", config.HUB["animatelcm_i2v"].describe(), "+",
          config.HUB["animatelcm_i2v_lora"].describe())

# %% [markdown]
# ## Summary
#
# - `detectors.detect` gives PIL control maps; `control.controlnet_pipeline` puts any ControlNet on AnimateLCM with diffusers'
#   own `AnimateDiffControlNetPipeline`; `generate_controlled(..., scale=)` makes control strength a knob.
# - `control.video_to_video` re-renders a video; the strength trades the input's digit and motion against the new style
#   (section 4's table, with intervals).
# - `i2v.generate_i2v` animates one image with AnimateLCM-I2V, the official design: the image encoder's features inside the
#   UNet, the motion scale as a knob (section 5's table); `i2v.image_to_video_pipeline()` is the world's model.
#
# ## Exercises
#
# 1. Use content-shuffle maps as the control with the edge ControlNet. What does a ControlNet do with a map it was never trained on?
# 2. Find the smallest control scale whose mean edge F1 is within `0.05` of scale `1.0` (same videos as section 3).
# 3. In video-to-video, compare 8 steps at strength `0.5` with 4 steps at strength `1.0`: same UNet evaluations, different results. Why?
# 4. Animate the image with `match_colors=True` (the official colour correction): what changes in the first frame's PSNR?
#
# ## Solutions
#
# <details><summary>Solutions (open after trying the exercises)</summary>
#
# 1. The shuffle map's strokes are warped blobs, not edges: the ControlNet still reads them as edges and pulls the video's
#    strokes towards them, away from the video's true edges. The first cell below measures the edge F1 against those true
#    edges beside the Canny control's, and reads the digit against the prompt's.
# 2. The second cell below sweeps the scale in steps of `0.25` on the same videos and prints the smallest one.
# 3. Both run 4 UNet evaluations, but on different timesteps: strength `0.5` with 8 steps starts half-way down the schedule
#    from the input video noised there, so it keeps the input's layout and motion; strength `1.0` with 4 steps starts from
#    pure noise (the input video is gone) and takes bigger jumps. The third cell below shows both and reads their digit
#    and direction against the input's caption (the prompt asks for the same digit and direction); where both keep them,
#    the difference is in the frames: compare the layout and the style with the input.
# 4. The last cell below runs both on this one image and sets them beside section 5's table, which has the same
#    comparison over 40 videos with intervals.
#
# </details>

# %%
shuffle = detectors.detect(video, "shuffle")
out_sh = control.generate_controlled(edges, prompt, shuffle, seed=0)
media.show_rows({"control (content shuffle)": shuffle, "AnimateLCM + edge ControlNet": out_sh.frames})
f1_shuffle, f1_canny = detectors.edge_f1(out_sh.frames, maps), detectors.edge_f1(out.frames, maps)
read_shuffle = DIGIT_WORDS[metrics.read_digits(out_sh.frames[None])[0]]
media.show_markdown(f"**1.** Edge F1 against the video's Canny edges: shuffle control {f1_shuffle:.2f}, Canny control "
                    f"{f1_canny:.2f} ({'lower' if f1_shuffle < f1_canny else 'not lower'} with the shuffle, one video); "
                    f"the digit read is {read_shuffle}, asked: {digit.removeprefix('a ')}"
                    + (" (the prompt still sets it)." if read_shuffle == digit.removeprefix("a ") else "."))

# %%
target = np.mean(f1[1.0])
sweep = {}
for s in np.arange(0.0, 1.01, 0.25):
    sweep[float(s)] = np.mean([detectors.edge_f1(control.generate_controlled(edges, p, detectors.detect(v, "canny"),
                                                                             scale=float(s), seed=0).frames,
                                                 detectors.detect(v, "canny"))
                               for v, p in zip(videos[:config.pick(4, 2)], prompts)])
smallest = min(s for s, v in sweep.items() if v >= target - 0.05)
print("2. edge F1 by scale:", {s: round(float(v), 2) for s, v in sweep.items()}, f"-> smallest scale within 0.05 of 1.0: {smallest}")

# %%
pipelines.add_style(pipe, "neon", 0.8)
pair = {"input": video}
for steps, strength in ((8, 0.5), (4, 1.0)):
    o = control.video_to_video(v2v, video, f"{prompt} in neon style", strength=strength, steps=steps, seed=0)
    pair[f"{steps} steps, strength {strength}: {o.unet_evaluations} UNet evaluations"] = o.frames
media.show_rows(pair)
faith = [metrics.faithfulness(f[None], [prompt]) for k, f in pair.items() if k != "input"]
print("3. digit / direction kept:", [(f["digit"], f["direction"]) for f in faith])
media.show_markdown("**3.** Digit and direction kept: " + "; ".join(
    f"{k.split(':')[0]}: {'both' if f['digit'] == 1 and f['direction'] == 1 else 'not both'}"
    for k, f in zip([k for k in pair if k != "input"], faith)) + " (one video).")
pipe.delete_adapters("neon")
del pipe.adapter_weights["neon"]  # the style is gone: its weight too

# %%
plain_i2v = i2v.generate_i2v(i2v_pipe, image, prompt, steps=4, seed=0, match_colors=False).frames
matched = i2v.generate_i2v(i2v_pipe, image, prompt, steps=4, seed=0, match_colors=True).frames
media.show_rows({"the image (input)": image[None], "match_colors=False": plain_i2v, "match_colors=True": matched})
without_cc = default  # section 5's row: the default motion scale, no colour correction
with_cc = next(r for r in i2v_rows if r["design"] == "official" and r["motion_scale"] == i2v.MOTION_SCALE and r["match_colors"])
media.show_markdown(f"**4.** This image: first-frame PSNR {utils.psnr(plain_i2v[0], image):.1f} dB without, "
                    f"{utils.psnr(matched[0], image):.1f} dB with the colour correction. Over the table's "
                    f"{with_cc['videos']} videos: {results.interval(with_cc, 'first_psnr').format(1)} dB with, "
                    f"{results.interval(without_cc, 'first_psnr').format(1)} dB without, a **"
                    f"{metrics.compare(results.interval(with_cc, 'first_psnr'), results.interval(without_cc, 'first_psnr'))}**.")
