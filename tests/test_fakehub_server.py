"""The fake Hub (tests/fakehub/server.py) against the real huggingface_hub, diffusers and transformers: the cache they
write, the requests they make, the exceptions they raise, online and offline in one process."""

import hashlib
import json
import os
import sys
import types
import urllib.request
from pathlib import Path

import pytest
import torch
from huggingface_hub import (
    constants,
    hf_api,
    hf_hub_download,
    list_repo_files,
    list_repo_tree,
    model_info,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.torch import save_file

from tests.fakehub.server import Repo, serve, use_endpoint

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "owner/tiny"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def tiny(tmp_path):
    """A repo with a text file, an LFS-like weight file, a pickle decoy and a subfolder (all contents distinct)."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"hidden": 8}')
    save_file({"w": torch.arange(6.0)}, src / "weights.safetensors")
    (src / "weights.bin").write_bytes(b"pickle decoy")
    (src / "sub" / "notes.txt").write_text("nested file")
    return Repo.from_folder(REPO, src, commit=COMMIT, branches=("dev",))


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def online(tiny, cache):
    with serve([tiny]) as hub, use_endpoint(hub.endpoint, cache, offline=False):
        yield hub


def resolved(hub):
    """(method, repo path) of every request on /{owner}/{name}/resolve/{revision}/."""
    parts = [(method, path.split("/")) for method, path in hub.requests]
    return [(method, "/".join(p[5:])) for method, p in parts if len(p) > 5 and p[3] == "resolve"]


def test_download_writes_the_real_cache_layout(online, tiny, cache):
    path = hf_hub_download(REPO, "config.json")
    weights = hf_hub_download(REPO, "weights.safetensors", revision=COMMIT)

    storage = cache / "models--owner--tiny"
    assert path == str(storage / "snapshots" / COMMIT / "config.json")
    assert Path(path).read_bytes() == b'{"hidden": 8}'
    assert (storage / "refs" / "main").read_text() == COMMIT
    # a text file's blob is its git sha1; an LFS file's blob is its sha256 (X-Linked-Etag)
    assert os.path.realpath(path) == str(storage / "blobs" / git_blob_sha1(b'{"hidden": 8}'))
    data = tiny.files["weights.safetensors"].read_bytes()
    assert os.path.realpath(weights) == str(storage / "blobs" / hashlib.sha256(data).hexdigest())
    assert Path(weights).read_bytes() == data
    assert ("GET", f"/{REPO}/resolve/{COMMIT}/weights.safetensors") in online.requests
    assert online.downloads == [(REPO, "config.json"), (REPO, "weights.safetensors")]

    nested = hf_hub_download(REPO, "sub/notes.txt", revision="dev")
    assert nested == str(storage / "snapshots" / COMMIT / "sub" / "notes.txt")
    assert (storage / "refs" / "dev").read_text() == COMMIT


def test_resolve_headers_and_range(online, tiny):
    url = f"{online.endpoint}/{REPO}/resolve/main/weights.safetensors"
    data = tiny.files["weights.safetensors"].read_bytes()
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as r:
        headers = r.headers
    assert headers["X-Repo-Commit"] == COMMIT
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert headers["X-Linked-Size"] == headers["Content-Length"] == str(len(data))
    assert headers["ETag"] != headers["X-Linked-Etag"]  # the git id of the LFS pointer, as on the Hub
    assert not [k for k in headers if k.lower().startswith("x-xet")]

    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=3-9"})) as r:
        assert (r.status, r.read(), r.headers["Content-Range"]) == (206, data[3:10], f"bytes 3-9/{len(data)}")
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=-4"})) as r:
        assert r.read() == data[-4:]


def test_offline_reads_the_cache_and_never_the_network(tiny, cache):
    with serve([tiny]) as hub:
        with use_endpoint(hub.endpoint, cache, offline=False):
            online_path = hf_hub_download(REPO, "config.json")
        with use_endpoint(hub.endpoint, cache, offline=True):
            before = len(hub.requests)
            assert hf_hub_download(REPO, "config.json") == online_path
            with pytest.raises(LocalEntryNotFoundError):
                hf_hub_download(REPO, "sub/notes.txt")  # exists on the Hub, never fetched
            with pytest.raises(OfflineModeIsEnabled):
                model_info(REPO)
            assert len(hub.requests) == before  # offline mode sent nothing while the server was up

    # the server is stopped: only the cache answers, whether the Hub is down, skipped or switched off
    with use_endpoint(hub.endpoint, cache, offline=False):
        assert hf_hub_download(REPO, "config.json") == online_path  # connection refused => cache
        assert hf_hub_download(REPO, "config.json", local_files_only=True) == online_path
        with pytest.raises(LocalEntryNotFoundError):  # (without local_files_only: ~25 s of retries, then this)
            hf_hub_download(REPO, "sub/notes.txt", local_files_only=True)
    with use_endpoint(hub.endpoint, cache, offline=True):
        assert hf_hub_download(REPO, "config.json") == online_path
        assert hf_hub_download(REPO, "config.json", revision=COMMIT) == online_path


def test_snapshot_download_fetches_only_allowed_patterns(tiny, cache):
    with serve([tiny]) as hub:
        with use_endpoint(hub.endpoint, cache, offline=False):
            folder = snapshot_download(REPO, allow_patterns=["*.json", "sub/*"])
        assert sorted(name for _, name in hub.downloads) == ["config.json", "sub/notes.txt"]
        assert not [name for _, name in resolved(hub) if name.startswith("weights")]  # not even a HEAD
        assert ("GET", f"/api/models/{REPO}/tree/{COMMIT}") in hub.requests
    files = sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*.*"))
    assert files == ["config.json", "sub/notes.txt"]
    with use_endpoint(None, cache, offline=True):
        assert snapshot_download(REPO, allow_patterns=["*.json", "sub/*"]) == folder
        with pytest.raises(IncompleteSnapshotError):  # the cached tree listing knows weights.* is missing
            snapshot_download(REPO, allow_patterns=["*.safetensors"])


def test_model_info_tree_and_errors(online, tiny, cache):
    info = model_info(REPO)
    assert (info.id, info.sha, info.private, info.gated) == (REPO, COMMIT, False, False)
    assert [s.rfilename for s in info.siblings] == sorted(tiny.files)
    lfs = {s.rfilename: s.lfs for s in model_info(REPO, files_metadata=True).siblings}
    data = tiny.files["weights.safetensors"].read_bytes()
    weights = lfs["weights.safetensors"]
    assert (weights.sha256, weights.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert lfs["config.json"] is None
    assert model_info(REPO, revision=COMMIT).sha == COMMIT
    assert list_repo_files(REPO) == sorted(tiny.files)
    assert sorted((type(e).__name__, e.path) for e in list_repo_tree(REPO)) == [
        ("RepoFile", "config.json"),
        ("RepoFile", "weights.bin"),
        ("RepoFile", "weights.safetensors"),
        ("RepoFolder", "sub"),
    ]
    assert [e.path for e in list_repo_tree(REPO, path_in_repo="sub")] == ["sub/notes.txt"]

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("owner/missing", "config.json")
    with pytest.raises(RepositoryNotFoundError):
        model_info("owner/missing")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="v9")
    with pytest.raises(RevisionNotFoundError):
        model_info(REPO, revision="v9")
    with pytest.raises(RemoteEntryNotFoundError) as missing:
        hf_hub_download(REPO, "nope.json")
    assert isinstance(missing.value, EntryNotFoundError)
    assert (cache / "models--owner--tiny" / ".no_exist" / COMMIT / "nope.json").is_file()
    with pytest.raises(RemoteEntryNotFoundError):
        list(list_repo_tree(REPO, path_in_repo="additional_chat_templates"))


def test_use_endpoint_patches_every_copy_and_restores(tmp_path):
    from diffusers.loaders import lora_base
    from diffusers.utils import hub_utils

    before = (constants.ENDPOINT, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE, hf_api.api.endpoint,
              lora_base.HF_HUB_OFFLINE, hub_utils.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE"))  # fmt: skip
    with use_endpoint("http://127.0.0.1:9/", tmp_path, offline=False):
        assert constants.ENDPOINT == hf_api.api.endpoint == "http://127.0.0.1:9"
        assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith("http://127.0.0.1:9/{repo_id}/resolve/")
        assert constants.HF_HUB_CACHE == str(tmp_path)
        assert not constants.is_offline_mode() and not lora_base.HF_HUB_OFFLINE and not hub_utils.HF_HUB_OFFLINE
        assert os.environ["HF_HUB_OFFLINE"] == "0" and os.environ["HF_ENDPOINT"] == "http://127.0.0.1:9"
        with use_endpoint(None, tmp_path, offline=True):  # nested: keep the endpoint, go offline
            assert constants.is_offline_mode() and lora_base.HF_HUB_OFFLINE
            assert constants.ENDPOINT == "http://127.0.0.1:9"
        assert not constants.is_offline_mode() and not lora_base.HF_HUB_OFFLINE
        # a module imported inside the block copies the patched value; it is reset on exit
        probe = types.ModuleType("diffusers._fakehub_probe")
        probe.HF_HUB_OFFLINE, probe.ENDPOINT = constants.HF_HUB_OFFLINE, constants.ENDPOINT
        sys.modules[probe.__name__] = probe
    try:
        after = (constants.ENDPOINT, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE, hf_api.api.endpoint,
                 lora_base.HF_HUB_OFFLINE, hub_utils.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE"))  # fmt: skip
        assert after == before
        assert (probe.HF_HUB_OFFLINE, probe.ENDPOINT) == (constants.HF_HUB_OFFLINE, constants.ENDPOINT)
    finally:
        del sys.modules[probe.__name__]


def tiny_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=8,
        sample_size=8,
        attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )


def test_unet_from_pretrained_over_the_server_then_offline(tmp_path, cache):
    from diffusers import UNet2DConditionModel

    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "src" / "unet", safe_serialization=True)
    torch.save({"decoy": torch.zeros(1)}, tmp_path / "src" / "unet" / "diffusion_pytorch_model.bin")
    repo = Repo.from_folder("owner/pipe", tmp_path / "src")

    with serve([repo]) as hub:
        with use_endpoint(hub.endpoint, cache, offline=False):
            online = UNet2DConditionModel.from_pretrained("owner/pipe", subfolder="unet", use_safetensors=True)
        asked = {name for _, name in resolved(hub)}
    assert {"unet/config.json", "unet/diffusion_pytorch_model.safetensors"} <= asked
    assert "unet/diffusion_pytorch_model.bin" not in asked  # the pickle is never even HEADed
    assert sorted(name for _, name in hub.downloads) == ["unet/config.json", "unet/diffusion_pytorch_model.safetensors"]

    with use_endpoint(None, cache, offline=True):  # server stopped
        offline = UNet2DConditionModel.from_pretrained("owner/pipe", subfolder="unet", use_safetensors=True)
    saved = unet.state_dict()
    for model in (online, offline):
        loaded = model.state_dict()
        assert loaded.keys() == saved.keys()
        assert all(torch.equal(loaded[k], saved[k]) for k in saved)


@pytest.fixture
def pipeline_repo(tmp_path):
    """A StableDiffusionPipeline-shaped repo whose files are placeholders: `download` fetches, never loads."""
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
             "unet": ["diffusers", "UNet2DConditionModel"], "scheduler": ["diffusers", "DDIMScheduler"],
             "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
             "feature_extractor": ["transformers", "CLIPImageProcessor"]}  # fmt: skip
    names = ["unet/config.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin",
             "scheduler/scheduler_config.json", "safety_checker/config.json", "safety_checker/model.safetensors",
             "safety_checker/pytorch_model.bin", "feature_extractor/preprocessor_config.json", "README.md",
             "v1-5-pruned.ckpt"]  # fmt: skip
    src = tmp_path / "pipe"
    for name in names:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(json.dumps({"file": name}))  # distinct contents: one blob each
    (src / "model_index.json").write_text(json.dumps(index))
    return Repo.from_folder("owner/sd", src)


def test_pipeline_download_picks_safetensors_and_listed_components(pipeline_repo, tmp_path):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    wanted = ["feature_extractor/preprocessor_config.json", "model_index.json", "safety_checker/config.json",
              "safety_checker/model.safetensors", "scheduler/scheduler_config.json", "unet/config.json",
              "unet/diffusion_pytorch_model.safetensors"]  # fmt: skip
    for cls, kwargs, expected in [
        (DiffusionPipeline, {}, wanted),  # safety_checker/ is listed in model_index.json, so it comes too
        (StableDiffusionPipeline, {"safety_checker": None}, [n for n in wanted if "safety" not in n]),
    ]:
        cache = tmp_path / f"cache-{cls.__name__}"
        with serve([pipeline_repo]) as hub, use_endpoint(hub.endpoint, cache, offline=False):
            folder = cls.download("owner/sd", use_safetensors=True, **kwargs)
        assert sorted(name for _, name in hub.downloads) == expected
        assert not [n for _, n in resolved(hub) if n.endswith((".bin", ".ckpt", ".md"))]
        assert f"/api/models/owner/sd/tree/{pipeline_repo.commit}" in [p for _, p in hub.requests]
        with use_endpoint(None, cache, offline=True):  # server stopped: the cached tree listing drives it
            assert str(cls.download("owner/sd", use_safetensors=True, **kwargs)) == str(folder)


def test_lora_weight_name_guess_needs_model_info_online(tmp_path, cache):
    from diffusers import StableDiffusionPipeline

    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"
    (tmp_path / "lora").mkdir()
    save_file({key: torch.arange(16.0).reshape(2, 8)}, tmp_path / "lora" / "my_lora.safetensors")
    repo = Repo.from_folder("owner/lora", tmp_path / "lora")
    with serve([repo]) as hub:
        with use_endpoint(hub.endpoint, cache, offline=False):  # diffusers' own HF_HUB_OFFLINE copy is patched
            state_dict, _ = StableDiffusionPipeline.lora_state_dict("owner/lora")
        assert ("GET", "/api/models/owner/lora") in hub.requests  # weight_name guessed from model_info siblings
        with use_endpoint(hub.endpoint, cache, offline=True):
            with pytest.raises(ValueError, match="offline mode, you must specify a `weight_name`"):
                StableDiffusionPipeline.lora_state_dict("owner/lora")
            cached, _ = StableDiffusionPipeline.lora_state_dict("owner/lora", weight_name="my_lora.safetensors")
    assert torch.equal(state_dict[key], torch.arange(16.0).reshape(2, 8))
    assert torch.equal(cached[key], state_dict[key])


def test_clip_text_encoder_and_tokenizer_over_the_server_then_offline(tmp_path, cache):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    src = tmp_path / "src"
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=8, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=8, bos_token_id=0,
                            eos_token_id=1)  # fmt: skip
    encoder = CLIPTextModel(config)
    encoder.save_pretrained(src / "text_encoder", safe_serialization=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "b</w>": 3, "a": 4, "b": 5, "ab</w>": 6}
    (src / "tokenizer").mkdir()
    (src / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (src / "tokenizer" / "merges.txt").write_text("#version: 0.2\na b</w>\n")
    repo = Repo.from_folder("owner/clip", src)

    with serve([repo]) as hub, use_endpoint(hub.endpoint, cache, offline=False):
        CLIPTextModel.from_pretrained("owner/clip", subfolder="text_encoder")
        tokenizer = CLIPTokenizer.from_pretrained("owner/clip", subfolder="tokenizer")
    fetched = {name for _, name in hub.downloads}
    assert {"text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt"} <= fetched
    with use_endpoint(None, cache, offline=True):
        offline_encoder = CLIPTextModel.from_pretrained("owner/clip", subfolder="text_encoder")
        offline_tokenizer = CLIPTokenizer.from_pretrained("owner/clip", subfolder="tokenizer")
    assert tokenizer("ab a").input_ids == offline_tokenizer("ab a").input_ids == [0, 6, 2, 1]
    saved = encoder.state_dict()
    assert all(torch.equal(offline_encoder.state_dict()[k], saved[k]) for k in saved)
