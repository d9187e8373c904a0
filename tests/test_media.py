import numpy as np
import pytest

from animatelcm_helpers import media
from animatelcm_helpers.config import UserError


def video(seed=0, f=5, h=16, w=24):
    rng = np.random.default_rng(seed)
    # flat colour blocks survive GIF's palette and MP4's compression well enough to compare
    base = rng.integers(0, 256, size=(f, h // 8, w // 8, 3), dtype=np.uint8)
    return base.repeat(8, axis=1).repeat(8, axis=2)


def test_npy_is_exact(tmp_path):
    v = video()
    media.save_video(v, tmp_path / "v.npy")
    np.testing.assert_array_equal(media.load_video(tmp_path / "v.npy"), v)


def test_gif_round_trip(tmp_path):
    v = video()
    media.save_video(v, tmp_path / "v.gif", fps=4)
    back = media.load_video(tmp_path / "v.gif")
    assert back.shape == v.shape
    assert np.abs(back.astype(int) - v).mean() < 8


def test_mp4_uses_the_bundled_ffmpeg(tmp_path):
    import imageio_ffmpeg

    assert media.use_bundled_ffmpeg() == imageio_ffmpeg.get_ffmpeg_exe()
    v = video(f=8, h=32, w=32)
    media.save_video(v, tmp_path / "v.mp4")
    back = media.load_video(tmp_path / "v.mp4")
    assert back.shape == v.shape
    assert np.abs(back.astype(int) - v).mean() < 25


def test_float_frames_and_grid():
    v = media.as_video(np.ones((2, 4, 4, 3), np.float32))
    assert v.dtype == np.uint8 and v.max() == 255
    from PIL import Image

    maps = [Image.fromarray(np.full((4, 4), 200, np.uint8))] * 3  # grey control maps -> RGB frames
    assert np.array_equal(media.as_video(maps), np.full((3, 4, 4, 3), 200, np.uint8))
    grid = media.frame_grid(v, pad=1)
    assert grid.shape == (4, 9, 3)
    assert media.upscale(v, 3).shape == (2, 12, 12, 3)


def test_bad_video_and_path(tmp_path):
    with pytest.raises(UserError, match=r"shape \(frames, height, width, 3\)"):
        media.save_video(np.zeros((4, 4, 3), np.uint8), tmp_path / "v.npy")
    with pytest.raises(UserError, match="use a file name ending in .npy, .gif, .mp4"):
        media.save_video(video(), tmp_path / "v.webm")


def test_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "v.npy"
    media.save_video(video(0), target)
    original = target.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(RuntimeError):
        media.save_video(video(1), target)
    assert target.read_bytes() == original  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npy"]  # no temporary left behind
