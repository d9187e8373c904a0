"""The measuring stick of the toy world: prompt faithfulness, a Frechet distance, and cost.

Paper-shaped, never paper numbers. The paper reports CLIPSIM (does the video match the prompt?),
FVD (do the videos look like real ones?) and cost; in Moving Digits the same questions read:

* **faithfulness** (the CLIPSIM analogue): does the video show the asked digit (a small CNN,
  :class:`DigitClassifier`, reads each frame; logits are averaged over frames) moving the asked
  way (the centroid of the foreground, :func:`centroid_path`, fitted by a line)?
* **Frechet distance** (the FVD analogue): fit a Gaussian to the features of generated videos and
  one to the features of held-out real videos (a small video CNN, :class:`VideoEncoder`, trained
  to tell digit and direction, gives a 64-d feature) and measure how far apart they are::

      FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))

  Real-vs-real is not 0 with finitely many videos: :func:`real_floor` is the floor to read a
  generated set's distance against (compare sets of the same size);
* still images (stage 1) get the image analogues of the same two questions: the **digit score**
  (:func:`digit_score`, the mean probability the classifier gives the asked digit; CLIP score's
  analogue, finer than the read-or-not fraction once that saturates) and an **image Frechet
  distance** (:func:`image_features`: the classifier's pooled feature, as FID uses Inception's),
  with :func:`image_floor` as its real-vs-real floor;
* **cost** (UNet evaluations, counted FLOPs, wall time) is counted where the models run
  (:mod:`animatelcm_helpers.evaluation`, :func:`animatelcm_helpers.utils.count_flops`).

:func:`animatelcm_helpers.evaluation.evaluate` samples a prompt set with a pipeline and measures it
with these functions as one table row; ``scripts/evaluate.py`` is its command line. The metric nets are trained by
:func:`train_metric_nets` (the toy zoo's build calls it) and load from ``<zoo>/metrics``.

Videos are uint8 arrays (N, F, H, W, 3) (or a list of (F, H, W, 3) arrays, or floats in [0, 1]
as diffusers' ``output_type="np"`` gives), 32 x 32 like Moving Digits.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from scipy import linalg

from .. import training
from ..config import UserError
from ..utils import load_safetensors
from . import data, zoo
from .data import DIRECTIONS, STYLES, MovingDigits

SIZE = 32  # the canvas the metric nets read
MIN_SPEED = 0.5  # px a frame: slower than this is "not moving" (real videos move 2 px a frame)
FORMAT = 1  # version of metric_nets.json
CLASSIFIER_FILE = "digit_classifier.safetensors"
ENCODER_FILE = "video_encoder.safetensors"
INFO_FILE = "metric_nets.json"
DEFAULT_STEPS = {"digit_classifier": 1000, "video_encoder": 400}
REFERENCE_SIZE = 720  # real test videos that generated sets are compared against (half the test split)
IMAGE_REFERENCE_SIZE = 180  # real test stills (plain) generated images are compared against (half of them)


# ------------------------------------------------------------------------------------------
# Videos in, checked
# ------------------------------------------------------------------------------------------


def as_videos(videos, what: str = "videos") -> np.ndarray:
    """Videos as one uint8 array (N, F, H, W, 3); accepts a list of (F, H, W, 3) videos, objects
    with ``.frames`` (``pipelines.Generation``), and floats in [0, 1]."""
    if isinstance(videos, np.ndarray):
        arr = videos
    else:
        items = list(videos)
        if not items:
            raise UserError(f"no {what}: give at least one video (N, F, H, W, 3)")
        items = [np.asarray(getattr(v, "frames", v)) for v in items]
        shapes = {v.shape for v in items}
        if len(shapes) > 1:
            raise UserError(f"the {what} have different shapes {sorted(shapes)}; give videos of one shape")
        arr = np.stack(items)
    if arr.ndim != 5 or arr.shape[-1] != 3:
        raise UserError(
            f"{what} must have the shape (videos, frames, height, width, 3), got {arr.shape}; "
            "for one video use video[None]"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UserError(f"no {what}: the array {arr.shape} is empty")
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if arr.min() < 0.0 or arr.max() > 1.0:
            raise UserError(
                f"float {what} must lie in [0, 1] (got {arr.min():.3g}..{arr.max():.3g}); "
                "for [-1, 1] pixel values use toy.data.to_uint8"
            )
        return np.round(arr * 255.0).astype(np.uint8)
    raise UserError(f"{what} must be uint8 (0..255) or floats in [0, 1], got {arr.dtype}")


def _for_nets(videos: np.ndarray) -> torch.Tensor:
    """uint8 (N, F, H, W, 3) -> float (N, F, 3, H, W) in [-1, 1], as the nets were trained."""
    if videos.shape[2:4] != (SIZE, SIZE):
        raise UserError(
            f"the metric nets read {SIZE}x{SIZE} Moving Digits videos, got {videos.shape[2]}x{videos.shape[3]}"
        )
    return torch.from_numpy(videos).permute(0, 1, 4, 2, 3).float().div(127.5).sub(1.0)


# ------------------------------------------------------------------------------------------
# 1. Where is the digit? The centroid path and the direction
# ------------------------------------------------------------------------------------------


def _border(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((height, width), bool)
    mask[0], mask[-1], mask[:, 0], mask[:, -1] = True, True, True, True
    return np.nonzero(mask)


def background(video) -> np.ndarray:
    """The background of each frame of a uint8 video (F, H, W, 3), as floats in [0, 1]: a colour
    plane ``colour(x, y) = p + q x + r y`` per channel, fitted by least squares to the frame's
    border pixels, three times, each fit leaving out the pixels far from the last one (a digit
    touching the border). Exact for plain and gradient canvases; a fair average for textures."""
    v = np.asarray(video, np.float64) / 255.0
    frames, height, width, _ = v.shape
    yy, xx = _border(height, width)

    def design(y, x):  # the plane's terms 1, x, y (centred) at pixels (y, x)
        return np.stack([np.ones_like(x, float), x / (width - 1) - 0.5, y / (height - 1) - 0.5], -1)

    a = design(yy, xx)  # (P, 3)
    b = v[:, yy, xx]  # (F, P, 3)
    resid = np.linalg.norm(b - np.median(b, axis=1, keepdims=True), axis=-1)  # (F, P)
    for _ in range(3):
        keep = (resid <= 3.0 * np.median(resid, axis=1, keepdims=True) + 0.05).astype(np.float64)
        ata = np.einsum("fp,pi,pj->fij", keep, a, a) + 1e-9 * np.eye(3)
        atb = np.einsum("fp,pi,fpc->fic", keep, a, b)
        coef = np.linalg.solve(ata, atb)  # (F, 3 terms, 3 channels)
        resid = np.linalg.norm(np.einsum("pi,fic->fpc", a, coef) - b, axis=-1)
    ys, xs = np.mgrid[0:height, 0:width]
    return np.einsum("hwi,fic->fhwc", design(ys, xs), coef)


def foreground(video) -> np.ndarray:
    """How much each pixel is digit, (F, H, W) >= 0: its colour distance from the background,
    less a noise level (twice the median distance on the border, plus 0.05)."""
    v = np.asarray(video, np.float64) / 255.0
    dist = np.linalg.norm(v - background(video), axis=-1)
    yy, xx = _border(*dist.shape[1:])
    noise = 2.0 * np.median(dist[:, yy, xx], axis=1) + 0.05
    return np.clip(dist - noise[:, None, None], 0.0, None)


def centroid_path(video) -> np.ndarray:
    """The digit's centre of mass in every frame, (F, 2) as (x, y) in pixels (rows grow downwards)::

        x = sum(w * x) / sum(w),  y = sum(w * y) / sum(w),   w = foreground(video)

    NaN for a frame with no foreground. ``video``: uint8 (F, H, W, 3); a trail moves with its digit."""
    video = as_videos(np.asarray(getattr(video, "frames", video))[None], "video")[0]
    w = foreground(video)
    mass = w.sum(axis=(1, 2))
    ys, xs = np.mgrid[0 : w.shape[1], 0 : w.shape[2]]
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (w * xs).sum(axis=(1, 2)) / mass
        y = (w * ys).sum(axis=(1, 2)) / mass
    return np.stack([x, y], axis=1)


def velocity(video) -> tuple[float, float] | None:
    """(vx, vy) in px a frame: the slopes of straight lines fitted to the centroid path; None
    when fewer than two frames show a digit."""
    p = centroid_path(video)
    ok = np.isfinite(p).all(axis=1)
    if ok.sum() < 2:
        return None
    t = np.arange(len(p))[ok]
    vx, vy = np.polyfit(t, p[ok], 1)[0]
    return float(vx), float(vy)


def read_direction(videos, min_speed: float = MIN_SPEED) -> list[str | None]:
    """The way each video's digit moves: the dominant axis of its velocity and its sign ("up" is
    y decreasing), or None when it moves less than ``min_speed`` px a frame (or shows nothing)."""
    out = []
    for video in as_videos(videos):
        v = velocity(video)
        if v is None or max(abs(v[0]), abs(v[1])) < min_speed:
            out.append(None)
        elif abs(v[0]) >= abs(v[1]):
            out.append("right" if v[0] > 0 else "left")
        else:
            out.append("down" if v[1] > 0 else "up")
    return out


# ------------------------------------------------------------------------------------------
# 2. The metric nets
# ------------------------------------------------------------------------------------------


def _conv(cin: int, cout: int) -> list[nn.Module]:
    """3x3 convolution, batch norm, ReLU (batch norm makes these nets learn in a few hundred steps)."""
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


def _conv3d(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU()]


class DigitClassifier(nn.Module):
    """Reads the digit in one 32x32 frame ((N, 3, H, W) in [-1, 1]) -> (N, 10) logits.

    Four 3x3 conv layers with batch norm and ReLU (width, 2, 4, 4 x width channels; 2x
    max-pooling after the first three), global max pooling (the digit may be anywhere), a linear
    head. Batch norm: call ``.eval()`` before reading (the loaders do)."""

    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()
        self.config = {"width": width, "classes": classes}
        c = width
        self.body = nn.Sequential(
            *_conv(3, c), nn.MaxPool2d(2), *_conv(c, 2 * c), nn.MaxPool2d(2),
            *_conv(2 * c, 4 * c), nn.MaxPool2d(2), *_conv(4 * c, 4 * c),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * c, classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(frames))


class VideoEncoder(nn.Module):
    """A small (2+1)D video CNN: (N, F, 3, H, W) in [-1, 1] -> a ``features``-d feature per video.

    Per frame, two 3x3 conv layers (batch norm, ReLU, 2x max-pooling); then, over (frames, height,
    width), two 3x3x3 conv layers with 2x pooling between and global max pooling; then a linear
    layer with ReLU: the feature. Two linear heads on it, trained to read the digit and the
    direction, make the feature care about both; the Frechet distance uses the feature."""

    def __init__(self, width: int = 8, features: int = 64):
        super().__init__()
        self.config = {"width": width, "features": features}
        c = width
        self.frames = nn.Sequential(*_conv(3, c), nn.MaxPool2d(2), *_conv(c, 2 * c), nn.MaxPool2d(2))
        self.motion = nn.Sequential(
            *_conv3d(2 * c, 4 * c), nn.MaxPool3d(2), *_conv3d(4 * c, 4 * c),
            nn.AdaptiveMaxPool3d(1), nn.Flatten(),
        )
        self.feature = nn.Sequential(nn.Linear(4 * c, features), nn.ReLU())
        self.digit = nn.Linear(features, 10)
        self.direction = nn.Linear(features, len(DIRECTIONS))

    def features(self, videos: torch.Tensor) -> torch.Tensor:
        n, f = videos.shape[:2]
        h = self.frames(videos.flatten(0, 1))  # per frame
        h = h.unflatten(0, (n, f)).transpose(1, 2)  # (N, C, F, H, W)
        return self.feature(self.motion(h))

    def forward(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(videos)
        return self.digit(feats), self.direction(feats)


@dataclass
class MetricNets:
    """The two trained nets (``classifier``, ``encoder``) plus what ``metric_nets.json`` says
    about them (``info``: architectures, training, test accuracies)."""

    classifier: DigitClassifier
    encoder: VideoEncoder
    info: dict = field(default_factory=dict)
    _reference: dict = field(default_factory=dict, repr=False)  # cached real-video features


def _fresh_set(split: str, kind: str, styles, seed: int, step: int) -> MovingDigits:
    # A data set seeded by the step: every step draws fresh positions of the same digits.
    return MovingDigits(split, kind=kind, styles=styles, seed=(seed * 1_000_003 + step) % 2**31)


def _batch(dataset: MovingDigits, n: int, g: torch.Generator):
    """``n`` random items: pixels, digit labels, direction labels (-1 for still images)."""
    items = [dataset[i] for i in torch.randint(0, len(dataset), (n,), generator=g).tolist()]
    pixels = torch.from_numpy(np.stack([it["pixel_values"] for it in items]))
    digits = torch.tensor([it["digit"] for it in items])
    directions = torch.tensor([DIRECTIONS.index(it["direction"]) if it["direction"] else -1 for it in items])
    return pixels, digits, directions


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def train_digit_classifier(folder, steps: int, batch: int = 64, lr: float = 2e-3, width: int = 16,
                           seed: int = 0, progress: bool = True):
    """Train a :class:`DigitClassifier` on the TRAIN split: half still images of every style, half
    single frames of moving (trailed) digits of every style, each with Gaussian pixel noise of a
    random strength (sigma up to 0.2) so that a generated frame's grain does not fool it.
    Cross-entropy; returns (net, training.FitResult)."""
    torch.manual_seed(seed)
    net = DigitClassifier(width)
    styles = tuple(STYLES)

    def loss_fn(step, g):
        still = _batch(_fresh_set("train", "image", styles, seed, step), batch // 2, g)
        moving = _batch(_fresh_set("train", "frame", styles, seed, step), batch - batch // 2, g)
        x, y = torch.cat([still[0], moving[0]]), torch.cat([still[1], moving[1]])
        x = x + 0.2 * torch.rand(len(x), 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
        return F.cross_entropy(net(x.to(_device(net))), y.to(_device(net)))

    fit = training.fit("metric-digit-classifier", {"digit_classifier": net}, loss_fn, steps, lr, folder,
                       seed=seed, progress=progress)
    return net.eval(), fit


def train_video_encoder(folder, steps: int, batch: int = 32, lr: float = 2e-3, width: int = 8,
                        features: int = 64, seed: int = 0, progress: bool = True):
    """Train a :class:`VideoEncoder` on TRAIN-split videos (plain style, with trails) to read the
    digit and the direction: loss = CE(digit) + CE(direction). Returns (net, training.FitResult)."""
    torch.manual_seed(seed)
    net = VideoEncoder(width, features)

    def loss_fn(step, g):
        x, digits, directions = _batch(_fresh_set("train", "video", ("plain",), seed, step), batch, g)
        digit_logits, direction_logits = net(x.to(_device(net)))
        return F.cross_entropy(digit_logits, digits.to(_device(net))) + F.cross_entropy(
            direction_logits, directions.to(_device(net))
        )

    fit = training.fit("metric-video-encoder", {"video_encoder": net}, loss_fn, steps, lr, folder,
                       seed=seed, progress=progress)
    return net.eval(), fit


def _test_set(kind: str, styles, limit: int | None):
    """A TEST-split data set (seed 0) and which of its items to use: all, or ``limit`` spread evenly."""
    ds = MovingDigits("test", kind=kind, styles=styles, seed=0)
    idx = np.arange(len(ds)) if limit is None or limit >= len(ds) else np.linspace(0, len(ds) - 1, limit).astype(int)
    return ds, idx


@torch.no_grad()
def measure_metric_nets(nets: MetricNets, limit: int | None = None) -> dict:
    """Test-split accuracies: the classifier on still images (every style), single frames (every
    style) and whole plain videos (:func:`read_digits`); the encoder's two heads on plain videos;
    :func:`read_direction` on plain videos. ``limit`` caps the items of each test set."""
    out = {}
    for name, kind in (("images_all_styles", "image"), ("frames_all_styles", "frame")):
        ds, idx = _test_set(kind, tuple(STYLES), limit)
        hits = []
        for chunk in np.array_split(idx, max(1, len(idx) // 256)):
            x = torch.from_numpy(np.stack([ds[i]["pixel_values"] for i in chunk]))
            pred = nets.classifier(x.to(_device(nets.classifier))).argmax(1).cpu().numpy()
            hits.extend(pred == np.array([ds[i]["digit"] for i in chunk]))
        out[f"classifier_{name}"] = float(np.mean(hits))
    ds, idx = _test_set("video", ("plain",), limit)
    items = [ds[i] for i in idx]
    videos = data.to_uint8(np.stack([it["pixel_values"] for it in items]))
    digits = np.array([it["digit"] for it in items])
    directions = np.array([DIRECTIONS.index(it["direction"]) for it in items])
    out["classifier_videos_plain"] = float(np.mean(read_digits(videos, nets) == digits))
    digit_hits, direction_hits = [], []
    for chunk in np.array_split(np.arange(len(videos)), max(1, len(videos) // 128)):
        d, m = nets.encoder(_for_nets(videos[chunk]).to(_device(nets.encoder)))
        digit_hits.extend(d.argmax(1).cpu().numpy() == digits[chunk])
        direction_hits.extend(m.argmax(1).cpu().numpy() == directions[chunk])
    out["encoder_digit_videos_plain"] = float(np.mean(digit_hits))
    out["encoder_direction_videos_plain"] = float(np.mean(direction_hits))
    out["read_direction_videos_plain"] = float(np.mean(
        [r == it["direction"] for r, it in zip(read_direction(videos), items)]
    ))
    out["test_items_per_set"] = len(idx)
    return out


def train_metric_nets(folder, steps: int | dict | None = None, seed: int = 0, progress: bool = True,
                      batch: dict | None = None, test_limit: int | None = None) -> MetricNets:
    """Train both metric nets (checkpoints in ``folder/train/<net>``, resumable), measure them on
    the TEST split and save them to ``folder`` (:func:`save_metric_nets`); returns them.

    ``steps``: one number for both nets or ``{"digit_classifier": n, "video_encoder": m}``
    (default :data:`DEFAULT_STEPS`: 1.5 minutes each on one busy CPU core). ``batch``: batch sizes
    by net (default 64 frames and 32 videos). ``test_limit`` caps the test items measured."""
    folder = Path(folder)
    steps = dict(DEFAULT_STEPS) if steps is None else steps
    steps = {k: steps for k in DEFAULT_STEPS} if isinstance(steps, int) else {**DEFAULT_STEPS, **steps}
    batch = {"digit_classifier": 64, "video_encoder": 32, **(batch or {})}
    classifier, fit_c = train_digit_classifier(folder / "train" / "digit_classifier", steps["digit_classifier"],
                                               batch=batch["digit_classifier"], seed=seed, progress=progress)
    encoder, fit_e = train_video_encoder(folder / "train" / "video_encoder", steps["video_encoder"],
                                         batch=batch["video_encoder"], seed=seed, progress=progress)
    nets = MetricNets(classifier.cpu(), encoder.cpu())
    t0 = time.perf_counter()
    test = measure_metric_nets(nets, limit=test_limit)
    nets.info = {
        "format": FORMAT,
        "digit_classifier": {
            "class": "DigitClassifier", "config": classifier.config, "steps": steps["digit_classifier"],
            "batch": batch["digit_classifier"], "seconds": round(fit_c.seconds, 1), "resumed_from": fit_c.resumed_from,
            "final_loss": float(np.mean(fit_c.losses[-20:])),
        },
        "video_encoder": {
            "class": "VideoEncoder", "config": encoder.config, "steps": steps["video_encoder"],
            "batch": batch["video_encoder"], "seconds": round(fit_e.seconds, 1), "resumed_from": fit_e.resumed_from,
            "final_loss": float(np.mean(fit_e.losses[-20:])),
        },
        "seed": seed,
        "data": "Moving Digits TRAIN split; test accuracies on the TEST split",
        "test": test,
        "test_seconds": round(time.perf_counter() - t0, 1),
    }
    save_metric_nets(folder, nets)
    return nets


def save_metric_nets(folder, nets: MetricNets) -> Path:
    """Write ``digit_classifier.safetensors``, ``video_encoder.safetensors`` and
    ``metric_nets.json`` (architectures, training, test accuracies) to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for net, name in ((nets.classifier, CLASSIFIER_FILE), (nets.encoder, ENCODER_FILE)):
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, folder / name)
    info = json.loads(json.dumps(nets.info))  # a deep copy
    info.setdefault("format", FORMAT)
    for key, net in (("digit_classifier", nets.classifier), ("video_encoder", nets.encoder)):
        info.setdefault(key, {}).update({"class": type(net).__name__, "config": net.config})
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2))
    return folder


