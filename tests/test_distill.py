"""Latent consistency distillation (stage 1 and stage 2): the pieces against diffusers and the
math, exact resume, the decoupled initialisation, and the saved formats loading in diffusers."""

import copy

import pytest
import torch

from animatelcm_helpers import distill, lcm, utils
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import configs, recipes

AC = recipes.noise_scheduler().alphas_cumprod


def tiny_text():
    return recipes.encode_text(configs.tiny_tokenizer(), configs.tiny_text_encoder(0), recipes.all_captions()[:12])


def image_data(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 8, 8, generator=g), torch.randint(1, 12, (n,), generator=g)


def test_solver_grid_and_w_embedding_match_diffusers():
    from diffusers import LatentConsistencyModelPipeline

    grid = torch.from_numpy(lcm.skipping_grid())  # the LCD solver grid, shared with the sampler
    assert grid[0] == 19 and grid[-1] == 999 and len(grid) == 50 and set(torch.diff(grid).tolist()) == {20}
    w = torch.tensor([0.0, 1.5, 6.5, 14.0])
    ref = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=256)
    torch.testing.assert_close(distill.w_embedding(w, 256), ref)


def test_guided_ddim_step_matches_diffusers_ddim():
    """The teacher's solver step with w = 0 is exactly a DDIM (eta 0) step from t to t - 20."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(configs.sd_scheduler().config, set_alpha_to_one=False)
    sched.set_timesteps(50)  # DDIM's own 50-step grid has the same spacing of 20
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for t in (981, 501, 41):
        t_ = torch.tensor([t, t])
        x0 = lcm.predicted_x0(eps, x, AC[t_])
        ours = lcm.renoise(distill.guided(x0, x0 * 0.3, torch.zeros(2)), eps, AC[t_ - 20])  # the DDIM step
        ref = sched.step(eps, t, x).prev_sample
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_consistency_prediction_boundary_and_x0():
    g = torch.Generator().manual_seed(1)
    x, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    # f(x, 0) = x: c_skip(0) = 1, c_out(0) = 0, whatever the model says
    assert torch.equal(distill.consistency_prediction(eps, x, torch.zeros(3, dtype=torch.long), AC), x)
    # at t = 999 f is (almost exactly) the x0 prediction
    t = torch.full((3,), 999)
    torch.testing.assert_close(distill.consistency_prediction(eps, x, t, AC), lcm.predicted_x0(eps, x, AC[t]),
                               rtol=1e-4, atol=1e-4)


def test_lcd_loss_is_zero_for_a_perfect_pair_and_positive_otherwise():
    """If the student's f maps x_t and the teacher's x_prev to the same point the loss is 0: with a
    teacher whose eps is the true noise of a fixed x0, every point of the DDIM path has f = x0."""
    x0 = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    text, uncond = torch.zeros(4, 3, 5), torch.zeros(1, 3, 5)

    def oracle(x, t, *rest):  # eps that points exactly back to x0 (the same x0 for every half)
        a = AC[t].reshape(-1, 1, 1, 1)
        return (x - a.sqrt() * x0.repeat(x.shape[0] // 4, 1, 1, 1)) / (1 - a).sqrt()

    g = torch.Generator().manual_seed(0)
    loss = distill.lcd_loss(oracle, oracle, oracle, x0, text, uncond, AC, g, (5.5, 7.5), distill.l2)
    assert loss < 1e-8
    wrong = lambda x, t, *rest: torch.zeros_like(x)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    assert distill.lcd_loss(wrong, oracle, oracle, x0, text, uncond, AC, g, (5.5, 7.5), distill.l2) > 1e-3


@pytest.mark.parametrize("variant, ema", [("lora", None), ("full", None), ("lora", 0.0)])
def test_stage1_resume_is_bit_identical(tmp_path, variant, ema):
    """Interrupted at step 2 (Ctrl-C saves a checkpoint) and resumed = uninterrupted, bit for bit."""
    teacher, text = configs.tiny_unet(0), tiny_text()
    lat, ids = image_data()
    kwargs = dict(steps=4, variant=variant, batch=4, save_every=2, progress=False, ema=ema)
    straight, fit = distill.distill_image(tmp_path / "a", teacher, lat, ids, text, AC, **kwargs)

    calls = {"n": 0}
    original = distill.lcd_loss

    def interrupted(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kw)

    distill.lcd_loss = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            distill.distill_image(tmp_path / "b", teacher, lat, ids, text, AC, **kwargs)
    finally:
        distill.lcd_loss = original
    resumed, fit2 = distill.distill_image(tmp_path / "b", teacher, lat, ids, text, AC, **kwargs)
    assert fit2.resumed_from == 2 and fit2.losses == fit.losses
    for (n, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), n


def test_lora_student_starts_as_the_teacher_and_trains_only_the_lora(tmp_path):
    teacher, text = configs.tiny_unet(0), tiny_text()
    lat, ids = image_data()
    student, fit = distill.distill_image(tmp_path, teacher, lat, ids, text, AC, steps=2, batch=4, progress=False)
    lora = distill.lora_state_dict(student)
    assert lora and all("lora_" in k for k in lora)
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)  # it moved
    # the teacher itself is untouched, and the LoRA off gives it back exactly
    x, t, e = torch.randn(1, 4, 8, 8), torch.tensor([500]), text[1:2]
    student.disable_adapters()
    with torch.no_grad():
        torch.testing.assert_close(student(x, t, e).sample, teacher(x, t, e).sample)


def test_lora_target_is_the_online_network_or_its_ema(tmp_path):
    """ema=0 (the LCM-LoRA paper's recipe): no target copy is kept, the online LoRA is the target;
    ema=mu (the default, 0.95): a target copy whose LoRA follows theta- <- mu theta- + (1 - mu) theta
    (lora_B starts at 0)."""
    from safetensors.torch import load_file

    teacher, text = configs.tiny_unet(0), tiny_text()
    lat, ids = image_data()
    distill.distill_image(tmp_path / "same", teacher, lat, ids, text, AC, steps=1, batch=4, ema=0.0, progress=False,
                          save_every=1)
    assert not (tmp_path / "same" / "checkpoint" / "target.safetensors").exists()
    mu = distill.TARGET_EMA["lora"]
    assert mu == 0.95
    student, _ = distill.distill_image(tmp_path / "ema", teacher, lat, ids, text, AC, steps=1, batch=4,
                                       progress=False, save_every=1)
    saved = load_file(tmp_path / "ema" / "checkpoint" / "target.safetensors")
    online_b = {k: v for k, v in student.state_dict().items() if "lora_B" in k}
    assert online_b and any(v.abs().sum() > 0 for v in online_b.values())
    for k, v in online_b.items():
        torch.testing.assert_close(saved[k], (1 - mu) * v, rtol=1e-5, atol=1e-7)
    with pytest.raises(UserError, match="ema must be in"):
        distill.distill_image(tmp_path / "bad", teacher, lat, ids, text, AC, steps=1, batch=4, ema=1.0, progress=False)
    with pytest.raises(UserError, match="ema must be in"):  # not a number: the same message, no TypeError
        distill.distill_image(tmp_path / "bad", teacher, lat, ids, text, AC, steps=1, batch=4, ema="0.95", progress=False)


def test_full_student_starts_as_the_teacher_for_every_w():
    teacher = configs.tiny_unet(0)
    student = distill.w_conditioned_student(teacher)
    x, t, e = torch.randn(2, 4, 8, 8), torch.tensor([300, 700]), tiny_text()[1:3]
    with torch.no_grad():
        ref = teacher(x, t, e).sample
        for w in (0.0, 6.5):
            out = distill.unet_call(student, with_w=True)(x, t, e, torch.full((2,), w))
            torch.testing.assert_close(out, ref)


def test_decoupled_init_lora_in_online_only_and_the_ema_brings_it_to_the_target(tmp_path):
    unet, adapter, text = configs.tiny_unet(0), configs.tiny_motion_adapter(0), tiny_text()
    lora_src = distill.add_lcm_lora(copy.deepcopy(unet))
    with torch.no_grad():
        for n, p in lora_src.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(3))
    lora = distill.lora_state_dict(lora_src)
    online = distill.video_student(unet, adapter, lora=lora)
    loaded = distill.lora_state_dict(online)
    assert set(loaded) == set(lora) and all(torch.equal(loaded[k], lora[k]) for k in lora)
    assert not any("motion_modules" in k for k in loaded)  # the LoRA is spatial only
    trainable = {n for n, p in online.named_parameters() if p.requires_grad}
    assert any("motion_modules" in n for n in trainable) and any("lora_B" in n for n in trainable)
    assert not any("lora_" not in n and "motion_modules" not in n for n in trainable)

    g = torch.Generator().manual_seed(0)
    lat, ids = torch.randn(4, 2, 4, 8, 8, generator=g), torch.randint(1, 12, (4,), generator=g)
    ema = 0.5
    student, fit = distill.distill_video(tmp_path, unet, adapter, lat, ids, text, AC, steps=1, init_lora=lora,
                                         batch=2, ema=ema, progress=False, save_every=1)
    from safetensors.torch import load_file
    saved = load_file(tmp_path / "checkpoint" / "target.safetensors")
    # after one step the target's lora_B is (1 - mu) of the online's (it started at zero)
    online_b = {k: v for k, v in student.state_dict().items() if "lora_B" in k}
    for k, v in online_b.items():
        torch.testing.assert_close(saved[k], (1 - ema) * v, rtol=1e-5, atol=1e-7)


def test_saved_student_loads_like_animatelcm(tmp_path):
    """The stage-2 output is a MotionAdapter folder + an LCM LoRA in diffusers' format that
    AnimateDiffPipeline loads with load_lora_weights, as the official AnimateLCM ships."""
    from diffusers import AnimateDiffPipeline, MotionAdapter

    from animatelcm_helpers.toy import zoo

    unet, adapter = configs.tiny_unet(0), configs.tiny_motion_adapter(0)
    student = distill.video_student(unet, adapter)
    with torch.no_grad():
        for n, p in student.named_parameters():
            if "lora_B" in n or "motion_modules" in n:
                p.add_(0.01)
    folder = distill.save_student(tmp_path / "animatelcm", student)
    with utils.quiet_loading():
        pipe = AnimateDiffPipeline.from_pretrained(zoo.root() / "base", motion_adapter=MotionAdapter.from_pretrained(folder))
        pipe.load_lora_weights(str(folder), weight_name="AnimateLCM_sd15_t2v_lora.safetensors", adapter_name="lcm-lora")
    x = torch.randn(1, 4, 2, 8, 8)
    e = torch.randn(2, 16, 64)
    with torch.no_grad():
        ours = student(x, torch.tensor([400]), encoder_hidden_states=e).sample
        theirs = pipe.unet(x, torch.tensor([400]), encoder_hidden_states=e).sample
    # same spatial weights only if the zoo's base is this seed's tiny UNet; compare the deltas instead
    assert ours.shape == theirs.shape
    keys = {k for k in pipe.unet.state_dict() if "motion_modules" in k}
    mine = student.state_dict()
    assert keys and all(torch.equal(pipe.unet.state_dict()[k], mine[k]) for k in keys)


@pytest.mark.parametrize("bad,match", [
    (dict(variant="big"), "unknown variant"),
    (dict(batch=0), "batch"),
    (dict(w_range=(8, 2)), "w_range"),
    (dict(distance="l1"), "unknown distance"),
])
def test_bad_arguments_say_what_to_do(tmp_path, bad, match):
    lat, ids = image_data(4)
    kwargs = dict(steps=1, batch=2, progress=False) | bad
    with pytest.raises(UserError, match=match):
        distill.distill_image(tmp_path, configs.tiny_unet(0), lat, ids, tiny_text(), AC, **kwargs)


def test_empty_training_set_is_refused(tmp_path):
    with pytest.raises(UserError, match="empty"):
        distill.distill_image(tmp_path, configs.tiny_unet(0), torch.zeros(0, 4, 8, 8), torch.zeros(0, dtype=torch.long),
                              tiny_text(), AC, steps=1, progress=False)


def test_extract_adapter_round_trips_a_student_wider_than_the_toys():
    """Stage 2's student is saved as a MotionAdapter sized from the student itself (a full-size
    SD1.5 student has (320, 640, 1280, 1280) channels; the toy's are (32, 64)): here a wider one,
    three blocks, two motion layers a block, its own heads and frame limit."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(48, 96, 96), layers_per_block=2, norm_num_groups=16,
                                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=32, attention_head_dim=4, sample_size=8)
    adapter = MotionAdapter(block_out_channels=(48, 96, 96), motion_layers_per_block=2, motion_num_attention_heads=4,
                            motion_norm_num_groups=16, motion_max_seq_length=24, use_motion_mid_block=True)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.02)
    student = UNetMotionModel.from_unet2d(unet, adapter)
    out = distill.extract_adapter(student)
    assert out.config.block_out_channels == (48, 96, 96) and out.config.motion_max_seq_length == 24
    assert out.config.motion_num_attention_heads == 4 and out.config.use_motion_mid_block
    theirs, ours = adapter.state_dict(), out.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    again = UNetMotionModel.from_unet2d(unet, out)  # the saved student inflates the same UNet back
    x = torch.randn(1, 4, 3, 8, 8)
    text = torch.randn(3, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x, 10, text).sample, student(x, 10, text).sample)
