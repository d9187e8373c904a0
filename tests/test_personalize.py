"""Personalized AnimateLCM as the official demo has it, in the toy world (issue 21): a base and a
LoRA as users bring them, files written here and loaded by the real code.

* a single-file export of the toy base in the ORIGINAL SD key layout (``checkpoint_formats``), read
  back by diffusers' ``from_single_file`` into exactly the zoo's weights;
* a kohya-format export of a toy style LoRA, loaded by diffusers' kohya conversion into exactly the
  diffusers-format style;
* both through the command line (``--base``, ``--lora PATH:ALPHA``) and the demo (the menus'
  "a file on this machine"), bit-identical to the course's own calls on the zoo's folders;
* the LoRA's alpha moving the style ``metrics.read_styles`` reads, over 0, 0.4, 0.8;
* bad input, each one line: a base that is not the world's architecture (SDXL, SD2, an inpainting
  UNet, another width), a LoRA for another architecture, a pickle where a safetensors file is
  expected (refused before anything unpickles it), a missing file.
"""

from __future__ import annotations

import copy
import os
import pickle

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
from safetensors.torch import load_file, save_file

from animatelcm_helpers import checkpoint_formats, cli, config, demo, loading, pipelines
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import metrics, zoo
from animatelcm_helpers.utils import quiet_loading

SMALL = dict(steps=2, frames=4, seed=3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread is many times faster than two under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def zoo_base(toy_settings):
    with quiet_loading():
        return StableDiffusionPipeline.from_pretrained(zoo.root() / "base", safety_checker=None,
                                                       requires_safety_checker=False)


@pytest.fixture(scope="module")
def files(zoo_base, tmp_path_factory):
    """What a user brings: the toy base as one original-layout file, the neon style in kohya's format."""
    folder = tmp_path_factory.mktemp("user-files")
    base = checkpoint_formats.export_single_file(zoo_base, folder / "my_toy_base.safetensors")
    lora = checkpoint_formats.export_kohya_lora(load_file(zoo.root() / "styles" / "neon.safetensors"),
                                                folder / "neon_kohya.safetensors")
    return {"base": base, "lora": lora, "folder": folder}


@pytest.fixture(scope="module")
def reference(toy_settings):
    """The course's own pipeline on the zoo's folders, with the zoo's neon style at 0.8."""
    pipe = pipelines.load_t2v("animatelcm")
    pipelines.add_style(pipe, "neon", 0.8)
    return pipe


# --------------------------------------------------------------------------------------------
# The files: the original layout and kohya's names, both ways
# --------------------------------------------------------------------------------------------
def test_the_export_is_the_original_layout_and_diffusers_reads_it_back_exactly(zoo_base, files):
    names = checkpoint_formats.header(files["base"])
    assert checkpoint_formats.checkpoint_kind(names) == "sd"
    assert {n.split(".")[0] for n in names} == {"model", "first_stage_model", "cond_stage_model"}
    # the original names: conv_in is input_blocks.0.0, level 1's first resnet input_blocks.2.0 (1 layer a
    # block: 1 + 1 * (1 + 1) + 0), its in_layers.2 = conv1; the VAE's mid attention a 1x1 conv named q
    assert names["model.diffusion_model.input_blocks.0.0.weight"] == (32, 4, 3, 3)
    assert names["model.diffusion_model.input_blocks.3.0.in_layers.2.weight"] == (64, 32, 3, 3)
    assert "model.diffusion_model.input_blocks.2.0.op.weight" in names  # level 0's downsampler
    assert "model.diffusion_model.output_blocks.1.2.conv.weight" in names  # up level 0's upsampler (after attention)
    assert names["first_stage_model.encoder.mid.attn_1.q.weight"] == (32, 32, 1, 1)
    assert "first_stage_model.decoder.up.2.block.0.conv1.weight" in names  # decoder levels reversed
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in names
    state = load_file(files["base"])
    # diffusers' own converters give back exactly the zoo's UNet and VAE
    for part, convert in (("unet", convert_ldm_unet_checkpoint), ("vae", convert_ldm_vae_checkpoint)):
        ours = getattr(zoo_base, part).state_dict()
        theirs = convert(state, dict(getattr(zoo_base, part).config))
        assert theirs.keys() == ours.keys(), part
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), part
    # and the real loader (from_single_file into the zoo's layout) gives back every weight
    back = loading.load_single_file_base(files["base"], "toy", torch.float32)
    for part in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(zoo_base, part).state_dict(), getattr(back, part).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), part


