"""AnimateLCM-I2V in diffusers terms (animatelcm_helpers.i2v): the image encoder against its formulas,
the official checkpoint's conversion (a toy-size file in the official key layout, written here), the
insertion point in the UNet, generation through AnimateDiffPipeline, and bad inputs.

The official layout written here follows G-U-N/AnimateLCM @ f873122, animatelcm_sd15/:
motion modules as animatelcm/models/motion_module.py builds them (TemporalTransformer3DModel inside
VanillaTemporalModule, PE buffer ``pos_encoding``), image encoder as animatelcm/models/adapter.py.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from animatelcm_helpers import i2v
from animatelcm_helpers.config import UserError

CHANNELS = (8, 16)  # toy UNet / motion modules / encoder levels
HEADS, GROUPS, SEQ = 2, 4, 8  # motion heads, GroupNorm groups, PE length in the toy file
SIZE, FRAMES = 32, 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread is 10x faster than two under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# The official layout, written from the official modules (not from diffusers or i2v.py)
# --------------------------------------------------------------------------------------------
def sinusoid(length, dim):
    """PE[p, 2k] = sin(p / 10000^(2k/d)), PE[p, 2k+1] = cos(p / 10000^(2k/d)), in float64."""
    pe = torch.zeros(length, dim, dtype=torch.float64)
    for p in range(length):
        for k in range(0, dim, 2):
            pe[p, k] = math.sin(p / 10000 ** (k / dim))
            pe[p, k + 1] = math.cos(p / 10000 ** (k / dim))
    return pe


def motion_module_entries(c, seq=SEQ):
    """(official suffix after 'motion_modules.<j>.', diffusers suffix or None for dropped, shape)."""
    t, d = "temporal_transformer.", "transformer_blocks.0."
    rows = [(t + "norm.weight", "norm.weight", (c,)), (t + "norm.bias", "norm.bias", (c,)),
            (t + "proj_in.weight", "proj_in.weight", (c, c)), (t + "proj_in.bias", "proj_in.bias", (c,)),
            (t + "proj_out.weight", "proj_out.weight", (c, c)), (t + "proj_out.bias", "proj_out.bias", (c,))]
    for a, attn, norm in ((0, "attn1", "norm1"), (1, "attn2", "norm2")):
        blk = f"{t}{d}attention_blocks.{a}."
        for p in ("to_q", "to_k", "to_v"):
            rows.append((blk + f"{p}.weight", f"{d}{attn}.{p}.weight", (c, c)))
        rows += [(blk + "to_out.0.weight", f"{d}{attn}.to_out.0.weight", (c, c)),
                 (blk + "to_out.0.bias", f"{d}{attn}.to_out.0.bias", (c,)),
                 (blk + "pos_encoder.pos_encoding", None, (1, seq, c)),
                 (f"{t}{d}norms.{a}.weight", f"{d}{norm}.weight", (c,)),
                 (f"{t}{d}norms.{a}.bias", f"{d}{norm}.bias", (c,))]
    rows += [(f"{t}{d}ff.net.0.proj.weight", f"{d}ff.net.0.proj.weight", (8 * c, c)),  # GEGLU: 2 x 4c
             (f"{t}{d}ff.net.0.proj.bias", f"{d}ff.net.0.proj.bias", (8 * c,)),
             (f"{t}{d}ff.net.2.weight", f"{d}ff.net.2.weight", (c, 4 * c)),
             (f"{t}{d}ff.net.2.bias", f"{d}ff.net.2.bias", (c,)),
             (f"{t}{d}ff_norm.weight", f"{d}norm3.weight", (c,)),
             (f"{t}{d}ff_norm.bias", f"{d}norm3.bias", (c,))]
    return rows


def official_motion_state(channels=CHANNELS, layers=2, seed=0, meta=False, seq=SEQ):
    """{official key: tensor} and {official key: diffusers key} for down (layers), mid (1), up (layers+1).
    ``meta=True``: shapes only (meta tensors), for the full-size layout."""
    g = torch.Generator().manual_seed(seed)
    places = [(f"down_blocks.{i}", c, layers) for i, c in enumerate(channels)]
    places += [("mid_block", channels[-1], 1)]
    places += [(f"up_blocks.{i}", c, layers + 1) for i, c in enumerate(reversed(channels))]
    state, names = {}, {}
    for block, c, n in places:
        for j in range(n):
            for official, diffusers, shape in motion_module_entries(c, seq):
                key = f"{block}.motion_modules.{j}.{official}"
                if meta:
                    state[key] = torch.empty(shape, device="meta")
                    if diffusers is not None:
                        names[key] = f"{block}.motion_modules.{j}.{diffusers}"
                elif diffusers is None:
                    state[key] = sinusoid(shape[1], c).float()[None]
                else:
                    state[key] = torch.randn(shape, generator=g) * 0.3
                    names[key] = f"{block}.motion_modules.{j}.{diffusers}"
    return state, names


def official_encoder_state(cin=4, channels=CHANNELS, nums_rb=2, ksize=1, seed=1):
    """``img_encoder.*`` as the official Adapter(sk=True, use_conv=False) holds them."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"conv_in.weight": (channels[0], cin, 3, 3), "conv_in.bias": (channels[0],)}
    for i, c in enumerate(channels):
        for j in range(nums_rb):
            k, c_in = i * nums_rb + j, (channels[i - 1] if i > 0 and j == 0 else c)
            if c_in != c:
                shapes[f"body.{k}.in_conv.weight"], shapes[f"body.{k}.in_conv.bias"] = (c, c_in, ksize, ksize), (c,)
            shapes[f"body.{k}.block1.weight"], shapes[f"body.{k}.block1.bias"] = (c, c, 3, 3), (c,)
            shapes[f"body.{k}.block2.weight"], shapes[f"body.{k}.block2.bias"] = (c, c, ksize, ksize), (c,)
    return {"img_encoder." + k: torch.randn(s, generator=g) * 0.3 for k, s in shapes.items()}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A toy official checkpoint (torch.save), converted once."""
    tmp = tmp_path_factory.mktemp("i2v")
    motion, names = official_motion_state()
    encoder = official_encoder_state()
    ckpt = tmp / "AnimateLCM_sd15_i2v.ckpt"
    torch.save({**motion, **encoder}, ckpt)
    out = i2v.convert_official_checkpoint(ckpt, tmp / "converted", motion_heads=HEADS, motion_norm_groups=GROUPS)
    return {"tmp": tmp, "ckpt": ckpt, "out": out, "motion": motion, "names": names, "encoder": encoder}


# --------------------------------------------------------------------------------------------
# 1. The encoder against its formulas
# --------------------------------------------------------------------------------------------
def direct_encoder(sd, z, frames, ms, channels, nums_rb, ksize, use_conv, weights):
    """The encoder evaluated straight from its formulas with torch.nn.functional."""
    b = z.shape[0]
    x = F.conv2d(z.repeat_interleave(frames, 0).double(), sd["conv_in.weight"].double(), sd["conv_in.bias"].double(), padding=1)
    x = x + ms * sinusoid(frames, channels[0]).repeat(b, 1)[:, :, None, None]
    p = ksize // 2
    feats = []
    for i in range(len(channels)):
        for j in range(nums_rb):
            w = {k.split(".", 2)[2]: v.double() for k, v in sd.items() if k.startswith(f"body.{i * nums_rb + j}.")}
            if i > 0 and j == 0:
                h, wd = x.shape[-2:]
                x = F.pad(x, (0, math.ceil(wd / 2) * 2 - wd, 0, math.ceil(h / 2) * 2 - h), mode="replicate")
                x = (F.conv2d(x, w["down_opt.op.weight"], w["down_opt.op.bias"], stride=2, padding=1)
                     if use_conv else F.avg_pool2d(x, 2, 2))
            if "in_conv.weight" in w:
                x = F.conv2d(x, w["in_conv.weight"], w["in_conv.bias"], padding=p)
            h = F.conv2d(F.relu(F.conv2d(x, w["block1.weight"], w["block1.bias"], padding=1)), w["block2.weight"], w["block2.bias"], padding=p)
            x = h + (F.conv2d(x, w["skep.weight"], w["skep.bias"], padding=p) if "skep.weight" in w else x)
        feats.append(weights[i] * x)
    return feats


@pytest.mark.parametrize("kw", [
    {"channels": (8, 16, 16), "nums_rb": 2, "ksize": 1, "sk": True, "use_conv": False, "insertion_weights": (1.0, 0.5, 2.0)},
    {"channels": (6, 6), "nums_rb": 1, "ksize": 3, "sk": False, "use_conv": True},
])
def test_encoder_forward_matches_its_formulas(kw):
    torch.manual_seed(0)
    enc = i2v.I2VImageEncoder(cin=4, **kw)
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.3)
    z = torch.randn(2, 4, 5, 7)  # odd sizes: the replicate padding before each pool is exercised
    feats = enc(z, 3, motion_scale=0.7)
    ref = direct_encoder(enc.state_dict(), z, 3, 0.7, kw["channels"], kw["nums_rb"], kw["ksize"], kw["use_conv"],
                         kw.get("insertion_weights") or (1.0,) * len(kw["channels"]))
    assert [tuple(f.shape) for f in feats] == [(6, c, math.ceil(5 / 2**i), math.ceil(7 / 2**i)) for i, c in enumerate(kw["channels"])]
    for f, r in zip(feats, ref):
        torch.testing.assert_close(f.double(), r, rtol=1e-4, atol=1e-4)


def test_fresh_encoder_adds_only_the_scaled_position_embedding():
    """Official init (zero conv_in, in_conv, block2): level 0 = motion_scale * PE, other levels 0."""
    enc = i2v.I2VImageEncoder(cin=4, channels=CHANNELS)
    z = torch.randn(1, 4, 8, 8)
    f0, f1 = enc(z, FRAMES, motion_scale=0.8)
    torch.testing.assert_close(f0.double(), (0.8 * sinusoid(FRAMES, 8))[:, :, None, None].expand(-1, -1, 8, 8), atol=1e-6, rtol=0)
    assert f1.shape == (FRAMES, 16, 4, 4) and not f1.any()
    assert not any(f.any() for f in enc(z, FRAMES, motion_scale=0.0))


def test_parameter_names_are_the_official_ones():
    with torch.device("meta"):
        enc = i2v.I2VImageEncoder(**i2v.OFFICIAL_ENCODER)
    # the names by the official rules (adapter.py:111-121), at full size, without allocating tensors
    expected = {"conv_in.weight", "conv_in.bias"}
    chans = (320, 640, 1280, 1280)
    for i, c in enumerate(chans):
        for j in range(2):
            k = 2 * i + j
            if i > 0 and j == 0 and chans[i - 1] != c:
                expected |= {f"body.{k}.in_conv.weight", f"body.{k}.in_conv.bias"}
            expected |= {f"body.{k}.block{n}.{p}" for n in (1, 2) for p in ("weight", "bias")}
    assert set(enc.state_dict()) == expected
    assert sum(p.numel() for p in enc.parameters()) == 76_827_840  # 307 MB in fp32: 2.12 GB - 1.81 GB (t2v ckpt)


# --------------------------------------------------------------------------------------------
# 2. The conversion
# --------------------------------------------------------------------------------------------
def test_conversion_round_trip(converted):
    from diffusers import MotionAdapter

    out = converted["out"]
    for sub in ("motion_adapter", "image_encoder"):
        assert {p.name for p in (out / sub).iterdir()} == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    adapter = MotionAdapter.from_pretrained(out / "motion_adapter")
    cfg = adapter.config
    assert tuple(cfg.block_out_channels) == CHANNELS and cfg.motion_layers_per_block == 2
    assert cfg.use_motion_mid_block and cfg.motion_max_seq_length == SEQ
    assert cfg.motion_num_attention_heads == HEADS and cfg.motion_norm_num_groups == GROUPS
    sd = adapter.state_dict()
    names = converted["names"]
    pe = {k for k in sd if k.endswith("pos_embed.pe")}
    assert set(sd) - pe == set(names.values())
    for official, name in names.items():
        assert torch.equal(sd[name], converted["motion"][official]), official
    for k in pe:  # the dropped PE buffers are rebuilt with the same values
        torch.testing.assert_close(sd[k][0].double(), sinusoid(SEQ, sd[k].shape[-1]), atol=1e-6, rtol=0)
    enc = i2v.I2VImageEncoder.from_pretrained(out / "image_encoder")
    esd = enc.state_dict()
    assert set(esd) == {k[len("img_encoder."):] for k in converted["encoder"]}
    for k, v in converted["encoder"].items():
        assert torch.equal(esd[k[len("img_encoder."):]], v), k
    assert tuple(enc.config.channels) == CHANNELS and enc.config.sk and not enc.config.use_conv and enc.config.ksize == 1


def test_full_size_layout_maps_onto_diffusers_motion_adapter():
    """SD1.5 size (320, 640, 1280, 1280), 64-frame PE, on the meta device: the renaming is diffusers'
    own (single_file_utils.convert_animatediff_checkpoint_to_diffusers), the derived config builds a
    MotionAdapter whose keys are exactly the renamed ones (plus its rebuilt PE buffers)."""
    from diffusers import MotionAdapter
    from diffusers.loaders.single_file_utils import (
        convert_animatediff_checkpoint_to_diffusers,
    )

    state, names = official_motion_state((320, 640, 1280, 1280), meta=True, seq=64)
    renamed = {i2v.motion_key_to_diffusers(k): v for k, v in state.items() if k in names}
    assert set(renamed) == set(convert_animatediff_checkpoint_to_diffusers(state)) == set(names.values())
    cfg = i2v.motion_adapter_config(renamed, max_seq_length=64)
    assert cfg == {"block_out_channels": (320, 640, 1280, 1280), "motion_layers_per_block": 2,
                   "motion_transformer_layers_per_block": 1, "motion_num_attention_heads": 8,
                   "motion_norm_num_groups": 32, "motion_max_seq_length": 64, "use_motion_mid_block": True,
                   "motion_mid_block_layers_per_block": 1, "motion_transformer_layers_per_mid_block": 1}
    with torch.device("meta"):
        adapter = MotionAdapter(**cfg)
    keys = adapter.state_dict()
    assert {k for k in keys if not k.endswith("pos_embed.pe")} == set(renamed)
    assert all(tuple(keys[k].shape) == tuple(v.shape) for k, v in renamed.items())
    # The real t2v file (1,813,041,929 B, HUB_FILES.md) is these parameters in fp32 plus ~0.2 MB of
    # pickle: it holds no PE buffers (they would add 9.7 MB), so the frame limit is not in the file.
    params = sum(v.numel() for v in renamed.values())
    assert params == 453_209_280 and 0 < 1_813_041_929 - 4 * params < 300_000


def test_checkpoint_without_pe_buffers_gets_the_official_64_frames(converted, tmp_path):
    bare = tmp_path / "bare.ckpt"
    torch.save({**{k: v for k, v in converted["motion"].items() if "pos_encoder" not in k}, **converted["encoder"]}, bare)
    out = i2v.convert_official_checkpoint(bare, tmp_path / "out", motion_heads=HEADS, motion_norm_groups=GROUPS)
    cfg = json.loads((out / "motion_adapter" / "config.json").read_text())
    assert cfg["motion_max_seq_length"] == 64 == i2v.MOTION_MAX_SEQ_LENGTH


def test_conversion_unwraps_state_dict_and_refuses_to_overwrite(converted):
    tmp = converted["tmp"]
    nested = tmp / "nested.ckpt"
    torch.save({"state_dict": {**converted["motion"], **converted["encoder"]}, "epoch": 3}, nested)
    out = i2v.convert_official_checkpoint(nested, tmp / "nested_out", motion_heads=HEADS, motion_norm_groups=GROUPS)
    for sub in ("motion_adapter", "image_encoder"):
        a = (out / sub / "diffusion_pytorch_model.safetensors").read_bytes()
        b = (converted["out"] / sub / "diffusion_pytorch_model.safetensors").read_bytes()
        assert a == b
    with pytest.raises(UserError, match="exists already"):
        i2v.convert_official_checkpoint(nested, out, motion_heads=HEADS, motion_norm_groups=GROUPS)


class _Payload:
    """Unpickling this calls open(marker, 'w'): a file appears if the payload ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


