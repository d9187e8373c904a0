"""The zoo's one rebuild command, in test mode (a few steps a stage): every stage runs, the zoo
is written in the Hub-like layout with a manifest, and the pipelines load it."""

import json
import shutil

import numpy as np
import pytest

from animatelcm_helpers import detectors, pipelines
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import build, zoo


def test_build_in_test_mode_writes_a_loadable_zoo(tmp_path, monkeypatch):
    out, work = tmp_path / "zoo", tmp_path / "work"
    manifest = build.build(out, work, build.TEST_STEPS, limit=16, progress=False)
    assert set(manifest["stages"]) == set(build.STAGES)
    for stage, info in manifest["stages"].items():
        assert info["steps"] == build.TEST_STEPS[stage] and info["seconds"] > 0, stage
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["trained"] is True
    for rel, digest in on_disk["files"].items():
        assert zoo.sha256(out / rel) == digest
    assert not [p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert {p.name for p in (out / "styles").iterdir()} == {f"{s}.safetensors" for s in build.STYLES}

    assert {p.name for p in (out / build.MOTION_LORAS).iterdir()} == {"left.safetensors", "right.safetensors",
                                                                     "up.safetensors", "down.safetensors"}

    # a second run reuses every finished stage: nothing is retrained
    again = build.build(tmp_path / "zoo2", work, build.TEST_STEPS, limit=16, progress=False)
    assert again["stages"]["vae"]["seconds"] == manifest["stages"]["vae"]["seconds"]
    # the timed rebuild of issue 3: the teachers and the measuring stick only
    teachers = build.build(tmp_path / "zoo3", work, build.TEST_STEPS, limit=16, progress=False, stages=build.ZOO_STAGES)
    assert set(teachers["stages"]) == set(build.ZOO_STAGES) and "not built" in teachers["animatelcm"]
    assert {p.name for p in (tmp_path / "zoo3").iterdir()} == {"base", "motion-adapter", build.MOTION_LORAS, "styles",
                                                                "metrics", "manifest.json", "loss_curves.json"}
    # motion LoRAs added to an existing zoo (how the shipped ones were made), trained on its video teacher
    shutil.rmtree(tmp_path / "zoo3" / build.MOTION_LORAS)
    added = build.add_motion_loras(tmp_path / "zoo3", tmp_path / "work-add", build.TEST_STEPS, limit=16, progress=False)
    assert added["stages"]["motion_loras"]["steps"] == build.TEST_STEPS["motion_loras"]
    assert "rank-16" in added["stages"]["motion_loras"]["recipe"]
    assert {p.name for p in (tmp_path / "zoo3" / build.MOTION_LORAS).iterdir()} == {
        "left.safetensors", "right.safetensors", "up.safetensors", "down.safetensors"}

    monkeypatch.setenv(zoo.ZOO_ENV, str(out))
    for model in ("teacher", "animatelcm"):  # the distilled AnimateLCM loads like the real one
        pipe = pipelines.load_t2v(model, world="toy")
        video = pipelines.generate(pipe, "a seven moving left", steps=2).frames
        assert video.shape == (8, 32, 32, 3) and video.dtype == np.uint8
        pipelines.use_motion_lora(pipe, "left")  # the motion LoRAs (float16 on disk) load on both
        assert pipelines.generate(pipe, "a seven moving left", steps=2).frames.shape == video.shape
    image_pipe = pipelines.load_t2i(world="toy", lcm_lora=out / build.IMAGE_LCM / build.IMAGE_LCM_LORA)
    assert image_pipe("a seven", num_inference_steps=2, guidance_scale=1.0, height=32, width=32).images
    from animatelcm_helpers import control  # the teacher-free adapters and their naive twins (fp16 on disk)

    lcm = pipelines.load_t2v("animatelcm", world="toy")
    for kind, naive in (("canny", False), ("canny", True), ("i2v", False)):
        net = control.load_controlnet(kind, world="toy", naive=naive)
        assert net.dtype == lcm.unet.dtype
    assert not (out / "i2v-adapter-naive").exists() and "i2v-adapter-naive" in build.NOT_SHIPPED  # trained, not shipped
    assert (work / "adapters" / "model" / "i2v-adapter-naive" / "config.json").is_file()
    with pytest.raises(UserError, match=r"not shipped in the zoo.*toy.build"):
        control.load_controlnet("i2v", world="toy", naive=True)
    edges = control.controlnet_pipeline(control.load_controlnet("canny", world="toy"), pipe=lcm)
    square = np.zeros((8, 32, 32, 3), np.uint8)
    square[:, 10:20, 10:20] = 255
    assert control.generate_controlled(edges, "a seven moving left", detectors.detect(square), steps=2).frames.shape == (8, 32, 32, 3)
    assert zoo.status().startswith("trained")


def test_motion_lora_recipe_trains_only_its_lora_on_its_direction(tmp_path):
    import pytest
    import torch

    from animatelcm_helpers.toy import configs, recipes

    unet, adapter = configs.tiny_unet(0), configs.tiny_motion_adapter(1)
    latents = torch.randn(6, 8, configs.LATENT_CHANNELS, configs.SIZE // configs.VAE_FACTOR, configs.SIZE // configs.VAE_FACTOR)
    captions = recipes.all_captions()
    ids = torch.tensor([captions.index(f"a seven moving {d}") for d in ("up", "up", "left", "down", "up", "right")])
    text = torch.randn(len(captions), configs.MAX_TOKENS, unet.config.cross_attention_dim)
    before = {k: v.clone() for k, v in adapter.state_dict().items()}
    state, fit = recipes.train_motion_lora(tmp_path / "up", "up", unet, adapter, latents, ids, text, steps=3, batch=2,
                                           progress=False)
    assert len(fit.losses) == 3 and all(np.isfinite(fit.losses))
    assert state and all(".motion_modules." in k and "lora_" in k for k in state)
    assert any(v.abs().sum() > 0 for k, v in state.items() if "lora_B" in k)  # B starts at zero and has moved
    assert all(torch.equal(before[k], v) for k, v in adapter.state_dict().items())  # the teacher is untouched
    with pytest.raises(ValueError, match="sideways"):
        recipes.train_motion_lora(tmp_path / "x", "sideways", unet, adapter, latents, ids, text, steps=1)
