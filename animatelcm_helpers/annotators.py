"""controlnet-aux's Hub detectors (OpenPose, MiDaS depth, HED), loaded safely, by revision, offline.

    det = annotators.load_detector("depth")            # a controlnet_aux.MidasDetector
    depth_map = det(image, detect_resolution=512, image_resolution=512)

controlnet-aux 0.0.10's own ``Cls.from_pretrained(<the Annotators repository>)`` takes no revision,
always reads ``main``, and unpickles the ``.pth``/``.pt`` files it downloads. Here instead:

1. :func:`fetch` finds each file with ``hf_hub_download(repo, file, revision=...)``: the Hub
   cache when offline, a download when online;
2. :func:`to_safetensors` reads each pickle ONCE with PyTorch's restricted unpickler
   (``torch.load(..., weights_only=True)``: tensors and plain containers only, never arbitrary
   objects) and keeps a ``.safetensors`` copy in ``config.cache_dir() / "annotators"``; every
   later load reads only that copy;
3. :func:`load_detector` builds controlnet-aux's own networks (``bodypose_model``,
   ``handpose_model``, ``FaceNet``, ``DPTDepthModel``, ``ControlNetHED_Apache2``) with no weights
   (on the ``meta`` device: no random initialisation, no timm download) and loads the state
   dicts with ``load_state_dict(strict=True)``, applying the same key mapping, dtype and eval
   handling as controlnet-aux's loaders, so the detector computes exactly what
   ``Cls.from_pretrained`` would from the same files.

What each file holds (what controlnet-aux 0.0.10's loaders expect):

* ``body_pose_model.pth`` / ``hand_pose_model.pth``: flat ``{name: tensor}`` whose keys lack the
  first component of the module's keys (``conv1_1.weight`` for ``model0.conv1_1.weight``);
  ``open_pose/util.py::transfer`` maps module key ``a.rest`` to file key ``rest``;
* ``facenet.pth``: ``FaceNet``'s own state dict (``conv1_1.weight``, ...), loaded as is;
* ``dpt_hybrid-midas-501f0c75.pt``: ``DPTDepthModel``'s state dict (``pretrained.model.*``,
  ``scratch.*``); ``BaseModel.load`` takes ``d["model"]`` when the file also holds
  ``"optimizer"`` (a training checkpoint);
* ``ControlNetHED.pth``: ``ControlNetHED_Apache2``'s state dict (``norm``, ``block1.convs.0.weight``,
  ...), stored in float16 (29 MB for 14.7 M parameters); the loader casts to float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import config
from .config import UserError

# The files each detector reads from config.HUB["annotators"] (controlnet-aux 0.0.10's defaults).
ANNOTATOR_FILES = {
    "openpose": ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"),
    "depth": ("dpt_hybrid-midas-501f0c75.pt",),
    "hed": ("ControlNetHED.pth",),
}
DOWNLOAD_COMMAND = "python -m animatelcm_helpers download annotators"
CACHE_SUBDIR = "annotators"

_HEX = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _check_kind(kind: str) -> str:
    if kind not in ANNOTATOR_FILES:
        raise UserError(f"unknown annotator {kind!r}; choose one of {', '.join(ANNOTATOR_FILES)}")
    return kind


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


# ------------------------------------------------------------------------------------------
# 1. Finding the files
# ------------------------------------------------------------------------------------------


def fetch(kind: str, weights=None, local_files_only: bool | None = None) -> list[Path]:
    """The local paths of the files the ``kind`` detector reads, in ``ANNOTATOR_FILES`` order.

    ``weights`` is a :class:`config.Weights` (default ``config.HUB["annotators"]``), read through
    ``hf_hub_download(repo_id, file, revision=weights.revision)``, or a local folder (a path)
    that holds the files. ``local_files_only`` (default: when the Hub is not reachable) reads the
    Hugging Face cache only. A file that is missing raises :class:`UserError` saying how to get it.
    """
    _check_kind(kind)
    if weights is None:
        weights = config.HUB["annotators"]
    if isinstance(weights, (str, os.PathLike)) or getattr(weights, "local", False):
        return _from_folder(kind, Path(getattr(weights, "repo_id", weights)))
    if local_files_only is None:
        local_files_only = not config.hub_reachable()
    return [_hub_file(kind, weights, name, local_files_only) for name in ANNOTATOR_FILES[kind]]


def _from_folder(kind: str, folder: Path) -> list[Path]:
    paths = [folder / name for name in ANNOTATOR_FILES[kind]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"the {kind} detector needs {', '.join(missing)} in {folder}; put the files from "
                        f"{config.HUB['annotators'].repo_id} there, or use the Hub (`{DOWNLOAD_COMMAND}`)")
    return paths


def _hub_file(kind: str, weights, filename: str, local_files_only: bool) -> Path:

    revision = weights.revision or "main"
    where = f"{weights.repo_id}@{revision}"
    get = (f"run `{DOWNLOAD_COMMAND}` on a machine with internet (or `hf download {weights.repo_id} "
           f"{filename} --revision {revision}`), then retry")
    try:
        return Path(hf_hub_download(weights.repo_id, filename, revision=revision,
                                    local_files_only=local_files_only))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
        why = ("the Hub is not used (HF_HUB_OFFLINE is set)" if offline else
               "only local files were allowed" if local_files_only else "the Hub could not be reached")
        raise UserError(f"the {kind} detector needs {filename} from {where}, which is not in the Hugging Face "
                        f"cache, and {why}; {get}") from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
        raise UserError(f"{filename} is not on the Hub at {where} ({_first_line(err)}); check "
                        "config.HUB['annotators'] (repository and revision)") from None
    except (HfHubHTTPError, OSError) as err:
        raise UserError(f"could not download {filename} from {where} ({_first_line(err)}); check the "
                        f"connection, or {get}") from None


# ------------------------------------------------------------------------------------------
# 2. Pickle -> safetensors, once
# ------------------------------------------------------------------------------------------


def cache_folder() -> Path:
    """Where the safetensors conversions live: ``config.cache_dir() / "annotators"``."""
    path = config.cache_dir() / CACHE_SUBDIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def _source_key(path: Path) -> str:
    """What identifies the file's contents: its blob name in the Hugging Face cache (the file's
    sha256 for Git-LFS files), else a hash of its resolved path, inode, size and modification
    time (so a file rewritten in place within one clock tick, at the same size, would be missed)."""
    real = Path(os.path.realpath(path))
    if real.parent.name == "blobs" and _HEX.fullmatch(real.name):
        return real.name[:16]
    st = real.stat()
    return hashlib.sha256(f"{real}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def converted_path(path) -> Path:
    """The cached ``.safetensors`` copy of the pickle ``path`` (it may not exist yet)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    return cache_folder() / f"{path.stem}-{_source_key(path)}.safetensors"