def test_bad_checkpoints_are_one_line_user_errors(converted, tmp_path):
    marker, live = tmp_path / "marker", tmp_path / "live"
    evil = tmp_path / "evil.ckpt"
    torch.save({"down_blocks.0.motion_modules.0.x": torch.zeros(1), "img_encoder.x": _Payload(marker)}, evil)
    with pytest.raises(UserError) as err:
        i2v.convert_official_checkpoint(evil, tmp_path / "out")
    assert "weights-only" in one_line(err) and not marker.exists() and not (tmp_path / "out").exists()
    # the payload is live: a full unpickle (done here on purpose, on a copy aimed elsewhere) runs it
    torch.save({"x": _Payload(live)}, tmp_path / "live.ckpt")
    torch.load(tmp_path / "live.ckpt", weights_only=False)
    assert live.exists() and not marker.exists()

    t2v = tmp_path / "t2v.ckpt"
    torch.save(converted["motion"], t2v)
    with pytest.raises(UserError) as err:
        i2v.convert_official_checkpoint(t2v, tmp_path / "out")
    assert "text-to-video" in one_line(err)

    with pytest.raises(UserError) as err:
        i2v.convert_official_checkpoint(tmp_path / "nowhere.ckpt", tmp_path / "out")
    assert "no checkpoint" in one_line(err)

    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(UserError) as err:
        i2v.convert_official_checkpoint(garbage, tmp_path / "out")
    one_line(err)

    extra = tmp_path / "extra.ckpt"
    torch.save({**converted["motion"], **converted["encoder"], "conv_in.weight": torch.zeros(1)}, extra)
    with pytest.raises(UserError) as err:
        i2v.convert_official_checkpoint(extra, tmp_path / "out", motion_heads=HEADS, motion_norm_groups=GROUPS)
    assert "unexpected" in one_line(err) and "conv_in.weight" in str(err.value)

    missing = dict(converted["motion"])
    missing.pop("up_blocks.0.motion_modules.2.temporal_transformer.proj_out.bias")
    short = tmp_path / "short.ckpt"
    torch.save({**missing, **converted["encoder"]}, short)
    with pytest.raises(UserError) as err:
        i2v.convert_official_checkpoint(short, tmp_path / "out", motion_heads=HEADS, motion_norm_groups=GROUPS)
    assert "lacks" in one_line(err) and "up_blocks.0.motion_modules.2.proj_out.bias" in str(err.value)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# 3. A tiny AnimateDiff pipeline with the converted motion modules
