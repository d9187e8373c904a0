"""AnimateLCM's successors (notebook 09): each loss against a direct evaluation of its formula, the
phased sampler's edges against diffusers' TCD, the blur and fresh-noise measures, exact resume, and
the zoo's successor stages on tiny data."""

import json

import numpy as np
import pytest
import torch

from animatelcm_helpers import distill, lcm, successors
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import build_successors, configs, recipes

AC = recipes.noise_scheduler().alphas_cumprod
EDGES = [999, 759, 499, 259, 0]


def tiny_text(n=12):
    return recipes.encode_text(configs.tiny_tokenizer(), configs.tiny_text_encoder(0), recipes.all_captions()[:n])


def videos(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 4, 8, 8, generator=g), torch.randint(1, 12, (n,), generator=g)


def bshape(v, like):
    return v.reshape(-1, *([1] * (like.ndim - 1)))


# simple, differentiable stand-ins for the networks: eps as a function of (x, t, text)
def online_fn(x, t, text, w=None):
    return 0.3 * x + 1e-3 * bshape(t.float(), x) + bshape(text.mean(dim=(1, 2)), x)


def target_fn(x, t, text, w=None):
    return 0.25 * x - 2e-4 * bshape(t.float(), x) + bshape(text.mean(dim=(1, 2)), x)


def teacher_fn(x, t, text):
    return 0.5 * x + 5e-4 * bshape(t.float(), x) + 3 * bshape(text.mean(dim=(1, 2)), x)


# ------------------------------------------------------------------------------------------
# Phased consistency
# ------------------------------------------------------------------------------------------


def test_phase_edges_are_lcm_timesteps_plus_zero_and_each_t_maps_to_the_edge_below():
    assert successors.phase_edges(4).tolist() == EDGES
    assert successors.phase_edges(1).tolist() == [999, 0] and successors.phase_edges(2).tolist() == [999, 499, 0]
    t = torch.tensor([999, 779, 759, 739, 499, 279, 259, 19, 0])
    assert successors.phase_edge(t, EDGES).tolist() == [759, 759, 499, 499, 259, 259, 0, 0, 0]
    grid = torch.from_numpy(lcm.skipping_grid())
    s = successors.phase_edge(grid, EDGES)
    assert (s < grid).all() and (s <= (grid - 20).clamp(min=0)).all()  # t_prev = t - 20 never jumps past the edge
    with pytest.raises(UserError, match="phases"):
        successors.phase_edges(0)


def test_ddim_jump_is_the_identity_at_its_own_timestep_and_ddim_otherwise():
    from diffusers import DDIMScheduler

    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 2, 4, 8, 8, generator=g), torch.randn(3, 2, 4, 8, 8, generator=g)
    a = AC[torch.tensor([999, 499, 19])]
    torch.testing.assert_close(successors.ddim_jump(eps, x, a, a), x, rtol=1e-5, atol=1e-5)
    sched = DDIMScheduler.from_config(configs.sd_scheduler().config, set_alpha_to_one=False)
    sched.set_timesteps(50)
    x1, e1 = x[0, 0], eps[0, 0]
    ref = sched.step(e1[None], 981, x1[None]).prev_sample[0]
    ours = successors.ddim_jump(e1[None], x1[None], AC[981:982], AC[961:962])[0]
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_phased_loss_is_its_formula_evaluated_directly():
    x0, ids = videos()
    text = tiny_text()
    e, uncond = text[ids], text[:1]
    loss = successors.phased_loss(online_fn, target_fn, teacher_fn, x0, e, uncond, AC, torch.Generator().manual_seed(5))

    g = torch.Generator().manual_seed(5)  # the same draws, in the same order
    b = x0.shape[0]
    t = torch.from_numpy(lcm.skipping_grid())[torch.randint(0, 50, (b,), generator=g)]
    w = 5.5 + 2.0 * torch.rand(b, generator=g)
    z = torch.randn(x0.shape, generator=g)
    tp = (t - 20).clamp(min=0)
    s = torch.tensor([max(edge for edge in EDGES if edge < int(ti)) for ti in t])
    A = lambda v: bshape(AC[v], x0)  # noqa: E731
    x_t = A(t).sqrt() * x0 + (1 - A(t)).sqrt() * z
    eo = online_fn(x_t, t, e)
    pred = A(s).sqrt() * (x_t - (1 - A(t)).sqrt() * eo) / A(t).sqrt() + (1 - A(s)).sqrt() * eo
    ec, eu = teacher_fn(x_t, t, e), teacher_fn(x_t, t, uncond.expand_as(e))
    x0c, x0u = (x_t - (1 - A(t)).sqrt() * ec) / A(t).sqrt(), (x_t - (1 - A(t)).sqrt() * eu) / A(t).sqrt()
    W = bshape(w, x0)
    x_prev = A(tp).sqrt() * (x0c + W * (x0c - x0u)) + (1 - A(tp)).sqrt() * (ec + W * (ec - eu))
    et = target_fn(x_prev, tp, e)
    goal = A(s).sqrt() * (x_prev - (1 - A(tp)).sqrt() * et) / A(tp).sqrt() + (1 - A(s)).sqrt() * et
    direct = (torch.sqrt((pred - goal) ** 2 + 1e-6) - 1e-3).mean()
    torch.testing.assert_close(loss, direct, rtol=1e-5, atol=1e-7)


