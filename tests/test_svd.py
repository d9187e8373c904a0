"""AnimateLCM-SVD-xt: the scheduler against REFERENCES.md's vectors, the counted cost, the toy pipeline."""

import numpy as np
import pytest
import torch

from animatelcm_helpers import config, evaluation, hub, svd, svd_distill, svd_scheduler
from animatelcm_helpers.config import UserError
from animatelcm_helpers.consistency import euler_step
from animatelcm_helpers.toy import svd as toy_svd

# REFERENCES.md, "AnimateLCM-SVD-xt": the noise levels n steps visit, as printed there.
SIGMAS = {
    1: ["700"],
    2: ["700", "13.68"],
    4: ["700", "128.6", "13.68", "0.497"],
    8: ["700", "315.7", "128.6", "45.85", "13.68", "3.17", "0.497", "0.04"],
}


def as_printed(values, printed):
    """Each value rounded to as many decimals as its reference is printed with (3.1666 -> '3.17')."""
    return [f"{v:.{len(p.partition('.')[2])}f}" for v, p in zip(values, printed)]


@pytest.mark.parametrize("steps", sorted(SIGMAS))
def test_step_sigmas_are_the_reference_vectors(steps):
    ref = [float(p) for p in SIGMAS[steps]]
    assert as_printed(svd_scheduler.step_sigmas(steps), SIGMAS[steps]) == SIGMAS[steps]
    np.testing.assert_allclose(svd_scheduler.step_sigmas(steps)[:5], ref[:5], rtol=1e-3)  # 4 printed digits
    s = svd_scheduler.AnimateLCMSVDScheduler()
    s.set_timesteps(steps)
    assert as_printed(s.sigmas[:-1].tolist(), SIGMAS[steps]) == SIGMAS[steps]
    assert s.sigmas[-1] == 0 and len(s.timesteps) == steps
    np.testing.assert_allclose(s.timesteps.numpy(), 0.25 * np.log(svd_scheduler.step_sigmas(steps)), rtol=1e-6)
    assert s.init_noise_sigma == pytest.approx(700.0)


def test_karras_grid_ends():
    grid = svd_scheduler.karras_sigmas()
    assert len(grid) == 40 and grid[0] == pytest.approx(700.0) and grid[-1] == pytest.approx(0.002)
    assert np.all(np.diff(grid) < 0)


def test_scalings_are_the_v_parameterisation():
    c_skip, c_out, c_in = svd_scheduler.scalings(0.002)
    assert c_skip == pytest.approx(1.0, abs=1e-5) and c_out == pytest.approx(-0.002, rel=1e-4)  # f(x, eps) ~ x
    c_skip, c_out, c_in = svd_scheduler.scalings(700.0)
    assert c_skip == pytest.approx(1 / (700**2 + 1)) and c_out == pytest.approx(-700 / np.sqrt(700**2 + 1))
    assert c_in == pytest.approx(1 / np.sqrt(700**2 + 1))
    assert svd_scheduler.scalings(1.0)[:2] == pytest.approx((0.5, -1 / np.sqrt(2)))
    # v-prediction: x = x0 + s eps (EDM form), v = (eps - s x0) / sqrt(s^2+1) is what the UNet predicts
    # for its scaled input; c_skip x + c_out v recovers x0 exactly.
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    for sigma in (0.04, 1.0, 13.68, 700.0):
        x = x0 + sigma * eps
        v = (eps - sigma * x0) / np.sqrt(sigma**2 + 1)
        c_skip, c_out, _ = svd_scheduler.scalings(sigma)
        torch.testing.assert_close(c_skip * x + c_out * v, x0, rtol=1e-4, atol=1e-4)