# --------------------------------------------------------------------------------------------
def tiny_tokenizer():
    from transformers import CLIPTokenizer

    tokens = ["<|startoftext|>", "<|endoftext|>"] + [c + e for c in "abcdefghijklmnopqrstuvwxyz" for e in ("", "</w>")]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=16)


def tiny_parts(layers_per_block=2):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=16, projection_dim=16,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        block_out_channels=(8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                        sample_size=SIZE)
    unet = UNet2DConditionModel(sample_size=SIZE // 4, in_channels=4, out_channels=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=CHANNELS,
                                layers_per_block=layers_per_block, norm_num_groups=GROUPS, cross_attention_dim=16,
                                attention_head_dim=2)
    return tok, text, vae, unet


@pytest.fixture(scope="module")
def pipe(converted):
    from diffusers import AnimateDiffPipeline, MotionAdapter

    tok, text, vae, unet = tiny_parts()
    adapter = MotionAdapter.from_pretrained(converted["out"] / "motion_adapter")
    p = AnimateDiffPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, motion_adapter=adapter,
                            scheduler=i2v.i2v_scheduler())
    p.set_progress_bar_config(disable=True)
    return i2v.load_i2v(p, converted["out"] / "image_encoder")


def image(seed=0, h=40, w=48):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def random_encoder(seed=0):
    enc = i2v.I2VImageEncoder(cin=4, channels=CHANNELS)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return enc.eval()


