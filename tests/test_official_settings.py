"""The official AnimateLCM settings the full world follows, each pinned (the samplers' timesteps are
pinned in test_full_world.py on the loaded pipelines), and the memory plan that makes the full
world fit a 16 GB T4 as well as a large GPU."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from animatelcm_helpers import config, loading, svd
from animatelcm_helpers.config import UserError


def official_resize_image(image, output_size):
    """animatelcm_svd/app.py's resize_image, written out from its source for the comparison."""
    target_aspect = output_size[0] / output_size[1]
    image_aspect = image.width / image.height
    if image_aspect > target_aspect:
        new_height = output_size[1]
        new_width = int(new_height * image_aspect)
        resized = image.resize((new_width, new_height), Image.LANCZOS)
        box = ((new_width - output_size[0]) / 2, 0, (new_width + output_size[0]) / 2, output_size[1])
    else:
        new_width = output_size[0]
        new_height = int(new_width / image_aspect)
        resized = image.resize((new_width, new_height), Image.LANCZOS)
        box = (0, (new_height - output_size[1]) / 2, output_size[0], (new_height + output_size[1]) / 2)
    return resized.crop(box)


@pytest.mark.parametrize("size", [(640, 480), (300, 800), (1024, 576), (1920, 1080), (97, 55)])
def test_svd_input_is_resized_and_centre_cropped_as_the_official_app_does(size):
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    ours = svd.fit_image(image, 1024, 576)
    assert ours.size == (1024, 576)
    assert np.array_equal(np.asarray(ours), np.asarray(official_resize_image(image, (1024, 576))))


def test_svd_settings_follow_the_official_app():
    """app.py: 4 steps, guidance 1.0 -> 1.2, motion bucket 80, decoding 4 frames at a time, no fps
    passed to the pipeline (diffusers' 7: the UNet sees 6); the toy SVD was trained with fps 8."""
    demo = config.SVD_DEMO
    assert (demo["steps"], demo["min_guidance"], demo["max_guidance"], demo["motion_bucket_id"],
            demo["decode_chunk_size"]) == (4, 1.0, 1.2, 80, 4)
    assert config.SVD_FPS == {"full": 7, "toy": 8} and config.SVD_SIZES["full"] == (25, 576, 1024)
    import inspect

    from diffusers import StableVideoDiffusionPipeline

    assert inspect.signature(StableVideoDiffusionPipeline.__call__).parameters["fps"].default == config.SVD_FPS["full"]


@pytest.mark.parametrize("kind, gib, expected", [
    ("svd", None, (False, False, 4)),  # a CPU: nothing to save
    ("svd", 80.0, (False, False, 4)),  # an A100 / H100: the whole pipeline on the GPU
    ("svd", 24.0, (True, False, 4)),  # an L4 / A10: model offload, the official app's 4 frames at a time
    ("svd", 15.0, (True, True, 2)),  # a T4 (15 GiB usable): offload, feed-forward chunking, 2 frames
    ("t2v", 80.0, (False, False, 16)),
    ("t2v", 15.0, (True, False, 8)),
    ("t2v", 8.0, (True, True, 4)),
])
def test_the_memory_plan_follows_the_gpus_memory(kind, gib, expected):
    plan = loading.memory_plan(kind, "cuda" if gib else "cpu", total_gib=gib)
    assert (plan.offload, plan.forward_chunking, plan.decode_chunk_size) == expected
    with pytest.raises(UserError, match="unknown pipeline kind"):
        loading.memory_plan("sdxl", "cpu")


def test_place_applies_the_plan():
    calls = []

    class Unet:
        def enable_forward_chunking(self):
            calls.append("chunking")

    class Pipe:
        unet = Unet()

        def enable_model_cpu_offload(self, device=None):
            calls.append(("offload", device))

        def to(self, device):
            calls.append(("to", device))

    pipe = loading.place(Pipe(), "cuda:1", loading.MemoryPlan(True, True, 2, "a T4"))
    assert calls == [("offload", "cuda:1"), "chunking"] and pipe.memory_plan.decode_chunk_size == 2
    calls.clear()
    loading.place(Pipe(), "cpu", loading.memory_plan("svd", "cpu"))
    assert calls == [("to", "cpu")]