def test_scale_model_input_and_step_follow_the_formulas():
    s = svd_scheduler.AnimateLCMSVDScheduler()
    s.set_timesteps(4)
    x, v = torch.randn(1, 3, 4, 2, 2) * 128.6, torch.randn(1, 3, 4, 2, 2)
    s.scale_model_input(x, s.timesteps[0])  # first step: sigma 700
    s.step(v, s.timesteps[0], x, generator=torch.Generator().manual_seed(0))
    t = s.timesteps[1]
    sigma = float(s.sigmas[1])
    torch.testing.assert_close(s.scale_model_input(x, t), x / np.sqrt(sigma**2 + 1))
    out = s.step(v, t, x, generator=torch.Generator().manual_seed(1))
    c_skip, c_out, _ = svd_scheduler.scalings(sigma)
    torch.testing.assert_close(out.denoised, c_skip * x + c_out * v)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out.prev_sample, out.denoised + float(s.sigmas[2]) * z)


def run_schedule(steps, seed=None, generator_attr=None):
    s = svd_scheduler.AnimateLCMSVDScheduler()
    s.set_timesteps(steps)
    s.noise_generator = generator_attr
    x = torch.randn(1, 2, 4, 3, 3, generator=torch.Generator().manual_seed(9)) * s.init_noise_sigma
    outs = []
    for t in s.timesteps:
        v = torch.tanh(s.scale_model_input(x, t))  # a stand-in model
        g = None if seed is None else torch.Generator().manual_seed(seed + len(outs))
        out = s.step(v, t, x, generator=g)
        outs.append(out)
        x = out.prev_sample
    return x, outs


def test_seeded_noise_is_deterministic_and_last_step_adds_none():
    a, outs = run_schedule(4, seed=0)
    b, _ = run_schedule(4, seed=0)
    c, _ = run_schedule(4, seed=5)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert torch.equal(outs[-1].prev_sample, outs[-1].denoised)  # the last step returns denoised
    assert not torch.equal(outs[0].prev_sample, outs[0].denoised)
    # the pipeline passes no generator: the scheduler's noise_generator makes it reproducible
    d, _ = run_schedule(4, generator_attr=torch.Generator().manual_seed(3))
    e, _ = run_schedule(4, generator_attr=torch.Generator().manual_seed(3))
    torch.testing.assert_close(d, e, rtol=0, atol=0)
    one, outs = run_schedule(1, seed=0)
    assert torch.equal(one, outs[0].denoised)


def test_save_and_load_round_trip(tmp_path):
    s = svd_scheduler.AnimateLCMSVDScheduler(sigma_max=500.0)
    s.save_pretrained(tmp_path)
    assert (tmp_path / "scheduler_config.json").is_file()
    back = svd_scheduler.AnimateLCMSVDScheduler.from_pretrained(tmp_path)
    public = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert public(back.config) == public(s.config) and public(s.config)["sigma_max"] == 500.0
    for n in (1, 4, 8):
        s.set_timesteps(n)
        back.set_timesteps(n)
        torch.testing.assert_close(back.sigmas, s.sigmas, rtol=0, atol=0)
        torch.testing.assert_close(back.timesteps, s.timesteps, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [0, 41, -1, 2.5, "4", True])
def test_bad_step_counts_say_what_to_do(bad):
    with pytest.raises(UserError, match="whole number from 1 to 40.*1 to 8 steps"):
        svd_scheduler.AnimateLCMSVDScheduler().set_timesteps(bad)


def test_timesteps_not_in_the_schedule_are_refused():
    s = svd_scheduler.AnimateLCMSVDScheduler()
    s.set_timesteps(2)
    with pytest.raises(ValueError, match="not in this schedule"):
        s.step(torch.zeros(1), 999, torch.zeros(1))


def test_guidance_ramp_is_linear_over_frames():
    ramp = svd.guidance_ramp(25, 1.0, 1.2)
    assert ramp.shape == (25,) and ramp[0] == 1.0 and ramp[-1] == pytest.approx(1.2)
    torch.testing.assert_close(ramp, torch.linspace(1.0, 1.2, 25))


