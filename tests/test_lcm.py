"""The LCM sampler written out (animatelcm_helpers.lcm) against diffusers' LCMScheduler / TCDScheduler.

A fixed, seeded "model" (a channel-mixing linear map whose gain and bias depend on t) runs
through our loop and through a manual ``set_timesteps`` + ``step`` loop with the same
torch.Generator seed; the results must agree to float32 round-off. Test vectors from
REFERENCES.md: 1 -> [999]; 2 -> [999, 499]; 4 -> [999, 759, 499, 259]; c_skip(19) ~ 6.9e-6.
"""

import math

import numpy as np
import pytest
import torch
from diffusers import LCMScheduler, TCDScheduler

from animatelcm_helpers import lcm
from animatelcm_helpers.config import UserError

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
SHAPE = (2, 4, 3, 6, 6)  # (batch, channels, frames, height, width): a tiny video latent
ATOL = 1e-5


def make_model(seed=0, channels=4):
    """A deterministic function of (x, t): out = (1 + t/1000) W x + 0.1 sin(t / 100) b."""
    g = torch.Generator().manual_seed(1000 + seed)
    w = torch.randn(channels, channels, generator=g) / math.sqrt(channels)
    b = torch.randn(channels, generator=g)

    def model_fn(x, t):
        t = torch.as_tensor(t, dtype=x.dtype)
        mixed = torch.einsum("oc,bc...->bo...", w, x)
        return (1 + t / 1000) * mixed + 0.1 * torch.sin(t / 100) * b.reshape(1, -1, *([1] * (x.ndim - 2)))

    return model_fn


def start_latents(seed):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def diffusers_lcm(scheduler, model_fn, latents, steps, original_steps, seed):
    scheduler.set_timesteps(steps, original_inference_steps=original_steps)
    generator = torch.Generator().manual_seed(seed)
    x, denoised = latents, []
    for t in scheduler.timesteps:
        out = scheduler.step(model_fn(x, t), t, x, generator=generator)
        x = out.prev_sample
        denoised.append(out.denoised)
    return x, denoised


# ---- schedule and timesteps ---------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["scaled_linear", "linear"])
def test_alphas_cumprod_equals_diffusers(schedule):
    sched = LCMScheduler(**{**SD, "beta_schedule": schedule})
    assert torch.equal(lcm.alphas_cumprod(beta_schedule=schedule), sched.alphas_cumprod)


def test_skipping_grid():
    grid = lcm.skipping_grid()
    assert grid[0] == 19 and grid[1] == 39 and grid[-1] == 999 and len(grid) == 50
    assert np.all(np.diff(grid) == 20)  # k = 1000 // 50
    assert lcm.skipping_grid(25)[:2].tolist() == [39, 79]
    assert lcm.skipping_grid(30)[-1] == 989  # k = 33: the grid stops short of 999


def test_lcm_timesteps_reference_vectors():
    assert lcm.lcm_timesteps(1).tolist() == [999]
    assert lcm.lcm_timesteps(2).tolist() == [999, 499]
    assert lcm.lcm_timesteps(4).tolist() == [999, 759, 499, 259]
    assert lcm.lcm_timesteps(3).tolist() == [999, 679, 339]


def test_lcm_timesteps_equal_set_timesteps_everywhere():
    sched = LCMScheduler(**SD)
    for original in [*range(1, 61), 100, 250, 1000]:
        for steps in range(1, min(original, 60) + 1):
            sched.set_timesteps(steps, original_inference_steps=original)
            assert lcm.lcm_timesteps(steps, original).tolist() == sched.timesteps.tolist(), (steps, original)
    for strength in (0.3, 0.5, 0.77):
        for steps in range(1, int(50 * strength) + 1):
            sched.set_timesteps(steps, original_inference_steps=50, strength=strength)
            assert lcm.lcm_timesteps(steps, strength=strength).tolist() == sched.timesteps.tolist()


def test_linspace_rounding_is_kept():
    # floor(i * L / n) via np.linspace lands one index low for (L, n) = (30, 22): 989 - 33*14, not - 33*15
    ts = lcm.lcm_timesteps(22, 30)
    assert ts[11] == 989 - 33 * 14


@pytest.mark.parametrize(
    "steps, original, match",
    [(0, 50, "1 to 50"), (51, 50, "1 to 50"), (2.5, 50, "whole number"), (True, 50, "whole number"),
     ("4", 50, "whole number"), (4, 0, "original_steps"), (4, 2000, "original_steps")],
)
def test_bad_steps_raise_user_error(steps, original, match):
    with pytest.raises(UserError, match=match):
        lcm.lcm_timesteps(steps, original)


def test_bad_steps_in_sampler_and_bad_prediction_type():
    abar = lcm.alphas_cumprod()
    with pytest.raises(UserError, match="1 to 25"):
        lcm.lcm_sample(make_model(), start_latents(0), abar, 26, original_steps=25)
    with pytest.raises(UserError, match="epsilon"):
        lcm.lcm_sample(make_model(), start_latents(0), abar, 4, prediction_type="eps")
    with pytest.raises(UserError, match="strength"):
        lcm.lcm_timesteps(4, strength=0.0)
    with pytest.raises(UserError, match="1 to 10"):
        lcm.lcm_timesteps(11, strength=0.2)


