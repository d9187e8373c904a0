"""Show, save and compare videos (uint8 arrays: frames x height x width x 3).

mediapy needs an ffmpeg binary for MP4; the course uses the one imageio-ffmpeg ships, so no
system ffmpeg is needed. GIFs are written with Pillow. Files are written atomically: to a
temporary file beside the target, then renamed, so a crash never leaves half a video.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path

import imageio_ffmpeg
import mediapy
import numpy as np
from IPython.display import Code, Markdown, display
from PIL import Image, ImageSequence

from .config import UserError

FORMATS = (".npy", ".gif", ".mp4")
_ffmpeg_ready = False


def use_bundled_ffmpeg() -> str:
    """Point mediapy at imageio-ffmpeg's ffmpeg (once); returns its path."""
    global _ffmpeg_ready

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    if not _ffmpeg_ready:
        mediapy.set_ffmpeg(exe)
        _ffmpeg_ready = True
    return exe


def float_to_uint8(frames) -> np.ndarray:
    """Floats in [0, 1] (diffusers' ``output_type="np"``) to uint8 0..255, rounded and clipped."""
    return np.clip(np.round(np.asarray(frames) * 255.0), 0, 255).astype(np.uint8)


def as_video(frames) -> np.ndarray:
    """Check and return a uint8 (F, H, W, 3) video; floats in [0, 1] and lists of PIL images
    (e.g. control maps) are converted."""
    if isinstance(frames, (list, tuple)) and frames and all(hasattr(f, "convert") for f in frames):
        frames = np.stack([np.asarray(f.convert("RGB")) for f in frames])
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise UserError(f"a video is an array of shape (frames, height, width, 3), got {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise UserError(f"video frames must be uint8 or floats in [0, 1], got {arr.dtype}")
        arr = float_to_uint8(arr)
    return arr


def upscale(frames, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling, so a 32x32 toy video is big enough to see."""
    arr = as_video(frames)
    return arr.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else arr


def save_video(frames, path: str | Path, fps: int = 8) -> Path:
    """Write a video as ``.npy`` (the uint8 array), ``.gif`` or ``.mp4``, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"cannot write {path.name!r}: use a file name ending in {', '.join(FORMATS)}")
    arr = as_video(frames)
    if path.parent and not path.parent.exists():
        raise UserError(f"the folder {path.parent} does not exist; create it first or choose another --out")
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp" + suffix, dir=path.parent or ".")
    os.close(fd)
    try:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, arr)
        elif suffix == ".gif":
            images = [Image.fromarray(frame) for frame in arr]
            images[0].save(
                tmp, format="GIF", save_all=True, append_images=images[1:],
                duration=round(1000 / fps), loop=0,
            )
        else:
            use_bundled_ffmpeg()
            if arr.shape[1] % 2 or arr.shape[2] % 2:  # H.264 wants even sizes
                arr = np.pad(arr, ((0, 0), (0, arr.shape[1] % 2), (0, arr.shape[2] % 2), (0, 0)))
            mediapy.write_video(tmp, arr, fps=fps)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_video(path: str | Path) -> np.ndarray:
    """Read a video written by :func:`save_video` back as uint8 (F, H, W, 3)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return as_video(np.load(path, allow_pickle=False))
    if suffix == ".gif":
        with Image.open(path) as im:
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    if suffix == ".mp4":
        use_bundled_ffmpeg()
        return as_video(mediapy.read_video(path))
    raise UserError(f"cannot read {path.name!r}: use .npy, .gif or .mp4")


def show_video(frames, title: str | None = None, fps: int = 8, scale: int | None = None) -> None:
    """Play a video inline in a notebook (small videos are upscaled so they can be seen)."""
    arr = as_video(frames)
    scale = scale or max(1, 128 // max(arr.shape[1:3]))
    use_bundled_ffmpeg()
    mediapy.show_video(upscale(arr, scale), title=title, fps=fps, codec="gif")


def show_videos(videos: dict, fps: int = 8, scale: int | None = None, columns: int | None = None) -> None:
    """Several labelled videos side by side: ``show_videos({"4 steps": v1, "8 steps": v2})``."""
    arrays = {k: as_video(v) for k, v in videos.items()}
    biggest = max(max(a.shape[1:3]) for a in arrays.values())
    scale = scale or max(1, 128 // biggest)
    use_bundled_ffmpeg()
    mediapy.show_videos(
        {k: upscale(a, scale) for k, a in arrays.items()}, fps=fps, codec="gif", columns=columns
    )


def frame_grid(frames, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """All frames of a video tiled left to right (then top to bottom) in one image."""
    arr = as_video(frames)
    f, h, w, _ = arr.shape
    columns = columns or f
    rows = -(-f // columns)
    grid = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, 3), 255, np.uint8)
    for i, frame in enumerate(arr):
        r, c = divmod(i, columns)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = frame
    return grid


def show_frames(frames, title: str | None = None, scale: int | None = None) -> None:
    """All frames of a video as one picture, left to right (upscaled when small)."""
    grid = frame_grid(frames)
    scale = scale or max(1, 128 // max(as_video(frames).shape[1:3]))
    mediapy.show_image(upscale(grid[None], scale)[0], title=title)


def show_rows(videos: dict, scale: int | None = None) -> None:
    """Several videos as labelled rows of frames: ``show_rows({"step 1": v1, "step 2": v2})``."""
    grids = {k: frame_grid(v) for k, v in videos.items()}
    scale = scale or max(1, 128 // max(max(as_video(v).shape[1:3]) for v in videos.values()))
    mediapy.show_images([upscale(g[None], scale)[0] for g in grids.values()], titles=list(grids), columns=1)


def show_code(*objects) -> None:
    """Show the source of helper functions or classes in a notebook, syntax-highlighted: the code a
    formula above it describes, as the package runs it (``inspect.getsource``; the notebook never
    keeps a copy that could drift from the package)."""
    source = "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)
    display(Code(source, language="python"))


def show_markdown(text: str) -> None:
    """Show ``text`` as rendered Markdown: prose whose numbers are computed (an f-string of the
    results), so the sentence and the output cannot disagree."""
    display(Markdown(text))