def run(pipe, **kw):
    args = {"image": image(), "prompt": "a cat", "frames": FRAMES, "steps": 2, "seed": 3, "height": SIZE, "width": SIZE}
    args.update(kw)
    return i2v.generate_i2v(pipe, **args)


def test_official_scheduler_settings(pipe):
    s = pipe.scheduler
    assert type(s).__name__ == "LCMScheduler"
    assert (s.config.beta_end, s.config.original_inference_steps, s.config.beta_schedule) == (0.014, 200, "linear")
    s.set_timesteps(4)
    assert s.timesteps.tolist() == [999, 749, 499, 249]


def test_generate_shapes_determinism_and_inputs(pipe):
    a = run(pipe)
    assert a.frames.shape == (FRAMES, SIZE, SIZE, 3) and a.frames.dtype == np.uint8 and a.seed == 3
    assert np.array_equal(run(pipe).frames, a.frames)
    from PIL import Image

    assert np.array_equal(run(pipe, image=Image.fromarray(image())).frames, a.frames)
    assert not np.array_equal(run(pipe, seed=4).frames, a.frames)


def test_motion_scale_and_image_reach_the_output(pipe):
    enc = random_encoder()
    base = run(pipe, encoder=enc, motion_scale=0.0, match_colors=False).frames
    assert not np.array_equal(run(pipe, encoder=enc, motion_scale=1.2, match_colors=False).frames, base)
    assert not np.array_equal(run(pipe, encoder=enc, motion_scale=0.0, image=image(1), match_colors=False).frames, base)