# ---- scalings -----------------------------------------------------------------------------------


def test_scalings_at_0_and_19():
    t, c_skip, c_out = lcm.scaling_curves()
    assert t.shape == c_skip.shape == c_out.shape == (1000,)
    assert c_skip[0] == 1.0 and c_out[0] == 0.0
    assert c_skip[19] == pytest.approx(0.25 / (190.0**2 + 0.25), rel=1e-12)
    assert c_skip[19] == pytest.approx(6.9e-6, rel=0.01)
    sched = LCMScheduler(**SD)
    for ti in (0, 1, 19, 259, 999):
        s, o = sched.get_scalings_for_boundary_condition_discrete(ti)
        assert c_skip[ti] == pytest.approx(s, rel=1e-12) and c_out[ti] == pytest.approx(o, rel=1e-12)


# ---- one step -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", lcm.PREDICTION_TYPES)
def test_predicted_x0_inverts_the_forward_process(prediction_type):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 5, generator=g, dtype=torch.float64)
    z = torch.randn(3, 5, generator=g, dtype=torch.float64)
    abar = torch.tensor([0.9, 0.5, 0.01], dtype=torch.float64)
    a = abar[:, None]
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * z
    output = {"epsilon": z, "sample": x0, "v_prediction": a.sqrt() * z - (1 - a).sqrt() * x0}[prediction_type]
    torch.testing.assert_close(lcm.predicted_x0(output, x_t, abar, prediction_type), x0)
    torch.testing.assert_close(lcm.predicted_noise(output, x_t, abar, prediction_type), z)


def test_last_step_returns_denoised_exactly():
    abar = lcm.alphas_cumprod()
    x = start_latents(1)
    out = make_model()(x, 259)
    prev, denoised = lcm.lcm_step(out, 259, x, abar, None, None)
    assert prev is denoised
    c_skip, c_out = lcm.scalings_lcm(torch.tensor(259.0))
    expected = c_out * (x - (1 - abar[259]).sqrt() * out) / abar[259].sqrt() + c_skip * x
    torch.testing.assert_close(denoised, expected)
    # at t = 0 the boundary condition holds: f(x, 0) = x whatever the model says
    assert torch.equal(lcm.lcm_step(out, 0, x, abar, None, None)[0], x)


def test_step_renoises_with_the_given_noise():
    abar = lcm.alphas_cumprod()
    x, z = start_latents(2), start_latents(3)
    out = make_model()(x, 999)
    prev, denoised = lcm.lcm_step(out, 999, x, abar, 499, z)
    torch.testing.assert_close(prev, abar[499].sqrt() * denoised + (1 - abar[499]).sqrt() * z)
    with pytest.raises(UserError, match="noise"):
        lcm.lcm_step(out, 999, x, abar, 499, None)


def test_step_equals_scheduler_step_with_per_sample_timesteps():
    abar = lcm.alphas_cumprod()
    x, z = start_latents(4), start_latents(5)
    out = make_model()(x, 500)
    ts, t_next = torch.tensor([999, 259]), torch.tensor([499, 19])
    prev, denoised = lcm.lcm_step(out, ts, x, abar, t_next, z)
    for b in range(2):
        p_b, d_b = lcm.lcm_step(out[b : b + 1], int(ts[b]), x[b : b + 1], abar, int(t_next[b]), z[b : b + 1])
        torch.testing.assert_close(prev[b : b + 1], p_b)
        torch.testing.assert_close(denoised[b : b + 1], d_b)


# ---- the whole loop against LCMScheduler ---------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("original_steps", [50, 25])
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 6, 8])
def test_lcm_sample_equals_lcm_scheduler(steps, original_steps, seed):
    sched = LCMScheduler(**SD)
    model_fn, latents = make_model(seed), start_latents(seed)
    ref, ref_denoised = diffusers_lcm(sched, model_fn, latents, steps, original_steps, seed)
    ours, traj = lcm.lcm_sample(
        model_fn, latents, sched.alphas_cumprod, steps, torch.Generator().manual_seed(seed),
        original_steps=original_steps, return_trajectory=True,
    )
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=1e-5)
    assert [t for t, _ in traj] == sched.timesteps.tolist()
    for (_, d), d_ref in zip(traj, ref_denoised):
        torch.testing.assert_close(d, d_ref, atol=ATOL, rtol=1e-5)
    assert torch.equal(ours, traj[-1][1])  # the result is the last step's denoised


