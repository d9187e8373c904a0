"""control: detectors to conditioning frames, edge F1, PSNR, the ControlNet / video-to-video /
image-to-video pipelines on the toy AnimateLCM, and the errors a user can run into."""

import numpy as np
import pytest
from PIL import Image

from animatelcm_helpers import control, detectors, evaluation, hub, pipelines, results, utils
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import metrics


def square_video(frames=2, size=32, lo=10, hi=20):
    v = np.zeros((frames, size, size, 3), np.uint8)
    v[:, lo:hi, lo:hi] = 255
    return v


def test_canny_maps_trace_the_shape_and_keep_the_frame_size():
    maps = detectors.detect(square_video(3), "canny")
    assert len(maps) == 3 and all(isinstance(m, Image.Image) and m.size == (32, 32) for m in maps)
    edges = np.asarray(maps[0])[..., 0] > 64
    ring = np.zeros((32, 32), bool)
    ring[8:22, 8:22] = True
    ring[12:18, 12:18] = False  # the border of the square, 2 px either side
    assert edges.sum() > 20 and not (edges & ~ring).any()


@pytest.mark.parametrize("kind", ["lineart", "shuffle"])
def test_other_detectors_without_weights(kind):
    maps = detectors.detect(square_video(2), kind)
    assert len(maps) == 2 and maps[0].size == (32, 32) and np.asarray(maps[0]).max() > 0


def test_detectors_that_need_the_hub_say_so_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache, offline
    detectors._hub_detector.cache_clear()
    with pytest.raises(UserError, match=r"needs body_pose_model.pth .* not in the Hugging Face cache.*"
                                        r"python -m animatelcm_helpers download annotators"):
        detectors.detect(square_video(1), "openpose")
    with pytest.raises(UserError, match="unknown detector"):
        detectors.detect(square_video(1), "sobel")


def test_conditioning_frames_are_pil_never_raw_uint8():
    frames = detectors.conditioning_frames(square_video(2))
    assert all(isinstance(f, Image.Image) for f in frames)
    as_float = detectors.conditioning_frames(square_video(2).astype(np.float32) / 255)
    assert np.array_equal(np.asarray(as_float[0]), np.asarray(frames[0]))
    assert len(detectors.conditioning_frames(Image.new("RGB", (32, 32)), frames=5)) == 5
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        detectors.conditioning_frames(square_video(1).astype(np.float32))
    with pytest.raises(UserError, match="one map per frame"):
        detectors.conditioning_frames(square_video(3), frames=4)
    with pytest.raises(UserError, match="frames"):
        detectors.conditioning_frames(np.zeros((4, 4)))


def test_edge_f1_and_psnr():
    v = square_video(2)
    maps = detectors.detect(v, "canny")
    assert detectors.edge_f1(v, maps) == pytest.approx(1.0)
    far = square_video(2, lo=2, hi=8)
    assert detectors.edge_f1(far, maps) < 0.2
    assert detectors.edge_f1(np.zeros_like(v), maps) == 0.0
    a = np.full((4, 4, 3), 100, np.uint8)
    assert utils.psnr(a, a + 10) == pytest.approx(10 * np.log10(255**2 / 100))


def test_a_zero_initialised_controlnet_gives_exactly_the_plain_animatelcm_video(lcm_pipe):
    """ControlNet.from_unet starts with zero output convs: the ControlNet pipeline must then make
    the very video AnimateDiffPipeline makes from the same seed (same latents, same steps)."""
    from animatelcm_helpers.toy import configs

    pipe = control.controlnet_pipeline(configs.tiny_controlnet(configs.tiny_unet(0)), pipe=lcm_pipe)
    video = square_video(8)
    out = control.generate_controlled(pipe, "a seven moving left", detectors.detect(video), seed=3)
    ref = pipelines.generate(lcm_pipe, "a seven moving left", seed=3)
    assert out.frames.shape == (8, 32, 32, 3) and out.unet_evaluations == ref.unet_evaluations == 4
    assert np.array_equal(out.frames, ref.frames)
    again = control.generate_controlled(pipe, "a seven moving left", detectors.detect(video), seed=3)
    assert np.array_equal(again.frames, out.frames)
    with pytest.raises(UserError, match="control scale"):
        control.generate_controlled(pipe, "a seven", detectors.detect(video), scale=-1)
    with pytest.raises(UserError, match="prompt is empty"):
        control.generate_controlled(pipe, " ", detectors.detect(video))
    with pytest.raises(UserError, match="frames"):
        control.generate_controlled(pipe, "a seven", detectors.detect(square_video(20)))
    i2v = control.image_to_video(pipe, video[0], "a seven moving left", frames=4, seed=0)
    assert i2v.frames.shape == (4, 32, 32, 3)
    with pytest.raises(UserError, match="one image"):
        control.image_to_video(pipe, video[:2], "a seven moving left")


