"""Fake ``lllyasviel/Annotators`` files: the real filenames, format, keys and shapes, seeded random values.

    paths = write_annotator_files(folder, seed=0)                 # all five files
    paths = write_annotator_files(folder, kinds=("hed",))         # only ControlNetHED.pth

The shapes come from controlnet-aux 0.0.10's own networks (built on the ``meta`` device, so
nothing is initialised), and the keys are what its loaders read:

=============================  =====================================================  ==================
file                           what it holds                                          pickle container
=============================  =====================================================  ==================
body_pose_model.pth            ``bodypose_model`` keys minus their first component    legacy (pre-1.6)
                               (``conv1_1.weight``, ``Mconv7_stage6_L2.bias``),
                               because ``open_pose/util.py::transfer`` maps module key
                               ``model0.conv1_1.weight`` to file key ``conv1_1.weight``
hand_pose_model.pth            the same for ``handpose_model``                        legacy
facenet.pth                    ``FaceNet().state_dict()`` keys, as is                 legacy
dpt_hybrid-midas-501f0c75.pt   ``DPTDepthModel(backbone="vitb_rn50_384")`` keys        zip, OrderedDict
                               (``pretrained.model.*``, ``scratch.*``), flat: no       with ``_metadata``
                               ``{"model", "optimizer"}`` nesting
ControlNetHED.pth              ``ControlNetHED_Apache2`` keys, **float16**             zip, OrderedDict
                                                                                      with ``_metadata``
=============================  =====================================================  ==================

How sure, and why. Key names: certain for all five; controlnet-aux's loaders fail on any other
name (``KeyError`` in ``transfer``, strict ``load_state_dict`` for the others), and they load
the real files. Nesting and dtypes: near-certain, from the real byte sizes (HUB_FILES.md,
``REAL_SIZES`` below). The float32 parameters come to 209,245,784 / 147,329,296 / 153,702,824 /
492,587,940 bytes against the real 209,267,595 / 147,341,049 / 153,718,792 / 492,757,791, so
these are plain state dicts (a ``{"model", "optimizer"}`` checkpoint, which MiDaS's loader
would also accept, would be about three times larger). HED's 14,716,168 parameters are 58.9 MB
in float32 but the file is 29,444,406 bytes: float16 (which is why ``HEDdetector`` calls
``.float()``). The container: a guess that fits best. Written as above (torch 2.14), the files
land within 0.004% of the real sizes (body +5.8 kB, hand +3.3 kB, face -0.9 kB, DPT +4.2 kB,
HED +1.0 kB); the other container is 3-20 times further off (zip OpenPose files +18 to +35 kB,
legacy DPT -58 kB, legacy HED -6.9 kB, DPT without ``_metadata`` -46 kB). The container
(legacy or zip, ``dict`` or ``OrderedDict``) does not change what ``torch.load`` returns.

Values: random, deterministic for a seed. Each file has its own ``torch.Generator`` (seeded by
``seed`` and the file name, so a file is the same whichever others are written with it) that
draws a pool of 8 M normals; each tensor is a window of the pool at a seeded offset, scaled:
weights of 2+ dimensions ``N(0, 1 / fan_in)``, 1-d ``weight``s (norm scales)
``1 + N(0, 0.1^2)``, the rest (biases, tokens) ``N(0, 0.02^2)``. The zip files are
byte-identical for a seed; the legacy files hold the same values but name their storages by
memory address (as the real ones do), so their bytes differ from run to run.
"""

from __future__ import annotations

import warnings
import zlib
from collections import OrderedDict
from pathlib import Path

import torch

# The real files' sizes in bytes (Git-LFS pointers; /work/shared/HUB_FILES.md).
REAL_SIZES = {
    "body_pose_model.pth": 209_267_595,
    "hand_pose_model.pth": 147_341_049,
    "facenet.pth": 153_718_792,
    "dpt_hybrid-midas-501f0c75.pt": 492_757_791,
    "ControlNetHED.pth": 29_444_406,
}
FILES = {
    "openpose": ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"),
    "depth": ("dpt_hybrid-midas-501f0c75.pt",),
    "hed": ("ControlNetHED.pth",),
}


def _modules():
    """filename -> (meta-built controlnet-aux network, strip the first key component, dtype, legacy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.hed import ControlNetHED_Apache2
        from controlnet_aux.midas.midas.dpt_depth import DPTDepthModel
        from controlnet_aux.open_pose.face import FaceNet
        from controlnet_aux.open_pose.model import bodypose_model, handpose_model

    return {
        "body_pose_model.pth": (bodypose_model, True, torch.float32, True),
        "hand_pose_model.pth": (handpose_model, True, torch.float32, True),
        "facenet.pth": (FaceNet, False, torch.float32, True),
        "dpt_hybrid-midas-501f0c75.pt": (
            lambda: DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True), False, torch.float32, False),
        "ControlNetHED.pth": (ControlNetHED_Apache2, False, torch.float16, False),
    }


POOL = 1 << 23  # seeded normal values each tensor takes a window of (no tensor here is larger)


def _random(name: str, shape, pool: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A window of ``pool`` at a seeded offset, scaled: copying is far cheaper than drawing
    1 GB of fresh normals (which takes 5-10 s on a small CPU), and a window is still N(0, 1)."""
    numel = torch.Size(shape).numel()
    if numel > pool.numel():
        raise ValueError(f"{name}: {numel} values, more than the pool of {pool.numel()}")
    start = int(torch.randint(0, pool.numel() - numel + 1, (1,), generator=generator))
    t = pool[start:start + numel].view(shape)
    if len(shape) >= 2:
        return t * (numel // shape[0]) ** -0.5
    if name.endswith("weight"):
        return t * 0.1 + 1.0
    return t * 0.02


def state_dict_for(filename: str, seed: int = 0) -> dict:
    """The (seeded, random) contents of the Annotators file ``filename``, as ``torch.load`` returns them."""
    factory, strip, dtype, legacy = _modules()[filename]
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        template = factory().state_dict()
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(filename.encode()))
    pool = torch.randn(POOL, generator=generator)
    out = OrderedDict()
    for name, meta in template.items():
        key = name.split(".", 1)[1] if strip else name
        out[key] = _random(name, meta.shape, pool, generator).to(dtype)
    if legacy:
        return dict(out)
    out._metadata = template._metadata  # what Module.state_dict() carries along (pickled with the dict)
    return out


def write_annotator_files(folder, seed: int = 0, kinds=tuple(FILES)) -> dict[str, Path]:
    """Write the files of ``kinds`` (``openpose``, ``depth``, ``hed``) into ``folder``; return
    ``{filename: path}``. About 510 MB for OpenPose, 493 MB for depth, 29 MB for HED."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    legacy = {name: spec[3] for name, spec in _modules().items()}
    paths = {}
    for kind in kinds:
        for filename in FILES[kind]:
            path = folder / filename
            torch.save(state_dict_for(filename, seed), path, _use_new_zipfile_serialization=not legacy[filename])
            paths[filename] = path
    return paths
