"""annotators: controlnet-aux's OpenPose / MiDaS depth / HED from safetensors copies of the
Annotators pickles, against controlnet-aux's own ``from_pretrained`` on the same (fake) files.

The fake files (tests/fakehub/annotators.py) have the real names, formats and sizes (about 1 GB
in all), so each kind is written once per session, only when a test asks for it.
"""

import contextlib
import hashlib
import os
import shutil
import socket
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakehub.annotators import REAL_SIZES, state_dict_for, write_annotator_files  # noqa: E402

from animatelcm_helpers import annotators, config  # noqa: E402
from animatelcm_helpers.config import UserError  # noqa: E402

REPO = "lllyasviel/Annotators"
COMMIT = "83cbccd4a3be9fa9f2fd9fe96f30288c9762e65b"


@contextlib.contextmanager
def one_thread():
    """Conv nets on a shared 2-core machine: one intra-op thread is ~10x faster than two that
    fight other processes for the cores (it changes no result: both detectors run the same way)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _threads_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "cache"))
    with one_thread():
        yield


def _controlnet_aux():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import controlnet_aux
    return controlnet_aux


def _files(tmp_path_factory, kind):
    """Write one kind's fake files once per session; remove them at its end (pytest keeps the
    last three runs' temporary folders, and these are up to 510 MB)."""
    folder = tmp_path_factory.mktemp(f"annotators-{kind}")
    with one_thread():
        write_annotator_files(folder, seed=0, kinds=(kind,))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def hed_files(tmp_path_factory):
    yield from _files(tmp_path_factory, "hed")


@pytest.fixture(scope="session")
def depth_files(tmp_path_factory):
    yield from _files(tmp_path_factory, "depth")


@pytest.fixture(scope="session")
def openpose_files(tmp_path_factory):
    yield from _files(tmp_path_factory, "openpose")


@contextlib.contextmanager
def no_downloads(attempts: list):
    """Every way a pretrained timm / torch.hub / Hub download could start raises (and is recorded)."""
    import huggingface_hub
    import timm.models._builder as timm_builder

    def refuse(name):
        def _refuse(*args, **kwargs):
            attempts.append(name)
            raise AssertionError(f"{name} was called: something tried to download")
        return _refuse

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(timm_builder, "load_pretrained", refuse("timm load_pretrained"))
        mp.setattr(torch.hub, "load_state_dict_from_url", refuse("torch.hub.load_state_dict_from_url"))
        mp.setattr(torch.hub, "download_url_to_file", refuse("torch.hub.download_url_to_file"))
        mp.setattr(huggingface_hub, "hf_hub_download", refuse("hf_hub_download"))
        mp.setattr(huggingface_hub.file_download, "hf_hub_download", refuse("hf_hub_download"))
        mp.setattr(socket, "create_connection", refuse("socket.create_connection"))
        mp.setattr(socket.socket, "connect", refuse("socket.connect"))
        yield


