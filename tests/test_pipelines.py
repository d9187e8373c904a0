import json

import numpy as np
import pytest
import torch

from animatelcm_helpers import config, hub, loading, pipelines
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import zoo


def test_toy_zoo_mirrors_the_hub_layout(toy_settings):
    root = zoo.root()
    assert (root / "base" / "model_index.json").exists()
    for part in ("vae", "text_encoder", "tokenizer", "unet", "scheduler"):
        assert (root / "base" / part).is_dir()
    assert (root / "animatelcm" / "config.json").exists()
    assert (root / "animatelcm" / config.TOY_LCM_LORA).exists()
    manifest = json.loads((root / "manifest.json").read_text())
    for rel, digest in manifest["files"].items():
        assert zoo.sha256(root / rel) == digest
    assert not list(root.rglob("*.bin")) and not list(root.rglob("*.pt*"))
    if manifest.get("trained"):  # the shipped zoo: under 25 MB in all (pip carries it)
        assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 25_000_000


def test_lcm_pipeline_is_what_the_official_recipe_builds(lcm_pipe):
    from diffusers import AnimateDiffPipeline, LCMScheduler, UNetMotionModel

    assert isinstance(lcm_pipe, AnimateDiffPipeline)
    assert isinstance(lcm_pipe.unet, UNetMotionModel)
    assert isinstance(lcm_pipe.scheduler, LCMScheduler)
    assert lcm_pipe.get_active_adapters() == [loading.LCM_ADAPTER]
    assert lcm_pipe.vae_scale_factor == 4


def test_same_seed_same_video_bit_identical(lcm_pipe):
    a = pipelines.generate(lcm_pipe, "a seven moving left", seed=7)
    b = pipelines.generate(lcm_pipe, "a seven moving left", seed=7)
    c = pipelines.generate(lcm_pipe, "a seven moving left", seed=8)
    assert a.frames.shape == (8, 32, 32, 3) and a.frames.dtype == np.uint8
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


def test_two_loads_give_the_same_video(lcm_pipe, toy_settings):
    again = pipelines.load_t2v("animatelcm")
    a = pipelines.generate(lcm_pipe, "a two moving up", seed=3)
    b = pipelines.generate(again, "a two moving up", seed=3)
    np.testing.assert_array_equal(a.frames, b.frames)


def test_save_load_round_trip_is_bit_identical(toy_settings, tmp_path):
    pipe = pipelines.load_t2v("animatelcm", lcm_lora_weight=0.8)
    unfused = pipelines.generate(pipe, "a four moving right", seed=5).frames
    pipelines.save_pipeline(pipe, tmp_path / "saved")  # fuses the LoRA at 0.8
    before = pipelines.generate(pipe, "a four moving right", seed=5).frames
    # fusing W + 0.8 B A changes only float rounding
    assert np.abs(before.astype(int) - unfused).max() <= 2
    loaded = pipelines.load_t2v(str(tmp_path / "saved"))
    after = pipelines.generate(loaded, "a four moving right", seed=5).frames
    np.testing.assert_array_equal(before, after)
    assert loaded.model_spec.steps == pipe.model_spec.steps
    assert not list((tmp_path / "saved").rglob("*.bin"))


def test_lcm_lora_weight_is_applied(toy_settings):
    """The weight reaches every LoRA layer: scaling = weight * alpha / r (peft's rule); a LoRA at
    weight 0 is switched off (its term would add exactly 0), so it costs nothing."""
    for weight in (0.0, 0.3, 1.0):
        pipe = pipelines.load_t2v("animatelcm", lcm_lora_weight=weight)
        layers = [m for m in pipe.unet.modules() if hasattr(m, "scaling") and loading.LCM_ADAPTER in getattr(m, "scaling", {})]
        assert len(layers) >= 10
        for m in layers:
            assert m.disable_adapters == (weight == 0.0)
            if weight:
                r, alpha = m.r[loading.LCM_ADAPTER], m.lora_alpha[loading.LCM_ADAPTER]
                assert m.scaling[loading.LCM_ADAPTER] == pytest.approx(weight * alpha / r)
    # and it changes the video whenever the LoRA is not all zeros
    a = pipelines.generate(pipelines.load_t2v("animatelcm", lcm_lora_weight=0.0), "a one", seed=1).frames
    b_pipe = pipelines.load_t2v("animatelcm", lcm_lora_weight=1.0)
    b = pipelines.generate(b_pipe, "a one", seed=1).frames
    lora_is_zero = all(torch.count_nonzero(p) == 0 for n, p in b_pipe.unet.named_parameters() if "lora_B" in n)
    assert np.array_equal(a, b) == lora_is_zero