def test_fresh_encoder_at_zero_motion_scale_is_text_to_video(pipe):
    fresh = i2v.I2VImageEncoder(cin=4, channels=CHANNELS).eval()
    got = run(pipe, encoder=fresh, motion_scale=0.0, match_colors=False).frames
    with torch.inference_mode():
        ref = pipe(prompt="a cat", num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=2,
                   guidance_scale=1.0, generator=torch.Generator("cpu").manual_seed(3), output_type="np").frames[0]
    assert np.array_equal(got, np.clip(np.round(np.asarray(ref) * 255.0), 0, 255).astype(np.uint8))
    # the official init is NOT a no-op at motion_scale > 0: level 0 carries motion_scale * PE
    assert not np.array_equal(run(pipe, encoder=fresh, motion_scale=0.8, match_colors=False).frames, got)


def hook_counts(unet):
    return [len(m._forward_hooks) for m in i2v.insertion_modules(unet)]


def test_hooks_are_removed_after_the_call_and_after_an_error(pipe):
    before = hook_counts(pipe.unet)
    run(pipe, guidance=1.5)  # CFG: the hooks also see the [uncond, cond] batch
    assert hook_counts(pipe.unet) == before

    def boom(*_):
        raise RuntimeError("boom")

    handle = pipe.unet.mid_block.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            run(pipe)
        assert hook_counts(pipe.unet) == before
        with pytest.raises(KeyError), i2v.image_condition(pipe.unet, [torch.zeros(1)] * 2):
            assert [a - b for a, b in zip(hook_counts(pipe.unet), before)] == [1, 1]
            raise KeyError("inside")
        assert hook_counts(pipe.unet) == before
    finally:
        handle.remove()