@pytest.mark.parametrize("steps", [1, 4, 6])
def test_lcm_sample_equals_lcm_scheduler_linear_schedule(steps):
    conf = {**SD, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}
    sched = LCMScheduler(**conf)
    model_fn, latents = make_model(7), start_latents(7)
    ref, _ = diffusers_lcm(sched, model_fn, latents, steps, 50, 7)
    abar = lcm.alphas_cumprod(0.0001, 0.02, "linear")
    ours = lcm.lcm_sample(model_fn, latents, abar, steps, torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
@pytest.mark.parametrize("steps", [1, 4])
def test_lcm_sample_equals_lcm_scheduler_other_predictions(prediction_type, steps):
    sched = LCMScheduler(**SD, prediction_type=prediction_type)
    model_fn, latents = make_model(3), start_latents(3)
    ref, _ = diffusers_lcm(sched, model_fn, latents, steps, 50, 3)
    ours = lcm.lcm_sample(
        model_fn, latents, sched.alphas_cumprod, steps, torch.Generator().manual_seed(3),
        prediction_type=prediction_type,
    )
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=1e-5)


def test_lcm_sample_generator_list_matches_diffusers():
    # one generator per sample: diffusers draws each sample's noise from its own generator
    sched = LCMScheduler(**SD)
    model_fn, latents = make_model(0), start_latents(0)
    sched.set_timesteps(4)
    gens = [torch.Generator().manual_seed(s) for s in (10, 11)]
    x = latents
    for t in sched.timesteps:
        x = sched.step(model_fn(x, t), t, x, generator=gens).prev_sample
    gens = [torch.Generator().manual_seed(s) for s in (10, 11)]
    ours = lcm.lcm_sample(model_fn, latents, sched.alphas_cumprod, 4, gens)
    torch.testing.assert_close(ours, x, atol=ATOL, rtol=1e-5)


def test_lcm_sample_is_deterministic_with_a_seed():
    abar = lcm.alphas_cumprod()
    model_fn, latents = make_model(0), start_latents(0)
    a = lcm.lcm_sample(model_fn, latents, abar, 4, torch.Generator().manual_seed(5))
    b = lcm.lcm_sample(model_fn, latents, abar, 4, torch.Generator().manual_seed(5))
    c = lcm.lcm_sample(model_fn, latents, abar, 4, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # one step draws no noise at all: the generator does not matter
    one = [lcm.lcm_sample(model_fn, latents, abar, 1, torch.Generator().manual_seed(s)) for s in (5, 6)]
    assert torch.equal(*one)


# ---- TCD --------------------------------------------------------------------------------------


def test_tcd_timesteps_equal_set_timesteps():
    sched = TCDScheduler(**SD)
    for steps in (1, 2, 3, 4, 6, 8):
        sched.set_timesteps(steps)  # config original_inference_steps = 50: the LCD grid
        assert lcm.tcd_timesteps(steps).tolist() == sched.timesteps.tolist()
        sched.set_timesteps(steps, original_inference_steps=50)  # passing it switches to 0..999
        assert lcm.tcd_timesteps(steps, None).tolist() == sched.timesteps.tolist()
    assert lcm.tcd_timesteps(4, None).tolist() == [999, 749, 499, 249]
    with pytest.raises(UserError, match="gamma"):
        lcm.tcd_step(torch.zeros(1), 999, torch.zeros(1), lcm.alphas_cumprod(), 499, None, gamma=1.5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("original_steps", [50, None])
@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.6])
@pytest.mark.parametrize("steps", [1, 4, 6])
def test_tcd_sample_equals_tcd_scheduler(steps, gamma, original_steps, prediction_type):
    sched = TCDScheduler(**SD, prediction_type=prediction_type)
    if original_steps is None:
        sched.set_timesteps(steps, original_inference_steps=50)
    else:
        sched.set_timesteps(steps)
    model_fn, latents = make_model(1), start_latents(1)
    generator = torch.Generator().manual_seed(1)
    x, x_s_ref = latents, []
    for t in sched.timesteps:
        out = sched.step(model_fn(x, t), t, x, eta=gamma, generator=generator)
        x = out.prev_sample
        x_s_ref.append(out.pred_noised_sample)
    ours, traj = lcm.tcd_sample(
        model_fn, latents, sched.alphas_cumprod, steps, gamma, torch.Generator().manual_seed(1),
        original_steps=original_steps, prediction_type=prediction_type, return_trajectory=True,
    )
    torch.testing.assert_close(ours, x, atol=ATOL, rtol=1e-5)
    for (_, d), d_ref in zip(traj, x_s_ref):
        torch.testing.assert_close(d, d_ref, atol=ATOL, rtol=1e-5)


def test_sample_video_on_the_toy_pipeline_equals_the_pipeline(lcm_pipe):
    """Our loop on the toy AnimateLCM's UNet = AnimateDiffPipeline + LCMScheduler, same noise."""
    from animatelcm_helpers import lcm as lcm_mod

    for steps in (1, 4):
        ours, trajectory, x_T = lcm_mod.sample_video(lcm_pipe, "a seven moving left", steps=steps, seed=3, noise_seed=4)
        theirs = lcm_pipe("a seven moving left", num_frames=8, height=32, width=32, num_inference_steps=steps,
                          guidance_scale=1.0, latents=x_T.clone(), generator=torch.Generator().manual_seed(4),
                          output_type="latent").frames
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        assert [t for t, _ in trajectory] == list(lcm_mod.lcm_timesteps(steps))
    frames = lcm_mod.decode(lcm_pipe, ours)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8
