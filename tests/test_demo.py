"""The demo's logic without a browser: values are checked with one-line messages, a generation
from the app's dict equals the course's own calls, the widgets run it and show an HTML5 video,
results save as GIF/MP4, and the tab list is data. Toy world, tiny sizes, 1-2 steps."""

import base64
import datetime
import io
import re

import numpy as np
import pytest

from animatelcm_helpers import config, demo, evaluation, loading, media, pipelines, svd
from animatelcm_helpers.config import UserError

TINY = {"seed": 0, "steps": 2, "frames": 4, "width": 16, "height": 16}


@pytest.fixture(scope="module")
def good(toy_settings):
    return {**demo.defaults(demo.t2v_fields("toy")), **TINY}


def test_defaults_are_the_models_and_the_official_demos(toy_settings):
    spec = config.model_spec("animatelcm", "toy")
    checked = demo.validate_t2v(demo.defaults(demo.t2v_fields("toy")), "toy")
    assert (checked["steps"], checked["frames"], checked["width"], checked["height"]) == (
        spec.steps, spec.frames, spec.width, spec.height)
    assert checked["cfg"] == spec.guidance and checked["lcm_alpha"] == spec.lcm_lora_weight
    assert checked["model"] == "animatelcm" and checked["personal_lora"] == demo.NO_LORA
    assert checked["lora_alpha"] == 0.8 and checked["seed"] == -1  # the official demo's
    full = {f.name: f for f in demo.t2v_fields("full")}
    assert (full["steps"].default, full["width"].default, full["frames"].default, full["cfg"].default) == (6, 512, 16, 1.5)
    assert (full["lcm_alpha"].default, full["negative_prompt"].default) == (0.8, "bad quality")
    assert list(demo.personal_loras("toy")) == ["none", "neon", "sunset", "paper", "checker"]


def test_the_model_menu_offers_lightning_in_the_full_world_and_sets_its_steps_and_cfg(tmp_path, toy_settings):
    assert demo.t2v_models("toy") == {"AnimateLCM (toy)": "animatelcm"}
    full = demo.t2v_models("full")
    assert list(full.values()) == ["animatelcm", "lightning-1step", "lightning-2step", "lightning-4step", "lightning-8step"]
    assert all(name in config.MODELS["full"] for name in full.values())
    tab = demo.tab_widget(demo.TABS[0], "full", tmp_path)  # widgets only: nothing is loaded until Generate
    menu = tab.controls["model"]
    assert menu.value == "AnimateLCM" and tab.controls["steps"].value == 6 and tab.controls["cfg"].value == 1.5
    menu.value = "AnimateDiff-Lightning, 4-step model"
    assert (tab.controls["steps"].value, tab.controls["cfg"].value, tab.controls["lcm_alpha"].value) == (4, 1.0, 0.0)
    menu.value = "AnimateDiff-Lightning, 8-step model"
    assert tab.controls["steps"].value == 8
    menu.value = "AnimateLCM"  # back: AnimateLCM's own defaults again
    assert (tab.controls["steps"].value, tab.controls["cfg"].value, tab.controls["lcm_alpha"].value) == (6, 1.5, 0.8)
    values = {**demo.defaults(demo.t2v_fields("full")), "model": "AnimateDiff-Lightning, 2-step model"}
    assert demo.validate_t2v(values, "full")["model"] == "lightning-2step"
    with pytest.raises(UserError, match=r"^unknown model 'lightning'; choose one of: AnimateLCM, AnimateDiff-Lightning, 1-step"):
        demo.validate_t2v({**values, "model": "lightning"}, "full")