def test_configs_are_svd_xt():
    """The UNet config is diffusers' defaults (but the sample size); the VAE's is not."""
    from diffusers import UNetSpatioTemporalConditionModel

    def plain(v):
        return list(v) if isinstance(v, (tuple, list)) else v

    default = dict(svd.on_meta(UNetSpatioTemporalConditionModel, {}).config)
    for key, value in svd.svd_xt_unet_config().items():
        if key != "sample_size":
            assert plain(default[key]) == plain(value), key
    assert default["sample_size"] is None


@pytest.fixture(scope="module")
def flops():
    return svd.count_svd_flops()


def test_flop_counts_match_references(flops):
    assert flops["unet_params"] / 1e9 == pytest.approx(1.52, abs=0.005)
    assert flops["unet_flops"] / 1e12 == pytest.approx(79.9, rel=0.01)
    assert flops["vae_decode_flops"] / 1e12 == pytest.approx(173.6, rel=0.01)
    # REFERENCES' 97.7 M is the whole temporal VAE; its decoder alone has 63.6 M
    assert flops["vae_params"] / 1e6 == pytest.approx(97.7, abs=0.1)
    assert flops["vae_decoder_params"] / 1e6 == pytest.approx(63.6, abs=0.1)


def test_cost_table_percentages(flops):
    rows = {r["steps"]: r for r in svd.cost_table(flops=flops)}
    assert rows[25]["unet_evals"] == 50 and rows[25]["cfg"]
    pct = {n: (round(100 * rows[n]["unet_fraction"], 1), round(100 * rows[n]["fraction_with_vae"], 1)) for n in (2, 4)}
    assert pct == {4: (8.0, 11.8), 2: (4.0, 8.0)}
    table = svd.format_cost_table(list(rows.values()))
    assert "| 4 | 4 |" in table and "11.8%" in table and table.count("\n") == 6


@pytest.fixture(scope="module")
def svd_pipe(toy_settings):
    return svd.load_svd()


IMAGE = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)


def test_toy_pipeline_runs_with_our_scheduler(svd_pipe):
    from diffusers import StableVideoDiffusionPipeline

    assert isinstance(svd_pipe, StableVideoDiffusionPipeline)
    assert isinstance(svd_pipe.scheduler, svd_scheduler.AnimateLCMSVDScheduler)
    assert "toy SVD" in svd_pipe.svd_note
    a = svd.generate_svd(svd_pipe, IMAGE, steps=2, seed=3)
    b = svd.generate_svd(svd_pipe, IMAGE, steps=2, seed=3)
    c = svd.generate_svd(svd_pipe, IMAGE, steps=2, seed=4)
    assert a.frames.shape == (8, 32, 32, 3) and a.frames.dtype == np.uint8
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)
    # SVD's pipeline runs CFG (a doubled batch) whenever max_guidance_scale > 1, even for the
    # demo's gentle 1.0 -> 1.2 ramp: 2 UNet evaluations a step; max_guidance=1 makes it 1.
    assert a.unet_evaluations == 2 * 2
    assert svd.generate_svd(svd_pipe, IMAGE, steps=2, max_guidance=1.0).unet_evaluations == 2
    from PIL import Image

    d = svd.generate_svd(svd_pipe, Image.fromarray(IMAGE), steps=1, frames=4, seed=3)
    assert d.frames.shape == (4, 32, 32, 3) and d.unet_evaluations == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image": IMAGE.astype(np.float32)}, "uint8"),
        ({"image": IMAGE[..., 0]}, r"\(height, width, 3\)"),
        ({"image": "cat.png"}, "RGB PIL image"),
        ({"steps": 0}, "steps must be between 1 and 40"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"frames": 99}, "frames must be between 1 and 8"),
        ({"max_guidance": 0.5}, "max_guidance must be at least 1"),
        ({"min_guidance": 1.5, "max_guidance": 1.2}, "swap them"),
        ({"height": 36}, "multiple of 8"),
        ({"motion_bucket_id": 300}, "motion_bucket_id"),
    ],
)
def test_bad_inputs_say_what_to_do(svd_pipe, kwargs, match):
    kwargs = {"image": IMAGE, **kwargs}
    with pytest.raises(UserError, match=match):
        svd.generate_svd(svd_pipe, **kwargs)


