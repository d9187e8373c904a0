"""Issue 21's full-world paths against the fake Hub (offline, from the workshop's cache): the base
menu's other Hub bases, a single-file DreamBooth checkpoint taken from a real repository's layout,
the Hub's kohya style LoRAs beside the LCM LoRA with their alphas, and AnimateLCM-I2V on its
official checkpoint (converted once from the pickle, then safetensors only), through the package's
own calls and the demo's callbacks. README's "The full world, tested offline" table lists them.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from animatelcm_helpers import config, demo, hub, i2v, i2v_official, pipelines

SMALL = dict(frames=4, height=64, width=64, steps=2, seed=3)
PROMPT = "a boy holding a rabbit"
IMAGE = np.asarray(Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 120, 3), dtype=np.uint8)))


def frames(pipe, prompt: str = PROMPT) -> np.ndarray:
    return pipelines.generate(pipe, prompt, **SMALL).frames


@pytest.fixture(scope="module")
def default_frames(full_offline):
    return frames(pipelines.load_t2v("animatelcm"))


@pytest.mark.parametrize("base", ["realistic-vision", "dreamshaper"])
def test_each_hub_base_of_the_menu_loads_and_animates(full_offline, default_frames, base):
    """The base menu's Hub entries (diffusers layout; DreamShaper's fp16 variant) under AnimateLCM:
    another base's weights make another video from the same seed."""
    pipe = pipelines.load_t2v("animatelcm", base=base)
    assert pipe.model_spec.base == config.BASES["full"][base]
    assert pipe.adapter_weights == {"lcm-lora": 0.8}
    out = frames(pipe)
    assert out.shape == (4, 64, 64, 3) and not np.array_equal(out, default_frames)


def test_a_single_file_dreambooth_checkpoint_is_the_same_model_as_its_diffusers_folder(full_offline, fake_remote,
                                                                                         tmp_path):
    """Realistic Vision ships both layouts; its ``_fp16-no-ema.safetensors`` (original SD names,
    float16), downloaded by hand as community sites offer it, read by ``from_single_file`` into
    SD1.5's layout (the course's cached configs, offline) gives the video of the diffusers folder,
    up to the float16 rounding of its weights."""
    name = "Realistic_Vision_V5.1_fp16-no-ema.safetensors"
    single = tmp_path / name
    shutil.copy(fake_remote[config.HUB["realistic_vision"].repo_id] / name, single)
    from_file = frames(pipelines.load_t2v("animatelcm", base=str(single)))
    from_folder = frames(pipelines.load_t2v("animatelcm", base="realistic-vision"))
    diff = np.abs(from_file.astype(int) - from_folder.astype(int))
    assert from_file.shape == from_folder.shape and diff.mean() < 2.0, diff.mean()


def test_the_hubs_kohya_style_loras_sit_beside_the_lcm_lora_with_their_alphas(full_offline, default_frames):
    """Both menu LoRAs (kohya format; the coloring-book one also on the text encoder) load beside the
    LCM LoRA as separate adapters; alpha 0 is exactly no LoRA, a nonzero alpha changes the video."""
    pipe = pipelines.load_t2v("animatelcm", loras=[("pixel-art", 0.8), ("coloring-book", 0.5)])
    assert pipe.adapter_weights == {"lcm-lora": 0.8, "pixel-art": 0.8, "coloring-book": 0.5}
    styled = frames(pipe)
    assert not np.array_equal(styled, default_frames)
    for name in ("pixel-art", "coloring-book"):
        pipelines.add_lora(pipe, name, 0.0, "full")
    np.testing.assert_allclose(frames(pipe), default_frames, atol=1)


def test_a_hub_file_given_as_owner_name_file_is_a_lora(full_offline):
    weights, name = pipelines.lora_weights(
        "artificialguybr/pixelartredmond-1-5v-pixel-art-loras-for-sd-1-5/PixelArtRedmond15V-PixelArt-PIXARFK.safetensors",
        "full")
    assert weights.weight_name == "PixelArtRedmond15V-PixelArt-PIXARFK.safetensors" and name.startswith("lora-")


@pytest.fixture(scope="module")
def official_i2v(full_offline, tmp_path_factory):
    """The official AnimateLCM-I2V: converted from the fake Hub's pickle into a fresh cache."""
    cache = tmp_path_factory.mktemp("i2v-cache")
    mp = pytest.MonkeyPatch()
    mp.setattr(config, "cache_dir", lambda: cache)
    yield i2v_official.pipeline(), cache
    mp.undo()


def test_animatelcm_i2v_on_its_official_checkpoint_offline(official_i2v):
    pipe, cache = official_i2v
    assert type(pipe).__name__ == "AnimateDiffPipeline" and pipe.i2v_layer == i2v.OFFICIAL_LAYER
    assert pipe.adapter_weights == {"lcm-lora": i2v.LCM_LORA_WEIGHT}
    assert pipe.scheduler.config.original_inference_steps == 200  # inference-i2v.yaml
    written = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())
    assert written and all(p.endswith((".safetensors", ".json")) for p in written), written
    out = i2v.generate_i2v(pipe, IMAGE, steps=2, frames=4, height=64, width=64, seed=0)
    assert out.frames.shape == (4, 64, 64, 3)
    again = i2v.generate_i2v(pipe, IMAGE, steps=2, frames=4, height=64, width=64, seed=0)
    assert np.array_equal(out.frames, again.frames)
    still = i2v.generate_i2v(pipe, IMAGE, steps=2, frames=4, height=64, width=64, seed=0, motion_scale=0.0)
    assert not np.array_equal(out.frames, still.frames)  # the motion scale reaches the video


def test_the_conversion_runs_once_then_only_safetensors_are_read(official_i2v, monkeypatch):
    """A second load finds the converted folder (named by the checkpoint's blob hash) and never
    opens the pickle again."""
    _, cache = official_i2v
    monkeypatch.setattr(config, "cache_dir", lambda: cache)

    def no_pickle(*args, **kwargs):
        raise AssertionError("the pickle was read again")

    monkeypatch.setattr(torch, "load", no_pickle)
    folder = i2v_official.converted_folder()
    blob = os.path.basename(os.path.realpath(hub.hub_file(config.HUB["animatelcm_i2v"], "checkpoint")))
    assert folder == cache / i2v_official.CACHE_FOLDER / blob[:24]


def test_the_demos_full_world_i2v_tab(full_offline):
    """The i2v tab in the full world: the official demo's controls and defaults, a video with a
    base and a personal LoRA chosen from the menus."""
    fields = {f.name: f for f in demo.i2v_fields("full")}
    assert [fields[k].default for k in ("prompt", "negative_prompt", "motion_scale", "steps", "cfg", "frames",
                                        "width", "height")] == ["best quality", "bad quality", 0.8, 4, 1.0, 16, 512, 512]
    assert (fields["motion_scale"].low, fields["motion_scale"].high) == (0.0, 1.5)
    values = {**demo.defaults(fields.values()), "image": IMAGE, "steps": 1, "frames": 12, "width": 256, "height": 256,
              "seed": 0, "base": "realistic-vision", "personal_lora": "pixel-art", "lora_alpha": 0.6}
    out = demo.run_i2v(demo.validate_i2v(values, "full"))
    assert out.frames.shape == (12, 256, 256, 3) and out.unet_evaluations == 1
    pipe = demo.i2v_pipe("full", "realistic-vision")
    assert pipe.adapter_weights == {"lcm-lora": i2v.LCM_LORA_WEIGHT, "pixel-art": 0.6}