def _read_pickle(path: Path) -> dict:
    """``torch.load(weights_only=True)``, with the loader's nesting unwrapped: MiDaS's
    ``BaseModel.load`` takes ``d["model"]`` when ``"optimizer"`` is in ``d``."""
    try:
        with warnings.catch_warnings():  # a damaged header also warns about "pickle protocol 97"
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise UserError(f"{path.name} holds Python objects other than tensors (or damaged data), which "
                            "the safe loader refuses to run (a pickle can execute code); it is not a file "
                            f"from {config.HUB['annotators'].repo_id}: delete it and download it again") from None
        raise _corrupt(path, err) from None
    except OSError as err:
        raise UserError(f"could not read {path} ({_first_line(err)}); check that it is a readable file") from None
    except Exception as err:  # damaged data: torch.load raises RuntimeError, EOFError, KeyError, struct.error, ...
        raise _corrupt(path, err) from None
    if isinstance(obj, dict) and "optimizer" in obj and "model" in obj:
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise UserError(f"{path.name} does not hold a state dict (name -> tensor), found "
                        f"{type(obj).__name__}; delete it and download it again")
    return obj


def _corrupt(path: Path, err: BaseException) -> UserError:
    return UserError(f"{path} is truncated or corrupt ({_first_line(err)}); delete it (for a Hub file, "
                     f"the blob it points to) and download it again (`{DOWNLOAD_COMMAND}`)")