_LOADED: dict[tuple[str, float], MetricNets] = {}


def load_metric_nets(folder=None) -> MetricNets:
    """The trained metric nets from ``folder`` (default: ``<toy zoo>/metrics``); loaded once."""
    if folder is None:
        folder = zoo.root() / "metrics"
        hint = (
            f"the toy zoo in use ({folder.parent}) has no trained metric nets: build the zoo "
            "(python -m animatelcm_helpers.toy.build) or train them with "
            "metrics.train_metric_nets(folder) and pass that folder"
        )
    else:
        folder = Path(folder)
        hint = f"{folder} holds no metric nets (no {INFO_FILE}); train them with metrics.train_metric_nets(folder)"
    info_file = folder / INFO_FILE
    if not info_file.exists():
        raise UserError(hint)
    key = (str(folder.resolve()), info_file.stat().st_mtime)
    if key not in _LOADED:
        info = json.loads(info_file.read_text())
        classifier = DigitClassifier(**info["digit_classifier"]["config"])
        encoder = VideoEncoder(**info["video_encoder"]["config"])
        try:
            classifier.load_state_dict(load_safetensors(folder / CLASSIFIER_FILE, "metric net"))
            encoder.load_state_dict(load_safetensors(folder / ENCODER_FILE, "metric net"))
        except RuntimeError as err:
            raise UserError(f"could not load the metric nets from {folder}: {err}; train them again") from None
        _LOADED[key] = MetricNets(classifier.eval(), encoder.eval(), info)
    return _LOADED[key]


