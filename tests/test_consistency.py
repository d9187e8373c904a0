"""Consistency-model math (animatelcm_helpers.consistency) against its formulas and test vectors.

Test vectors from REFERENCES.md: CM scalings (s_d = 0.5, eps = 0.002), LCM scalings
(u = 10 t: c_skip(0) = 1, c_out(0) = 0, c_skip(19) ~ 6.9e-6), the Karras grid (T = 80, eps = 0.002,
rho = 7), pseudo-Huber sqrt((a-b)^2 + c^2) - c, multistep sampling x = x0 + sqrt(t^2 - eps^2) z.
"""

import math

import pytest
import torch

from animatelcm_helpers import consistency as cm
from animatelcm_helpers import toy2d

# ---- scalings ---------------------------------------------------------------------------------


def test_scalings_cm_boundary_condition_at_eps():
    c_skip, c_out = cm.scalings_cm(0.002)
    assert c_skip == 1.0 and c_out == 0.0
    c_skip, c_out = cm.scalings_cm(torch.tensor([0.002], dtype=torch.float64))
    assert c_skip.item() == 1.0 and c_out.item() == 0.0


def test_scalings_cm_formula_at_T():
    c_skip, c_out = cm.scalings_cm(80.0)
    assert c_skip == pytest.approx(0.25 / (79.998**2 + 0.25), rel=1e-12)
    assert c_out == pytest.approx(0.5 * 79.998 / math.sqrt(80.0**2 + 0.25), rel=1e-12)
    assert c_out == pytest.approx(0.49998, abs=1e-4)  # s_d (T - eps) / sqrt(T^2 + s_d^2) ~ s_d


def test_scalings_cm_tensor_matches_float_and_uses_sigma_data():
    ts = torch.tensor([0.002, 0.1, 1.0, 10.0, 80.0], dtype=torch.float64)
    c_skip, c_out = cm.scalings_cm(ts, sigma_data=1.0, eps=0.01)
    for i, t in enumerate(ts.tolist()):
        s, o = cm.scalings_cm(t, sigma_data=1.0, eps=0.01)
        assert c_skip[i].item() == pytest.approx(s, rel=1e-12)
        assert o == pytest.approx(1.0 * (t - 0.01) / math.sqrt(t**2 + 1.0), rel=1e-12, abs=1e-15)
        assert c_out[i].item() == pytest.approx(o, rel=1e-12, abs=1e-15)


def test_scalings_lcm_test_vectors():
    c_skip, c_out = cm.scalings_lcm(0)
    assert c_skip == 1.0 and c_out == 0.0
    c_skip, c_out = cm.scalings_lcm(19)
    assert c_skip == pytest.approx(0.25 / (190.0**2 + 0.25), rel=1e-12)
    assert c_skip == pytest.approx(6.9e-6, rel=0.01)
    assert c_out == pytest.approx(190.0 / math.sqrt(190.0**2 + 0.25), rel=1e-12)
    assert 0.99999 < c_out < 1.0
    ts = torch.tensor([0, 19, 999], dtype=torch.float64)
    c_skip_t, c_out_t = cm.scalings_lcm(ts)
    assert c_skip_t[1].item() == pytest.approx(c_skip, rel=1e-12)
    assert c_out_t[0].item() == 0.0 and c_out_t[1].item() == pytest.approx(c_out, rel=1e-12)
    # the timestep scaling is what makes c_skip vanish so quickly
    assert cm.scalings_lcm(19, timestep_scaling=1.0)[0] == pytest.approx(0.25 / (19.0**2 + 0.25))


def test_consistency_function_boundary_and_broadcast():
    x = torch.randn(3, 4, 2, 5, 5)  # video latents: batch, channels, frames, height, width
    model_out = torch.randn_like(x)
    assert torch.equal(cm.consistency_function(model_out, x, 0.002), x)  # f(x, eps) = x
    t = torch.tensor([0.002, 1.0, 80.0])
    f = cm.consistency_function(model_out, x, t)
    for i in range(3):
        c_skip, c_out = cm.scalings_cm(t[i].item())
        torch.testing.assert_close(f[i], c_skip * x[i] + c_out * model_out[i])
    torch.testing.assert_close(f[0], x[0])
    # LCM form on discrete timesteps: at t = 0 the output is the input
    f_lcm = cm.consistency_function(model_out, x, torch.tensor([0, 19, 999]), scalings=cm.scalings_lcm)
    torch.testing.assert_close(f_lcm[0], x[0])
    torch.testing.assert_close(f_lcm[2], model_out[2], atol=1e-4, rtol=1e-4)