def test_unet_is_filled_from_a_state_dict_on_meta():
    """The full world's UNet loading path, at toy size: built on meta, filled strictly."""
    from animatelcm_helpers.toy import configs

    real = configs.tiny_svd_unet(seed=1)
    cfg = {k: v for k, v in real.config.items() if not k.startswith("_")}
    unet = svd.unet_from_state_dict(real.state_dict(), cfg)
    latents = torch.randn(1, 2, 8, 8, 8)
    kw = {"encoder_hidden_states": torch.randn(1, 1, 32), "added_time_ids": torch.zeros(1, 3)}
    with torch.no_grad():
        torch.testing.assert_close(unet(latents, 1.0, **kw).sample, real(latents, 1.0, **kw).sample)
    partial = dict(list(real.state_dict().items())[:-1])
    with pytest.raises(UserError, match="do not fit"):
        svd.unet_from_state_dict(partial, cfg)


def test_full_world_offline_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(hub.MissingWeightsError) as err:
        svd.load_svd(world="full", device="cpu")
    text = str(err.value)
    assert "is not on this machine" in text and "HF_HUB_OFFLINE is set" in text
    assert "python -m animatelcm_helpers download animatelcm_svd_xt" in text
    assert "world='toy'" in text


# ------------------------------------------------------------------------------------------
# The toy SVD teacher and its consistency distillation (the official AnimateLCM-SVD recipe)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_parts():
    return toy_svd.toy_parts(seed=0)


def test_euler_step_is_diffusers_euler_discrete_step():
    """The distillation's teacher step (``consistency.euler_step`` on the guided teacher's D) = SVD's own
    sampler step (EulerDiscreteScheduler, v-prediction)."""
    sched = svd_scheduler.euler_baseline_scheduler()
    sched.set_timesteps(25)
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(1, 8, 4, 8, 8, generator=g) * 30, torch.randn(1, 8, 4, 8, 8, generator=g)
    for i in (0, 5, 12, 23):
        sched._step_index = i
        expected = sched.step(v, sched.timesteps[i], x).prev_sample
        s, s_next = float(sched.sigmas[i]), float(sched.sigmas[i + 1])
        c_skip, c_out, _ = svd_scheduler.scalings(s)
        d = c_skip * x + c_out * v
        torch.testing.assert_close(euler_step(lambda x, s: d, x, s, s_next), expected, rtol=1e-5, atol=1e-5)
    # SVD's Euler sampler and the consistency grid share the EDM noise levels: 0.002 .. 700
    assert float(sched.sigmas[0]) == pytest.approx(700.0, rel=1e-4)


def test_cd_weights_and_guidance_follow_the_recipe():
    grid = svd_scheduler.karras_sigmas()
    w = svd_distill.cd_weight(torch.tensor(grid[:-1]), torch.tensor(grid[1:]))
    np.testing.assert_allclose(w.numpy(), (1.0 / (grid[:-1] - grid[1:])) ** 0.1, rtol=1e-6)
    assert w[0] < 1 < w[-1]  # large gaps (high noise) weigh less
    gs = svd_distill.sample_guidance(500, 8, torch.Generator().manual_seed(0))
    assert gs.shape == (500, 8)
    assert set(np.round(gs[:, 0].numpy(), 4)) == {1.0, 1.25, 1.5}
    assert set(np.round(gs[:, -1].numpy(), 4)) == {2.0, 2.25, 2.5}
    np.testing.assert_allclose(gs[0].numpy(), np.linspace(float(gs[0, 0]), float(gs[0, -1]), 8), rtol=1e-6)


