"""The toy world's AnimateLCM-I2V: the official design at toy size, trained teacher-free.

distill.train_image_encoder (consistency training of an image encoder against the frozen video
consistency model, an EMA copy as the target) against a direct evaluation of its formula; resume;
the toy encoder's design and its one insertion layer; and the zoo's trained encoder making videos
through i2v.image_to_video_pipeline.
"""

import copy
import functools

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from animatelcm_helpers import distill, i2v, training
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import configs, recipes, zoo

AC = recipes.noise_scheduler().alphas_cumprod
N_GRID = 10  # a coarse consistency-training grid (k = 100), as the toy encoder's stage uses
FRAMES = 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread is faster than two under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=None)
def tiny_text():
    return recipes.encode_text(configs.tiny_tokenizer(), configs.tiny_text_encoder(0), recipes.all_captions()[:12])


@functools.lru_cache(maxsize=None)
def video_model(seed=0):
    """A toy-size UNetMotionModel (layers_per_block = 1, blocks (32, 64)), frozen (one per module: the
    recipe never changes it, which a test checks)."""
    return distill.motion_unet(configs.tiny_unet(seed), configs.tiny_motion_adapter(seed)).eval().requires_grad_(False)


def random_encoder(seed=0, scale=0.05):
    """The toy encoder with every weight random (the zero-initialised convs too), so every level's
    feature is non-zero and depends on the image."""
    enc = i2v.toy_image_encoder(seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return enc


def data(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(n, FRAMES, 4, 8, 8, generator=g)
    ids = torch.randint(1, 12, (n,), generator=g)
    mean = torch.randn(n, 4, 8, 8, generator=g)
    std = 0.2 * torch.rand(n, 4, 8, 8, generator=g)
    return lat, ids, mean, std


CONDITION = functools.partial(i2v.image_condition, layer=i2v.TOY_LAYER)


def train(folder, encoder=None, steps=1, **kw):
    lat, ids, mean, std = data()
    args = dict(images=mean, image_std=std, batch=2, save_every=1, progress=False, solver_steps=N_GRID)
    args.update(kw)
    return distill.train_image_encoder(folder, encoder if encoder is not None else random_encoder(), video_model(), lat,
                                       ids, tiny_text(), AC, steps, CONDITION, **args)


# --------------------------------------------------------------------------------------------
# The recipe against its formula
# --------------------------------------------------------------------------------------------
def eps_with_features(unet, x, t, text, features):
    """eps of the UNet on (B, F, C, h, w) with feature i added to the INPUT of down block i's motion
    module 0 (a pre-hook written here, not i2v's hooks): the toy's insertion point."""
    handles = []
    for i, f in enumerate(features):
        def pre(mod, args, kw, f=f):
            h = args[0] if args else kw["hidden_states"]
            h = h + f.repeat(h.shape[0] // f.shape[0], 1, 1, 1)
            return ((h,) + args[1:], kw) if args else (args, {**kw, "hidden_states": h})
        handles.append(unet.down_blocks[i].motion_modules[0].register_forward_pre_hook(pre, with_kwargs=True))
    try:
        f = x.shape[1]
        out = unet(x.permute(0, 2, 1, 3, 4), t, encoder_hidden_states=text.repeat_interleave(f, dim=0)).sample
    finally:
        for h in handles:
            h.remove()
    return out.permute(0, 2, 1, 3, 4)


def consistency_fn(eps, x, t):
    """f(x, t) = c_skip x + c_out (x - sqrt(1 - abar) eps) / sqrt(abar), u = 10 t, s_d = 0.5."""
    u = 10.0 * t.double()
    c_skip, c_out = 0.25 / (u**2 + 0.25), u / torch.sqrt(u**2 + 0.25)
    abar = AC[t].double()
    shape = (-1,) + (1,) * (x.ndim - 1)
    x0 = (x.double() - torch.sqrt(1 - abar).view(shape) * eps.double()) / torch.sqrt(abar).view(shape)
    return c_skip.view(shape) * x.double() + c_out.view(shape) * x0


def test_recipe_loss_is_a_direct_evaluation_of_its_formula(tmp_path):
    """Step 0's loss: z = m + s_z n_z; x_t, x_prev on ONE path (same n, same x0), t_prev = t - k;
    L = mean(sqrt((f(x_t) - f-(x_prev))^2 + c^2) - c), the target the encoder's (identical) copy."""
    lat, ids, mean, std = data()
    text, model, enc = tiny_text(), video_model(), random_encoder()
    _, fit = train(tmp_path / "a", copy.deepcopy(enc))
    g = training.generator(0, 0)  # the recipe's draws at step 0, in its order
    idx = torch.randint(0, len(lat), (2,), generator=g)
    z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)
    k = 1000 // N_GRID
    grid = torch.arange(1, N_GRID + 1) * k - 1  # 99, 199, ..., 999
    t = grid[torch.randint(0, N_GRID, (2,), generator=g)]
    t_prev = (t - k).clamp(min=0)
    noise = torch.randn(lat[idx].shape, generator=g)
    x0, e = lat[idx], text[ids[idx]]
    shape = (-1, 1, 1, 1, 1)
    x_t = AC[t].sqrt().view(shape) * x0 + (1 - AC[t]).sqrt().view(shape) * noise
    x_prev = AC[t_prev].sqrt().view(shape) * x0 + (1 - AC[t_prev]).sqrt().view(shape) * noise
    with torch.no_grad():
        features = enc(z, FRAMES, distill.IMAGE_ENCODER_MOTION_SCALE)
        pred = consistency_fn(eps_with_features(model, x_t, t, e, features), x_t, t)
        goal = consistency_fn(eps_with_features(model, x_prev, t_prev, e, features), x_prev, t_prev)
    c = 0.001
    expected = (torch.sqrt((pred - goal) ** 2 + c**2) - c).mean().item()
    assert expected > 1e-4  # not a trivially zero loss
    assert fit.losses[0] == pytest.approx(expected, rel=1e-4)
    # the image reaches the loss: another image latent, another loss
    _, other = train(tmp_path / "b", copy.deepcopy(enc), images=mean.flip(0))
    assert abs(other.losses[0] - fit.losses[0]) > 1e-6


def test_image_encoder_call_adds_the_features_at_the_toy_insertion_point():
    model, enc, text = video_model(), random_encoder(), tiny_text()[1:3]
    x = torch.randn(2, FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    t, z = torch.tensor([199, 799]), torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = distill.image_encoder_call(model, enc, CONDITION, 0.8)(x, t, text, z)
        ref = eps_with_features(model, x, t, text, enc(z, FRAMES, 0.8))
        plain = eps_with_features(model, x, t, text, [])
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert (got - plain).abs().max() > 1e-3
    assert all(not m._forward_hooks for m in i2v.insertion_modules(model, i2v.TOY_LAYER))  # hooks gone afterwards


def test_training_resumes_bit_identically(tmp_path, monkeypatch):
    kw = dict(steps=4, save_every=2)
    enc, fit = train(tmp_path / "a", random_encoder(), **kw)
    original, calls = distill.consistency_training_loss, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(distill, "consistency_training_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "b", random_encoder(), **kw)
    monkeypatch.setattr(distill, "consistency_training_loss", original)
    enc2, fit2 = train(tmp_path / "b", random_encoder(), **kw)
    assert fit2.resumed_from == 2 and fit2.losses == fit.losses
    for (n, p), q in zip(enc.state_dict().items(), enc2.state_dict().values()):
        assert torch.equal(p, q), n
    a, b = (load_file(d / "checkpoint" / "target.safetensors") for d in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the EMA target too


def test_only_the_encoder_trains_and_its_ema_copy_is_the_target(tmp_path):
    model = video_model()
    before = copy.deepcopy(model.state_dict())
    start = i2v.toy_image_encoder(0)  # the official init: conv_in, in_conv, block2 at zero
    init = copy.deepcopy(start.state_dict())
    lat, ids, mean, std = data()
    ema = 0.5
    enc, fit = distill.train_image_encoder(tmp_path, start, model, lat, ids, tiny_text(), AC, 1, CONDITION, images=mean,
                                           image_std=std, batch=2, ema=ema, save_every=1, progress=False,
                                           solver_steps=N_GRID)
    for k, v in model.state_dict().items():  # the consistency model stays frozen
        assert torch.equal(v, before[k]), k
    moved = [k for k, v in enc.state_dict().items() if not torch.equal(v, init[k])]
    assert "conv_in.weight" in moved  # a zero-initialised conv trains through the skip path
    target = load_file(tmp_path / "checkpoint" / "target.safetensors")
    for k in moved:  # phi- <- mu phi- + (1 - mu) phi, from the same start
        torch.testing.assert_close(target[k], ema * init[k] + (1 - ema) * enc.state_dict()[k], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("change, match", [
    ({"images": "short"}, "one latent per video"),
    ({"image_std": "wrong"}, "image_std must have"),
    ({"latents": "images"}, "video latents"),
    ({"ema": 1.0}, "ema must be"),
    ({"batch": 0}, "batch must be"),
])
def test_bad_recipe_arguments_say_what_to_do(tmp_path, change, match):
    lat, ids, mean, std = data()
    args = dict(images=mean, image_std=std, batch=2, ema=0.95)
    if change.get("images") == "short":
        args["images"] = mean[:2]
    elif change.get("image_std") == "wrong":
        args["image_std"] = std[:, :2]
    elif change.get("latents") == "images":
        lat = lat[:, 0]
    else:
        args.update(change)
    with pytest.raises(UserError, match=match):
        distill.train_image_encoder(tmp_path, random_encoder(), video_model(), lat, ids, tiny_text(), AC, 1, CONDITION,
                                    progress=False, **args)


# --------------------------------------------------------------------------------------------
# The toy encoder's design and its insertion layer
# --------------------------------------------------------------------------------------------
def test_toy_encoder_is_the_official_design_at_toy_size():
    unet = configs.tiny_unet(0)
    assert i2v.TOY_ENCODER["channels"] == tuple(unet.config.block_out_channels) == (32, 64)
    assert i2v.TOY_ENCODER["cin"] == unet.config.in_channels == 4
    assert {k: i2v.TOY_ENCODER[k] for k in ("ksize", "sk", "use_conv")} == {
        k: i2v.OFFICIAL_ENCODER[k] for k in ("ksize", "sk", "use_conv")}
    assert i2v.TOY_ENCODER["nums_rb"] == unet.config.layers_per_block == 1  # the official 2 = SD1.5's layers per block
    a, b = i2v.toy_image_encoder(0), i2v.toy_image_encoder(0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # seeded
    assert sum(p.numel() for p in a.parameters()) == 54_688
    for name, p in a.named_parameters():  # the official zero inits
        if name.startswith("conv_in") or ".in_conv." in name or ".block2." in name:
            assert not p.any(), name


def test_toy_unet_takes_the_features_in_its_only_layer_the_last_of_each_block():
    """The official second layer is SD1.5's last (layers_per_block = 2); the toy UNet has one
    layer a block, so its features go into layer 0, also the last: after the spatial attention,
    before the motion module."""
    model = video_model()
    assert model.config.layers_per_block == 1
    with pytest.raises(UserError, match="layers_per_block >= 2"):
        i2v.insertion_modules(model)  # the official layer does not exist here
    mods = i2v.insertion_modules(model, i2v.TOY_LAYER)
    assert i2v.TOY_LAYER == 0 and mods == [b.attentions[0] for b in model.down_blocks]
    assert all(len(b.attentions) == len(b.motion_modules) == 1 for b in model.down_blocks)


# --------------------------------------------------------------------------------------------
# The zoo's encoder: the toy world's image-to-video pipeline
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_pipe():
    if not (zoo.root() / i2v.TOY_ENCODER_FOLDER / "config.json").is_file():
        pytest.skip("the toy zoo in use has no i2v-encoder (the random stand-in zoo)")
    return i2v.image_to_video_pipeline(world="toy", device="cpu")


def test_zoo_encoder_loads_into_the_toy_animatelcm(toy_pipe):
    enc = toy_pipe.i2v_encoder
    assert isinstance(enc, i2v.I2VImageEncoder) and enc.dtype == toy_pipe.unet.dtype == torch.float32
    assert {k: (tuple(v) if isinstance(v, list) else v) for k, v in enc.config.items() if k in i2v.TOY_ENCODER} == i2v.TOY_ENCODER
    assert toy_pipe.i2v_layer == i2v.TOY_LAYER
    assert enc.conv_in.weight.abs().sum() > 0  # trained: the official init has it at zero
    assert type(toy_pipe.scheduler).__name__ == "LCMScheduler"
    assert toy_pipe.scheduler.config.beta_end == 0.012  # the toy AnimateLCM's own schedule, not the official I2V's
    with pytest.raises(UserError, match="toy zoo"):
        i2v.image_to_video_pipeline(world="toy", converted="somewhere")


def test_toy_image_to_video_shape_and_determinism(toy_pipe):
    from animatelcm_helpers import evaluation

    videos, prompts = evaluation.test_videos(2)
    run = lambda img, seed: i2v.generate_i2v(toy_pipe, img, prompts[0], steps=2, seed=seed).frames  # noqa: E731
    a = run(videos[0][0], 0)
    assert a.shape == (8, 32, 32, 3) and a.dtype == np.uint8  # the toy spec's 8 frames at 32 x 32
    assert np.array_equal(run(videos[0][0], 0), a)
    assert not np.array_equal(run(videos[0][0], 1), a)
    assert not np.array_equal(run(videos[1][0], 0), a)  # the image steers the video