def metric_nets(nets: MetricNets | str | Path | None = None) -> MetricNets:
    """``nets`` if they are loaded metric nets, else the ones in folder ``nets`` (default: the zoo's)."""
    return nets if isinstance(nets, MetricNets) else load_metric_nets(nets)


# ------------------------------------------------------------------------------------------
# 3. Faithfulness: the asked digit, moving the asked way (the CLIPSIM analogue)
# ------------------------------------------------------------------------------------------


@torch.no_grad()
def read_digits(videos, nets: MetricNets | None = None, batch: int = 256) -> np.ndarray:
    """The digit each video shows: the classifier's logits averaged over the frames, argmax."""
    nets, videos = metric_nets(nets), as_videos(videos)
    return _frame_logits(videos, nets, batch).argmax(dim=1).numpy()


@torch.no_grad()
def _frame_logits(videos, nets: MetricNets, batch: int = 256) -> torch.Tensor:
    """The classifier's logits averaged over each video's frames: (N, 10)."""
    net, out = nets.classifier, []
    for start in range(0, len(videos), batch):
        x = _for_nets(videos[start : start + batch]).to(_device(net))
        out.append(net(x.flatten(0, 1)).unflatten(0, x.shape[:2]).mean(dim=1).cpu())
    return torch.cat(out)