def test_training_inputs_are_what_the_pipeline_feeds_the_unet(toy_parts):
    """The UNet input the recipes build (c_in x ++ condition latent, 0.25 ln s, CLIP embedding, time
    ids) equals what StableVideoDiffusionPipeline itself feeds the UNet, captured at its first call."""
    from PIL import Image

    from animatelcm_helpers.toy.data import to_uint8

    frames = to_uint8(toy_svd.toy_videos("test", 1)[0].numpy())  # as the pipeline gets them: uint8 images
    pixels = torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 1, 4, 2, 3)
    seen = {}

    def capture(module, args, kwargs):
        seen.setdefault("args", (args, kwargs))

    latents = torch.randn(1, 8, 4, 8, 8, generator=torch.Generator().manual_seed(1))  # the pipeline scales it
    handle = toy_parts.unet.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            toy_parts(Image.fromarray(frames[0, 0]), height=32, width=32, num_frames=8, num_inference_steps=2,
                      min_guidance_scale=1.0, max_guidance_scale=1.0, noise_aug_strength=0.0, latents=latents.clone(),
                      fps=config.SVD_FPS["toy"], motion_bucket_id=config.SVD_DEMO["motion_bucket_id"], output_type="latent")
    finally:
        handle.remove()
    (sample, t), kw = seen["args"][0][:2], seen["args"][1]
    cond = toy_svd.svd_conditions(toy_parts, pixels)
    first = svd_distill.condition_latents(toy_parts.vae, pixels[:, 0], torch.Generator(), noise_aug_strength=0.0)
    sigma = torch.tensor([700.0])
    x = latents * toy_parts.scheduler.init_noise_sigma  # x = sqrt(s_max^2 + 1) z, Euler's start
    torch.testing.assert_close(sample[:, :, :4], x * svd_scheduler.scalings(sigma)[2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sample[:, :, 4:], first[:, None].expand(-1, 8, -1, -1, -1))
    torch.testing.assert_close(torch.as_tensor(t, dtype=torch.float32).reshape(-1)[0], svd_scheduler.timestep_of(sigma)[0],
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(kw["encoder_hidden_states"], cond["image_embeds"], rtol=1e-5, atol=1e-6)
    ids = svd_distill.added_time_ids(1, config.SVD_FPS["toy"], noise_aug_strength=0.0)
    torch.testing.assert_close(kw["added_time_ids"], ids)


def test_teacher_loss_target_recovers_x0():
    """F* = (x0 - c_skip x)/c_out is the v the denoiser needs: c_skip x + c_out F* = x0, and it is
    SVD's v-prediction target (z - s x0)/sqrt(s^2 + 1) (x = x0 + s z)."""
    g = torch.Generator().manual_seed(0)
    x0, z = torch.randn(3, 2, 4, 8, 8, generator=g), torch.randn(3, 2, 4, 8, 8, generator=g)
    s = torch.tensor([0.01, 1.0, 300.0]).reshape(-1, 1, 1, 1, 1)
    x = x0 + s * z
    c_skip, c_out, _ = svd_scheduler.scalings(s)
    target = (x0 - c_skip * x) / c_out
    torch.testing.assert_close(target, (z - s * x0) / torch.sqrt(s**2 + 1), rtol=1e-4, atol=1e-4)
    sig = svd_distill.training_sigmas(4000, torch.Generator().manual_seed(0))
    assert float(sig.min()) >= svd_scheduler.SIGMA_MIN and float(sig.max()) == pytest.approx(700.0)  # grid points reach s_max
    assert abs(float(torch.log(sig).median()) - 0.7) < 1.5


def test_cd_loss_at_init_is_the_formula(toy_parts):
    """At initialisation (student = target = teacher) the loss equals the recipe written out by hand
    with diffusers' own Euler step (EulerDiscreteScheduler on the two sigmas s_n, s_n+1)."""
    from animatelcm_helpers.consistency import pseudo_huber

    unet = toy_parts.unet.eval()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 8, 4, 8, 8, generator=g)
    cond, embeds = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 1, 32, generator=g)
    ids, noise = svd_distill.added_time_ids(2, config.SVD_FPS["toy"]), torch.randn(2, 8, 4, 8, 8, generator=g)
    index = torch.tensor([3, 30])
    guidance = svd_distill.sample_guidance(2, 8, g)
    with torch.no_grad():
        loss = svd_distill.svd_cd_loss(unet, unet, unet, x0, cond, embeds, ids, index, noise, guidance)
        grid = svd_scheduler.karras_sigmas()
        expected = []
        for b in range(2):
            n = int(index[b])
            s, s_next = float(grid[n]), float(grid[n + 1])
            x = x0[b : b + 1] + s * noise[b : b + 1]
            sb = torch.tensor([s])
            v_c = svd_distill.v_model(unet, x, sb, cond[b : b + 1], embeds[b : b + 1], ids[:1])
            v_u = svd_distill.v_model(unet, x, sb, torch.zeros_like(cond[:1]), torch.zeros_like(embeds[:1]), ids[:1])
            v = v_u + guidance[b].reshape(1, 8, 1, 1, 1) * (v_c - v_u)
            euler = svd_scheduler.euler_baseline_scheduler()
            euler.set_timesteps(sigmas=[s, s_next])  # a 2-point schedule: sigmas [s, s_next, 0]
            euler._step_index = 0
            x_next = euler.step(v, euler.timesteps[0], x).prev_sample
            aim = svd_distill.denoised(unet, x_next, torch.tensor([s_next]), cond[b : b + 1], embeds[b : b + 1], ids[:1])
            pred = svd_distill.denoised(unet, x, sb, cond[b : b + 1], embeds[b : b + 1], ids[:1])
            expected.append((1 / (s - s_next)) ** 0.1 * pseudo_huber(pred, aim).mean())
        torch.testing.assert_close(loss, torch.stack(expected).mean().float(), rtol=1e-4, atol=1e-6)
        assert float(loss) > 0
        # the boundary condition: at the grid's last level (0.002) the target is (almost) its input
        x = x0[:1] + 0.002 * noise[:1]
        edge = svd_distill.denoised(unet, x, torch.tensor([0.002]), cond[:1], embeds[:1], ids[:1])
        assert float((edge - x).abs().max()) < 0.02