# ---- the Karras grid --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 18, 40])
def test_karras_grid_endpoints_monotone_length(n):
    ts = cm.karras_grid(n)
    assert ts.shape == (n,)
    assert ts[0].item() == pytest.approx(80.0) and ts[-1].item() == pytest.approx(0.002)
    assert bool((ts[:-1] > ts[1:]).all())


def test_karras_grid_formula_and_single_point():
    mid = ((80.0 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7
    ts = cm.karras_grid(3, dtype=torch.float64)
    assert ts[1].item() == pytest.approx(mid, rel=1e-12)
    assert cm.karras_grid(1).tolist() == [80.0]
    with pytest.raises(ValueError):
        cm.karras_grid(0)


# ---- distances and losses ---------------------------------------------------------------------


def test_pseudo_huber_and_l2_known_values():
    a = torch.tensor([0.0, 3.0, 1.0, 100.0])
    b = torch.tensor([0.0, 0.0, 1.0, 0.0])
    ph = cm.pseudo_huber(a, b, c=4.0)
    torch.testing.assert_close(ph, torch.tensor([0.0, 1.0, 0.0, math.sqrt(100.0**2 + 16.0) - 4.0]))
    # default c = 0.001: quadratic near 0 (d^2 / 2c), linear far away (|d| - c)
    d = torch.tensor([1e-5, 10.0], dtype=torch.float64)
    ph = cm.pseudo_huber(d, torch.zeros(2, dtype=torch.float64))
    assert ph[0].item() == pytest.approx(1e-10 / 0.002, rel=1e-3)
    assert ph[1].item() == pytest.approx(10.0 - 0.001, rel=1e-6)
    torch.testing.assert_close(cm.l2(a, b), torch.tensor([0.0, 9.0, 0.0, 10000.0]))


def _delta_world(x_star, eps=0.002):
    """Data = one point x*: the exact denoiser is D(x, t) = x*, the PF-ODE dx/dt = (x - x*)/t has the
    straight trajectories x_t = x* + t c, and the exact consistency function is
    f*(x, t) = x* + (eps / t) (x - x*)."""

    def denoiser(x, t):
        return x_star.expand_as(x)

    def f_exact(x, t):
        t = cm.append_dims(cm.as_time(t, x), x.ndim)
        return x_star + (eps / t) * (x - x_star)

    return denoiser, f_exact


def test_ode_steps_exact_on_linear_trajectories():
    x_star = torch.tensor([0.3, -0.2])
    denoiser, _ = _delta_world(x_star)
    x = x_star + 5.0 * torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    for step in (cm.euler_step, cm.heun_step):
        torch.testing.assert_close(step(denoiser, x, 5.0, 2.0), x_star + 2.0 * (x - x_star) / 5.0)
    ts = cm.karras_grid(6)
    out = cm.pf_ode_sample(denoiser, x * 16.0, ts)
    torch.testing.assert_close(out, x_star + (0.002 / 80.0) * (x * 16.0 - x_star))


def test_heun_is_second_order_on_gaussian_data():
    """Data N(0, s^2): D(x, t) = s^2 / (s^2 + t^2) x, exact flow x(t') = x(t) sqrt(s^2 + t'^2) / sqrt(s^2 + t^2)."""
    s2 = 0.25
    denoiser = lambda x, t: s2 / (s2 + cm.as_time(t, x) ** 2) * x  # noqa: E731
    x = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    t = 1.0

    def exact(h):
        return x * math.sqrt(s2 + (t - h) ** 2) / math.sqrt(s2 + t**2)

    def slope(y, u):
        return (y - s2 / (s2 + u**2) * y) / u

    h = 0.2
    x_e = x - h * slope(x, t)
    torch.testing.assert_close(cm.euler_step(denoiser, x, t, t - h), x_e)
    torch.testing.assert_close(cm.heun_step(denoiser, x, t, t - h), x - h * (slope(x, t) + slope(x_e, t - h)) / 2)
    # halving the step: Euler's local error drops ~4x (order 2), Heun's ~8x (order 3)
    err = {name: [(step(denoiser, x, t, t - hh) - exact(hh)).abs().max().item() for hh in (0.1, 0.05)]
           for name, step in (("euler", cm.euler_step), ("heun", cm.heun_step))}
    assert 3.5 < err["euler"][0] / err["euler"][1] < 4.5
    assert 7.0 < err["heun"][0] / err["heun"][1] < 9.0
    assert err["heun"][0] < err["euler"][0] / 10


def test_cd_loss_zero_for_exact_teacher_and_consistent_student():
    gen = torch.Generator().manual_seed(0)
    x_star = torch.tensor([0.3, -0.2])
    denoiser, f_exact = _delta_world(x_star)
    ts = cm.karras_grid(18)
    n = torch.randint(0, 17, (64,), generator=gen)
    t, t_prev = ts[n], ts[n + 1]
    x_t = cm.add_noise_ve(x_star.expand(64, 2), torch.randn(64, 2, generator=gen), t)
    for step in (cm.euler_step, cm.heun_step):
        solver = lambda x, a, b: step(denoiser, x, a, b)  # noqa: E731
        for dist in (cm.l2, cm.pseudo_huber):
            loss = cm.cd_loss(f_exact, f_exact, solver, x_t, t, t_prev, distance=dist)
            assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # a student that is not consistent (the denoiser, shifted) is penalised
    loss = cm.cd_loss(lambda x, s: f_exact(x, s) + 0.1, f_exact, lambda x, a, b: cm.euler_step(denoiser, x, a, b), x_t, t, t_prev, distance=cm.l2)
    assert loss.item() == pytest.approx(0.01, rel=1e-4)
    # a wrong teacher (no step at all) breaks the zero, even with the exact consistency function
    loss = cm.cd_loss(f_exact, f_exact, lambda x, a, b: x, x_t, t, t_prev, distance=cm.l2)
    assert loss.item() > 1e-8


def test_cd_loss_weight_and_no_grad_through_target():
    w_online = torch.tensor(2.0, requires_grad=True)
    w_target = torch.tensor(1.0, requires_grad=True)
    x_t = torch.ones(4, 3)
    t = torch.tensor([1.0, 1.0, 2.0, 2.0])
    loss = cm.cd_loss(
        lambda x, s: w_online * x,
        lambda x, s: w_target * x,
        lambda x, a, b: x,
        x_t,
        t,
        t / 2,
        distance=cm.l2,
        weight=torch.tensor([1.0, 1.0, 0.0, 0.0]),
    )
    assert loss.item() == pytest.approx(0.5)  # (2 - 1)^2, half the samples weighted 0
    loss.backward()
    assert w_online.grad is not None and w_online.grad.item() == pytest.approx(1.0)
    assert w_target.grad is None


def test_ct_loss_uses_the_same_noise_and_x0_for_both_points():
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(8, 2, 3, generator=gen)
    noise = torch.randn(8, 2, 3, generator=gen)
    t = torch.linspace(1.0, 8.0, 8)
    t_prev = t / 2
    seen = {}

    def f_online(x, s):
        seen["online"] = (x.clone(), s)
        return x

    def f_target(x, s):
        seen["target"] = (x.clone(), s, torch.is_grad_enabled())
        return x

    cm.ct_loss(f_online, f_target, x0, noise, t, t_prev)
    x_t, s_on = seen["online"]
    x_prev, s_tg, grad_enabled = seen["target"]
    assert torch.equal(s_on, t) and torch.equal(s_tg, t_prev)
    tt, tp = t[:, None, None], t_prev[:, None, None]
    torch.testing.assert_close((x_t - x0) / tt, noise)
    torch.testing.assert_close((x_prev - x0) / tp, noise)
    assert not grad_enabled
    # with f = identity the loss is the gap between the two noise levels: ((t - t_prev) z)^2
    loss = cm.ct_loss(lambda x, s: x, lambda x, s: x, x0, noise, t, t_prev, distance=cm.l2)
    expected = ((((t - t_prev)[:, None, None] * noise) ** 2).reshape(8, -1).mean(1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_ct_schedule_endpoints():
    assert cm.ct_schedule(0, 100) == (2, pytest.approx(0.9))  # N(0) = s0, mu(0) = mu0
    n, mu = cm.ct_schedule(100, 100)
    assert n == 151 and mu == pytest.approx(math.exp(2 * math.log(0.9) / 151))
    assert cm.ct_schedule(50, 100, mu0=0.0)[1] == 0.0
    ns = [cm.ct_schedule(k, 100)[0] for k in range(101)]
    assert ns == sorted(ns)


def test_weight_inverse_gap():
    torch.testing.assert_close(cm.weight_inverse_gap(torch.tensor([2.0, 1.0]), torch.tensor([1.5, 0.75])), torch.tensor([2.0, 4.0]))


# ---- EMA ----------------------------------------------------------------------------------------


def test_ema_update_modules_and_tensors():
    target, online = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    torch.nn.init.zeros_(target.weight), torch.nn.init.zeros_(target.bias)
    torch.nn.init.ones_(online.weight), torch.nn.init.ones_(online.bias)
    cm.ema_update(target, online, 0.9)
    torch.testing.assert_close(target.weight, torch.full((1, 2), 0.1))
    cm.ema_update(target, online, 0.9)
    torch.testing.assert_close(target.bias, torch.full((1,), 0.19))
    torch.testing.assert_close(online.weight, torch.ones(1, 2))  # online untouched
    cm.ema_update(target, online, 1.0)
    torch.testing.assert_close(target.bias, torch.full((1,), 0.19))  # mu = 1 freezes
    cm.ema_update(target, online, 0.0)
    torch.testing.assert_close(target.weight, online.weight)  # mu = 0 copies
    bn_t, bn_o = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    bn_o.running_mean.fill_(3.0)
    cm.ema_update(bn_t, bn_o, 0.5)
    torch.testing.assert_close(bn_t.running_mean, torch.full((2,), 3.0))  # buffers copied
    a, b = [torch.zeros(3)], [torch.full((3,), 2.0)]
    cm.ema_update(a, b, 0.75)
    torch.testing.assert_close(a[0], torch.full((3,), 0.5))


# ---- multistep sampling -------------------------------------------------------------------------


def test_multistep_sample_returns_x0_of_a_model_that_always_knows_it():
    x0 = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    x_T = 80.0 * torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    for ts in ([80.0], [80.0, 1.0], [80.0, 10.0, 1.0, 0.1]):
        out = cm.multistep_sample(lambda x, t: x0.clone(), x_T, ts, generator=torch.Generator().manual_seed(1))
        assert torch.equal(out, x0)


def test_multistep_sample_renoises_with_sqrt_t2_minus_eps2():
    calls = []

    def f(x, t):  # identity model: returns its input as the clean estimate
        calls.append((x.clone(), t))
        return x

    x_T = torch.zeros(3, 4)
    out = cm.multistep_sample(f, x_T, [80.0, 0.004, 0.002], generator=torch.Generator().manual_seed(5))
    assert [t for _, t in calls] == [80.0, 0.004, 0.002]
    assert torch.equal(calls[0][0], x_T)  # first step: f(x_T, T), no noise added
    gen = torch.Generator().manual_seed(5)
    z1 = torch.randn(3, 4, generator=gen)
    z2 = torch.randn(3, 4, generator=gen)
    torch.testing.assert_close(calls[1][0], math.sqrt(0.004**2 - 0.002**2) * z1)  # not 0.004 z
    torch.testing.assert_close(calls[2][0], calls[1][0] + 0.0 * z2)  # at eps: sqrt(eps^2 - eps^2) = 0
    torch.testing.assert_close(out, calls[1][0])


def test_multistep_sample_one_step_at_eps_is_the_input():
    x = torch.randn(4, 2)
    f = lambda y, t: cm.consistency_function(torch.zeros_like(y) + 7.0, y, t)  # noqa: E731
    torch.testing.assert_close(cm.multistep_sample(f, x, [0.002]), x)  # boundary condition


# ---- the 2-D world (smoke, fast) ---------------------------------------------------------------


def test_toy2d_data_deterministic_and_scaled():
    train, test = toy2d.make_data(n_train=500, n_test=200, seed=3)
    train2, _ = toy2d.make_data(n_train=500, n_test=200, seed=3)
    assert train.shape == (500, 2) and test.shape == (200, 2)
    assert torch.equal(train, train2)
    assert train.std().item() == pytest.approx(0.5, rel=1e-4)


def test_sliced_wasserstein_zero_on_itself_and_shift():
    a = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    assert toy2d.sliced_wasserstein(a, a) == 0.0
    # shifting every point by d moves each projection by <d, theta>: SW = E|<d, theta>| = 2|d|/pi
    sw = toy2d.sliced_wasserstein(a, a + torch.tensor([1.0, 0.0]), n_proj=4096)
    assert sw == pytest.approx(2 / math.pi, rel=0.03)


def test_toy2d_student_satisfies_boundary_condition_and_trains():
    train, _ = toy2d.make_data(n_train=256, n_test=16)
    teacher, losses = toy2d.train_teacher(train, steps=3, batch=64, progress=False)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    x = torch.randn(5, 2)
    torch.testing.assert_close(toy2d.consistency_fn(teacher, x, 0.002), x)
    student, losses = toy2d.train_cd(teacher, train, steps=2, batch=64, progress=False)
    assert len(losses) == 2
    ct, losses = toy2d.train_ct(train, steps=2, batch=64, progress=False)
    x_T = toy2d.start_noise(16)
    for net in (student, ct):
        assert toy2d.student_sample(net, x_T, steps=2).shape == (16, 2)
    assert toy2d.teacher_sample(teacher, x_T, 3, "euler").shape == (16, 2)
