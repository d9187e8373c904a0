"""The full world, proven offline: every full-world entry point runs against the fake Hub
(``tests/fakehub``: the real repositories' file names and formats, tiny weights) with
HF_HUB_OFFLINE=1, world="full", device="cpu", from a cache that ``download all`` filled, and makes
frames. README's "The full world, tested" table lists which test runs which path.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fakehub import repos
from fakehub.server import use_endpoint
from PIL import Image
from safetensors.torch import load_file

from animatelcm_helpers import cli, config, control, demo, detectors, hub, pipelines, svd
from animatelcm_helpers.config import UserError

SMALL = dict(frames=4, height=64, width=64, steps=2)  # tiny models: the real sizes would only cost time
IMAGE = np.asarray(Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 120, 3), dtype=np.uint8)))


def test_download_fetches_exactly_the_files_the_manifest_marks_used(workshop_cache, fake_hub):
    cache, got, sent = workshop_cache
    used = {(r, f["path"]) for r, repo in hub.manifest()["repos"].items() for f in repo["files"] if f["used_by"]}
    assert {(f.repo_id, f.path) for f, _ in got} == used
    assert set(sent) <= used  # nothing else crossed the wire: no pickle, no safety checker, no SGM file
    assert not any(p.startswith("safety_checker/") for _, p in sent)
    # the pickles: files that exist upstream only as pickles, each read once with weights_only=True and
    # converted: controlnet-aux's detectors (Annotators) and AnimateLCM-I2V's checkpoint
    pickles = {(r, p) for r, p in sent if p.endswith((".bin", ".ckpt", ".pt", ".pth"))}
    i2v_ckpt = (config.HUB["animatelcm_i2v"].repo_id, config.HUB["animatelcm_i2v"].weight_name)
    assert i2v_ckpt in pickles and {r for r, _ in pickles - {i2v_ckpt}} == {config.HUB["annotators"].repo_id}
    for f, path in got:  # the real cache layout, the bytes of the remote file
        assert f"models--{f.repo_id.replace('/', '--')}" in path and "/snapshots/" in path


def test_download_prints_sizes_and_refuses_offline(fake_hub, tmp_path, capsys):
    with use_endpoint(fake_hub.endpoint, tmp_path, offline=False):
        assert cli.main(["download", "svd"]) == 0
    out = capsys.readouterr().out
    assert "svd_xt: stabilityai/stable-video-diffusion-img2vid-xt@main, 7 files, 1,456 MB" in out
    assert "animatelcm_svd_xt: wangfuyun/AnimateLCM-SVD-xt@main (AnimateLCM-SVD-xt-1.1.safetensors), 1 files, 6,099 MB" in out
    assert "total: 8 files, 7,555 MB" in out
    with use_endpoint(None, tmp_path, offline=True):
        assert cli.main(["download", "svd"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_nothing_cached_gives_one_clear_message(tmp_path):
    with use_endpoint(None, tmp_path, offline=True):
        with pytest.raises(UserError, match=r"python -m animatelcm_helpers download animatelcm_motion_adapter"):
            pipelines.load_t2v("animatelcm", world="full", device="cpu")


@pytest.fixture(scope="module")
def animatelcm(full_offline):
    return pipelines.load_t2v("animatelcm")


def test_t2v_animatelcm_loads_and_generates_offline(animatelcm):
    pipe = animatelcm
    assert type(pipe).__name__ == "AnimateDiffPipeline" and type(pipe.unet).__name__ == "UNetMotionModel"
    assert pipe.adapter_weights == {"lcm-lora": 0.8}
    out = pipelines.generate(pipe, "a boy holding a rabbit", seed=3, **SMALL)
    assert out.frames.shape == (4, 64, 64, 3) and out.frames.dtype == np.uint8
    assert out.unet_evaluations == 2 * 2  # the demo's CFG 1.5: two evaluations a step
    again = pipelines.generate(pipe, "a boy holding a rabbit", seed=3, **SMALL)
    assert np.array_equal(out.frames, again.frames)


def test_the_official_lcm_sampler(animatelcm):
    """inference-t2v.yaml: LCMScheduler(beta_start 0.00085, beta_end 0.012, linear, original_inference_steps
    100, steps_offset 1), every other field at LCMScheduler's default; 4 steps = [999, 749, 499, 249]."""
    from diffusers import LCMScheduler

    cfg = animatelcm.scheduler.config
    assert type(animatelcm.scheduler) is LCMScheduler
    assert (cfg.beta_start, cfg.beta_end, cfg.beta_schedule, cfg.original_inference_steps, cfg.steps_offset) == (
        0.00085, 0.012, "linear", 100, 1)
    default = LCMScheduler().config
    assert all(cfg[k] == default[k] for k in ("clip_sample", "set_alpha_to_one", "timestep_spacing", "timestep_scaling",
                                              "prediction_type", "num_train_timesteps"))
    expected = {1: [999], 2: [999, 499], 3: [999, 669, 339], 4: [999, 749, 499, 249], 5: [999, 799, 599, 399, 199],
                6: [999, 839, 669, 499, 339, 169], 7: [999, 859, 719, 579, 429, 289, 149],
                8: [999, 879, 749, 629, 499, 379, 249, 129]}
    for n, ts in expected.items():
        animatelcm.scheduler.set_timesteps(n)
        assert animatelcm.scheduler.timesteps.tolist() == ts, n