BAD = [
    ({"steps": 0}, r"^steps must be between 1 and 25, got 0$"),
    ({"steps": 2.5}, r"steps must be a whole number, got 2.5"),
    ({"width": 30}, r"^width 30 is not a multiple of 8 \(the VAE's downsampling factor\); try 32$"),
    ({"height": 100}, r"^height must be between 16 and 64, got 100"),
    ({"prompt": "   "}, r"^the prompt is empty: describe the video, e.g. 'a seven moving left'$"),
    ({"prompt": None}, r"the prompt is empty"),
    ({"frames": 40}, r"^frames must be between 1 and 16, got 40$"),
    ({"cfg": 2.5}, r"^CFG must be between 1.0 and 2.0, got 2.5$"),
    ({"lcm_alpha": -0.1}, r"^LCM LoRA alpha must be between 0.0 and 1.0"),
    ({"lora_alpha": "lots"}, r"^LoRA alpha must be a number, got 'lots'$"),
    ({"seed": -2}, r"^seed must be at least -1, got -2 \(-1 draws a random seed\)$"),
    ({"personal_lora": "vangogh"}, r"^unknown personal LoRA 'vangogh'; choose one of: none, neon, sunset, paper, checker$"),
    ({"base": "sd21"}, r"^unknown base model 'sd21'; choose one of: toy base$"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[str(c) for c, _ in BAD])
def test_bad_values_get_one_line_that_says_what_to_do(good, change, message):
    with pytest.raises(UserError, match=message) as err:
        demo.validate_t2v({**good, **change}, "toy")
    assert "\n" not in str(err.value)


def test_run_t2v_is_generate_on_the_course_pipeline(good, lcm_pipe):
    steps_seen = []
    result = demo.run_t2v(good, progress=lambda done, total: steps_seen.append((done, total)))
    pipelines.set_adapter_weight(lcm_pipe, loading.LCM_ADAPTER, good["lcm_alpha"])
    ref = pipelines.generate(lcm_pipe, good["prompt"], steps=2, guidance=1.0, frames=4, height=16, width=16, seed=0,
                             negative_prompt=good["negative_prompt"])
    np.testing.assert_array_equal(result.frames, ref.frames)
    assert result.frames.shape == (4, 16, 16, 3) and result.unet_evaluations == 2 and result.seed == 0
    assert steps_seen == [(0, 2), (1, 2), (2, 2)]  # the progress bar: one tick a step


def test_cfg_doubles_the_evaluations_and_lcm_alpha_matters(good):
    guided = demo.run_t2v({**good, "cfg": 1.5, "steps": 1})
    assert guided.unet_evaluations == 2
    half = demo.run_t2v({**good, "lcm_alpha": 0.5})
    full = demo.run_t2v(good)
    assert np.abs(half.frames.astype(int) - full.frames).mean() > 1.0


def test_personal_lora_is_add_style_and_is_switched_off_after(good):
    plain = demo.run_t2v(good)
    styled = demo.run_t2v({**good, "personal_lora": "neon", "lora_alpha": 0.8})
    ref_pipe = pipelines.load_t2v("animatelcm")
    pipelines.add_style(ref_pipe, "neon", 0.8)
    ref = pipelines.generate(ref_pipe, good["prompt"], steps=2, frames=4, height=16, width=16, seed=0,
                             negative_prompt=good["negative_prompt"])
    np.testing.assert_array_equal(styled.frames, ref.frames)
    assert np.abs(styled.frames.astype(int) - plain.frames).mean() > 5.0  # the style shows
    again = demo.run_t2v(good)  # "none" switches the loaded style off
    np.testing.assert_array_equal(again.frames, plain.frames)


def test_motion_lora_menu_is_use_motion_lora_and_is_switched_off_after(good):
    assert list(demo.motion_loras("toy")) == [demo.NO_LORA, "left", "right", "up", "down"]
    assert "tilt-up" in demo.motion_loras("full")
    plain = demo.run_t2v(good)
    moved = demo.run_t2v({**good, "motion_lora": "up"})
    ref_pipe = pipelines.load_t2v("animatelcm")
    pipelines.use_motion_lora(ref_pipe, "up")
    ref = pipelines.generate(ref_pipe, good["prompt"], steps=2, frames=4, height=16, width=16, seed=0,
                             negative_prompt=good["negative_prompt"])
    np.testing.assert_array_equal(moved.frames, ref.frames)
    assert not np.array_equal(moved.frames, plain.frames)
    np.testing.assert_array_equal(demo.run_t2v(good).frames, plain.frames)  # "none" switches it off
    teacher = pipelines.load_t2v("teacher")  # no LCM LoRA: with nothing asked, no loaded LoRA stays on
    plain_teacher = pipelines.generate(teacher, "a one moving up", steps=2, frames=4, seed=0).frames
    assert demo.set_loras(teacher, 1.0, motion_lora="up") == {"motion-up": 1.0}
    assert demo.set_loras(teacher, 1.0) == {} and teacher.adapter_weights == {"motion-up": 0.0}
    np.testing.assert_array_equal(pipelines.generate(teacher, "a one moving up", steps=2, frames=4, seed=0).frames,
                                  plain_teacher)
    evaluation.evaluate(teacher, steps=1, guidance=1.0, prompts=["a two moving left", "a one moving up"],
                     motion_loras=True)  # switches LoRAs on and off; afterwards the teacher is plain again
    assert teacher.adapter_weights == {"motion-up": 0.0}
    np.testing.assert_array_equal(pipelines.generate(teacher, "a one moving up", steps=2, frames=4, seed=0).frames,
                                  plain_teacher)
    with pytest.raises(UserError, match="motion LoRA"):
        demo.validate_t2v({**good, "motion_lora": "sideways"})


def test_seed_minus_one_draws_one_that_makes_the_video_again(good):
    drawn = demo.run_t2v({**good, "seed": -1})
    assert 0 <= drawn.seed < 2**31
    again = demo.run_t2v({**good, "seed": drawn.seed})
    np.testing.assert_array_equal(drawn.frames, again.frames)


def test_run_svd_is_generate_svd(toy_settings):
    values = {**demo.defaults(demo.svd_fields("toy")), "seed": 0, "steps": 1}
    result = demo.run_svd(values)
    image = demo.example_image(0)
    ref = svd.generate_svd(demo.svd_pipe("toy"), image, steps=1, motion_bucket_id=80, seed=0)
    np.testing.assert_array_equal(result.frames, ref.frames)
    assert result.frames.shape == (8, 32, 32, 3)
    assert result.unet_evaluations == 2  # the demo's guidance ramp 1.0 -> 1.2 runs CFG
    assert result.note == demo.svd_pipe("toy").svd_note


def test_images_read_from_uploads_and_bad_ones_say_so(toy_settings):
    from PIL import Image

    image = demo.example_image(2)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    np.testing.assert_array_equal(demo.read_image(buf.getvalue()), image)
    np.testing.assert_array_equal(demo.read_image(memoryview(buf.getvalue())), image)
    with pytest.raises(UserError, match=r"^could not read the uploaded file as an image .*upload a PNG or JPEG image$"):
        demo.validate_svd({"image": b"\x89PNG but not really"}, "toy")
    with pytest.raises(UserError, match="the uploaded file is empty"):
        demo.read_image(b"")
    with pytest.raises(UserError, match=r"there are 4 example images \(0 to 3\), got 7"):
        demo.read_image(7)
    with pytest.raises(UserError, match=r"^motion bucket must be between 1 and 255, got 300"):
        demo.validate_svd({"image": 0, "motion_bucket_id": 300, "steps": 4, "seed": 0}, "toy")
    with pytest.raises(UserError, match=r"^steps must be between 1 and 8, got 9"):
        demo.validate_svd({"image": 0, "motion_bucket_id": 80, "steps": 9, "seed": 0}, "toy")
    with pytest.raises(UserError, match=r"^min guidance 1.5 is above max guidance 1.2: the guidance ramps"):
        demo.validate_svd({"image": 0, "min_guidance": 1.5, "max_guidance": 1.2}, "toy")
    with pytest.raises(UserError, match=r"^width 30 is not a multiple of 8 .*; try 32"):
        demo.validate_svd({"image": 0, "width": 30}, "toy")


def test_save_result_writes_gif_and_mp4_named_by_prompt_and_seed(good, tmp_path):
    result = demo.run_t2v(good)
    gif = demo.save_result(result, tmp_path / "out", "A seven, moving left!", ".gif")
    mp4 = demo.save_result(result, tmp_path / "out", "A seven, moving left!", ".mp4")
    assert gif.name == "a_seven_moving_left_seed0.gif" and mp4.name == "a_seven_moving_left_seed0.mp4"
    assert media.load_video(gif).shape == result.frames.shape
    assert media.load_video(mp4).shape == result.frames.shape
    assert sorted(p.name for p in gif.parent.iterdir()) == [gif.name, mp4.name]  # no temporary files left
    with pytest.raises(UserError, match=r"save as .gif or .mp4"):
        demo.save_result(result, tmp_path, "x", ".avi")


def _video_frames(html):
    """The frames of the first <video> in ``html`` (its inline MP4)."""
    import mediapy

    data = base64.b64decode(re.search(r'src="data:video/mp4;base64,([^"]+)"', html).group(1))
    media.use_bundled_ffmpeg()
    return mediapy.decompress_video(data)


def test_the_app_generates_shows_a_video_and_saves(good, tmp_path):
    ui = demo.app("toy", out_dir=tmp_path)
    assert list(ui.tabs) == ["Text-to-video"] + ["Image-to-video"] * demo.i2v_available("toy") + ["SVD-xt"]
    tab = ui.tabs["Text-to-video"]
    for name, value in TINY.items():
        tab.controls[name].value = value
    tab.generate.click()
    assert not tab.error, tab.message
    assert re.fullmatch(r"4 frames at 16x16, 2 steps, 2 UNet evaluations, \d+\.\d\d s, seed 0", tab.message)
    assert "<video" in tab.video.value
    shown = _video_frames(tab.video.value)
    assert shown.shape == (4, 256, 256, 3)  # upscaled 16x for the screen
    assert np.abs(shown[:, ::16, ::16].astype(int) - tab.result.frames).mean() < 25
    assert (tab.progress.value, tab.progress.max) == (2, 2)
    tab.save_gif.click()
    tab.save_mp4.click()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_seven_moving_left_seed0.gif", "a_seven_moving_left_seed0.mp4"]
    assert "Saved" in tab.message and not tab.error


def test_the_app_shows_bad_values_as_a_message(tmp_path, toy_settings):
    ui = demo.app("toy", out_dir=tmp_path)
    tab = ui.tabs["Text-to-video"]
    tab.controls["steps"].value = 0
    tab.generate.click()  # no exception reaches the caller
    assert tab.error and tab.message == "steps must be between 1 and 25, got 0"
    assert "animatelcm-demo-error" in tab.status.value and tab.video.value == "" and tab.result is None
    assert tab.save_gif.disabled and not tab.generate.disabled
    svd_tab = ui.tabs["SVD-xt"]
    svd_tab.controls["image"].menu.value = "uploaded file"
    svd_tab.generate.click()
    assert svd_tab.error and svd_tab.message.startswith("no file uploaded")


def test_the_svd_tab_animates_an_uploaded_image(tmp_path, toy_settings):
    from PIL import Image

    ui = demo.app("toy", out_dir=tmp_path)
    tab = ui.tabs["SVD-xt"]
    buf = io.BytesIO()
    Image.fromarray(demo.example_image(1)).save(buf, format="PNG")
    tab.controls["image"].upload.value = ({"name": "digit.png", "type": "image/png", "size": len(buf.getvalue()),
                                           "content": memoryview(buf.getvalue()),
                                           "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    tab.controls["image"].menu.value = "uploaded file"
    tab.controls["steps"].value, tab.controls["seed"].value = 1, 0
    tab.generate.click()
    assert not tab.error, tab.message
    ref = svd.generate_svd(demo.svd_pipe("toy"), demo.example_image(1), steps=1, seed=0)
    np.testing.assert_array_equal(tab.result.frames, ref.frames)
    assert "2 UNet evaluations" in tab.message and "<video" in tab.video.value


def test_tabs_are_data(monkeypatch, toy_settings):
    shown = [t.title for t in demo.available_tabs("toy")]
    extra = demo.Tab("Extra", demo.t2v_fields, demo.validate_t2v, demo.run_t2v, available=lambda world: world == "full")
    monkeypatch.setattr(demo, "TABS", [*demo.TABS, extra])
    assert [t.title for t in demo.available_tabs("toy")] == shown
    assert [t.title for t in demo.available_tabs("full")][-1] == "Extra"
    monkeypatch.setattr(demo, "TABS", [demo.TABS[0], demo.Tab("Extra", demo.t2v_fields, demo.validate_t2v, demo.run_t2v)])
    ui = demo.app("toy")
    assert list(ui.tabs) == ["Text-to-video", "Extra"]
    assert [ui.get_title(i) for i in range(2)] == list(ui.tabs)


def test_the_image_to_video_tab_shows_only_where_its_model_exists(monkeypatch, tmp_path, toy_settings):
    from animatelcm_helpers import control

    from animatelcm_helpers import i2v
    from animatelcm_helpers.toy import zoo

    assert demo.i2v_available("full") and demo.i2v_official("full")  # config.HUB["animatelcm_i2v"]
    monkeypatch.setattr(zoo, "root", lambda: tmp_path)  # a zoo without the image encoder ...
    monkeypatch.setattr(control, "zoo_folder", lambda kind, naive=False: tmp_path / "i2v-adapter")
    assert not demo.i2v_available("toy")  # ... and without the keyframe adapter: no tab
    assert "Image-to-video" not in demo.app("toy").tabs
    (tmp_path / "i2v-adapter").mkdir()
    (tmp_path / "i2v-adapter" / "config.json").write_text("{}")
    assert demo.i2v_available("toy") and not demo.i2v_official("toy")  # the keyframe ControlNet
    (tmp_path / i2v.TOY_ENCODER_FOLDER).mkdir()
    (tmp_path / i2v.TOY_ENCODER_FOLDER / "config.json").write_text("{}")
    assert demo.i2v_official("toy")  # the official design, once the zoo has its encoder


def test_image_to_video_values_are_checked(toy_settings):
    good = {**demo.defaults(demo.i2v_fields("toy")), "seed": 0}
    checked = demo.validate_i2v(good, "toy")
    np.testing.assert_array_equal(checked["image"], demo.example_image(0))
    with pytest.raises(UserError, match=r"^the prompt is empty: say how the image should move"):
        demo.validate_i2v({**good, "prompt": ""}, "toy")
    with pytest.raises(UserError, match=r"^motion scale must be between 0.0 and 1.5, got 3.0$"):
        demo.validate_i2v({**good, "motion_scale": 3.0}, "toy")  # the official design's slider


@pytest.mark.skipif("not __import__('animatelcm_helpers.demo').demo.i2v_available('toy')",
                    reason="the toy zoo has no I2V adapter yet (control.py's i2v-adapter)")
def test_run_i2v_is_the_official_design_on_the_toy_zoo(toy_settings):
    """The toy zoo has its image encoder, so the tab is AnimateLCM-I2V's design at toy size:
    ``i2v.generate_i2v`` on ``i2v.image_to_video_pipeline("toy")``, with the official controls."""
    from animatelcm_helpers import i2v

    assert demo.i2v_official("toy")
    fields = {f.name: f for f in demo.i2v_fields("toy")}
    assert {"motion_scale", "negative_prompt", "cfg"} <= set(fields) and fields["motion_scale"].default == i2v.MOTION_SCALE
    values = {**demo.defaults(fields.values()), "seed": 0, "steps": 2, "frames": 4}
    result = demo.run_i2v(values)
    pipe = i2v.image_to_video_pipeline("toy", "cpu")
    ref = i2v.generate_i2v(pipe, demo.example_image(0), values["prompt"], motion_scale=i2v.MOTION_SCALE, steps=2,
                           guidance=values["cfg"], frames=4, seed=0, negative_prompt=values["negative_prompt"] or None,
                           height=values["height"], width=values["width"])
    np.testing.assert_array_equal(result.frames, ref.frames)
    assert result.frames.shape == (4, 32, 32, 3) and result.unet_evaluations == 2


def test_run_i2v_is_control_image_to_video_without_the_encoder(toy_settings, monkeypatch):
    """A zoo without the encoder falls back to the keyframe ControlNet (control.image_to_video)."""
    from animatelcm_helpers import control

    monkeypatch.setattr(demo, "i2v_official", lambda world: False)
    values = {**demo.defaults(demo.i2v_fields("toy")), "seed": 0, "steps": 2, "frames": 4}
    result = demo.run_i2v(values)
    pipe = control.controlnet_pipeline(control.load_controlnet("i2v"))
    ref = control.image_to_video(pipe, demo.example_image(0), values["prompt"], scale=1.0, steps=2, frames=4, seed=0)
    np.testing.assert_array_equal(result.frames, ref.frames)
    assert result.frames.shape == (4, 32, 32, 3) and result.unet_evaluations == 2