def _asked(videos: np.ndarray, prompts) -> list:
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if len(prompts) != len(videos):
        raise UserError(f"{len(videos)} videos but {len(prompts)} prompts: give one prompt per video")
    return [data.parse_caption(p) for p in prompts]


def digit_score(videos, prompts, nets: MetricNets | None = None) -> float:
    """The mean probability the classifier gives the ASKED digit (softmax of the frame-averaged
    logits), over all videos or images: 1/N sum_i p(digit_i | video_i). The CLIP-score analogue;
    unlike the read-or-not :func:`faithfulness` it still tells samplers apart once every digit
    is read right (a clean 7 scores higher than a smudged one the classifier barely reads)."""
    nets, videos = metric_nets(nets), as_videos(videos)
    asked = torch.tensor([a[0] for a in _asked(videos, prompts)])
    probs = _frame_logits(videos, nets).softmax(dim=1)
    return float(probs[torch.arange(len(asked)), asked].mean())


def faithfulness(videos, prompts, nets: MetricNets | None = None) -> dict:
    """How often the videos show what their prompts ask: ``digit`` (fraction whose digit is the
    prompt's), ``direction`` (fraction moving the prompt's way; a prompt without one asks for no
    motion) and ``both``. ``prompts[i]`` is the prompt of ``videos[i]``."""
    videos = as_videos(videos)
    asked = _asked(videos, prompts)
    digit_ok = read_digits(videos, nets) == np.array([a[0] for a in asked])
    direction_ok = np.array([r == a[1] for r, a in zip(read_direction(videos), asked)])
    return {
        "digit": float(digit_ok.mean()),
        "direction": float(direction_ok.mean()),
        "both": float((digit_ok & direction_ok).mean()),
    }