def test_toy_svd_distillation_resumes_bit_identically(tmp_path, monkeypatch, toy_parts):
    """Interrupted at step 2 (Ctrl-C saves a checkpoint) and resumed = uninterrupted, bit for bit;
    the student starts as the teacher and the teacher never changes."""
    pixels = toy_svd.toy_videos("train", 4)[0]
    teacher = toy_parts.unet
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    kwargs = dict(steps=4, batch=2, save_every=2, progress=False)
    straight, fit = toy_svd.distill_toy_svd(tmp_path / "a", toy_parts, teacher, pixels, **kwargs)
    calls = {"n": 0}
    original = svd_distill.svd_cd_loss

    def interrupted(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kw)

    monkeypatch.setattr(toy_svd, "svd_cd_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        toy_svd.distill_toy_svd(tmp_path / "b", toy_parts, teacher, pixels, **kwargs)
    monkeypatch.setattr(toy_svd, "svd_cd_loss", original)
    resumed, fit2 = toy_svd.distill_toy_svd(tmp_path / "b", toy_parts, teacher, pixels, **kwargs)
    assert fit2.resumed_from == 2 and fit2.losses == fit.losses and len(fit.losses) == 4
    for (n, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), n
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(p, before[k]) for k, p in straight.state_dict().items())


def test_teacher_training_lowers_the_loss_and_resumes(tmp_path, toy_parts):
    import copy

    pixels = toy_svd.toy_videos("train", 8)[0]
    pipe = toy_svd.toy_parts(vae=toy_parts.vae, unet=copy.deepcopy(toy_parts.unet))
    fit = toy_svd.train_toy_svd_teacher(tmp_path / "t", pipe, pixels, steps=3, batch=2, save_every=3, progress=False)
    assert len(fit.losses) == 3 and all(np.isfinite(fit.losses))
    again = toy_svd.train_toy_svd_teacher(tmp_path / "t", pipe, pixels, steps=3, batch=2, progress=False)
    assert again.resumed_from == 3 and again.losses == fit.losses


