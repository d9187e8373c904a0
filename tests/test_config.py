import dataclasses

import pytest

from animatelcm_helpers import config
from animatelcm_helpers.config import UserError


def test_explicit_world_beats_environment(monkeypatch):
    monkeypatch.setenv(config.WORLD_ENV, "full")
    assert config.setup(world="toy").world == "toy"
    config.setup(world="toy")


def test_environment_chooses_world(monkeypatch):
    monkeypatch.setenv(config.WORLD_ENV, "toy")
    assert config.default_world() == "toy"
    monkeypatch.setenv(config.WORLD_ENV, "full")
    assert config.default_world() == "full"


def test_automatic_world_is_toy_without_gpu(monkeypatch):
    monkeypatch.delenv(config.WORLD_ENV, raising=False)
    monkeypatch.setattr(config, "cuda_available", lambda: False)
    assert config.default_world() == "toy"
    # a GPU alone is not enough: the Hub must answer too
    monkeypatch.setattr(config, "cuda_available", lambda: True)
    monkeypatch.setattr(config, "hub_reachable", lambda timeout=2.0: False)
    assert config.default_world() == "toy"
    monkeypatch.setattr(config, "hub_reachable", lambda timeout=2.0: True)
    assert config.default_world() == "full"


def test_offline_flag_means_no_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert config.hub_reachable() is False


def test_unknown_world_is_a_clear_error(monkeypatch):
    with pytest.raises(UserError, match="unknown world 'moon'"):
        config.setup(world="moon")
    monkeypatch.setenv(config.WORLD_ENV, "gpu")
    with pytest.raises(UserError, match="use 'toy'"):
        config.default_world()


def test_test_mode_and_pick(monkeypatch):
    monkeypatch.setenv(config.TEST_MODE_ENV, "1")
    assert config.setup(world="toy").test_mode is True
    assert config.pick(1000, 10) == 10
    assert config.setup(world="toy", test_mode=False).test_mode is False
    assert config.pick(1000, 10) == 1000
    config.setup(world="toy", test_mode=True)


def test_dtype_and_device_per_world(monkeypatch):
    monkeypatch.delenv(config.DEVICE_ENV, raising=False)
    toy = config.setup(world="toy")
    assert (toy.device, toy.dtype_name) == ("cpu", "float32")
    monkeypatch.setattr(config, "cuda_available", lambda: True)
    full = config.setup(world="full")
    assert (full.device, full.dtype_name) == ("cuda", "float16")
    config.setup(world="toy")


def test_every_hub_id_has_a_revision_and_lives_in_one_place():
    for name, w in config.HUB.items():
        assert "/" in w.repo_id and not w.local, name
        assert w.revision, f"{name} has no revision"
    for spec in config.MODELS["full"].values():
        for w in (spec.base, spec.motion_adapter, spec.lcm_lora):
            assert w is None or w in config.HUB.values()


def test_hub_ids_are_not_written_anywhere_else():
    """A moved model must be a one-line fix: no Hub id outside config.py."""
    from pathlib import Path

    package = Path(config.__file__).parent
    ids = {w.repo_id for w in config.HUB.values()}
    for path in package.rglob("*.py"):
        if path.name == "config.py":
            continue
        text = path.read_text()
        for repo in ids:
            assert repo not in text, f"{repo} is written in {path}"


def test_model_specs():
    spec = config.model_spec("animatelcm", "toy")
    assert spec.scheduler == "lcm" and spec.lcm_lora is not None and spec.guidance == 1.0
    assert config.model_spec("teacher", "toy").scheduler == "ddim"
    full = config.model_spec("animatelcm", "full")  # the official inference-t2v.yaml sampler, not the base's
    assert dict(full.scheduler_kwargs) == {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "linear",
                                           "original_inference_steps": 100, "steps_offset": 1}
    assert full.scheduler_from_base is False and config.model_spec("animatelcm", "toy").scheduler_from_base
    with pytest.raises(UserError, match="unknown model 'nope'.*animatelcm, teacher"):
        config.model_spec("nope", "toy")
    assert dataclasses.is_dataclass(spec)