def test_unet_evaluations_are_counted(lcm_pipe, teacher_pipe):
    assert pipelines.generate(lcm_pipe, "a one", steps=2).unet_evaluations == 2
    assert pipelines.generate(lcm_pipe, "a one", steps=4).unet_evaluations == 4
    # guidance > 1 runs the conditional and unconditional halves: 2 evaluations a step
    assert pipelines.generate(lcm_pipe, "a one", steps=2, guidance=2.0).unet_evaluations == 4
    assert pipelines.generate(teacher_pipe, "a one", steps=3).unet_evaluations == 6


def test_frames_and_sizes(lcm_pipe):
    g = pipelines.generate(lcm_pipe, "a one moving down", frames=4, height=48, width=40, steps=1)
    assert g.frames.shape == (4, 48, 40, 3)


def test_random_seed(lcm_pipe):
    g = pipelines.generate(lcm_pipe, "a one", seed=-1, steps=1)
    again = pipelines.generate(lcm_pipe, "a one", seed=g.seed, steps=1)
    np.testing.assert_array_equal(g.frames, again.frames)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frames": 17}, r"frames must be between 1 and 16, got 17 \(the motion modules' maximum"),
        ({"frames": 0}, "frames must be between 1 and 16, got 0"),
        ({"height": 30}, "height 30 is not a multiple of 4, the VAE's downsampling factor; try 32"),
        ({"width": 2}, "width must be at least 4"),
        ({"steps": 0}, "steps must be at least 1, got 0"),
        ({"steps": 2.5}, "steps must be a whole number, got 2.5"),
        ({"steps": 51}, "steps must be at most 50 for this LCM sampler"),
        ({"guidance": -1}, "guidance must be at least 0.0, got -1.0"),
        ({"guidance": "lots"}, "guidance must be a number, got 'lots'"),
        ({"seed": -5}, "seed must be at least -1"),
        ({"prompt": "  "}, "the prompt is empty"),
    ],
)
def test_bad_generation_input_is_a_clear_error(lcm_pipe, kwargs, message):
    kwargs = {"prompt": "a seven", **kwargs}
    with pytest.raises(UserError, match=message):
        pipelines.generate(lcm_pipe, **kwargs)


def test_bad_loader_input_is_a_clear_error(toy_settings):
    with pytest.raises(UserError, match="unknown model 'animatelcm-xl' in the toy world"):
        pipelines.load_t2v("animatelcm-xl")
    with pytest.raises(UserError, match="lcm_lora_weight must be between 0.0 and 1.0, got 1.5"):
        pipelines.load_t2v("animatelcm", lcm_lora_weight=1.5)
    with pytest.raises(UserError, match="has no LCM LoRA"):
        pipelines.load_t2v("teacher", lcm_lora_weight=0.5)
    with pytest.raises(UserError, match="unknown scheduler 'heun2'"):
        pipelines.load_t2v("animatelcm", scheduler="heun2")


def test_full_world_offline_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(hub.MissingWeightsError) as err:
        pipelines.load_t2v("animatelcm", world="full", device="cpu")
    text = str(err.value)
    assert "is not on this machine" in text and "HF_HUB_OFFLINE is set" in text
    assert "python -m animatelcm_helpers download animatelcm_motion_adapter" in text
    assert "world='toy'" in text


def test_other_schedulers_load(toy_settings):
    from diffusers import DPMSolverMultistepScheduler, TCDScheduler

    assert isinstance(pipelines.load_t2v("teacher", scheduler="dpm++").scheduler, DPMSolverMultistepScheduler)
    assert isinstance(pipelines.load_t2v("animatelcm", scheduler="tcd").scheduler, TCDScheduler)


def test_t2i_lcm_lora_weight_is_a_knob(toy_settings):
    """Stage 1's LoRA loads with load_lora_weights; at weight 0 the pipeline is the bare teacher."""
    from animatelcm_helpers.toy import zoo

    lora_file = zoo.root() / "image-lcm" / "lcm_lora.safetensors"
    pipe = pipelines.load_t2i(lcm_lora=lora_file)
    bare = pipelines.load_t2i()

    def draw(p):
        with torch.inference_mode():
            return p("a seven", num_inference_steps=2, guidance_scale=1.0, height=32, width=32,
                     generator=torch.Generator().manual_seed(0), output_type="np").images

    with_lora = draw(pipe)
    pipelines.set_adapter_weight(pipe, loading.LCM_ADAPTER, 0.0)
    np.testing.assert_allclose(draw(pipe), draw(bare), atol=1e-5)
    assert np.abs(with_lora - draw(bare)).max() > 1e-3
    assert pipe.model_spec.frames == 1 and pipe.adapter_weights == {loading.LCM_ADAPTER: 0.0}


def test_style_stacks_on_the_lcm_lora_and_with_unet_shares_parts(lcm_pipe):
    pipe = pipelines.load_t2v("animatelcm")
    pipelines.add_style(pipe, "neon", 0.8)
    assert pipe.adapter_weights == {loading.LCM_ADAPTER: 1.0, "neon": 0.8}
    assert set(pipe.get_active_adapters()) == {loading.LCM_ADAPTER, "neon"}
    other = pipelines.with_unet(lcm_pipe, lcm_pipe.unet, "ddim")
    assert other.vae is lcm_pipe.vae and type(other.scheduler).__name__ == "DDIMScheduler"
    assert pipelines.generate(other, "a one", steps=1, guidance=1.0).frames.shape == (8, 32, 32, 3)