def test_the_kohya_export_loads_as_the_same_lora(zoo_base, files):
    kohya = load_file(files["lora"])
    diffusers_format = load_file(zoo.root() / "styles" / "neon.safetensors")
    assert len(kohya) == len(diffusers_format) // 2 * 3  # down, up and alpha per layer
    assert all(k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in kohya)
    rank = diffusers_format["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"].shape[0]
    assert kohya["lora_unet_down_blocks_0_attentions_0_proj_in.alpha"].item() == rank  # alpha / rank = 1
    outs = []
    x, t, text = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), 500, torch.randn(1, 16, 64)
    for lora in (config.toy_weights("styles", "neon.safetensors"), pipelines.lora_weights(str(files["lora"]))[0]):
        pipe = StableDiffusionPipeline(**{**zoo_base.components, "unet": copy.deepcopy(zoo_base.unet),
                                          "text_encoder": copy.deepcopy(zoo_base.text_encoder)})
        loading.load_lora(pipe, lora, adapter_name="style")
        pipe.set_adapters(["style"], [0.8])
        with torch.no_grad():
            outs.append(pipe.unet(x, t, text).sample)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-6)
    with torch.no_grad():
        plain = zoo_base.unet(x, t, text).sample
    assert (outs[0] - plain).abs().max() > 1e-3  # the LoRA reached the UNet


