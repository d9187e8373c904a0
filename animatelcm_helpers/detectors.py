"""Control maps (the base layer): controlnet-aux's detectors on every frame of a video, the
conversion of whatever control a user has into the PIL frames the ControlNet pipelines take, and
how well a video follows its control (edge F1).

    maps = detectors.detect(video, "canny")        # PIL images, one per frame
    f1 = detectors.edge_f1(generated_video, maps)  # 0..1

Canny, line art and content shuffle need no weights; OpenPose, MiDaS depth and HED read their
weights from the Hub (``config.HUB["annotators"]``) through :mod:`annotators` (read by revision, from
the cache when offline, pickles converted once to safetensors).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from . import annotators
from .config import UserError
from .media import float_to_uint8

# Detectors of controlnet-aux that run without downloaded weights, and those that need the Hub.
DETECTORS = ("canny", "lineart", "shuffle")
HUB_DETECTORS = tuple(annotators.ANNOTATOR_FILES)  # openpose, depth, hed: weights from config.HUB["annotators"]
DETECT_RESOLUTION = 64  # controlnet-aux rounds sizes to multiples of 64: detect at 64, then resize


def as_pil_frames(video) -> list:
    """A video (F, H, W, 3) uint8 / floats in [0, 1], a PIL image or a list of PIL images -> PIL images."""
    if isinstance(video, Image.Image):
        return [video.convert("RGB")]
    if isinstance(video, (list, tuple)) and video and all(isinstance(v, Image.Image) for v in video):
        return [v.convert("RGB") for v in video]
    arr = np.asarray(video)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise UserError(f"give frames as (frames, height, width, 3) or PIL images, got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 1:
            raise UserError("float frames must lie in [0, 1]; give uint8 frames (0..255) or floats in [0, 1]")
        arr = float_to_uint8(arr)
    return [Image.fromarray(a) for a in arr]


def _detector(kind: str):
    with warnings.catch_warnings():  # controlnet-aux's package import warns about optional extras it does not need here
        warnings.simplefilter("ignore")
        # controlnet-aux imports timm, scikit-image and more (seconds): only detection needs it
        from controlnet_aux.canny import CannyDetector  # deferred: heavy, see above
        from controlnet_aux.lineart_standard import LineartStandardDetector  # deferred: heavy
        from controlnet_aux.shuffle import ContentShuffleDetector  # deferred: heavy

        if kind == "canny":
            return CannyDetector()
        if kind == "lineart":
            return LineartStandardDetector()
        if kind == "shuffle":
            return ContentShuffleDetector()
        if kind in HUB_DETECTORS:
            return _hub_detector(kind)
    raise UserError(f"unknown detector {kind!r}; choose one of {', '.join(DETECTORS + tuple(HUB_DETECTORS))}")


@lru_cache(maxsize=len(HUB_DETECTORS))
def _hub_detector(kind: str):
    """A Hub detector, loaded once per session (their weights by revision, from the cache offline)."""
    return annotators.load_detector(kind)


def detect(video, kind: str = "canny", **options) -> list:
    """Control maps of every frame of ``video`` with a controlnet-aux detector, as PIL images of
    the frames' size (what the ControlNet pipelines take). ``canny``: ``low_threshold`` /
    ``high_threshold`` (100 / 200); ``lineart``: ``guassian_sigma`` (2.0, controlnet-aux's
    spelling); ``shuffle``: a seeded ``f`` shuffle. Small frames are detected at 64 pixels."""
    frames = as_pil_frames(video)
    detector = _detector(kind)
    size = frames[0].size
    res = max(DETECT_RESOLUTION, (max(size) + 63) // 64 * 64)
    out = []
    for i, frame in enumerate(frames):
        if kind == "canny":
            m = detector(frame, low_threshold=options.get("low_threshold", 100),
                         high_threshold=options.get("high_threshold", 200), detect_resolution=res, image_resolution=res)
        elif kind == "lineart":
            m = detector(frame, guassian_sigma=options.get("guassian_sigma", 2.0), detect_resolution=res)
        elif kind == "shuffle":
            np.random.seed(options.get("seed", 0) + i)  # the detector draws its flow field from numpy's global RNG
            m = detector(frame, detect_resolution=res, image_resolution=res)
        else:
            m = detector(frame)
        m = m if isinstance(m, Image.Image) else Image.fromarray(np.asarray(m))
        out.append(m.convert("RGB").resize(size, Image.BILINEAR))
    return out


def conditioning_frames(maps, frames: int | None = None) -> list:
    """Whatever control the user has -> PIL images for the pipeline (uint8 arrays, floats in
    [0, 1], PIL). One image with ``frames`` given repeats (one still control map for every frame)."""
    images = as_pil_frames(maps)
    if frames is not None and len(images) == 1:
        images = images * frames
    if frames is not None and len(images) != frames:
        raise UserError(f"{len(images)} conditioning frames for a {frames}-frame video: give one map per frame")
    return images


def as_maps_tensor(maps) -> torch.Tensor:
    """PIL control maps -> uint8 tensor (F, 3, H, W), the layout training stores."""
    return torch.from_numpy(np.stack([np.asarray(m) for m in maps])).permute(0, 3, 1, 2).contiguous()


def _edges(video, threshold: int = 64) -> np.ndarray:
    """Canny edges (bool, (F, H, W)) of a video, the same detector as the control."""
    return np.stack([np.asarray(m)[..., 0] > threshold for m in detect(video, "canny")])


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, axis=-2), dx, axis=-1)
    return out


def edge_f1(video, control, tolerance: int = 1, threshold: int = 64) -> float:
    """F1 of the generated video's Canny edges against the control edges, an edge counting as
    matched within ``tolerance`` pixels: precision = generated edges near a control edge,
    recall = control edges near a generated edge, F1 = 2 P R / (P + R) (0 when either is empty)."""
    gen = _edges(video, threshold)
    ref = np.stack([np.asarray(m)[..., 0] > threshold for m in conditioning_frames(control)])
    if gen.shape != ref.shape:
        raise UserError(f"the video has {gen.shape} edge maps but the control {ref.shape}: give one map per frame")
    if not gen.any() or not ref.any():
        return 0.0
    precision = (gen & _dilate(ref, tolerance)).sum() / gen.sum()
    recall = (ref & _dilate(gen, tolerance)).sum() / ref.sum()
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