def test_paper_table_side_by_side():
    from animatelcm_helpers import results

    rows = [{"label": "teacher", "scheduler": "ddim", "steps": 4, "frechet": 12.3, "digit": 0.5, "direction": 0.75}]
    text = results.side_by_side(rows)
    assert "| DDIM | 4 | 1944.8 | 12.3 | 14.87 | 0.50 / 0.75 |" in text
    assert "| AnimateLCM | 1 | 1256.5 | - |" in text


def test_motion_lora_switches_one_direction_on_and_keeps_the_lcm_lora(toy_settings):
    pipe = pipelines.load_t2v("animatelcm")
    plain = pipelines.generate(pipe, "a three moving up", steps=2, seed=3).frames
    pipelines.use_motion_lora(pipe, "up", 0.0)  # loaded, weight 0: exactly the plain model
    assert pipe.adapter_weights == {loading.LCM_ADAPTER: 1.0, "motion-up": 0.0}
    np.testing.assert_array_equal(pipelines.generate(pipe, "a three moving up", steps=2, seed=3).frames, plain)
    pipelines.use_motion_lora(pipe, "up")
    up = pipelines.generate(pipe, "a three moving up", steps=2, seed=3).frames
    assert np.abs(up.astype(int) - plain.astype(int)).mean() > 0.5
    pipelines.use_motion_lora(pipe, "left", 0.7)  # switching turns the other motion LoRAs off
    assert pipe.adapter_weights == {loading.LCM_ADAPTER: 1.0, "motion-up": 0.0, "motion-left": 0.7}
    pipelines.use_motion_lora(pipe, None)
    assert pipe.adapter_weights == {loading.LCM_ADAPTER: 1.0, "motion-up": 0.0, "motion-left": 0.0}
    np.testing.assert_array_equal(pipelines.generate(pipe, "a three moving up", steps=2, seed=3).frames, plain)
    with pytest.raises(UserError, match="choose one of: left, right, up, down"):
        pipelines.use_motion_lora(pipe, "sideways")
    with pytest.raises(UserError, match="motion LoRA weight"):
        pipelines.use_motion_lora(pipe, "up", 3.0)
    with pytest.raises(UserError, match="text-to-video pipeline"):
        pipelines.use_motion_lora(pipelines.load_t2i(world="toy"), "up")


def test_motion_loras_sit_on_the_motion_modules_only(toy_settings):
    import re

    from safetensors.torch import load_file

    from animatelcm_helpers.toy import recipes

    for name, weights in config.MOTION_LORAS["toy"].items():
        state = load_file(zoo.root() / weights.repo_id / weights.weight_name)
        layers = {k.removeprefix("unet.").split(".lora_")[0] for k in state}
        assert state and all(k.startswith("unet.") for k in state), name
        assert all(re.fullmatch(recipes.MOTION_TARGETS, layer) for layer in layers), name
        assert any(layer.endswith("attn1.to_q") for layer in layers) and any(layer.endswith("ff.net.2") for layer in layers)
    full = config.MOTION_LORAS["full"]
    assert set(full) == {"pan-left", "pan-right", "tilt-up", "tilt-down", "zoom-in", "zoom-out"}
    assert all(w.repo_id.startswith("guoyww/animatediff-motion-lora-") and w.revision for w in full.values())


def test_the_motion_lora_steers_the_teacher(teacher_pipe):
    """The point of a motion LoRA: the video teacher's motion modules cannot read "moving up"
    (no text cross-attention); with the "up" LoRA the digits move up faster and more often
    (measured at 80 videos: direction 0.72 -> 0.81, README)."""
    from animatelcm_helpers.toy import metrics

    prompts = [f"a {w} moving up" for w in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")]
    speed, ups = {}, {}
    for lora in (None, "up"):
        pipelines.use_motion_lora(teacher_pipe, lora)
        with torch.inference_mode():
            out = teacher_pipe(prompt=prompts, num_inference_steps=50, guidance_scale=7.5, num_frames=8, output_type="np",
                               generator=[torch.Generator().manual_seed(i) for i in range(len(prompts))])
        videos = (np.asarray(out.frames) * 255).round().astype(np.uint8)
        speed[lora] = -np.mean([metrics.velocity(v)[1] for v in videos])  # px a frame upwards
        ups[lora] = metrics.read_direction(videos).count("up")
    teacher_pipe.delete_adapters(["motion-up"])  # leave the shared fixture as it was
    teacher_pipe.adapter_weights = {}
    assert speed["up"] > speed[None] + 0.15 and ups["up"] >= ups[None]