# ------------------------------------------------------------------------------------------
# 4. Frechet distance (the FVD analogue)
# ------------------------------------------------------------------------------------------


@torch.no_grad()
def video_features(videos, nets: MetricNets | None = None, batch: int = 128) -> np.ndarray:
    """The :class:`VideoEncoder` feature of each video, (N, features) float64."""
    nets, videos = metric_nets(nets), as_videos(videos)
    net = nets.encoder
    out = [net.features(_for_nets(videos[s : s + batch]).to(_device(net))).cpu().double().numpy()
           for s in range(0, len(videos), batch)]
    return np.concatenate(out)


def frechet_distance(feats_a, feats_b, eps: float = 1e-6) -> float:
    """The Frechet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D)::

        FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))

    (mu: mean, S: covariance). The matrix square root is scipy's ``sqrtm``; if it is not finite
    (a singular product, e.g. fewer videos than feature dimensions), ``eps`` is added to both
    diagonals, and a tiny imaginary part from rounding is dropped. Never below 0."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    for name, f in (("feats_a", a), ("feats_b", b)):
        if f.ndim != 2:
            raise UserError(f"{name} must be a (videos, features) array, got shape {f.shape}")
        if len(f) < 2:
            raise UserError(f"{name} has {len(f)} row(s): a covariance needs at least 2 videos")
        if not np.isfinite(f).all():
            raise UserError(f"{name} holds NaN or infinite values")
    if a.shape[1] != b.shape[1]:
        raise UserError(f"the feature sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # "singular matrix": expected with few videos, and handled
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(s_a)) * eps
            covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    fd = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean)
    return float(max(fd, 0.0))


def real_videos(split: str = "test", n: int = REFERENCE_SIZE, seed: int = 0, skip: int = 0) -> np.ndarray:
    """``n`` real Moving Digits videos (plain, with trails) as uint8 (n, F, H, W, 3): positions
    ``skip .. skip + n`` of the split's videos shuffled by ``seed``."""
    ds = MovingDigits(split, kind="video", seed=0)
    order = np.random.default_rng(seed).permutation(len(ds))
    if n < 1 or skip < 0 or skip + n > len(ds):
        raise UserError(f"the {split} split has {len(ds)} videos; cannot take {n} after skipping {skip}")
    return data.to_uint8(np.stack([ds[int(i)]["pixel_values"] for i in order[skip : skip + n]]))