def test_phased_loss_is_zero_on_the_true_trajectory():
    """With eps the exact noise of one x0 everywhere, every DDIM jump lands on the same path: 0."""
    x0 = torch.randn(4, 2, 4, 8, 8, generator=torch.Generator().manual_seed(2))

    def oracle(x, t, *rest):
        a = bshape(AC[t], x)
        return (x - a.sqrt() * x0.repeat(x.shape[0] // 4, 1, 1, 1, 1)) / (1 - a).sqrt()

    text, uncond = torch.zeros(4, 3, 5), torch.zeros(1, 3, 5)
    g = torch.Generator().manual_seed(0)
    assert successors.phased_loss(oracle, oracle, oracle, x0, text, uncond, AC, g, distance=distill.l2) < 1e-8
    g = torch.Generator().manual_seed(0)
    wrong = lambda x, t, *rest: torch.zeros_like(x)  # noqa: E731
    assert successors.phased_loss(wrong, oracle, oracle, x0, text, uncond, AC, g, distance=distill.l2) > 1e-3


def test_phased_sampler_visits_the_edges_and_is_diffusers_tcd_at_eta_zero():
    from diffusers import TCDScheduler

    sched = TCDScheduler.from_config(configs.sd_scheduler().config)
    sched.set_timesteps(4)
    assert sched.timesteps.tolist() == EDGES[:-1]
    model = lambda x, t: 0.4 * x + 1e-4 * float(t)  # noqa: E731
    x_T = torch.randn(2, 4, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    ours, visited = successors.phased_sample(model, x_T, sched.alphas_cumprod, 4, return_edges=True)
    assert visited == EDGES[:-1]
    x = x_T
    for t in sched.timesteps:
        x = sched.step(model(x, t), t, x, eta=0.0).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)
    # and the course's own TCD loop at gamma 0 (no noise drawn) is the same
    theirs = lcm.tcd_sample(model, x_T, sched.alphas_cumprod, 4, gamma=0.0)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------
# The adversarial term
# ------------------------------------------------------------------------------------------


class Scaled(torch.nn.Module):
    """An eps model with one trainable scale, to see where gradients go."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, x, t, text, w=None):
        return self.a * x + bshape(text.mean(dim=(1, 2)), x)


def test_discriminator_is_a_projection_discriminator():
    d = successors.LatentVideoDiscriminator(4, 64, width=4)
    x, _ = videos(3)
    text = tiny_text(3)
    h = d.frame(x.flatten(0, 1)).unflatten(0, (3, 2)).permute(0, 2, 1, 3, 4)
    h = d.time(h).mean(dim=(2, 3, 4))
    direct = d.psi(h).squeeze(1) + (h * d.project(text.mean(dim=1))).sum(1)
    torch.testing.assert_close(d(x, text), direct)
    assert not torch.allclose(d(x, text), d(x, text.flip(0)))  # the caption matters
    with pytest.raises(UserError, match="video latents"):
        d(x[:, 0], text)


def test_adversarial_loss_is_its_formula_and_each_side_gets_only_its_own_gradient():
    x0, ids = videos()
    text = tiny_text()[ids]
    d, model = successors.LatentVideoDiscriminator(4, 64, width=4), Scaled()
    g_loss, d_loss = successors.adversarial_loss(model, d, x0, text, AC, torch.Generator().manual_seed(3))

    g = torch.Generator().manual_seed(3)
    t = torch.tensor([999, 499])[torch.randint(0, 2, (4,), generator=g)]
    z = torch.randn(x0.shape, generator=g)
    a = bshape(AC[t], x0)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * z
    fake = distill.consistency_prediction(model(x_t, t, text), x_t, t, AC)
    torch.testing.assert_close(g_loss, -d(fake, text).mean())
    torch.testing.assert_close(d_loss, torch.relu(1 - d(x0, text)).mean() + torch.relu(1 + d(fake, text)).mean())

    (g_loss + d_loss).backward()
    grads = {"model": model.a.grad.clone(), "d": [p.grad.clone() for p in d.parameters()]}
    for p in (*d.parameters(), model.a):
        p.grad = None
    g_only, d_only = successors.adversarial_loss(model, d, x0, text, AC, torch.Generator().manual_seed(3))
    g_only.backward()
    assert all(p.grad is None for p in d.parameters())  # the generator's term never trains D
    torch.testing.assert_close(model.a.grad, grads["model"])
    model.a.grad = None
    d_only.backward()
    assert model.a.grad is None  # the discriminator's term sees a detached fake
    for p, q in zip(d.parameters(), grads["d"]):
        torch.testing.assert_close(p.grad, q)


def test_the_frame_discriminator_judges_decoded_frames_and_the_vae_stays_frozen():
    """With ``decode`` (pixel_decoder: the frozen VAE), D sees Dec(fake) and Dec(x0); the generator's
    gradient crosses the decoder into the model, never into the VAE."""
    vae = configs.tiny_vae(0)
    x0 = torch.randn(2, 2, vae.config.latent_channels, 8, 8, generator=torch.Generator().manual_seed(1))
    text = tiny_text()[torch.tensor([1, 2])]
    decode = successors.pixel_decoder(vae)
    frames = decode(x0)
    assert frames.shape == (2, 2, 3, 8 * 2 ** (len(vae.config.block_out_channels) - 1), 8 * 2 ** (len(vae.config.block_out_channels) - 1))
    with torch.no_grad():
        direct = vae.decode(x0.flatten(0, 1) / vae.config.scaling_factor).sample.unflatten(0, (2, 2))
    torch.testing.assert_close(frames, direct)
    d, model = successors.LatentVideoDiscriminator(3, 64, width=4), Scaled()
    g_loss, d_loss = successors.adversarial_loss(model, d, x0, text, AC, torch.Generator().manual_seed(3), decode=decode)
    g = torch.Generator().manual_seed(3)
    t = torch.tensor([999, 499])[torch.randint(0, 2, (2,), generator=g)]
    z = torch.randn(x0.shape, generator=g)
    a = bshape(AC[t], x0)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * z
    judged = torch.randint(0, 2, (successors.JUDGED_FRAMES,), generator=g)  # the frames D sees, real and fake
    fake = decode(distill.consistency_prediction(model(x_t, t, text), x_t, t, AC)[:, judged])
    torch.testing.assert_close(g_loss, -d(fake, text).mean())
    torch.testing.assert_close(d_loss, torch.relu(1 - d(direct[:, judged], text)).mean() + torch.relu(1 + d(fake, text)).mean())
    g_loss.backward()
    assert model.a.grad is not None and all(p.grad is None for p in vae.parameters())


def test_adversarial_lcd_loss_is_lcd_plus_lambda_g_plus_d():
    x0, ids = videos()
    text = tiny_text()
    e, uncond = text[ids], text[:1]
    d = successors.LatentVideoDiscriminator(4, 64, width=4)
    parts = {}
    total = successors.adversarial_lcd_loss(online_fn, target_fn, teacher_fn, d, x0, e, uncond, AC,
                                            torch.Generator().manual_seed(9), weight=0.3, parts=parts)
    g = torch.Generator().manual_seed(9)
    lcd = distill.lcd_loss(online_fn, target_fn, teacher_fn, x0, e, uncond, AC, g)
    g_loss, d_loss = successors.adversarial_loss(online_fn, d, x0, e, AC, g)
    torch.testing.assert_close(total, lcd + 0.3 * g_loss + d_loss)
    assert parts == pytest.approx({"lcd": lcd.item(), "g": g_loss.item(), "d": d_loss.item()})
    assert float(successors.hinge_discriminator_loss(torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0]))) == 0.25 + 0.5


# ------------------------------------------------------------------------------------------
# Why one step is hard: the measures
# ------------------------------------------------------------------------------------------


def test_high_frequency_energy_is_the_share_of_power_above_the_cutoff():
    flat = np.full((1, 2, 8, 8, 3), 100.0)
    yy, xx = np.mgrid[:8, :8]
    checker = np.repeat(((-1.0) ** (xx + yy) * 50 + 100)[None, None, ..., None], 3, -1)  # all power at Nyquist
    assert successors.high_frequency_energy(flat)[0] == 0.0
    assert successors.high_frequency_energy(checker)[0] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (1, 1, 16, 16, 3))
    gray = img[0, 0].mean(-1) - img[0, 0].mean()
    p = np.abs(np.fft.fft2(gray)) ** 2
    f = np.fft.fftfreq(16)
    direct = p[np.hypot(f[:, None], f[None, :]) > 0.25].sum() / p.sum()
    assert successors.high_frequency_energy(img)[0] == pytest.approx(direct)
    blurred = (img + np.roll(img, 1, 2) + np.roll(img, 1, 3) + np.roll(img, (1, 1), (2, 3))) / 4
    assert successors.high_frequency_energy(blurred)[0] < 0.5 * direct  # averaging removes fine detail


def test_noise_share_is_zero_for_a_deterministic_sampler_and_the_variance_ratio_otherwise():
    rng = np.random.default_rng(1)
    starts = rng.normal(0, 2.0, (50, 1, 30))
    assert successors.noise_share(np.repeat(starts, 4, axis=1)) == 0.0
    noisy = starts + rng.normal(0, 1.0, (50, 40, 30))
    assert successors.noise_share(noisy) == pytest.approx(1 / (4 + 1), abs=0.05)
    x = rng.normal(size=(3, 2, 5))
    direct = x.var(axis=1).mean(axis=0).sum() / x.reshape(6, 5).var(axis=0).sum()
    assert successors.noise_share(x) == pytest.approx(direct)
    with pytest.raises(UserError, match="samples"):
        successors.noise_share(x[:1])


# ------------------------------------------------------------------------------------------
# Training: the student, exact resume, the zoo stages
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    unet, teacher_adapter, adapter = configs.tiny_unet(0), configs.tiny_motion_adapter(0), configs.tiny_motion_adapter(1)
    src = distill.video_student(unet, adapter)
    with torch.no_grad():
        for n, p in src.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(3))
    lat, ids = videos(4)
    return {"unet": unet, "adapter": teacher_adapter, "lcm_adapter": adapter, "lcm_lora": distill.lora_state_dict(src),
            "latents": lat, "ids": ids, "text": tiny_text(), "alphas": AC, "vae": configs.tiny_vae(0)}


def test_successor_student_starts_as_the_model_and_trains_only_its_lora(tiny):
    base = distill.video_student(tiny["unet"], tiny["lcm_adapter"], lora=tiny["lcm_lora"]).eval()
    student = successors.successor_student(tiny["unet"], tiny["lcm_adapter"], tiny["lcm_lora"]).eval()
    x, e = torch.randn(1, 4, 2, 8, 8), tiny["text"][3:4].repeat(2, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(student(x, torch.tensor([500]), encoder_hidden_states=e).sample,
                                   base(x, torch.tensor([500]), encoder_hidden_states=e).sample)
    trainable = [n for n, p in student.named_parameters() if p.requires_grad]
    assert trainable and all(f".{successors.SUCCESSOR}." in n for n in trainable)
    state = successors.successor_state_dict(student)
    assert all(v.dtype == torch.float16 for v in state.values())
    assert any("motion_modules" in k for k in state) and any("attn2.to_k" in k for k in state)
    assert not any("conv" in k or "proj_in" in k for k in state)


@pytest.mark.parametrize("kind", ["phased", "adversarial"])
def test_successor_resume_is_bit_identical(tmp_path, tiny, kind, monkeypatch):
    """Interrupted at step 2 (Ctrl-C saves a checkpoint) and resumed = uninterrupted, bit for bit,
    the discriminator and the optimizer's state included."""
    args = dict(unet=tiny["unet"], teacher_adapter=tiny["adapter"], adapter=tiny["lcm_adapter"], lcm_lora=tiny["lcm_lora"],
                latents=tiny["latents"], ids=tiny["ids"], text=tiny["text"], alphas_cumprod=AC, steps=4, batch=2,
                save_every=2, progress=False)
    straight, fit = successors.train_successor(tmp_path / "a", kind, **args)
    name = {"phased": "phased_loss", "adversarial": "adversarial_lcd_loss"}[kind]
    original, calls = getattr(successors, name), {"n": 0}

    def interrupted(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*a, **kw)

    monkeypatch.setattr(successors, name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        successors.train_successor(tmp_path / "b", kind, **args)
    monkeypatch.setattr(successors, name, original)
    resumed, fit2 = successors.train_successor(tmp_path / "b", kind, **args)
    assert fit2.resumed_from == 2 and fit2.losses == fit.losses
    for (n, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), n
    assert fit.losses[0] != fit.losses[-1]


def test_bad_successor_arguments_say_what_to_do(tmp_path, tiny):
    args = dict(unet=tiny["unet"], teacher_adapter=tiny["adapter"], adapter=tiny["lcm_adapter"], lcm_lora=tiny["lcm_lora"],
                latents=tiny["latents"], ids=tiny["ids"], text=tiny["text"], alphas_cumprod=AC, steps=1, progress=False)
    with pytest.raises(UserError, match="unknown successor"):
        successors.train_successor(tmp_path, "distilled", **args)
    with pytest.raises(UserError, match="lambda"):
        successors.train_successor(tmp_path, "adversarial", weight=-1, **args)
    with pytest.raises(UserError, match="unknown successor"):
        build_successors.load_successor("lightning")


def test_build_stages_train_resume_skip_and_write_a_loadable_lora(tmp_path, tiny, toy_settings):
    from diffusers import TCDScheduler
    from safetensors.torch import load_file

    from animatelcm_helpers import pipelines
    from animatelcm_helpers.toy import zoo

    seen = []
    for name in ("phased", "adversarial"):
        info = build_successors.train_stage(tmp_path / "work", name, 2, tiny, progress=False,
                                            on_save=lambda step, student, name=name: seen.append((name, step)))
        assert info["steps"] == 2 and info["seconds"] > 0 and info["file"] == f"successors/{name}.safetensors"
        f = build_successors.weight_file(tmp_path / "work", name)
        assert info["sha256"] == zoo.sha256(f) and info["bytes"] == f.stat().st_size
        assert all(v.dtype == torch.float16 for v in load_file(f).values())
        logged = [json.loads(line) for line in (tmp_path / "work" / name / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in logged] == [0, 1] and all(r["loss"] > 0 for r in logged)
    assert seen == [("phased", 2), ("adversarial", 2)]
    assert {"lcd", "g", "d"} <= set(logged[0])  # the adversarial stage logs its terms
    # a finished stage is skipped, not retrained
    again = build_successors.successor_stages(tmp_path / "work", 2, ("phased",), progress=False)
    assert again["phased"] == json.loads((tmp_path / "work" / "phased" / "info.json").read_text())
    assert len((tmp_path / "work" / "phased" / "log.jsonl").read_text().splitlines()) == 2
    hashes = build_successors.write_successors(tmp_path / "zoo", tmp_path / "work")
    assert set(hashes) == {"successors/phased.safetensors", "successors/adversarial.safetensors"}

    # into the toy AnimateLCM pipeline, beside its LCM LoRA, with the successor's sampler
    pipe = build_successors.load_successor("phased", tmp_path / "zoo" / "successors")
    assert isinstance(pipe.scheduler, TCDScheduler) and pipe.model_spec.scheduler == "tcd"
    assert set(pipe.get_active_adapters()) == {"lcm-lora", "phased"}
    on = pipelines.generate(pipe, "a seven moving left", steps=2, seed=0).frames
    pipelines.set_adapter_weight(pipe, "phased", 0.0)
    off = pipelines.generate(pipe, "a seven moving left", steps=2, seed=0).frames
    plain = pipelines.generate(pipelines.load_t2v("animatelcm", scheduler="tcd"), "a seven moving left", steps=2,
                               seed=0).frames
    assert not np.array_equal(on, off) and np.array_equal(off, plain)  # weight 0: exactly AnimateLCM with TCD
