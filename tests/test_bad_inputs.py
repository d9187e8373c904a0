"""The bad-input table: every entry point refuses bad input with a clear error that says what is
wrong and what to do (a ``UserError``, shown as one line in notebooks and by the command line),
never a deep traceback. One row a case: (name, call, the message it must give)."""

import pickle

import numpy as np
import pytest
import torch

from animatelcm_helpers import (
    cli,
    config,
    distill,
    evaluation,
    lcm,
    loading,
    media,
    pipelines,
    svd,
    svd_scheduler,
    training,
    utils,
)
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import configs, metrics, zoo


@pytest.fixture(scope="module")
def image_pipe(toy_settings):
    return pipelines.load_t2i()


def _truncated(tmp_path):
    good = zoo.root() / "styles" / "neon.safetensors"
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(good.read_bytes()[:200])
    return bad


def _pickle_named_safetensors(tmp_path):
    bad = tmp_path / "lora.safetensors"
    bad.write_bytes(pickle.dumps({"weight": [1, 2, 3]}))
    return bad


def _foreign_lora(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"  # a LoRA for layers this UNet does not have
    save_file({"unet.mid_block.attentions.7.to_q.lora_A.weight": torch.zeros(4, 1280),
               "unet.mid_block.attentions.7.to_q.lora_B.weight": torch.zeros(1280, 4)}, path)
    return path


def _other_recipe(tmp_path):
    net = torch.nn.Linear(2, 1)
    loss = lambda step, g: net(torch.randn(4, 2, generator=g)).pow(2).mean()  # noqa: E731
    training.fit("recipe-a", {"net": net}, loss, 1, 1e-2, tmp_path, progress=False)
    return lambda: training.fit("recipe-b", {"net": net}, loss, 2, 1e-2, tmp_path, progress=False)


def _empty_dataset(tmp_path):
    return lambda: distill.distill_image(tmp_path, configs.tiny_unet(0), torch.zeros(0, 4, 8, 8),
                                         torch.zeros(0, dtype=torch.long), torch.zeros(2, 16, 64),
                                         torch.linspace(0.99, 0.01, 1000), steps=1, progress=False)


CASES = [
    # (name, build(tmp_path, lcm_pipe, image_pipe) -> a call, expected message regex)
    ("frames beyond the motion modules' maximum", lambda t, p, i: lambda: pipelines.generate(p, "a one", frames=17),
     r"frames must be between 1 and 16, got 17"),
    ("height not divisible by the VAE factor", lambda t, p, i: lambda: pipelines.generate(p, "a one", height=30),
     r"not a multiple of 4.*try 32"),
    ("zero steps", lambda t, p, i: lambda: pipelines.generate(p, "a one", steps=0), r"steps must be at least 1"),
    ("non-integer steps", lambda t, p, i: lambda: pipelines.generate(p, "a one", steps=2.5), r"whole number"),
    ("negative guidance", lambda t, p, i: lambda: pipelines.generate(p, "a one", guidance=-1), r"guidance must be at least 0"),
    ("empty prompt", lambda t, p, i: lambda: pipelines.generate(p, "   "), r"the prompt is empty"),
    ("LCM LoRA weight above 1", lambda t, p, i: lambda: pipelines.load_t2v("animatelcm", lcm_lora_weight=1.5),
     r"lcm_lora_weight must be between 0.0 and 1.0"),
    ("style LoRA weight above 2", lambda t, p, i: lambda: pipelines.add_style(i, "neon", 3.0),
     r"style weight must be between 0.0 and 2.0"),
    ("unknown base model", lambda t, p, i: lambda: pipelines.load_t2v("animatelcm-xl"), r"unknown model 'animatelcm-xl'"),
    ("unknown style", lambda t, p, i: lambda: pipelines.add_style(i, "pastel"), r"unknown style 'pastel'; choose one of"),
    ("unknown scheduler", lambda t, p, i: lambda: pipelines.load_t2v("animatelcm", scheduler="heun2"), r"unknown scheduler"),
    ("image-to-video: grayscale image", lambda t, p, i: lambda: svd.check_image(__import__("PIL.Image").Image.new("L", (32, 32))),
     r"is a L image; give an RGB one"),
    ("image-to-video: RGBA array", lambda t, p, i: lambda: svd.check_image(np.zeros((32, 32, 4), np.uint8)),
     r"must be \(height, width, 3\) uint8"),
    ("image-to-video: float image", lambda t, p, i: lambda: svd.check_image(np.zeros((32, 32, 3), np.float32)),
     r"for floats in \[0, 1\]"),
    ("truncated safetensors file", lambda t, p, i: lambda: utils.load_safetensors(_truncated(t)),
     r"not a readable safetensors file \(corrupted or truncated"),
    ("pickle checkpoint (.bin)", lambda t, p, i: lambda: utils.load_safetensors(t / "model.bin"),
     r"is a pickle file; this course loads safetensors only"),
    ("pickle renamed .safetensors", lambda t, p, i: lambda: distill.load_lora_state_dict(_pickle_named_safetensors(t)),
     r"a pickle file renamed .safetensors"),
    ("LCM LoRA given as a pickle", lambda t, p, i: lambda: pipelines.load_t2i(lcm_lora=t / "lcm.pt"),
     r"must be a LoRA .safetensors file"),
    ("LoRA for another architecture", lambda t, p, i: lambda: loading.load_lora(
        i, config.Weights(str(_foreign_lora(t).parent), None, weight_name="foreign.safetensors", local=True), "foreign"),
     r"made for another architecture|does not fit this model's UNet"),
    ("missing model offline (full world)", lambda t, p, i: lambda: pipelines.load_t2v("animatelcm", world="full", device="cpu"),
     r"is not on this machine"),
    ("training set with no items", lambda t, p, i: _empty_dataset(t), r"the training set is empty"),
    ("checkpoint folder of another recipe", lambda t, p, i: _other_recipe(t), r"made by recipe 'recipe-a', not 'recipe-b'"),
    ("unknown distillation variant", lambda t, p, i: lambda: distill.distill_image(
        t, configs.tiny_unet(0), torch.zeros(2, 4, 8, 8), torch.zeros(2, dtype=torch.long), torch.zeros(1, 16, 64),
        torch.linspace(0.99, 0.01, 1000), steps=1, variant="huge", progress=False), r"unknown variant 'huge'"),
    ("video latents of the wrong shape", lambda t, p, i: lambda: distill.distill_video(
        t, configs.tiny_unet(0), configs.tiny_motion_adapter(0), torch.zeros(2, 4, 8, 8), torch.zeros(2, dtype=torch.long),
        torch.zeros(1, 16, 64), torch.linspace(0.99, 0.01, 1000), steps=1, progress=False), r"video latents must be"),
    ("LCM steps beyond the grid", lambda t, p, i: lambda: lcm.lcm_timesteps(51), r"steps"),
    ("SVD scheduler with 0 steps", lambda t, p, i: lambda: svd_scheduler.AnimateLCMSVDScheduler().set_timesteps(0), r"steps"),
    ("SVD guidance min above max", lambda t, p, i: lambda: svd.generate_svd(
        svd.toy_svd_pipeline()[0], np.zeros((32, 32, 3), np.uint8), min_guidance=2.0, max_guidance=1.0), r"guidance"),
    ("evaluation with no prompts", lambda t, p, i: lambda: evaluation.evaluate(p, 1, 1.0, prompts=[]), r"no prompts"),
    ("videos and prompts of different counts", lambda t, p, i: lambda: metrics.faithfulness(
        np.zeros((2, 8, 32, 32, 3), np.uint8), ["a one"]), r"2 videos but 1 prompts"),
    ("video file of an unknown format", lambda t, p, i: lambda: media.save_video(np.zeros((2, 8, 8, 3), np.uint8), t / "v.avi"),
     r"use a file name ending in"),
    ("unknown world", lambda t, p, i: lambda: config.setup(world="huge"), r"world"),
    ("toy zoo variable pointing at a non-zoo", lambda t, p, i: (__import__("os").environ.__setitem__(zoo.ZOO_ENV, str(t)),
                                                               lambda: zoo.root())[1], r"is not a toy zoo"),
]


@pytest.mark.parametrize("name, build, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_a_clear_error(name, build, message, tmp_path, lcm_pipe, image_pipe, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.delenv(zoo.ZOO_ENV, raising=False)
    call = build(tmp_path, lcm_pipe, image_pipe)
    try:
        with pytest.raises(UserError, match=message) as err:
            call()
    finally:
        import os
        os.environ.pop(zoo.ZOO_ENV, None)
        config.setup(world="toy", test_mode=True)
    text = str(err.value)
    assert "Traceback" not in text and len(text.splitlines()) <= 3, text


def test_the_table_is_long_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("argv, message", [
    (["generate", "--prompt", "a one", "--steps", "0"], "steps must be at least 1"),
    (["generate", "--prompt", "a one", "--model", "nope"], "unknown model 'nope'"),
    (["generate", "--prompt", "", "--steps", "1"], "the prompt is empty"),
    (["generate", "--prompt", "a one", "--frames", "99"], "frames must be between"),
])
def test_cli_prints_one_line_and_exits_2(argv, message, capsys, toy_settings, tmp_path):
    code = cli.main(argv + ["--out", str(tmp_path / "v.gif")])
    out = capsys.readouterr()
    assert code == 2
    assert message in out.err + out.out and "Traceback" not in out.err + out.out


def test_notebooks_show_user_errors_as_one_line():
    """config.setup() registers an IPython handler: a UserError prints one line, no traceback."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        config.setup(world="toy", test_mode=True)
        assert UserError in shell.custom_exceptions
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()