def test_the_kohya_lcm_lora_is_the_official_one_eighth(animatelcm, fake_remote):
    """AnimateLCM's LoRA is kohya-style (lora_unet_*.lora_down/up, .alpha); diffusers converts it; the
    official convert_lcm_lora adds 1/8 * alpha * up @ down. With the file's alpha / rank = 1/8 and the
    demo's LCM LoRA alpha 0.8 the two agree on every layer the file names."""
    state = load_file(fake_remote["wangfuyun/AnimateLCM"] / "AnimateLCM_sd15_t2v_lora.safetensors")
    names = sorted(k[len("lora_unet_"):-len(".lora_down.weight")] for k in state if k.endswith(".lora_down.weight"))
    layers = {n.replace(".", "_"): m for n, m in animatelcm.unet.named_modules() if hasattr(m, "lora_A")}
    assert len(names) == len(layers) > 200
    for name in names[:: max(1, len(names) // 12)]:
        layer, k = layers[name], f"lora_unet_{name}"
        up, down = state[k + ".lora_up.weight"].float(), state[k + ".lora_down.weight"].float()
        official = 1 / 8 * 0.8 * (up.flatten(1) @ down.flatten(1))
        # peft's scaling holds the adapter's weight (0.8) times lora_alpha / r from the file's .alpha keys
        ours = layer.scaling["lcm-lora"] * (layer.lora_B["lcm-lora"].weight.flatten(1) @
                                            layer.lora_A["lcm-lora"].weight.flatten(1))
        torch.testing.assert_close(ours, official, rtol=1e-3, atol=1e-6)


def test_the_teacher_offline(full_offline):
    pipe = pipelines.load_t2v("teacher")
    cfg = pipe.scheduler.config
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert (cfg.beta_schedule, cfg.clip_sample, cfg.timestep_spacing, cfg.steps_offset) == ("linear", False, "linspace", 1)
    out = pipelines.generate(pipe, "a boy holding a rabbit", seed=1, **SMALL)
    assert out.frames.shape == (4, 64, 64, 3) and out.unet_evaluations == 2 * 2  # CFG 7.5


LIGHTNING_TIMESTEPS = {1: [999], 2: [999, 499], 4: [999, 749, 499, 249], 8: [999, 874, 749, 624, 499, 374, 249, 124]}


@pytest.mark.parametrize("n", config.LIGHTNING_STEPS)
def test_animatediff_lightning_offline_as_its_model_card_loads_it(full_offline, fake_remote, n):
    """Lightning's n-step file (a bare MotionAdapter state dict) in the v1.5.2 architecture, on epiCRealism;
    Euler with trailing spacing and linear betas; no CFG, so n UNet evaluations for n steps."""
    from diffusers import EulerDiscreteScheduler

    pipe = pipelines.load_t2v(f"lightning-{n}step")
    assert isinstance(pipe.scheduler, EulerDiscreteScheduler) and pipe.model_spec.lcm_lora is None
    assert pipe.model_spec.base == config.model_spec("animatelcm").base == config.HUB["epicrealism"]  # its card's base
    cfg = pipe.scheduler.config
    assert (cfg.timestep_spacing, cfg.beta_schedule, cfg.beta_start, cfg.beta_end) == ("trailing", "linear", 0.00085, 0.012)
    pipe.scheduler.set_timesteps(n)
    assert pipe.scheduler.timesteps.round().int().tolist() == LIGHTNING_TIMESTEPS[n]
    assert not pipe.get_list_adapters()  # no LCM LoRA: Lightning distils the motion modules only
    file = load_file(fake_remote["ByteDance/AnimateDiff-Lightning"] / f"animatediff_lightning_{n}step_diffusers.safetensors")
    unet = pipe.unet.state_dict()
    motion = {k: v for k, v in unet.items() if "motion_modules" in k}
    assert set(motion) == {k for k in file if "motion_modules" in k} and len(motion) > 50
    for k in list(motion)[:: max(1, len(motion) // 10)]:
        torch.testing.assert_close(motion[k], file[k].float())  # the file's weights, as load_state_dict puts them
    out = pipelines.generate(pipe, "a boy holding a rabbit", seed=2, frames=4, height=64, width=64, steps=n)
    assert out.frames.shape == (4, 64, 64, 3) and out.unet_evaluations == n and out.guidance == 1.0
    assert np.array_equal(out.frames, pipelines.generate(pipe, "a boy holding a rabbit", seed=2, frames=4, height=64,
                                                         width=64, steps=n).frames)


def test_a_state_dict_for_another_architecture_is_one_clear_error(full_offline):
    from animatelcm_helpers import loading

    toy_config = config.toy_weights("animatelcm", "config.json")  # the toy motion adapter: other widths
    with pytest.raises(UserError, match=r"does not fit the architecture of toy zoo folder 'animatelcm'"):
        loading.load_motion_adapter(config.HUB["lightning_4step"], torch.float32, toy_config)


@pytest.mark.parametrize("move", list(config.MOTION_LORAS["full"]))
def test_each_motion_lora_offline(animatelcm, move):
    base = pipelines.generate(animatelcm, "a boy holding a rabbit", seed=0, **SMALL).frames
    pipelines.use_motion_lora(animatelcm, move)
    try:
        moved = pipelines.generate(animatelcm, "a boy holding a rabbit", seed=0, **SMALL).frames
    finally:
        pipelines.use_motion_lora(animatelcm, None)
    assert animatelcm.adapter_weights[f"motion-{move}"] == 0.0 and animatelcm.adapter_weights["lcm-lora"] == 0.8
    assert not np.array_equal(base, moved)  # the LoRA reached the motion modules
    assert np.array_equal(base, pipelines.generate(animatelcm, "a boy holding a rabbit", seed=0, **SMALL).frames)


def test_svd_offline_with_the_official_conditioning(full_offline):
    pipe = svd.load_svd()
    assert type(pipe.scheduler).__name__ == "AnimateLCMSVDScheduler" and pipe.svd_fps == 7
    assert pipe.memory_plan.offload is False  # a CPU
    seen = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["added_time_ids"]), with_kwargs=True)
    try:
        out = svd.generate_svd(pipe, IMAGE, steps=2, frames=4, height=64, width=64, seed=0)
    finally:
        handle.remove()
    assert out.frames.shape == (4, 64, 64, 3) and out.unet_evaluations == 2 * 2  # the demo's ramp 1.0 -> 1.2: CFG
    # the UNet sees [fps - 1, motion bucket, noise augmentation] = [6, 80, 0.02] (the official app passes no fps)
    torch.testing.assert_close(seen[0][-1], torch.tensor([6.0, 80.0, 0.02]))


def test_svd_unet_is_the_animatelcm_file_in_svd_xts_config(full_offline, fake_remote):
    pipe = svd.load_svd()
    theirs = load_file(fake_remote["wangfuyun/AnimateLCM-SVD-xt"] / "AnimateLCM-SVD-xt-1.1.safetensors")
    ours = pipe.unet.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    remote_cfg = json.loads((fake_remote["stabilityai/stable-video-diffusion-img2vid-xt"] / "unet" / "config.json").read_text())
    assert list(pipe.unet.config.block_out_channels) == remote_cfg["block_out_channels"]


@pytest.fixture(scope="module")
def maps(full_offline):
    """Every detector's maps of one small video (the Hub ones run the full-size detectors)."""
    video = np.stack([np.roll(IMAGE[:64, :64], 4 * i, axis=1) for i in range(4)])
    return {kind: detectors.detect(video, kind) for kind in detectors.DETECTORS + detectors.HUB_DETECTORS}


@pytest.mark.parametrize("kind", list(control.CONTROLNETS["full"]))
def test_every_controlnet_with_every_detector(animatelcm, maps, kind):
    net = control.load_controlnet(kind)
    assert net.dtype == torch.float32 and type(net).__name__ == "ControlNetModel"
    pipe = control.controlnet_pipeline(net, pipe=animatelcm)
    outs = {}
    for detector, m in maps.items():
        assert len(m) == 4 and m[0].size == (64, 64)
        outs[detector] = control.generate_controlled(pipe, "a boy holding a rabbit", m, steps=2, seed=0).frames
        assert outs[detector].shape == (4, 64, 64, 3)
    free = control.generate_controlled(pipe, "a boy holding a rabbit", maps["canny"], scale=0.0, steps=2, seed=0).frames
    assert not np.array_equal(outs["canny"], free)  # the control reached the UNet


def test_video_to_video_offline(animatelcm):
    pipe = control.video_to_video_pipeline(pipe=animatelcm)
    video = np.stack([IMAGE[:64, :64]] * 4)
    out = control.video_to_video(pipe, video, "a boy holding a rabbit", strength=0.5, steps=4, seed=0)
    assert out.frames.shape == (4, 64, 64, 3) and out.unet_evaluations == 2 * 2  # half of 4 steps, CFG


def test_the_demos_full_world_callbacks(full_offline):
    values = {**demo.defaults(demo.t2v_fields("full")), "width": 256, "height": 256, "frames": 12, "steps": 1, "seed": 0}
    checked = demo.validate_t2v(values, "full")
    out = demo.run_t2v(checked)
    assert out.frames.shape == (12, 256, 256, 3)
    lightning = {**values, "model": "AnimateDiff-Lightning, 4-step model", **demo.model_defaults("lightning-4step", "full")}
    out = demo.run_t2v(demo.validate_t2v(lightning, "full"))
    assert out.frames.shape == (12, 256, 256, 3) and out.unet_evaluations == 4 and out.steps == 4  # no CFG
    fields = {f.name: f for f in demo.svd_fields("full")}  # the official app's controls and defaults
    assert [fields[k].default for k in ("motion_bucket_id", "video_fps", "max_guidance", "min_guidance", "steps",
                                        "frames", "width", "height", "decode_chunk_size")] == [80, 8, 1.2, 1.0, 4, 25, 1024, 576, 4]
    svd_values = {**demo.defaults(fields.values()), "image": IMAGE, "steps": 1, "seed": 0, "frames": 4,
                  "width": 576, "height": 320}
    out = demo.run_svd(demo.validate_svd(svd_values, "full"))
    assert out.frames.shape == (4, 320, 576, 3) and out.fps == 8 and out.unet_evaluations == 2


def test_the_command_line_with_world_full(full_offline, tmp_path, capsys):
    out = tmp_path / "video.npy"
    code = cli.main(["generate", "--world", "full", "--prompt", "a boy holding a rabbit", "--frames", "4",
                     "--height", "64", "--width", "64", "--steps", "2", "--motion-lora", "zoom-in", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert np.load(out).shape == (4, 64, 64, 3)
    assert "full world, model animatelcm, motion LoRA zoom-in, 2 steps" in capsys.readouterr().out


def test_online_loading_never_asks_for_the_files_it_does_not_use(fake_hub, tmp_path):
    """From an empty cache with the Hub reachable: what the course downloads is what the manifest says."""
    before = len(fake_hub.downloads)
    with use_endpoint(fake_hub.endpoint, tmp_path, offline=False):
        pipelines.load_t2v("animatelcm", world="full", device="cpu")
    sent = set(fake_hub.downloads[before:])
    used = {(r, f["path"]) for r, repo in hub.manifest()["repos"].items() for f in repo["files"]
            if set(f["used_by"]) & {"epicrealism", "animatelcm_motion_adapter", "animatelcm_lcm_lora"}}
    assert sent == used, sorted(sent ^ used)


def test_the_fake_repositories_are_the_manifests(fake_remote):
    """The fake Hub serves exactly the manifest's files (repos.build_remote checks each folder)."""
    assert set(fake_remote) == set(hub.manifest()["repos"])
    assert {w.repo_id for w in config.HUB.values()} == set(hub.manifest()["repos"])
    for key in config.HUB:
        assert hub.files_for(key), f"{key} reads no file in hub_files.json"
    assert repos.LCM_LORA_ALPHA / repos.LCM_LORA_RANK == 1 / 8