def _own_storage(state: dict) -> dict:
    """Contiguous tensors that share no memory (what safetensors can store)."""
    out, seen = {}, set()
    for name, t in state.items():
        t = t.detach().contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[name] = t
    return out


def to_safetensors(path) -> Path:
    """The ``.safetensors`` copy of the pickle ``path``, converting it the first time.

    The pickle is read once with ``torch.load(path, map_location="cpu", weights_only=True)``;
    the copy (the same keys and dtypes) is written atomically (a temporary file, then
    ``os.replace``) to ``cache_folder()``, named by the file's stem and :func:`_source_key`, so a
    different file never reuses a stale conversion.
    """

    path = Path(path)
    target = converted_path(path)
    if target.is_file():
        return target
    state = _own_storage(_read_pickle(path))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        save_file(state, str(tmp), metadata={"source": path.name, "converted_by": __name__})
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the copy is as readable as the cache
        os.replace(tmp, target)
    except OSError as err:
        raise UserError(f"could not write the safetensors copy of {path.name} to {target.parent} "
                        f"({_first_line(err)}); free some space there or set {config.CACHE_ENV} "
                        "to another folder") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


def read_state_dict(path) -> dict:
    """The state dict of the pickle ``path``, read from its safetensors copy (converted on first use)."""

    target = to_safetensors(path)
    try:
        return load_file(str(target))
    except (SafetensorError, OSError, ValueError):  # a damaged copy: convert again from the source
        target.unlink(missing_ok=True)
        return load_file(str(to_safetensors(path)))


# ------------------------------------------------------------------------------------------
# 3. controlnet-aux's detectors from the state dicts
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """controlnet-aux's imports warn about optional extras and deprecated scipy/timm names."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _transfer(module: torch.nn.Module, state: dict, filename: str) -> dict:
    """controlnet-aux's ``open_pose.util.transfer``: module key ``a.rest`` <- file key ``rest``."""
    out = {}
    for name in module.state_dict():
        short = name.split(".", 1)[1]
        if short not in state:
            raise UserError(f"{filename} lacks the weight {short!r} that controlnet-aux's OpenPose needs; "
                            f"it is not the file from {config.HUB['annotators'].repo_id}: delete it and download it again")
        out[name] = state[short]
    return out


def _build(factory, state: dict, filename: str, transfer: bool = False) -> torch.nn.Module:
    """``factory()`` with the weights ``state`` (``load_state_dict(strict=True)``).

    The module is first built on the ``meta`` device (no memory, no random initialisation, which
    takes seconds for DPT) and the tensors are then assigned, each cast to the dtype the module
    declares (the copy ``load_state_dict`` would make into a freshly built module). Should a
    module keep a tensor of its own that is not a parameter or buffer, it is built normally.
    """
    with _quiet(), torch.device("meta"):
        module = factory()
    if transfer:
        state = _transfer(module, state, filename)
    expected = module.state_dict()
    state = {k: v.to(expected[k].dtype) if k in expected else v for k, v in state.items()}
    assign = True
    if not _materialized_after_assign(module, expected):
        with _quiet():
            module = factory()
        assign = False
    try:
        module.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as err:
        raise UserError(f"{filename} does not fit controlnet-aux's {type(module).__name__} "
                        f"({_first_line(err)[:300]}); delete it and download it again") from None
    return module