def test_colour_correction_moves_hsv_means_to_the_source():
    import cv2

    frame = np.full((2, 6, 6, 3), (40, 120, 200), np.uint8)
    source = np.full((5, 5, 3), (120, 30, 10), np.uint8)
    hsv = lambda rgb: cv2.cvtColor(np.ascontiguousarray(rgb[..., ::-1]), cv2.COLOR_BGR2HSV).reshape(-1, 3)[0].astype(float)
    h0, s0, v0 = hsv(frame[0])
    hs, ss, vs = hsv(source)
    assert abs(s0 - ss) > 20 and abs(v0 - vs) > 50 and abs(h0 - hs) > 50  # far apart before
    out = i2v.adjust_colors(frame, source)
    h1, s1, v1 = hsv(out[0])
    assert abs(s1 - ss) <= 2 and abs(v1 - vs) <= 2  # S, V: moved all the way (gain 1.0)
    assert abs(h1 - math.floor(h0 + 0.03 * (hs - h0))) <= 1  # H: 3 % of the way
    assert np.array_equal(out[0], out[1])


# --------------------------------------------------------------------------------------------
# 4. The insertion point
# --------------------------------------------------------------------------------------------
def unet_inputs(unet, videos=1):
    g = torch.Generator().manual_seed(5)
    sample = torch.randn(videos, 4, FRAMES, SIZE // 4, SIZE // 4, generator=g)
    text = torch.randn(videos * FRAMES, 16, 16, generator=g)
    return sample, text


def record(unet):
    """Call order of down-block layers, every motion module's input, and every down-block layer's
    output (recorded by hooks installed BEFORE the image hooks, so they see the raw output)."""
    log = {"order": [], "mm_in": {}, "out": {}}
    handles = []
    for name, m in unet.named_modules():
        parts = name.split(".")
        if "motion_modules" in parts and parts[-1].isdigit() and parts[-2] == "motion_modules":
            handles.append(m.register_forward_pre_hook(
                lambda mod, args, kw, n=name: log["mm_in"].__setitem__(n, (args[0] if args else kw["hidden_states"]).clone()),
                with_kwargs=True))
        if name.startswith("down_blocks.") and len(parts) == 4 and parts[2] in ("resnets", "attentions", "motion_modules", "downsamplers"):
            def post(mod, args, out, n=name):
                log["order"].append(n)
                log["out"][n] = (out[0] if isinstance(out, tuple) else out).clone()
            handles.append(m.register_forward_hook(post))
    return log, handles


def forward(unet, sample, text, features=None, manual=None):
    log, handles = record(unet)
    extra = []
    if manual is not None:  # an independent implementation: add to motion_modules[1]'s input
        block, f = manual

        def pre(mod, args, kw):
            x = args[0] if args else kw["hidden_states"]
            x = x + f.repeat(x.shape[0] // f.shape[0], 1, 1, 1)
            return ((x,) + args[1:], kw) if args else (args, {**kw, "hidden_states": x})

        extra.append(unet.down_blocks[block].motion_modules[1].register_forward_pre_hook(pre, with_kwargs=True))
    try:
        with torch.no_grad():
            if features is None:
                out = unet(sample, 999, encoder_hidden_states=text).sample
            else:
                with i2v.image_condition(unet, features):
                    out = unet(sample, 999, encoder_hidden_states=text).sample
    finally:
        for h in handles + extra:
            h.remove()
    return out, log


@pytest.mark.parametrize("level", [0, 1])  # block 0: CrossAttnDownBlockMotion, block 1: DownBlockMotion
@pytest.mark.parametrize("videos", [1, 2])  # 2 = the [uncond, cond] batch of CFG: both halves get it
def test_feature_goes_after_the_second_spatial_layer_before_its_motion_module(pipe, level, videos):
    unet = pipe.unet
    sample, text = unet_inputs(unet, videos)
    g = torch.Generator().manual_seed(level)
    sizes = [(CHANNELS[i], SIZE // 4 // 2**i) for i in range(2)]
    features = [torch.zeros(FRAMES, c, s, s) for c, s in sizes]
    features[level] = torch.randn(FRAMES, *features[level].shape[1:], generator=g)
    base, log0 = forward(unet, sample, text)
    got, log1 = forward(unet, sample, text, features)
    spatial = "attentions" if level == 0 else "resnets"
    blk = f"down_blocks.{level}"
    expected = [f"{blk}.resnets.0"] + ([f"{blk}.attentions.0"] if level == 0 else []) + [f"{blk}.motion_modules.0",
                f"{blk}.resnets.1"] + ([f"{blk}.attentions.1"] if level == 0 else []) + [f"{blk}.motion_modules.1"]
    assert [n for n in log1["order"] if n.startswith(blk + ".") and "downsamplers" not in n] == expected
    point = f"{blk}.{spatial}.1"
    before = log1["order"][: log1["order"].index(point) + 1]
    for n in before:  # up to and including the insertion module's own (raw) output: unchanged
        assert torch.equal(log1["out"][n], log0["out"][n]), n
    mm = f"{blk}.motion_modules.1"
    f = features[level].repeat(videos, 1, 1, 1)
    assert torch.equal(log1["mm_in"][mm], log0["mm_in"][mm] + f)  # added right there, in every half
    assert not torch.equal(got, base)
    manual, _ = forward(unet, sample, text, manual=(level, features[level]))
    torch.testing.assert_close(got, manual, rtol=0, atol=0)  # ... and nowhere else


def test_insertion_needs_a_second_layer_and_matching_encoder(pipe):
    from diffusers import MotionAdapter, UNetMotionModel

    *_, unet1 = tiny_parts(layers_per_block=1)
    adapter = MotionAdapter(block_out_channels=CHANNELS, motion_layers_per_block=1, motion_num_attention_heads=HEADS,
                            motion_norm_num_groups=GROUPS, motion_max_seq_length=SEQ)
    with pytest.raises(UserError, match="layers_per_block >= 2"):
        i2v.insertion_modules(UNetMotionModel.from_unet2d(unet1, adapter))
    with pytest.raises(UserError, match="do not match"):
        i2v.load_i2v(pipe, i2v.I2VImageEncoder(cin=4, channels=(8, 32)), scheduler=None)
    with pytest.raises(UserError, match="features"):
        i2v.attach(pipe.unet, [torch.zeros(1)])
    with pytest.raises(UserError, match="image must be"):
        run(pipe, image=np.zeros((8, 8), np.uint8))


# --------------------------------------------------------------------------------------------
# 5. The image-to-video pipeline of the full world: converted folders + a base + the I2V LoRA
# --------------------------------------------------------------------------------------------
def test_full_world_pipeline_from_the_converted_folders(converted, tmp_path):
    """``image_to_video_pipeline(world="full")`` on a local SD1.5-layout base (written here), the
    converted checkpoint and a LoRA file at 0.8: AnimateDiffPipeline + the official scheduler and
    layer; the LoRA changes the video; a missing conversion is a one-line error."""
    from diffusers import StableDiffusionPipeline

    from animatelcm_helpers import pipelines, utils
    from animatelcm_helpers.config import Weights
    from animatelcm_helpers.toy import zoo

    tok, text, vae, unet = tiny_parts()
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=i2v.i2v_scheduler(),
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(tmp_path / "base", safe_serialization=True)
    utils.save_unet_lora(tmp_path / "lora", zoo.random_lora_state_dict(unet, seed=4, scale=0.3), "i2v_lora.safetensors")
    base = Weights(str(tmp_path / "base"), revision=None, local=True)
    kw = dict(world="full", device="cpu", converted=converted["out"], base=base)
    plain = i2v.image_to_video_pipeline(**kw, lcm_lora=None)
    assert type(plain).__name__ == "AnimateDiffPipeline" and plain.i2v_layer == i2v.OFFICIAL_LAYER
    assert plain.scheduler.config.beta_end == 0.014 and plain.scheduler.config.original_inference_steps == 200
    assert tuple(plain.i2v_encoder.config.channels) == CHANNELS
    with_lora = i2v.image_to_video_pipeline(**kw, lcm_lora=tmp_path / "lora" / "i2v_lora.safetensors")
    assert with_lora.adapter_weights == {"lcm-lora": i2v.LCM_LORA_WEIGHT}
    a, b = (run(p, match_colors=False).frames for p in (plain, with_lora))
    assert a.shape == (FRAMES, SIZE, SIZE, 3) and not np.array_equal(a, b)
    assert pipelines.max_frames(plain) == SEQ
    with pytest.raises(UserError, match="convert_official_checkpoint"):
        i2v.image_to_video_pipeline(world="full", device="cpu")
    with pytest.raises(UserError, match="not a folder written by convert_official_checkpoint"):
        i2v.image_to_video_pipeline(world="full", device="cpu", converted=tmp_path)
    with pytest.raises(UserError, match="no LoRA file"):
        i2v.image_to_video_pipeline(**kw, lcm_lora=tmp_path / "missing.safetensors")