def test_load_svd_uses_the_zoos_distilled_unet(tmp_path, monkeypatch, toy_parts):
    """A zoo with svd/ (the toy SVD-xt) and svd/animatelcm_unet (the student): load_svd puts the
    student into the pipeline with the consistency scheduler; the teacher loads with Euler."""
    import json

    from diffusers import EulerDiscreteScheduler

    zoo_dir = tmp_path / "zoo"
    toy_parts.save_pretrained(zoo_dir / toy_svd.TOY_SVD, safe_serialization=True)
    student = toy_svd.toy_unet(seed=5)
    student.save_pretrained(zoo_dir / toy_svd.TOY_SVD / toy_svd.TOY_STUDENT_FOLDER, safe_serialization=True)
    (zoo_dir / "manifest.json").write_text(json.dumps({"trained": True}))
    monkeypatch.setenv("ANIMATELCM_TOY_ZOO", str(zoo_dir))
    pipe = svd.load_svd(world="toy", device="cpu")
    assert "distilled UNet" in pipe.svd_note and isinstance(pipe.scheduler, svd_scheduler.AnimateLCMSVDScheduler)
    for (k, v), w in zip(student.state_dict().items(), pipe.unet.state_dict().values()):
        assert torch.equal(v, w), k
    teacher = svd.load_toy_svd_teacher()
    assert isinstance(teacher.scheduler, EulerDiscreteScheduler)
    assert teacher.scheduler.config.prediction_type == "v_prediction"
    for (k, v), w in zip(toy_parts.unet.state_dict().items(), teacher.unet.state_dict().values()):
        assert torch.equal(v, w), k
    gen = svd.generate_svd(pipe, IMAGE, steps=2, max_guidance=1.0)
    assert gen.frames.shape == (8, 32, 32, 3) and gen.unet_evaluations == 2


def test_evaluate_svd_measures_against_the_inputs(svd_pipe):
    from animatelcm_helpers.toy import data, metrics

    row, videos = evaluation.evaluate_svd(svd_pipe, 1, n=4, label="toy")
    images, digits, directions = toy_svd.eval_set(4)
    assert videos.shape == (4, 8, 32, 32, 3) and row["videos"] == 4 and row["unet_evals"] == 1
    assert row["digit"] == float(np.mean(metrics.read_digits(videos) == digits))
    assert row["score"] == pytest.approx(metrics.digit_score(videos, [data.caption(int(d)) for d in digits]))
    assert row["both"] <= min(row["digit"], row["direction"]) and row["frechet"] >= 0
    table = evaluation.format_svd_table([row])
    assert "digit p" in table and f"{row['score']:.3f}" in table


def test_toy_svd_teacher_missing_says_how_to_build(tmp_path, monkeypatch):
    import json

    (tmp_path / "manifest.json").write_text(json.dumps({"trained": True}))
    monkeypatch.setenv("ANIMATELCM_TOY_ZOO", str(tmp_path))
    with pytest.raises(UserError, match="--only svd_teacher"):
        svd.load_toy_svd_teacher()


def test_decoder_finetune_keeps_the_latent_space(tmp_path):
    """The temporal decoder is fine-tuned with the encoder frozen: latents (so the UNets) stay valid."""
    vae = toy_svd.toy_temporal_vae(seed=0)
    enc = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
    dec = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    fit = toy_svd.finetune_toy_decoder(tmp_path / "d", vae, steps=2, batch=1, videos=2, progress=False)
    assert len(fit.losses) == 2 and all(np.isfinite(fit.losses))
    for k, v in vae.encoder.state_dict().items():
        assert torch.equal(v, enc[k]), k
    assert any(not torch.equal(v, dec[k]) for k, v in vae.decoder.state_dict().items())
