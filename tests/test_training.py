"""The shared training loop: exact resume, atomic checkpoints, refusing another recipe's checkpoint."""

import json

import pytest
import torch

from animatelcm_helpers import training
from animatelcm_helpers.config import UserError


def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def loss_for(model):
    def loss_fn(step, g):
        x = torch.randn(8, 4, generator=g)
        y = x.sum(1, keepdim=True).sin()
        return ((model(x) - y) ** 2).mean()
    return loss_fn


class Crash(Exception):
    pass


def run(folder, steps, crash_at=None, progress=False):
    model = make()
    inner = loss_for(model)

    def loss_fn(step, g):
        if step == crash_at:
            raise Crash  # like a killed process: only the periodic checkpoint survives
        return inner(step, g)

    result = training.fit("toy-test", {"net": model}, loss_fn, steps, 1e-2, folder, seed=3,
                          save_every=5, warmup=2, progress=progress)
    return model, result


def test_resume_is_bit_identical(tmp_path):
    straight, r1 = run(tmp_path / "a", 12)
    with pytest.raises(Crash):
        run(tmp_path / "b", 12, crash_at=8)  # the checkpoint of step 5 survives
    resumed, r2 = run(tmp_path / "b", 12)
    assert r2.resumed_from == 5
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert r1.losses == r2.losses and len(r2.losses) == 12


def test_checkpoint_is_safetensors_and_json_only(tmp_path):
    with pytest.raises(Crash):
        run(tmp_path, 12, crash_at=6)
    files = sorted(p.name for p in (tmp_path / "checkpoint").iterdir())
    assert files == ["net.safetensors", "optimizer.safetensors", "state.json"]
    meta = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert meta["recipe"] == "toy-test" and meta["step"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint-")]  # no temporary left


def test_another_recipes_checkpoint_is_refused(tmp_path):
    run(tmp_path, 5)
    assert (tmp_path / "checkpoint").exists()
    model = make()
    with pytest.raises(UserError, match="made by recipe 'toy-test', not 'toy-vae'"):
        training.fit("toy-vae", {"net": model}, loss_for(model), 10, 1e-2, tmp_path)


def test_a_folder_that_is_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "junk.bin").write_bytes(b"\x80\x04")
    model = make()
    with pytest.raises(UserError, match="not a checkpoint of this course"):
        training.fit("toy-test", {"net": model}, loss_for(model), 10, 1e-2, tmp_path)


def test_ctrl_c_keeps_the_last_step(tmp_path):
    model = make()
    inner = loss_for(model)

    def loss_fn(step, g):
        if step == 7:
            raise KeyboardInterrupt
        return inner(step, g)

    with pytest.raises(KeyboardInterrupt):
        training.fit("toy-test", {"net": model}, loss_fn, 12, 1e-2, tmp_path, seed=3, save_every=100, warmup=2)
    meta = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert meta["step"] == 7  # steps 0..6 done and kept
    resumed, r = run(tmp_path, 12)
    straight, _ = run(tmp_path / "fresh", 12)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_bad_steps_and_frozen_models(tmp_path):
    model = make()
    with pytest.raises(UserError, match="steps must be a whole number of at least 1"):
        training.fit("toy-test", {"net": model}, loss_for(model), 0, 1e-2, tmp_path)
    model.requires_grad_(False)
    with pytest.raises(UserError, match="nothing to train"):
        training.fit("toy-test", {"net": model}, loss_for(model), 3, 1e-2, tmp_path)


def test_ablation_step_timer_cancels_the_set_up(monkeypatch):
    """scripts/ablation_stage2.py gives arm (b) stage 1's time in video steps from two timed step
    costs; each is (t(warm + n) - t(warm)) / n, so a run's fixed set-up cost drops out."""
    import importlib.util
    import time
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ablation_script", Path(__file__).parents[1] / "scripts" / "ablation_stage2.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    clock = {"t": 0.0}
    monkeypatch.setattr(time, "perf_counter", lambda: clock["t"])
    calls = []

    def train(folder, steps):  # 7 s of set-up, then 0.25 s a step
        assert folder.is_dir() and not any(folder.iterdir())  # a fresh folder each run
        calls.append(steps)
        clock["t"] += 7.0 + 0.25 * steps

    assert script.step_seconds(train, n=10, warm=2) == pytest.approx(0.25)
    assert calls == [2, 12]