def _pair(kind, folder, cls_name, cache: Path, keep_cache: bool = True):
    """(our detector, controlnet-aux's ``from_pretrained(folder)``, download attempts), ours
    built with every download refused and its safetensors copies in ``cache`` (removed after
    unless ``keep_cache``: pytest keeps old temporary folders, and these are 0.5 GB)."""
    cls = getattr(_controlnet_aux(), cls_name)
    attempts = []
    with one_thread(), pytest.MonkeyPatch.context() as mp, no_downloads(attempts):
        mp.setenv(config.CACHE_ENV, str(cache))
        ours = annotators.load_detector(kind, folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = cls.from_pretrained(str(folder))
    if not keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
    return ours, theirs, attempts


@pytest.fixture(scope="module")
def hed_pair(hed_files, tmp_path_factory):
    return _pair("hed", hed_files, "HEDdetector", tmp_path_factory.mktemp("cache-hed"))


def assert_same_module(ours: torch.nn.Module, theirs: torch.nn.Module):
    """The same classes, modes and bit-identical weights (names, dtypes, values, devices)."""
    assert [type(m) for m in ours.modules()] == [type(m) for m in theirs.modules()]
    assert [m.training for m in ours.modules()] == [m.training for m in theirs.modules()]
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].device == b[key].device, key
        assert torch.equal(a[key], b[key]), key
    assert [p.requires_grad for p in ours.parameters()] == [p.requires_grad for p in theirs.parameters()]


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------
# The files each detector reads
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, cls_name, module, stop", [
    ("openpose", "OpenposeDetector", "controlnet_aux.open_pose", "Body"),
    ("depth", "MidasDetector", "controlnet_aux.midas", "MiDaSInference"),
    ("hed", "HEDdetector", "controlnet_aux.hed", "ControlNetHED_Apache2"),
])
def test_files_are_those_controlnet_aux_reads(kind, cls_name, module, stop, monkeypatch):
    """Record the filenames ``from_pretrained("lllyasviel/Annotators")`` asks the Hub for (and
    stop before it builds anything)."""
    cls = getattr(_controlnet_aux(), cls_name)
    asked = []

    def fake_download(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        return f"/nonexistent/{filename}"

    class Stop(Exception):
        pass

    def stop_here(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(f"{module}.hf_hub_download", fake_download)
    monkeypatch.setattr(f"{module}.{stop}", stop_here)
    with pytest.raises(Stop):
        cls.from_pretrained(REPO)
    assert asked == [(REPO, name) for name in annotators.ANNOTATOR_FILES[kind]]


def test_fake_files_have_the_real_sizes_and_formats(hed_files, depth_files, openpose_files):
    for folder in (hed_files, depth_files, openpose_files):
        for path in folder.iterdir():
            real = REAL_SIZES[path.name]
            assert abs(path.stat().st_size - real) / real < 1e-4, path.name
    hed = torch.load(hed_files / "ControlNetHED.pth", map_location="cpu", weights_only=True)
    assert {v.dtype for v in hed.values()} == {torch.float16}
    body = torch.load(openpose_files / "body_pose_model.pth", map_location="cpu", weights_only=True)
    assert "conv1_1.weight" in body and "Mconv7_stage6_L2.bias" in body and len(body) == 184


def test_writer_is_deterministic_for_a_seed(tmp_path):
    a, b, c = (state_dict_for("ControlNetHED.pth", seed=s) for s in (0, 0, 1))
    assert list(a) == list(c)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in a if a[k].numel() > 1)
    first = write_annotator_files(tmp_path / "1", seed=0, kinds=("hed",))["ControlNetHED.pth"]
    again = write_annotator_files(tmp_path / "2", seed=0, kinds=("hed",))["ControlNetHED.pth"]
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(again.read_bytes()).digest()


# ------------------------------------------------------------------------------------------
# The detectors: bit-identical to controlnet-aux's own from_pretrained
# ------------------------------------------------------------------------------------------


def test_hed_matches_from_pretrained(hed_pair):
    ours, theirs, attempts = hed_pair
    assert type(ours) is type(theirs) and not attempts
    assert_same_module(ours.netNetwork, theirs.netNetwork)
    assert ours.netNetwork.norm.dtype == torch.float32  # the float16 file, cast like theirs
    image = _image(128, 128)
    for options in ({}, {"safe": True, "scribble": True}):
        a = np.asarray(ours(image, detect_resolution=128, image_resolution=128, **options))
        b = np.asarray(theirs(image, detect_resolution=128, image_resolution=128, **options))
        assert a.shape == (128, 128, 3) and np.array_equal(a, b)
        if not options:
            assert a.std() > 0  # a real map, so equality means something


def test_depth_matches_from_pretrained_and_downloads_nothing(depth_files, tmp_path):
    from controlnet_aux.midas.api import disabled_train

    ours, theirs, attempts = _pair("depth", depth_files, "MidasDetector", tmp_path / "cache", keep_cache=False)
    assert attempts == []  # timm was asked for no pretrained weights, nothing touched the network
    assert type(ours) is type(theirs) and type(ours.model) is type(theirs.model)
    assert_same_module(ours.model, theirs.model)
    assert ours.model.model.train is disabled_train is theirs.model.model.train
    image = _image(64, 64)
    a = np.asarray(ours(image, detect_resolution=64, image_resolution=64))
    b = np.asarray(theirs(image, detect_resolution=64, image_resolution=64))
    assert a.shape == (64, 64, 3) and a.std() > 0
    assert np.array_equal(a, b)
    (depth_a, normal_a) = ours(image, depth_and_normal=True, detect_resolution=64, image_resolution=64)
    (depth_b, normal_b) = theirs(image, depth_and_normal=True, detect_resolution=64, image_resolution=64)
    assert np.array_equal(np.asarray(depth_a), np.asarray(depth_b))
    assert np.array_equal(np.asarray(normal_a), np.asarray(normal_b))


def test_openpose_matches_from_pretrained(openpose_files, tmp_path):
    ours, theirs, attempts = _pair("openpose", openpose_files, "OpenposeDetector", tmp_path / "cache",
                                   keep_cache=False)
    assert type(ours) is type(theirs) and not attempts
    parts = ("body_estimation", "hand_estimation", "face_estimation")
    for part in parts:
        a, b = getattr(ours, part), getattr(theirs, part)
        assert type(a) is type(b)
        assert {k: v for k, v in vars(a).items() if k != "model"} == {k: v for k, v in vars(b).items() if k != "model"}
        assert_same_module(a.model, b.model)
    # The networks' raw outputs (random weights find no person, so the drawn map alone is blank).
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) - 0.5
    with torch.no_grad():
        for part in parts:
            out_a, out_b = getattr(ours, part).model(x), getattr(theirs, part).model(x)
            out_a = out_a if isinstance(out_a, (list, tuple)) else [out_a]
            out_b = out_b if isinstance(out_b, (list, tuple)) else [out_b]
            assert all(torch.equal(u, v) for u, v in zip(out_a, out_b, strict=True)), part
            assert out_a[-1].abs().sum() > 0
    image = _image(512, 64)  # the body net always runs 184 pixels high: a narrow image is cheap
    options = dict(detect_resolution=64, image_resolution=64, include_hand=True, include_face=True)
    a, b = np.asarray(ours(image, **options)), np.asarray(theirs(image, **options))
    assert a.shape == (512, 64, 3) and np.array_equal(a, b)


