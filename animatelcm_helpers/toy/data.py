"""Moving Digits: the toy world's data, built from scikit-learn's bundled 8x8 digits.

An image is a digit scaled up (8x8 -> ``glyph`` x ``glyph`` pixels) and placed on a small RGB
canvas; a video is the same digit moving in one of four directions, ``speed`` pixels a frame.
Captions read like prompts: ``"a seven"``, ``"a seven moving left"``, ``"a seven in neon style"``.

Styles other than ``plain`` stand in for personalized (DreamBooth / LoRA) image models: the course
trains them on styled IMAGES only, never on styled videos, and still gets styled videos.

Everything is deterministic: the train/test split is fixed (stratified, 20% test, seed 0), and
item ``i`` of a data set draws its positions from ``numpy.random.default_rng((seed, i))``.
Pixel values are float32 in [-1, 1], channels first, as diffusers' VAEs expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ..config import UserError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIRECTIONS = ("left", "right", "up", "down")
# (dx, dy) in pixels per unit speed; image rows grow downwards, so "up" is dy = -1.
DIRECTION_VECTORS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Style:
    """How a digit is drawn: foreground colour, background, and an optional texture."""

    foreground: tuple[float, float, float]
    background: tuple[float, float, float]
    background2: tuple[float, float, float] | None = None  # a second colour for the texture
    texture: str | None = None  # None, "gradient" (top to bottom) or "checker" (4-pixel squares)


STYLES: dict[str, Style] = {
    "plain": Style((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    "neon": Style((0.25, 1.0, 0.45), (0.16, 0.02, 0.28)),
    "sunset": Style((1.0, 0.9, 0.25), (0.95, 0.45, 0.1), (0.55, 0.05, 0.2), texture="gradient"),
    "paper": Style((0.1, 0.15, 0.55), (0.96, 0.92, 0.8)),
    "checker": Style((1.0, 1.0, 1.0), (0.1, 0.3, 0.6), (0.05, 0.1, 0.25), texture="checker"),
}


def caption(digit: int, direction: str | None = None, style: str = "plain") -> str:
    """``"a seven"``, ``"a seven moving left"``, ``"a seven moving left in neon style"``."""
    text = f"a {DIGIT_WORDS[digit]}"
    if direction:
        text += f" moving {direction}"
    if style != "plain":
        text += f" in {style} style"
    return text


_CAPTION = re.compile(
    r"^\s*an?\s+(?P<digit>\w+)(?:\s+moving\s+(?P<direction>\w+))?(?:\s+in\s+(?P<style>\w+)\s+style)?\s*$"
)


def parse_caption(text: str) -> tuple[int, str | None, str]:
    """The inverse of :func:`caption`: ``"a seven moving left"`` -> ``(7, "left", "plain")``."""
    match = _CAPTION.match(text.lower())
    if not match or match["digit"] not in DIGIT_WORDS:
        raise UserError(
            f"cannot read the prompt {text!r}: toy prompts look like 'a seven', 'a seven moving left' "
            "or 'a seven moving left in neon style'"
        )
    direction, style = match["direction"], match["style"] or "plain"
    if direction is not None and direction not in DIRECTIONS:
        raise UserError(f"unknown direction {direction!r} in {text!r}; use one of {', '.join(DIRECTIONS)}")
    if style not in STYLES:
        raise UserError(f"unknown style {style!r} in {text!r}; use one of {', '.join(STYLES)}")
    return DIGIT_WORDS.index(match["digit"]), direction, style


@lru_cache(maxsize=1)
def _digits():
    data = load_digits()
    return data.images.astype(np.float32) / 16.0, data.target.astype(np.int64)


@lru_cache(maxsize=4)
def split_indices(split: str) -> np.ndarray:
    """Indices into ``load_digits()`` of the fixed split: stratified, 20% test, seed 0."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use 'train' or 'test'")

    _, labels = _digits()
    train, test = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0
    )
    return np.sort(train if split == "train" else test)