# --------------------------------------------------------------------------------------------
# Through the command line and the demo, bit-identical to the course's own calls
# --------------------------------------------------------------------------------------------
def test_the_command_line_takes_a_single_file_base_and_a_kohya_lora(files, reference, tmp_path, capsys):
    out = tmp_path / "styled.npy"
    code = cli.main(["generate", "--world", "toy", "--prompt", "a seven moving left", "--base", str(files["base"]),
                     "--lora", f"{files['lora']}:0.8", "--steps", "2", "--frames", "4", "--seed", "3", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"base {files['base']}, LoRA {files['lora']} at 0.8" in printed
    ref = pipelines.generate(reference, "a seven moving left", **SMALL).frames
    np.testing.assert_array_equal(np.load(out), ref)
    # the zoo's style by name, at another alpha
    assert cli.main(["generate", "--world", "toy", "--prompt", "a seven moving left", "--lora", "neon:0.4",
                     "--steps", "2", "--frames", "4", "--seed", "3", "--out", str(out)]) == 0
    pipelines.set_adapter_weight(reference, "neon", 0.4)
    try:
        np.testing.assert_array_equal(np.load(out), pipelines.generate(reference, "a seven moving left", **SMALL).frames)
    finally:
        pipelines.set_adapter_weight(reference, "neon", 0.8)


def _file_values(files, **change):
    return {**demo.defaults(demo.t2v_fields("toy")), "base": demo.FILE, "base_file": str(files["base"]),
            "personal_lora": demo.FILE, "lora_file": str(files["lora"]), "prompt": "a seven moving left",
            "negative_prompt": "", **SMALL, **change}


def test_the_demo_takes_a_file_on_this_machine_for_both_menus(files, reference):
    fields = {f.name: f for f in demo.t2v_fields("toy")}
    assert list(fields["base"].options) == ["toy base", demo.FILE] and fields["base_file"].kind == "text"
    assert list(fields["personal_lora"].options)[-1] == demo.FILE
    assert (fields["lora_alpha"].default, fields["lora_alpha"].low, fields["lora_alpha"].high) == (0.8, 0.0, 2.0)
    checked = demo.validate_t2v(_file_values(files), "toy")
    assert checked["base"] == str(files["base"]) and checked["personal_lora"] == str(files["lora"])
    out = demo.run_t2v(checked)
    np.testing.assert_array_equal(out.frames, pipelines.generate(reference, "a seven moving left", **SMALL).frames)
    pipe = demo.t2v_pipe("animatelcm", "toy", str(files["base"]))
    adapter = [a for a in pipe.adapter_weights if a.startswith("lora-neon-kohya")]
    assert len(adapter) == 1 and pipe.adapter_weights[adapter[0]] == 0.8
    # back to the menu's own entries: the zoo's base, no LoRA (the file's adapter switched off)
    plain = demo.run_t2v({**_file_values(files), "base": "toy base", "personal_lora": demo.NO_LORA})
    ref_plain = pipelines.generate(pipelines.load_t2v("animatelcm"), "a seven moving left", **SMALL).frames
    np.testing.assert_array_equal(plain.frames, ref_plain)


ALPHAS = (0.0, 0.4, 0.8)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def test_the_loras_alpha_moves_the_style_read_monotonically(files):
    """The kohya-format neon LoRA on the single-file base, through the demo: the fraction of videos whose
    first frame metrics.read_styles reads as neon, over alpha 0, 0.4, 0.8 (10 prompts, 2 frames each).
    Measured with 20 videos an alpha (README / report): 0.00, 0.15, 1.00."""
    fractions = []
    for alpha in ALPHAS:
        reads = []
        for i, digit in enumerate(DIGITS):
            out = demo.run_t2v(_file_values(files, prompt=f"a {digit} moving left", lora_alpha=alpha, frames=2,
                                            steps=4, seed=100 + i))
            reads += metrics.read_styles(out.frames[:1])
        fractions.append(sum(r == "neon" for r in reads) / len(reads))
    print("neon read at alpha", dict(zip(ALPHAS, fractions)))
    assert fractions[0] <= fractions[1] <= fractions[2], fractions
    assert fractions[0] <= 0.1 and fractions[2] >= 0.8, fractions


# --------------------------------------------------------------------------------------------
# Bad input: one line each
# --------------------------------------------------------------------------------------------
class _Trap:
    """Unpickling this runs code: it writes the file named in ``MARKER``."""

    def __reduce__(self):
        return (open, (os.environ["PERSONALIZE_MARKER"], "w"))


@pytest.fixture
def trap(tmp_path, monkeypatch):
    marker = tmp_path / "unpickled"
    monkeypatch.setenv("PERSONALIZE_MARKER", str(marker))
    data = pickle.dumps({"state_dict": _Trap()})
    paths = {}
    for name in ("base.ckpt", "style.pt", "model.bin", "renamed.safetensors"):
        (tmp_path / name).write_bytes(data)
        paths[name] = tmp_path / name
    return paths, marker


def _header_file(path, shapes: dict):
    save_file({k: torch.zeros(s) for k, s in shapes.items()}, path)
    return path


def _sd_names(unet_width=32, cross=64, text=64, in_channels=4):
    return {"model.diffusion_model.input_blocks.0.0.weight": (unet_width, in_channels, 3, 3),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (unet_width, cross),
            "first_stage_model.encoder.conv_in.weight": (16, 3, 3, 3),
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (605, text)}


BAD_BASES = [
    ("sdxl", {"conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": (3, 2),
              "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}, r"is an SDXL checkpoint"),
    ("sd2", {"cond_stage_model.model.token_embedding.weight": (10, 4), "model.diffusion_model.input_blocks.0.0.weight": (32, 4, 3, 3)},
     r"is a Stable Diffusion 2.x checkpoint"),
    ("inpainting", _sd_names(in_channels=9), r"is an inpainting checkpoint \(9 UNet input channels\)"),
    ("wider", _sd_names(unet_width=320, cross=768, text=768), r"has UNet width 320, toy-world \(Moving Digits\) has 32"),
    ("cross", _sd_names(cross=768), r"has cross-attention width 768, toy-world \(Moving Digits\) has 64"),
    ("unet-only", {"model.diffusion_model.input_blocks.0.0.weight": (32, 4, 3, 3)}, r"has no VAE \(first_stage_model"),
    ("lora", {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 32)}, r"is a LoRA, not a base model"),
    ("diffusers", {"down_blocks.0.resnets.0.conv1.weight": (32, 32, 3, 3)}, r"state dict in diffusers' names"),
]


@pytest.mark.parametrize("name,shapes,message", BAD_BASES, ids=[b[0] for b in BAD_BASES])
def test_a_base_of_another_architecture_is_one_line(name, shapes, message, tmp_path, toy_settings):
    path = _header_file(tmp_path / f"{name}.safetensors", shapes)
    with pytest.raises(UserError, match=message) as err:
        pipelines.load_t2v("animatelcm", base=str(path))
    assert "\n" not in str(err.value) and path.name in str(err.value)


def test_a_real_checkpoint_of_another_size_is_refused_before_loading(tmp_path, toy_settings):
    """The full world's (fake) SD1.5 exported in the original layout: 8 channels, cross-attention 16."""
    from fakehub import repos

    path = checkpoint_formats.export_single_file(repos.sd_pipeline(0), tmp_path / "sd15_like.safetensors")
    with pytest.raises(UserError, match=r"sd15_like.safetensors has UNet width 8, toy-world \(Moving Digits\) has 32"):
        pipelines.load_t2v("animatelcm", base=str(path))


def test_pickles_are_refused_before_anything_unpickles_them(trap, tmp_path, capsys, toy_settings):
    paths, marker = trap
    with pytest.raises(UserError, match=r"^base.ckpt is a pickle file \(.ckpt\); .* loads base model from .safetensors"):
        pipelines.load_t2v("animatelcm", base=str(paths["base.ckpt"]))
    pipe = pipelines.load_t2v("animatelcm")
    for name in ("style.pt", "model.bin"):
        with pytest.raises(UserError, match=rf"^{name} is a pickle file"):
            pipelines.add_lora(pipe, str(paths[name]))
    with pytest.raises(UserError, match=r"renamed.safetensors is not a readable safetensors file \(a pickle renamed"):
        pipelines.add_lora(pipe, str(paths["renamed.safetensors"]))
    with pytest.raises(UserError, match=r"renamed.safetensors is not a readable safetensors file \(a pickle renamed"):
        pipelines.load_t2v("animatelcm", base=str(paths["renamed.safetensors"]))
    assert cli.main(["generate", "--world", "toy", "--prompt", "a two", "--base", str(paths["base.ckpt"]),
                     "--out", str(tmp_path / "v.npy")]) == 2
    assert "error: base.ckpt is a pickle file" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"is a pickle file"):
        demo.validate_t2v({**demo.defaults(demo.t2v_fields("toy")), "personal_lora": demo.FILE,
                           "lora_file": str(paths["style.pt"])}, "toy")
    assert not marker.exists()  # nothing was unpickled
    assert pipe.get_list_adapters() == {"unet": ["lcm-lora"]}  # nothing half-loaded


def test_a_lora_for_another_architecture_is_one_line_and_leaves_the_pipeline_as_it_was(tmp_path, toy_settings):
    from fakehub import repos

    pipe = pipelines.load_t2v("animatelcm")
    before = pipelines.generate(pipe, "a two moving up", **SMALL).frames
    save_file(repos.kohya_style_lora(1), tmp_path / "sd15_style.safetensors")  # the fake SD1.5's widths
    sdxl = {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight": torch.zeros(4, 640),
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight": torch.zeros(640, 4),
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha": torch.tensor(4.0)}
    save_file(sdxl, tmp_path / "sdxl_style.safetensors")
    for name in ("sd15_style.safetensors", "sdxl_style.safetensors"):
        with pytest.raises(UserError, match=rf"the LoRA {name} (does not fit this model's UNet|has no layer this model's UNet has)"):
            pipelines.add_lora(pipe, str(tmp_path / name))
        assert pipe.get_list_adapters() == {"unet": ["lcm-lora"]}
    np.testing.assert_array_equal(pipelines.generate(pipe, "a two moving up", **SMALL).frames, before)
    base_as_lora = checkpoint_formats.export_single_file(repos.sd_pipeline(0), tmp_path / "a_base.safetensors")
    with pytest.raises(UserError, match=r"a_base.safetensors is a whole base model checkpoint, not a LoRA"):
        pipelines.add_lora(pipe, str(base_as_lora))


def test_missing_files_and_unknown_names_say_what_to_give(tmp_path, capsys, toy_settings):
    with pytest.raises(UserError, match=r"^no such file: .*nothing.safetensors \(give the path of a .safetensors file"):
        pipelines.load_t2v("animatelcm", base=str(tmp_path / "nothing.safetensors"))
    pipe = pipelines.load_t2v("animatelcm")
    with pytest.raises(UserError, match=r"^no such file: .*gone.safetensors"):
        pipelines.add_lora(pipe, str(tmp_path / "gone.safetensors"))
    with pytest.raises(UserError, match=r"^unknown base 'sdxl-turbo': give one of toy, or the path of a single-file"):
        pipelines.load_t2v("animatelcm", base="sdxl-turbo")
    with pytest.raises(UserError, match=r"^unknown LoRA 'vangogh': give one of neon, sunset, paper, checker, or the path"):
        pipelines.add_lora(pipe, "vangogh")
    with pytest.raises(UserError, match=r"^unknown base 'owner/model'"):  # no Hub in the toy world
        pipelines.load_t2v("animatelcm", base="owner/model")
    with pytest.raises(UserError, match=r"^LoRA alpha must be between 0.0 and 2.0, got 2.5"):
        pipelines.add_lora(pipe, "neon", 2.5)
    assert cli.main(["generate", "--world", "toy", "--prompt", "a two", "--lora", f"{tmp_path / 'gone.safetensors'}:0.5",
                     "--out", str(tmp_path / "v.npy")]) == 2
    assert "error: no such file:" in capsys.readouterr().err
    values = demo.defaults(demo.t2v_fields("toy"))
    with pytest.raises(UserError, match=r"^'a file on this machine' is chosen for the base model: type the path"):
        demo.validate_t2v({**values, "base": demo.FILE}, "toy")
    with pytest.raises(UserError, match=r"^no such file: .*gone.safetensors"):
        demo.validate_t2v({**values, "personal_lora": demo.FILE, "lora_file": str(tmp_path / "gone.safetensors")}, "toy")
    with pytest.raises(UserError, match=r"is a folder; give the path of one .safetensors file"):
        demo.validate_t2v({**values, "base": demo.FILE, "base_file": str(tmp_path)}, "toy")


def test_lora_arguments_parse(toy_settings):
    assert cli.parse_lora("neon") == ("neon", 0.8)
    assert cli.parse_lora("neon:0.4") == ("neon", 0.4)
    assert cli.parse_lora("owner/name/style.safetensors:1.5") == ("owner/name/style.safetensors", 1.5)
    assert cli.parse_lora(r"C:\loras\style.safetensors") == (r"C:\loras\style.safetensors", 0.8)