# ------------------------------------------------------------------------------------------
# The safetensors copies
# ------------------------------------------------------------------------------------------


def _count_torch_load(monkeypatch) -> list:
    calls, real_load = [], torch.load

    def counting_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    return calls


def test_second_load_reads_only_the_safetensors_copy(hed_files, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    calls = _count_torch_load(monkeypatch)
    first = annotators.load_detector("hed", hed_files)
    assert calls == [True]  # the restricted unpickler, once
    copies = list((tmp_path / "cache" / "annotators").glob("*"))
    assert [p.name.split("-")[0] for p in copies] == ["ControlNetHED"] and copies[0].suffix == ".safetensors"
    second = annotators.load_detector("hed", hed_files)
    assert calls == [True]
    assert_same_module(first.netNetwork, second.netNetwork)
    pickled = torch.load(hed_files / "ControlNetHED.pth", map_location="cpu", weights_only=True)
    copy = load_file(copies[0])
    assert sorted(copy) == sorted(pickled) and all(torch.equal(copy[k], pickled[k]) and copy[k].dtype == torch.float16
                                               for k in pickled)


def test_a_different_file_gets_its_own_conversion(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one, two = tmp_path / "one" / "ControlNetHED.pth", tmp_path / "two" / "ControlNetHED.pth"
    torch.save({"norm": torch.zeros(3)}, one)
    torch.save({"norm": torch.ones(3)}, two)
    a, b = annotators.to_safetensors(one), annotators.to_safetensors(two)
    assert a != b and a.is_file() and b.is_file()  # same name, different folders
    assert torch.equal(annotators.read_state_dict(one)["norm"], torch.zeros(3))
    assert torch.equal(annotators.read_state_dict(two)["norm"], torch.ones(3))
    torch.save({"norm": torch.full((3,), 2.0)}, one)  # the same path and size, new contents
    stat = one.stat()
    os.utime(one, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later mtime, even on a coarse clock
    assert annotators.converted_path(one) not in (a, b)
    assert torch.equal(annotators.read_state_dict(one)["norm"], torch.full((3,), 2.0))


def test_failed_conversion_leaves_neither_copy_nor_temp_file(tmp_path, monkeypatch):
    import safetensors.torch

    src = tmp_path / "weights.pth"
    torch.save({"w": torch.ones(4)}, src)

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    monkeypatch.setattr(annotators, "save_file", disk_full)  # the name annotators imported
    with pytest.raises(UserError, match="ANIMATELCM_CACHE"):
        annotators.to_safetensors(src)
    assert list(annotators.cache_folder().iterdir()) == []


def test_a_damaged_copy_is_converted_again(tmp_path):
    src = tmp_path / "weights.pth"
    torch.save({"w": torch.arange(4.0)}, src)
    annotators.to_safetensors(src).write_bytes(b"not safetensors")
    assert torch.equal(annotators.read_state_dict(src)["w"], torch.arange(4.0))


def test_midas_style_nesting_is_unwrapped(tmp_path):
    from safetensors.torch import load_file

    src = tmp_path / "checkpoint.pt"
    torch.save({"model": {"scratch.w": torch.arange(3.0)}, "optimizer": {"state": {}, "lr": 0.1}}, src)
    assert list(load_file(annotators.to_safetensors(src))) == ["scratch.w"]


# ------------------------------------------------------------------------------------------
# Refused files
# ------------------------------------------------------------------------------------------


class Payload:
    """Unpickling this would create ``marker`` (stands in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_with_objects_is_refused_and_never_runs(tmp_path):
    folder, marker = tmp_path / "evil", tmp_path / "ran"
    folder.mkdir()
    torch.save({"norm": torch.zeros(1, 3, 1, 1), "x": Payload(marker)}, folder / "ControlNetHED.pth")
    with pytest.raises(UserError, match="Python objects other than tensors") as err:
        annotators.load_detector("hed", folder)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    assert list(annotators.cache_folder().iterdir()) == []
    torch.load(folder / "ControlNetHED.pth", weights_only=False)  # a full unpickle would have run it
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("keep", [0.5, 0.999, 0.0])
def test_a_truncated_file_is_refused(tmp_path, zip_format, keep):
    src = tmp_path / "weights.pth"
    torch.save({"w": torch.randn(256, 256)}, src, _use_new_zipfile_serialization=zip_format)
    data = src.read_bytes()
    src.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(UserError, match="truncated or corrupt") as err:
        annotators.to_safetensors(src)
    assert "\n" not in str(err.value) and "download" in str(err.value)


@pytest.mark.parametrize("data", [b"", b"hello, not a pickle\n" * 10, b"\x80\x02}q\x00X\x01\x00\x00"])
def test_garbage_is_refused(tmp_path, data):
    src = tmp_path / "weights.pth"
    src.write_bytes(data)
    with pytest.raises(UserError, match="truncated or corrupt|damaged data"):
        annotators.to_safetensors(src)


def test_a_pickle_that_is_not_a_state_dict_is_refused(tmp_path):
    src = tmp_path / "weights.pth"
    torch.save([torch.ones(2)], src)
    with pytest.raises(UserError, match="does not hold a state dict"):
        annotators.to_safetensors(src)


def test_a_file_that_does_not_fit_the_network_is_refused(tmp_path):
    folder = tmp_path / "wrong"
    folder.mkdir()
    state = state_dict_for("ControlNetHED.pth")
    state["norm"] = torch.zeros(1, 4, 1, 1)
    torch.save(state, folder / "ControlNetHED.pth")
    with pytest.raises(UserError, match="does not fit controlnet-aux's ControlNetHED_Apache2"):
        annotators.load_detector("hed", folder)


def test_a_network_with_its_own_buffers_is_built_normally():
    """Built on the meta device, a non-persistent buffer would stay there: such a network is
    built on the CPU instead (none of controlnet-aux's three has one, so this guards the rule)."""

    class WithBuffer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.register_buffer("scale", torch.full((2,), 3.0), persistent=False)

    state = {"lin.weight": torch.eye(2, dtype=torch.float16), "lin.bias": torch.zeros(2)}
    net = annotators._build(WithBuffer, state, "tiny.pth")
    assert torch.equal(net.scale, torch.full((2,), 3.0)) and net.lin.weight.dtype == torch.float32
    assert torch.equal(net.lin.weight, torch.eye(2))
    plain = annotators._build(lambda: torch.nn.Linear(2, 2), {"weight": torch.eye(2), "bias": torch.ones(2)}, "x")
    assert not any(t.is_meta for t in plain.state_dict().values()) and torch.equal(plain.bias, torch.ones(2))


def test_unknown_kind_and_incomplete_folder(tmp_path):
    with pytest.raises(UserError, match="choose one of openpose, depth, hed"):
        annotators.load_detector("canny")
    (tmp_path / "body_pose_model.pth").write_bytes(b"")
    with pytest.raises(UserError, match="hand_pose_model.pth, facenet.pth"):
        annotators.fetch("openpose", tmp_path)


# ------------------------------------------------------------------------------------------
# fetch against a Hugging Face cache built by hand
# ------------------------------------------------------------------------------------------


def fake_hf_cache(root: Path, files: dict, commit: str = COMMIT) -> Path:
    """``models--lllyasviel--Annotators`` as huggingface_hub lays it out: blobs named by sha256,
    ``snapshots/<commit>/<file>`` relative symlinks to them, ``refs/main`` holding the commit."""
    repo = root / "models--lllyasviel--Annotators"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, src in files.items():
        data = src.read_bytes() if isinstance(src, Path) else src
        sha = hashlib.sha256(data).hexdigest()
        if isinstance(src, Path):
            shutil.copyfile(src, repo / "blobs" / sha)
        else:
            (repo / "blobs" / sha).write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", sha))
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """Point huggingface_hub at an empty cache: the HF_HUB_CACHE variable is read once, at import,
    into ``huggingface_hub.constants.HF_HUB_CACHE``, which ``hf_hub_download`` reads on each call."""
    import huggingface_hub.constants

    root = tmp_path / "hf-cache"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    return root


def test_fetch_finds_files_in_the_hf_cache_by_revision(hf_cache):
    contents = {name: f"fake {name}".encode() for name in annotators.ANNOTATOR_FILES["openpose"]}
    snapshot = fake_hf_cache(hf_cache, contents)
    for revision in ("main", COMMIT):
        paths = annotators.fetch("openpose", config.Weights(REPO, revision=revision), local_files_only=True)
        assert paths == [snapshot / name for name in annotators.ANNOTATOR_FILES["openpose"]]
        assert [p.read_bytes() for p in paths] == list(contents.values())
    with pytest.raises(UserError, match=r"hf download lllyasviel/Annotators body_pose_model.pth --revision v9"):
        annotators.fetch("openpose", config.Weights(REPO, revision="v9"), local_files_only=True)


def test_missing_file_offline_names_the_download_command(hf_cache, monkeypatch):
    fake_hf_cache(hf_cache, {"facenet.pth": b"x"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        annotators.load_detector("hed")  # default weights config.HUB["annotators"]; offline -> cache only
    message = str(err.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message
    assert annotators.DOWNLOAD_COMMAND in message
    assert f"hf download {REPO} ControlNetHED.pth --revision main" in message


def test_hed_loads_from_the_hf_cache_and_keys_its_copy_by_blob(hf_cache, hed_files, hed_pair):
    snapshot = fake_hf_cache(hf_cache, {"ControlNetHED.pth": hed_files / "ControlNetHED.pth"})
    sha = os.path.basename(os.path.realpath(snapshot / "ControlNetHED.pth"))
    detector = annotators.load_detector("hed", config.Weights(REPO, revision="main"), local_files_only=True)
    assert annotators.converted_path(snapshot / "ControlNetHED.pth").name == f"ControlNetHED-{sha[:16]}.safetensors"
    assert (annotators.cache_folder() / f"ControlNetHED-{sha[:16]}.safetensors").is_file()
    assert_same_module(detector.netNetwork, hed_pair[1].netNetwork)
