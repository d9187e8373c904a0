"""Teacher-free adaptation (distill.train_adapter): the ControlNet call, the consistency-training
objective (same noise, same x0 on both points), the naive diffusion objective, resume, EMA."""

import copy

import pytest
import torch

from animatelcm_helpers import distill
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import configs, recipes

AC = recipes.noise_scheduler().alphas_cumprod


def tiny_text():
    return recipes.encode_text(configs.tiny_tokenizer(), configs.tiny_text_encoder(0), recipes.all_captions()[:12])


def video_model(seed=0):
    return distill.motion_unet(configs.tiny_unet(seed), configs.tiny_motion_adapter(seed)).eval()


def video_data(n=6, frames=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(n, frames, 4, 8, 8, generator=g)
    ids = torch.randint(1, 12, (n,), generator=g)
    maps = torch.randint(0, 256, (n, frames, 3, 32, 32), generator=g, dtype=torch.int64).to(torch.uint8)
    return lat, ids, maps


def test_zero_initialised_controlnet_leaves_the_model_unchanged_and_a_trained_one_steers_it():
    """ControlNet.from_unet zeroes its output convs: at init the controlled call is exactly the
    UNet alone; with non-zero outputs the residuals change eps (and scale 0 switches them off)."""
    model = video_model()
    cn = configs.tiny_controlnet(configs.tiny_unet(0))
    x, t, text = torch.randn(2, 2, 4, 8, 8), torch.tensor([300, 700]), tiny_text()[1:3]
    cond = torch.rand(2, 2, 3, 32, 32)
    with torch.no_grad():
        plain = recipes.video_eps(model, x, t, text)
        torch.testing.assert_close(distill.controlled_call(model, cn)(x, t, text, cond), plain)
        for name, p in cn.named_parameters():
            if "controlnet_down_blocks" in name or "controlnet_mid_block" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        steered = distill.controlled_call(model, cn)(x, t, text, cond)
        off = distill.controlled_call(model, cn, scale=0.0)(x, t, text, cond)
    assert (steered - plain).abs().max() > 1e-3
    torch.testing.assert_close(off, plain)


def test_consistency_training_uses_one_noise_and_one_x0_for_both_points():
    """With eps = the noise z that made x_t, f(x_t) = x0 exactly at every t; so if both points
    share z (and x0) the loss is ~0, and with any other eps it is not."""
    x0 = torch.randn(3, 2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    text, cond = torch.zeros(3, 4, 5), torch.zeros(3, 2, 3, 32, 32)
    g = torch.Generator().manual_seed(0)  # the same draws as the loss: t, then z
    n = torch.randint(0, distill.SOLVER_STEPS, (3,), generator=g)
    assert (n > 0).all()  # away from the boundary t_prev = 0, where f(x, 0) = x is the noisy point itself
    z = torch.randn(x0.shape, generator=g)
    true_noise = lambda x, t, e, c: z  # noqa: E731
    loss = distill.consistency_training_loss(true_noise, true_noise, x0, text, cond, AC,
                                             torch.Generator().manual_seed(0), distill.l2)
    assert loss < 1e-8
    other = lambda x, t, e, c: torch.zeros_like(x)  # noqa: E731
    assert distill.consistency_training_loss(other, true_noise, x0, text, cond, AC,
                                             torch.Generator().manual_seed(0), distill.l2) > 1e-3


def test_diffusion_adapter_loss_is_the_noise_prediction_error():
    x0 = torch.randn(2, 2, 4, 8, 8)
    text, cond = torch.zeros(2, 4, 5), torch.zeros(2, 2, 3, 32, 32)
    g = torch.Generator().manual_seed(5)
    torch.randint(0, 1000, (2,), generator=g)
    z = torch.randn(x0.shape, generator=g)
    exact = lambda x, t, e, c: z  # noqa: E731
    assert distill.diffusion_adapter_loss(exact, x0, text, cond, AC, torch.Generator().manual_seed(5)) < 1e-12
    zero = lambda x, t, e, c: torch.zeros_like(x)  # noqa: E731
    loss = distill.diffusion_adapter_loss(zero, x0, text, cond, AC, torch.Generator().manual_seed(5))
    torch.testing.assert_close(loss, (z**2).mean())


def test_conditioning_from_uint8_and_one_image_as_the_first_frame():
    maps = torch.full((2, 3, 3, 4, 4), 255, dtype=torch.uint8)
    assert distill.as_conditioning(maps, 3).max() == 1.0
    first = torch.rand(2, 3, 4, 4)
    key = distill.as_conditioning(first, 5)
    assert key.shape == (2, 5, 3, 4, 4) and torch.equal(key[:, 0], first)
    assert torch.all(key[:, 1:] == distill.EMPTY_CONDITION / 255.0)
    as_uint8 = distill.as_conditioning((first * 255).round().to(torch.uint8), 5)  # the same, from uint8 images
    assert torch.allclose(as_uint8, key, atol=0.5 / 255) and torch.all(as_uint8[:, 1:] == 128 / 255.0)


@pytest.mark.parametrize("objective", ["consistency", "diffusion"])
def test_adapter_training_resumes_bit_identically(tmp_path, objective):
    model, text = video_model(), tiny_text()
    lat, ids, maps = video_data()
    kwargs = dict(steps=4, objective=objective, batch=2, save_every=2, progress=False)
    cn, fit = distill.train_adapter(tmp_path / "a", configs.tiny_controlnet(configs.tiny_unet(0)), model, lat, maps,
                                    ids, text, AC, **kwargs)
    name = "consistency_training_loss" if objective == "consistency" else "diffusion_adapter_loss"
    original, calls = getattr(distill, name), {"n": 0}

    def interrupted(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kw)

    setattr(distill, name, interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            distill.train_adapter(tmp_path / "b", configs.tiny_controlnet(configs.tiny_unet(0)), model, lat, maps,
                                  ids, text, AC, **kwargs)
    finally:
        setattr(distill, name, original)
    cn2, fit2 = distill.train_adapter(tmp_path / "b", configs.tiny_controlnet(configs.tiny_unet(0)), model, lat, maps,
                                      ids, text, AC, **kwargs)
    assert fit2.resumed_from == 2 and fit2.losses == fit.losses
    for (n, p), q in zip(cn.state_dict().items(), cn2.state_dict().values()):
        assert torch.equal(p, q), n


def test_only_the_adapter_trains_and_the_ema_target_follows(tmp_path):
    model, text = video_model(), tiny_text()
    before = copy.deepcopy(model.state_dict())
    lat, ids, maps = video_data()
    start = configs.tiny_controlnet(configs.tiny_unet(0))
    init = copy.deepcopy(start.state_dict())
    ema = 0.5
    cn, fit = distill.train_adapter(tmp_path, start, model, lat, maps, ids, text, AC, steps=1, batch=2, ema=ema,
                                    save_every=1, progress=False)
    for k, v in model.state_dict().items():  # the consistency model is frozen
        assert torch.equal(v, before[k]), k
    from safetensors.torch import load_file

    target = load_file(tmp_path / "checkpoint" / "target.safetensors")
    moved = [k for k, v in cn.state_dict().items() if not torch.equal(v, init[k])]
    assert moved  # the adapter trained
    for k in moved:  # theta- <- mu theta- + (1 - mu) theta, from the same start
        torch.testing.assert_close(target[k], ema * init[k] + (1 - ema) * cn.state_dict()[k], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("change, match", [
    ({"objective": "distillation"}, "unknown objective"),
    ({"conds": "short"}, "one condition per video"),
    ({"latents": "images"}, "video latents"),
    ({"batch": 0}, "batch must be"),
])
def test_bad_adapter_arguments_say_what_to_do(tmp_path, change, match):
    lat, ids, maps = video_data()
    args = dict(latents=lat, conds=maps, objective="consistency", batch=2)
    if change.get("conds") == "short":
        args["conds"] = maps[:2]
    elif change.get("latents") == "images":
        args["latents"] = lat[:, 0]
    else:
        args.update(change)
    with pytest.raises(UserError, match=match):
        distill.train_adapter(tmp_path, configs.tiny_controlnet(configs.tiny_unet(0)), video_model(), args["latents"],
                              args["conds"], ids, tiny_text(), AC, steps=1, objective=args["objective"],
                              batch=args["batch"], progress=False)
