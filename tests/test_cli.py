"""The command line writes every format and answers bad input with one clear line."""

import os
import subprocess
import sys

import numpy as np
import pytest

from animatelcm_helpers import cli, media


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "animatelcm_helpers", *args],
        capture_output=True, text=True, env=os.environ.copy(), timeout=300,
    )


def test_generate_npy_in_a_fresh_process(tmp_path):
    out = tmp_path / "seven.npy"
    r = run_cli("generate", "--prompt", "a seven moving left", "--world", "toy", "--steps", "2",
                "--frames", "6", "--seed", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    video = np.load(out, allow_pickle=False)
    assert video.shape == (6, 32, 32, 3) and video.dtype == np.uint8
    assert "2 UNet evaluations" in r.stdout and "seed 3" in r.stdout
    from animatelcm_helpers.toy import zoo

    assert ("random-initialised" in r.stderr) == (not zoo.is_trained())


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_generate_gif_and_mp4(tmp_path, suffix, capsys):
    out = tmp_path / f"v{suffix}"
    assert cli.main(["generate", "--prompt", "a two moving up", "--world", "toy", "--steps", "1",
                     "--out", str(out)]) == 0
    video = media.load_video(out)
    assert video.shape == (8, 32, 32, 3)
    assert "wrote" in capsys.readouterr().out


def test_same_seed_same_file(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    for path in (a, b):
        assert cli.main(["generate", "--prompt", "a five", "--world", "toy", "--steps", "1",
                         "--seed", "11", "--out", str(path)]) == 0
    np.testing.assert_array_equal(np.load(a), np.load(b))


def test_motion_lora_option(tmp_path, capsys):
    from animatelcm_helpers import pipelines

    out = tmp_path / "up.npy"
    assert cli.main(["generate", "--prompt", "a two moving up", "--world", "toy", "--steps", "2", "--seed", "4",
                     "--motion-lora", "up", "--out", str(out)]) == 0
    assert "motion LoRA up, 2 steps" in capsys.readouterr().out
    pipe = pipelines.load_t2v("animatelcm", world="toy")
    pipelines.use_motion_lora(pipe, "up")
    np.testing.assert_array_equal(np.load(out), pipelines.generate(pipe, "a two moving up", steps=2, seed=4).frames)
    assert cli.main(["generate", "--prompt", "a two", "--world", "toy", "--motion-lora", "sideways",
                     "--out", str(out)]) == 2
    assert "error: unknown motion LoRA 'sideways'" in capsys.readouterr().err


def test_models_lists_both_worlds(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "toy world:" in out and "full world:" in out
    assert out.count("animatelcm ") >= 2 and "teacher" in out and "toy zoo:" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "99"], "frames must be between 1 and 16, got 99"),
        (["--height", "33"], "height 33 is not a multiple of 4"),
        (["--steps", "0"], "steps must be at least 1"),
        (["--model", "sora"], "unknown model 'sora'"),
        (["--out", "video.avi"], "use a file name ending in .npy, .gif, .mp4"),
        (["--out", "/no/such/folder/v.gif"], "the folder /no/such/folder does not exist"),
        (["--guidance", "-2"], "guidance must be at least 0.0"),
    ],
)
def test_bad_input_is_one_line_not_a_traceback(args, message, capsys, tmp_path):
    base = ["generate", "--prompt", "a seven", "--world", "toy", "--steps", "1"]
    if "--out" not in args:
        base += ["--out", str(tmp_path / "v.npy")]
    assert cli.main(base + args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ")


def test_missing_full_world_weights_from_a_fresh_process(tmp_path):
    env = os.environ.copy()
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path), HF_HUB_CACHE=str(tmp_path / "hub"))
    r = subprocess.run(
        [sys.executable, "-m", "animatelcm_helpers", "generate", "--prompt", "a cat", "--world", "full",
         "--out", str(tmp_path / "v.gif")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert r.returncode == 2
    assert "is not on this machine" in r.stderr and "Traceback" not in r.stderr