def test_image_to_video_feeds_the_pipeline_what_the_adapter_was_trained_on(monkeypatch):
    """control.image_to_video's conditioning frames = distill.as_conditioning of the same image:
    the image on frame 0, the mid-gray empty condition on the others."""
    import torch

    from animatelcm_helpers import distill

    seen = {}

    def fake(pipe, prompt, maps, scale, steps, guidance, seed):
        seen["maps"] = detectors.conditioning_frames(maps)

    monkeypatch.setattr(control, "generate_controlled", fake)
    image = square_video(1)[0]
    pipe = type("P", (), {"model_spec": type("S", (), {"frames": 6})()})()
    control.image_to_video(pipe, image, "a seven moving left")
    got = torch.stack([torch.from_numpy(np.array(m)).permute(2, 0, 1) for m in seen["maps"]]).float() / 255
    want = distill.as_conditioning(torch.from_numpy(image).permute(2, 0, 1)[None], 6)[0]
    assert len(seen["maps"]) == 6 and torch.equal(got, want)


def test_video_to_video_runs_strength_times_steps(lcm_pipe):
    pipe = control.video_to_video_pipeline(pipe=lcm_pipe)
    video = square_video(8)
    out = control.video_to_video(pipe, video, "a seven moving left", strength=0.5, steps=8, seed=0)
    assert out.frames.shape == (8, 32, 32, 3) and out.unet_evaluations == 4
    with pytest.raises(UserError, match="no step"):
        control.video_to_video(pipe, video, "a seven", strength=0.05, steps=8)
    with pytest.raises(UserError, match="strength"):
        control.video_to_video(pipe, video, "a seven", strength=1.5)


def test_controlnet_loading_errors(toy_settings):
    with pytest.raises(UserError, match="toy world has ControlNets"):
        control.load_controlnet("openpose")
    with pytest.raises(hub.MissingWeightsError):
        control.load_controlnet("canny", world="full")
    with pytest.raises(UserError, match="full world has ControlNets"):
        control.load_controlnet("shuffle", world="full")


def test_the_shipped_teacher_free_controlnet_makes_videos_follow_the_edges(lcm_pipe):
    """The zoo's edge ControlNet (trained against the toy AnimateLCM, no teacher): on held-out
    videos at 4 LCM steps, the output's edges match the control far better than without it."""
    videos, prompts = evaluation.test_videos(6, seed=3)
    edges = control.controlnet_pipeline(control.load_controlnet("canny"), pipe=lcm_pipe)
    with_control = evaluation.evaluate_control(edges, videos, prompts, "control", steps=4)
    without = evaluation.evaluate_control(lcm_pipe, videos, prompts, "t2v", steps=4)
    assert with_control["edge_f1"] > without["edge_f1"] + 0.1
    assert with_control["digit"] >= 0.8
    for row in (with_control, without):  # the per-video bootstrap intervals, stored with the row
        for key in ("edge_f1", "first_psnr"):
            low, high = row["intervals"][key]
            assert low <= row[key] <= high and low < high
            assert results.interval(row, key).low == low
    assert metrics.compare(results.interval(with_control, "edge_f1"), results.interval(without, "edge_f1")) == "win"