def reference_features(nets: MetricNets | None = None) -> np.ndarray:
    """Features of the reference set generated videos are compared against: the first
    :data:`REFERENCE_SIZE` test videos in seed-0 order (computed once per set of nets)."""
    nets = metric_nets(nets)
    if "test" not in nets._reference:
        nets._reference["test"] = video_features(real_videos("test", REFERENCE_SIZE, seed=0), nets)
    return nets._reference["test"]


def real_floor(n: int = 360, seed: int = 0, nets: MetricNets | None = None) -> float:
    """The Frechet distance of ``n`` REAL test videos from the reference set (the two sets are
    disjoint: these come from the other half of the test split, drawn with ``seed``). A generated
    set of ``n`` videos cannot be expected to do better: read its distance against this floor."""
    nets = metric_nets(nets)
    total = len(MovingDigits("test"))
    if not 2 <= n <= total - REFERENCE_SIZE:
        raise UserError(
            f"n must be between 2 and {total - REFERENCE_SIZE} (the test videos outside the reference set), got {n}"
        )
    ds = MovingDigits("test", kind="video", seed=0)
    others = np.random.default_rng(0).permutation(total)[REFERENCE_SIZE:]
    pick = np.random.default_rng(seed).choice(others, size=n, replace=False)
    videos = data.to_uint8(np.stack([ds[int(i)]["pixel_values"] for i in pick]))
    return frechet_distance(video_features(videos, nets), reference_features(nets))


