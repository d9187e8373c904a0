"""The full training recipe (``scripts/distill_full.py``), run end to end against the fake Hub on the
CPU: Moving Digits exported as image and video files with a metadata.jsonl (the Hugging Face
ImageFolder/VideoFolder layout), stage 1 and stage 2 for a few steps each, the student saved in
AnimateLCM's layout, loaded with ``load_t2v(folder)`` and sampled."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from animatelcm_helpers import config, lcm, media, pipelines
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy.data import MovingDigits, to_uint8

from conftest import ROOT

spec = importlib.util.spec_from_file_location("distill_full", ROOT / "scripts" / "distill_full.py")
distill_full = importlib.util.module_from_spec(spec)
spec.loader.exec_module(distill_full)

COMMON = ["--steps", "2", "--batch", "2", "--resolution", "64", "--limit", "4", "--rank", "4", "--cpu", "--save-every", "1"]


def export_digits(folder, kind: str, n: int = 4):
    """n Moving Digits items as files (PNG stills or MP4 videos) with a metadata.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    data = MovingDigits("train", kind=kind, num_frames=8)
    lines = []
    for i in range(n):
        item = data[i]
        pix = to_uint8(item["pixel_values"])
        name = f"{i:04d}.png" if kind == "image" else f"{i:04d}.mp4"
        if kind == "image":
            Image.fromarray(pix).save(folder / name)
        else:
            media.save_video(pix, folder / name, fps=8)
        lines.append(json.dumps({"file_name": name, "text": item["caption"]}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_both_stages_save_load_and_generate(full_offline, tmp_path, capsys, monkeypatch):
    images, videos = export_digits(tmp_path / "images", "image"), export_digits(tmp_path / "videos", "video")
    schedules = {}

    def spy(name, position):
        original = getattr(distill_full.distill, name)

        def wrapper(*args, **kwargs):
            schedules[name] = args[position]
            return original(*args, **kwargs)

        monkeypatch.setattr(distill_full.distill, name, wrapper)

    spy("distill_image", 5)
    spy("distill_video", 6)
    s1, s2 = tmp_path / "stage1", tmp_path / "stage2"
    assert distill_full.main(["stage1", "--data", str(images), "--out", str(s1), *COMMON]) == 0, capsys.readouterr().err
    assert (s1 / distill_full.LORA_FILE).is_file()
    args = ["stage2", "--data", str(videos), "--out", str(s2), "--init-lora", str(s1 / distill_full.LORA_FILE),
            "--frames", "4", *COMMON]
    assert distill_full.main(args) == 0, capsys.readouterr().err
    # stage 1 on SD1.5's own scaled-linear schedule; stage 2 on the linear one its AnimateDiff teacher and
    # the student's sampler use (the script used to build stage 2's schedule from SD1.5's betas)
    torch.testing.assert_close(schedules["distill_image"], lcm.alphas_cumprod(beta_schedule="scaled_linear"))
    torch.testing.assert_close(schedules["distill_video"], lcm.alphas_cumprod(beta_schedule="linear"))
    saved = json.loads((s2 / pipelines.SAVED_SPEC).read_text())
    assert saved["layout"] == "parts" and saved["base"]["repo_id"] == config.HUB["sd15"].repo_id
    assert saved["motion_adapter"]["repo_id"] == "."  # relative: the folder can move
    pipe = pipelines.load_t2v(str(s2))
    assert pipe.adapter_weights == {"lcm-lora": 1.0}
    cfg = pipe.scheduler.config  # LCM on the schedule and grid it was distilled on
    assert (type(pipe.scheduler).__name__, cfg.beta_schedule, cfg.original_inference_steps) == ("LCMScheduler", "linear", 50)
    out = pipelines.generate(pipe, "a seven moving left", frames=4, height=64, width=64, steps=2, seed=0)
    assert out.frames.shape == (4, 64, 64, 3) and out.unet_evaluations == 2
    # the saved motion adapter has the fake SD1.5's width (4 levels of 8..16 channels), not the toy's
    adapter = json.loads((s2 / "config.json").read_text())
    assert adapter["_class_name"] == "MotionAdapter" and adapter["block_out_channels"] == [8, 16, 16, 16]
    # a rerun resumes from the checkpoints and reuses the encoded data
    encoded = s2 / "encoded" / "stage2-0.safetensors"
    before = encoded.stat().st_mtime_ns
    assert distill_full.main([*args[:-len(COMMON)], *COMMON[:-2], "--save-every", "1", "--steps", "3"]) == 0
    assert encoded.stat().st_mtime_ns == before
    assert "stage2: 3 steps" in capsys.readouterr().out


def test_each_process_encodes_its_share(full_offline, tmp_path):
    """Under accelerate launch every process encodes items[rank::world] on its own device, then all
    read every share: two processes (run one after the other here) give the single process's inputs."""
    videos = export_digits(tmp_path / "videos", "video", n=3)
    items = distill_full.read_items(videos, 10)
    from animatelcm_helpers import loading

    base = loading.load_base(config.HUB["sd15"], torch.float32)
    args = SimpleNamespace(stage="stage2", resolution=64, frames=4)

    def state(rank, world):
        return SimpleNamespace(process_index=rank, num_processes=world, device=torch.device("cpu"),
                               is_main_process=rank == 0, wait_for_everyone=lambda: None)

    args.out = tmp_path / "one"
    one = distill_full.encoded_inputs(base, videos, items, args, state(0, 1))
    args.out = tmp_path / "two"
    for rank in (1, 0):  # the order the processes finish in does not matter
        distill_full.write_share(base, videos, items, args, state(rank, 2))
    shares = [distill_full.utils.load_safetensors(args.out / "encoded" / f"stage2-{r}.safetensors") for r in (0, 1)]
    assert shares[0]["index"].tolist() == [0, 2] and shares[1]["index"].tolist() == [1]
    two = distill_full.read_shares(args, state(0, 2))
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b)
    assert one[0].shape == (3, 4, 4, 8, 8) and one[1].shape[0] == 3  # (videos, frames, channels, h, w)


def test_bad_data_folders_get_one_line(tmp_path):
    with pytest.raises(UserError, match="has no metadata.jsonl, metadata.csv, captions.jsonl"):
        distill_full.read_items(tmp_path, 10)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "missing.mp4", "text": "x"}) + "\n")
    with pytest.raises(UserError, match="names missing.mp4, which is not in"):
        distill_full.read_items(tmp_path, 10)
    (tmp_path / "metadata.jsonl").unlink()
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "metadata.csv").write_text("file_name,text\na.png,a cat\n")
    assert distill_full.read_items(tmp_path, 10) == [{"file": "a.png", "caption": "a cat"}]
    assert distill_full.main(["stage1"]) == 2
    with pytest.raises(UserError, match="neither a folder nor a Hub dataset id"):
        distill_full.data_folder(str(tmp_path / "nope" / "deeper"), "main")


def test_the_dry_run_still_runs_on_the_toy_world(toy_settings, tmp_path):
    assert distill_full.main(["stage2", "--dry-run", "--out", str(tmp_path)]) == 0
    adapter = json.loads((tmp_path / "config.json").read_text())
    assert adapter["block_out_channels"] == [32, 64]  # the toy's, read from the student itself