def _materialized_after_assign(module: torch.nn.Module, expected: dict) -> bool:
    """Whether every tensor of the meta-built module comes from the state dict (so assigning it
    leaves nothing on the meta device): buffers and tensors outside the state dict would."""
    non_persistent = {n for n, _ in module.named_buffers()} - set(expected)
    if non_persistent:
        return False
    attrs = [v for m in module.modules() for k, v in vars(m).items()
             if isinstance(v, torch.Tensor) and k not in ("_parameters", "_buffers")]
    return not any(t.is_meta for t in attrs)


def _openpose(states: dict):
    from controlnet_aux.open_pose import OpenposeDetector  # deferred: heavy (timm, scikit-image)
    from controlnet_aux.open_pose import face as face_module  # deferred: heavy (timm, scikit-image)
    from controlnet_aux.open_pose.body import Body  # deferred: heavy (timm, scikit-image)
    from controlnet_aux.open_pose.face import Face, FaceNet  # deferred: heavy (timm, scikit-image)
    from controlnet_aux.open_pose.hand import Hand  # deferred: heavy (timm, scikit-image)
    from controlnet_aux.open_pose.model import bodypose_model, handpose_model  # deferred: heavy (timm, scikit-image)

    body = Body.__new__(Body)  # Body(path): model = bodypose_model(); load(transfer(...)); eval()
    body.model = _build(bodypose_model, states["body_pose_model.pth"], "body_pose_model.pth", transfer=True).eval()
    hand = Hand.__new__(Hand)
    hand.model = _build(handpose_model, states["hand_pose_model.pth"], "hand_pose_model.pth", transfer=True).eval()
    face = Face.__new__(Face)  # Face(path) with its defaults from face.params
    face.inference_size = face_module.params["inference_img_size"]
    face.sigma = face_module.params["gaussian_sigma"]
    face.threshold = face_module.params["heatmap_peak_thresh"]
    face.model = _build(FaceNet, states["facenet.pth"], "facenet.pth").eval()
    return OpenposeDetector(body, hand, face)


def _depth(states: dict):
    from controlnet_aux.midas import MidasDetector  # deferred: heavy (timm, scikit-image)
    from controlnet_aux.midas.api import MiDaSInference, disabled_train  # deferred: heavy (timm, scikit-image)
    from controlnet_aux.midas.midas.dpt_depth import DPTDepthModel  # deferred: heavy (timm, scikit-image)

    name = ANNOTATOR_FILES["depth"][0]
    # api.load_model("dpt_hybrid"): DPTDepthModel(backbone="vitb_rn50_384", non_negative=True),
    # whose encoder asks timm for vit_base_resnet50_384 with pretrained=False (no download).
    model = _build(lambda: DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True),
                   states[name], name).eval()
    inference = MiDaSInference.__new__(MiDaSInference)
    torch.nn.Module.__init__(inference)
    inference.model = model
    inference.model.train = disabled_train
    return MidasDetector(inference)


def _hed(states: dict):
    from controlnet_aux.hed import ControlNetHED_Apache2, HEDdetector  # deferred: heavy (timm, scikit-image)

    name = ANNOTATOR_FILES["hed"][0]
    return HEDdetector(_build(ControlNetHED_Apache2, states[name], name).float().eval())


_BUILDERS = {"openpose": _openpose, "depth": _depth, "hed": _hed}


def load_detector(kind: str, weights=None, local_files_only: bool | None = None):
    """controlnet-aux's ``OpenposeDetector`` / ``MidasDetector`` / ``HEDdetector`` (on the CPU, in
    eval mode), its weights from :func:`fetch` via their safetensors copies.

    ``weights``: a :class:`config.Weights` (default ``config.HUB["annotators"]``, at its revision)
    or a local folder with the files; ``local_files_only`` as in :func:`fetch`.
    """
    paths = fetch(_check_kind(kind), weights, local_files_only)
    states = {name: read_state_dict(p) for name, p in zip(ANNOTATOR_FILES[kind], paths)}
    with _quiet():
        return _BUILDERS[kind](states)