@torch.no_grad()
def image_features(images, nets: MetricNets | None = None, batch: int = 256) -> np.ndarray:
    """The image analogue of :func:`video_features`: the digit classifier's pooled feature (the
    input of its last linear layer, as FID uses Inception's pool layer) of each image, averaged
    over frames if a "video" has several: (N, features) float64. ``images`` as for videos
    (uint8 (N, H, W, 3) is N one-frame videos)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = images[:, None]
    nets, videos = metric_nets(nets), as_videos(images, "images")
    net, out = nets.classifier, []
    for start in range(0, len(videos), batch):
        x = _for_nets(videos[start : start + batch]).to(_device(net))
        out.append(net.body(x.flatten(0, 1)).unflatten(0, x.shape[:2]).mean(dim=1).cpu().double().numpy())
    return np.concatenate(out)


def real_images(n: int = IMAGE_REFERENCE_SIZE, skip: int = 0) -> np.ndarray:
    """``n`` real still test images (plain, ``MovingDigits("test", kind="image")``) as uint8
    (n, H, W, 3): positions ``skip .. skip + n`` of the split shuffled with seed 0."""
    ds = MovingDigits("test", kind="image", seed=0)
    if n < 1 or skip < 0 or skip + n > len(ds):
        raise UserError(f"the test split has {len(ds)} still images; cannot take {n} after skipping {skip}")
    order = np.random.default_rng(0).permutation(len(ds))
    return data.to_uint8(np.stack([ds[int(i)]["pixel_values"] for i in order[skip : skip + n]]))


def image_reference_features(nets: MetricNets | None = None) -> np.ndarray:
    """Features of the real stills generated images are compared against: the first
    :data:`IMAGE_REFERENCE_SIZE` of :func:`real_images` (computed once per set of nets)."""
    nets = metric_nets(nets)
    if "images" not in nets._reference:
        nets._reference["images"] = image_features(real_images(IMAGE_REFERENCE_SIZE), nets)
    return nets._reference["images"]


def image_floor(n: int = IMAGE_REFERENCE_SIZE, nets: MetricNets | None = None) -> float:
    """The image Frechet distance of ``n`` REAL test stills (the other half of the split, disjoint
    from the reference) from the reference: the floor for a generated set of images."""
    total = len(MovingDigits("test", kind="image"))
    if not 2 <= n <= total - IMAGE_REFERENCE_SIZE:
        raise UserError(f"n must be between 2 and {total - IMAGE_REFERENCE_SIZE} (the test stills outside the reference), got {n}")
    return frechet_distance(image_features(real_images(n, skip=IMAGE_REFERENCE_SIZE), nets), image_reference_features(nets))


# ------------------------------------------------------------------------------------------
# 5. One rule for wins and ties: 95 % bootstrap intervals
# ------------------------------------------------------------------------------------------
#
# Every comparison the course calls a win states its sample size and a 95 % interval; two
# results whose intervals overlap are a TIE. The interval is the percentile bootstrap over the
# measured items (videos, images or seeds): draw n items with replacement B times, recompute the
# statistic each time, take the 2.5 % and 97.5 % quantiles. The draws are seeded: the same data
# give the same interval.

INTERVAL_LEVEL = 0.95
BOOTSTRAP_DRAWS = 2000


@dataclass(frozen=True)
class Interval:
    """A measured figure with its 95 % bootstrap interval: ``value`` on the whole sample of ``n``,
    ``low`` .. ``high`` the interval."""

    value: float
    low: float
    high: float
    n: int

    def overlaps(self, other: "Interval") -> bool:
        return self.low <= other.high and other.low <= self.high

    def format(self, digits: int = 2) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def __str__(self) -> str:
        return f"{self.format()} (n = {self.n})"


def bootstrap(values, statistic=np.mean, draws: int = BOOTSTRAP_DRAWS, level: float = INTERVAL_LEVEL,
              seed: int = 0) -> Interval:
    """The percentile bootstrap interval of ``statistic`` over ``values`` (one entry per item:
    a number, or a row of features)::

        for b in 1..B:  idx_b ~ U{0..n-1}^n (with replacement),  s_b = statistic(values[idx_b])
        interval = [quantile(s, (1 - level) / 2), quantile(s, (1 + level) / 2)]
    """
    values = np.asarray(values)
    n = len(values)
    if n < 2:
        raise UserError(f"an interval needs at least 2 measured items, got {n}")
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(values[rng.integers(0, n, n)]) for _ in range(draws)], dtype=np.float64)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(statistic(values)), float(lo), float(hi), n)


def proportion_interval(p: float, n: int, draws: int = BOOTSTRAP_DRAWS, level: float = INTERVAL_LEVEL,
                        seed: int = 0) -> Interval:
    """:func:`bootstrap` of a fraction (digit or direction read right) from the fraction ``p`` and
    the number of items ``n`` alone: resampling n outcomes of which k = p n are 1 draws the count
    from Binomial(n, k / n), so the stored tables give the same interval as their raw outcomes."""
    k = int(round(p * n))
    if n < 2 or not 0 <= k <= n:
        raise UserError(f"need a fraction in [0, 1] of at least 2 items, got p={p}, n={n}")
    return bootstrap(np.r_[np.ones(k), np.zeros(n - k)], np.mean, draws, level, seed)


def frechet_interval(feats, reference, draws: int = 200, level: float = INTERVAL_LEVEL, seed: int = 0) -> Interval:
    """The Frechet distance's 95 % interval over the generated videos (their features resampled,
    the real reference set fixed): the :func:`bootstrap`'s spread, centred on the measured distance::

        s_b = FD(feats[idx_b], reference),   [q_lo, q_hi] = the percentile interval of the s_b
        interval = FD +- (q_hi - q_lo) / 2

    Why centred: a resample with replacement repeats items (about 37 % of the n are missing from
    each), which shrinks the features' covariance and moves their mean at random, and both RAISE a
    Frechet distance, so the s_b sit above FD by a bias about as large as their spread (at 80 videos
    the percentile interval can lie wholly above the distance it is for). The spread still measures
    how much the distance varies from sample to sample; centring it removes the bias."""
    reference = np.asarray(reference, np.float64)
    feats = np.asarray(feats, np.float64)
    spread = bootstrap(feats, lambda f: frechet_distance(f, reference), draws, level, seed)
    half = (spread.high - spread.low) / 2
    return Interval(spread.value, spread.value - half, spread.value + half, spread.n)


def compare(a: Interval, b: Interval, higher_is_better: bool = True) -> str:
    """"win" when ``a``'s interval lies wholly on the better side of ``b``'s, "loss" on the worse
    side, "tie" when they overlap."""
    if a.overlaps(b):
        return "tie"
    return "win" if (a.value > b.value) == higher_is_better else "loss"


# ------------------------------------------------------------------------------------------
# 6. The prompt sets of the evaluation harness (animatelcm_helpers.evaluation)
# ------------------------------------------------------------------------------------------

PROMPTS = tuple(data.caption(d, direction) for d in range(10) for direction in DIRECTIONS)
IMAGE_PROMPTS = tuple(data.caption(d) for d in range(10))  # "a zero" .. "a nine"


# ------------------------------------------------------------------------------------------
# Style: is the asked visual style visible? (for the image-only style models)
# ------------------------------------------------------------------------------------------


def style_features(images) -> np.ndarray:
    """Seven numbers per image (uint8 (N, H, W, 3)): the background's mean colour, the
    foreground's mean colour (weighted by how far each pixel is from the background) and the
    texture energy (how far the border pixels stray from the fitted background plane)."""
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[-1] != 3:
        raise UserError(f"images are an array of shape (N, height, width, 3), got {imgs.shape}")
    video = imgs.astype(np.float64)  # each image as one frame of a "video"
    bg = background(video.astype(np.uint8))  # (N, H, W, 3) in [0, 1]
    px = video / 255.0
    weight = np.linalg.norm(px - bg, axis=-1)
    weight = weight / np.maximum(weight.sum((1, 2), keepdims=True), 1e-8)
    fg = np.einsum("nhw,nhwc->nc", weight, px)
    yy, xx = _border(*imgs.shape[1:3])
    texture = np.abs(px[:, yy, xx] - bg[:, yy, xx]).mean((1, 2))
    return np.concatenate([bg.mean((1, 2)), fg, texture[:, None]], axis=1)


@lru_cache(maxsize=1)
def _style_centroids(per_style: int = 120):
    names = list(STYLES)
    feats = []
    for s in names:
        ds = MovingDigits("test", kind="image", styles=(s,), seed=5)
        imgs = data.to_uint8(np.stack([ds[i]["pixel_values"] for i in range(0, len(ds), max(1, len(ds) // per_style))]))
        feats.append(style_features(imgs))
    allf = np.concatenate(feats)
    mu, sd = allf.mean(0), allf.std(0) + 1e-6
    return names, np.stack([((f - mu) / sd).mean(0) for f in feats]), mu, sd


def read_styles(images) -> list[str]:
    """The nearest style (standardised :func:`style_features`, nearest centroid of real
    held-out images of each style) for each image."""
    names, centroids, mu, sd = _style_centroids()
    z = (style_features(images) - mu) / sd
    return [names[i] for i in np.argmin(((z[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