@lru_cache(maxsize=4096)
def glyph(index: int, size: int = 16) -> np.ndarray:
    """Digit ``index`` of ``load_digits()`` as a ``size`` x ``size`` float32 alpha mask in [0, 1]."""
    images, _ = _digits()
    img = Image.fromarray(images[index], mode="F").resize((size, size), Image.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


def background(style: Style, size: int) -> np.ndarray:
    """The style's empty canvas, (size, size, 3) float32 in [0, 1]."""
    bg = np.empty((size, size, 3), np.float32)
    bg[:] = style.background
    if style.texture == "gradient":
        ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
        bg = (1 - ramp) * np.asarray(style.background, np.float32) + ramp * np.asarray(
            style.background2, np.float32
        )
        bg = np.broadcast_to(bg, (size, size, 3)).copy()
    elif style.texture == "checker":
        yy, xx = np.mgrid[0:size, 0:size]
        mask = ((yy // 4 + xx // 4) % 2).astype(bool)
        bg[mask] = style.background2
    return bg


def render(alpha: np.ndarray, x: int, y: int, style: Style, size: int, trail: tuple[tuple[int, int, float], ...] = ()) -> np.ndarray:
    """One frame: the glyph's top-left corner at pixel (x, y) over the style's canvas, HWC in [0, 1].

    ``trail`` adds fainter copies first, ``(x, y, strength)`` each (an afterimage behind a moving
    digit); copies may stick out of the canvas and are clipped.
    """
    frame = background(style, size)
    fg = np.asarray(style.foreground, np.float32)
    for px, py, strength in (*trail, (x, y, 1.0)):
        h, w = alpha.shape
        y0, y1, x0, x1 = max(py, 0), min(py + h, size), max(px, 0), min(px + w, size)
        if y0 >= y1 or x0 >= x1:
            continue
        a = alpha[y0 - py : y1 - py, x0 - px : x1 - px, None] * strength
        frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1 - a) + fg * a
    return frame


def trail_behind(x: int, y: int, direction: str, gap: int, strengths: tuple[float, ...]):
    """Afterimage copies ``gap``, ``2 gap``, ... pixels behind a digit moving in ``direction``."""
    dx, dy = DIRECTION_VECTORS[direction]
    return tuple((x - dx * gap * k, y - dy * gap * k, s) for k, s in reversed(list(enumerate(strengths, 1))))


def path(
    direction: str, num_frames: int, room: int, speed: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Top-left positions for a straight move of ``speed`` px a frame that stays on the canvas."""
    dx, dy = DIRECTION_VECTORS[direction]
    travel = speed * (num_frames - 1)
    if travel > room:
        raise UserError(
            f"{num_frames} frames at {speed} px a frame need {travel} px of room but the canvas has {room}; "
            "use fewer frames, a lower speed or a bigger canvas"
        )
    along = int(rng.integers(0, room - travel + 1))
    across = int(rng.integers(0, room + 1))
    positions = []
    for f in range(num_frames):
        a = along + speed * f
        if dx < 0 or dy < 0:  # moving towards 0: start at the far end
            a = room - a
        positions.append((a, across) if dx else (across, a))
    return positions


class MovingDigits:
    """A deterministic data set of Moving Digits images, frames or videos with captions.

    * ``kind="video"``: item ``i`` is sample ``i // (4 * len(styles))`` of the split moving in
      direction ``i % 4``, captioned ``"a seven moving left"``;
    * ``kind="frame"``: one random frame of that same video, with the same caption (so a
      single image carries the motion words);
    * ``kind="image"``: the digit still, at a random place, captioned ``"a seven"``.

    A moving digit leaves a fading trail: copies ``trail_gap``, ``2 trail_gap``, ... pixels behind
    it at ``trail`` strengths (an afterimage, as a long exposure shows). So even ONE frame shows
    which way the digit goes. This is the data's answer to AnimateDiff's catch: motion modules
    have no text cross-attention; the prompt reaches the motion only through the spatial layers,
    so the motion words must change what the spatial layers draw. ``trail=()`` turns it off.

    Each item is a dict: ``pixel_values`` (float32 in [-1, 1]; video (F, 3, H, W), else
    (3, H, W)), ``caption``, ``digit``, ``direction`` ("" for still images), ``style``.
    """

    KINDS = ("video", "frame", "image")

    def __init__(
        self,
        split: str = "train",
        kind: str = "video",
        num_frames: int = 8,
        size: int = 32,
        glyph_size: int = 16,
        speed: int = 2,
        styles: tuple[str, ...] | str = ("plain",),
        trail: tuple[float, ...] = (0.5, 0.25),
        trail_gap: int = 4,
        seed: int = 0,
    ):
        if kind not in self.KINDS:
            raise UserError(f"unknown kind {kind!r}; use one of {', '.join(self.KINDS)}")
        styles = (styles,) if isinstance(styles, str) else tuple(styles)
        if not styles:
            raise UserError("styles is empty: give at least one style, e.g. ('plain',)")
        for s in styles:
            if s not in STYLES:
                raise UserError(f"unknown style {s!r}; use one of {', '.join(STYLES)}")
        if glyph_size > size:
            raise UserError(f"glyph_size {glyph_size} is larger than the canvas {size}")
        if num_frames < 1:
            raise UserError(f"num_frames must be at least 1, got {num_frames}")
        self.split, self.kind, self.num_frames, self.size = split, kind, num_frames, size
        self.glyph_size, self.speed, self.styles, self.seed = glyph_size, speed, styles, seed
        self.trail, self.trail_gap = tuple(trail), trail_gap
        self.indices = split_indices(split)
        self.labels = _digits()[1][self.indices]
        if kind != "image":  # fail now, not at item 0, if the motion cannot fit
            path("left", num_frames, size - glyph_size, speed, np.random.default_rng(0))

    def __len__(self) -> int:
        per_sample = len(self.styles) * (1 if self.kind == "image" else len(DIRECTIONS))
        return len(self.indices) * per_sample

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} is out of range for {len(self)} items")
        rng = np.random.default_rng((self.seed, i))
        if self.kind == "image":
            sample, s = divmod(i, len(self.styles))
            direction = None
        else:
            rest, d = divmod(i, len(DIRECTIONS))
            sample, s = divmod(rest, len(self.styles))
            direction = DIRECTIONS[d]
        style_name = self.styles[s]
        style = STYLES[style_name]
        alpha = glyph(int(self.indices[sample]), self.glyph_size)
        room = self.size - self.glyph_size
        if direction is None:
            x, y = (int(v) for v in rng.integers(0, room + 1, size=2))
            frames = render(alpha, x, y, style, self.size)[None]
        else:
            positions = path(direction, self.num_frames, room, self.speed, rng)
            if self.kind == "frame":
                positions = [positions[int(rng.integers(0, len(positions)))]]
            frames = np.stack([
                render(alpha, x, y, style, self.size, trail_behind(x, y, direction, self.trail_gap, self.trail))
                for x, y in positions
            ])
        pixels = (frames.transpose(0, 3, 1, 2) * 2.0 - 1.0).astype(np.float32)
        digit = int(self.labels[sample])
        return {
            "pixel_values": pixels if self.kind == "video" else pixels[0],
            "caption": caption(digit, direction, style_name),
            "digit": digit,
            "direction": direction or "",
            "style": style_name,
        }


def to_uint8(pixels) -> np.ndarray:
    """[-1, 1] channels-first (..., 3, H, W) -> uint8 channels-last (..., H, W, 3)."""
    arr = np.asarray(pixels, dtype=np.float32)
    arr = np.moveaxis(arr, -3, -1)
    return np.clip(np.round((arr + 1.0) * 127.5), 0, 255).astype(np.uint8)
