"""The fake Hub's repositories: every repository of ``animatelcm_helpers/hub_files.json`` (the
manifest of ``config.HUB``), written with its real file names and formats and TINY weights.

Each real model is replaced by a random one of the same class with the same structure, shrunk:
SD1.5's UNet keeps its 4 levels, 2 layers a block, its block types and its factor-8 VAE (8 and 16
channels instead of 320..1280); the motion adapters match it block for block; SVD-xt keeps its
block types, its 8 input channels and its temporal VAE; the ControlNets are made from the base's
UNet as the v1.1 ones were. The files the course never reads (pickles, the safety checker, the
single-file SGM checkpoints) are there too, as small valid files, so a test can assert that
nothing ever asks for them. Key formats follow the manifest: the AnimateLCM LCM LoRA in kohya
form with ``.alpha`` keys (alpha / rank = 1/8, what the official ``convert_lcm_lora`` applies),
AnimateDiff's motion LoRAs in diffusers' old attention-processor form, ``.fp16`` variants in
float16, the AnimateLCM-SVD-xt UNet as one root-level safetensors file of diffusers keys, and the
Annotators' ``.pth`` pickles of the real detector architectures (``annotators.py``).

:func:`build_remote` writes them all under ``root/<owner>/<name>/`` and checks that what it wrote
is exactly the manifest's file list; :func:`hub_repos` turns that into the server's repositories.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLTemporalDecoder,
    ControlNetModel,
    DEISMultistepScheduler,
    EulerDiscreteScheduler,
    MotionAdapter,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableVideoDiffusionPipeline,
    UNet2DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from animatelcm_helpers import checkpoint_formats, i2v
from animatelcm_helpers.toy import configs as toy_configs

from . import annotators
from .server import Repo

MANIFEST = Path(__file__).resolve().parents[2] / "animatelcm_helpers" / "hub_files.json"
VERSION = 3  # bump when a builder changes what it writes (the cache key)

# SD1.5's structure, shrunk: 4 levels, 2 layers a block, cross-attention in the first three.
SD_BLOCKS = (8, 16, 16, 16)
SD_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, block_out_channels=SD_BLOCKS, layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
)
SD_VAE = dict(
    in_channels=3, out_channels=3, block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4,
    sample_size=64, scaling_factor=0.18215,
)
MOTION = dict(block_out_channels=SD_BLOCKS, motion_layers_per_block=2, motion_num_attention_heads=2,
              motion_norm_num_groups=4, motion_max_seq_length=32, use_motion_mid_block=False)
# SD1.5's PNDM scheduler config (what the SD1.5 family ships in scheduler/scheduler_config.json)
SD_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                    set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, trained_betas=None)
# The LCM-LoRA SD1.5 family's target layers (kohya names them lora_unet_<path with _>)
LCM_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]
LCM_LORA_RANK, LCM_LORA_ALPHA = 8, 1.0  # alpha / rank = 1/8: the official converter's fixed scale
SVD_UNET = dict(
    sample_size=8, in_channels=8, out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    block_out_channels=(32, 32, 32), addition_time_embed_dim=8, projection_class_embeddings_input_dim=24,
    layers_per_block=1, cross_attention_dim=16, transformer_layers_per_block=1, num_attention_heads=(2, 2, 2),
    num_frames=25,
)
SVD_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
               block_out_channels=(32, 32, 32, 32), layers_per_block=1, latent_channels=4, sample_size=64)


def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def _seed(repo_id: str) -> int:
    return int(hashlib.sha1(repo_id.encode()).hexdigest()[:8], 16)


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """Every parameter drawn again (zero-initialised output layers too), so each part matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim <= 1 and p.numel() > 1 and torch.all(p == 1):  # norm weights stay near 1
                p.add_(torch.randn(p.shape, generator=g) * 0.01)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


def _fp16_copy(folder: Path, name: str) -> None:
    """The ``.fp16`` variant of ``folder/name.safetensors``: the same tensors in float16."""
    from safetensors.torch import load_file

    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(folder / f"{name}.safetensors").items()}
    save_file(state, folder / f"{name}.fp16.safetensors", metadata={"format": "pt"})


def _pickle(path: Path, state: dict) -> None:
    """A decoy pickle (a ``.bin``/``.ckpt`` the course must never read): a real torch.save file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v for k, v in list(state.items())[:4]}, path)


def tokenizer_files(folder: Path) -> None:
    """CLIP's tokenizer files (vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json)
    for a byte-level BPE vocabulary (the toy's: every byte, plus the toy words), 77 tokens long."""
    vocab, merges = toy_configs.tokenizer_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    special = {"bos_token": toy_configs.BOS, "eos_token": toy_configs.EOS, "pad_token": toy_configs.EOS,
               "unk_token": toy_configs.EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        **special, "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "errors": "replace", "add_prefix_space": False}))


def sd_parts(seed: int) -> dict:
    vocab, _ = toy_configs.tokenizer_vocab()
    torch.manual_seed(seed)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                        projection_dim=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    return {"unet": _randomise(UNet2DConditionModel(**SD_UNET), seed), "vae": _randomise(AutoencoderKL(**SD_VAE), seed + 1, 0.02),
            "text_encoder": _randomise(text, seed + 2, 0.05)}


def write_sd_pipeline(folder: Path, seed: int, fp16: bool) -> None:
    """A StableDiffusionPipeline repository (SD1.5's layout, with its safety checker and pickles)."""
    parts = sd_parts(seed)
    checker = StableDiffusionSafetyChecker(CLIPConfig(
        text_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16), projection_dim=8))
    pipe = StableDiffusionPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"],
                                   tokenizer=toy_configs.tiny_tokenizer(), unet=parts["unet"],
                                   scheduler=PNDMScheduler(**SD_SCHEDULER), safety_checker=checker,
                                   feature_extractor=CLIPImageProcessor(), requires_safety_checker=True)
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(folder / "tokenizer")
    tokenizer_files(folder / "tokenizer")
    for name, file in (("text_encoder", "pytorch_model.bin"), ("unet", "diffusion_pytorch_model.bin"),
                       ("vae", "diffusion_pytorch_model.bin")):
        _pickle(folder / name / file, parts[name].state_dict())
    if fp16:
        _fp16_copy(folder / "unet", "diffusion_pytorch_model")
        _fp16_copy(folder / "vae", "diffusion_pytorch_model")
        _fp16_copy(folder / "text_encoder", "model")
        shutil.copy(folder / "unet" / "diffusion_pytorch_model.safetensors",
                    folder / "unet" / "diffusion_pytorch_model.non_ema.safetensors")
        save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)},
                  folder / "v1-5-pruned-emaonly.safetensors")


def sd_pipeline(seed: int, safety_checker: bool = False) -> StableDiffusionPipeline:
    """A fake SD1.5 pipeline (the tiny parts of :func:`sd_parts`), optionally with a tiny safety checker."""
    parts = sd_parts(seed)
    checker = StableDiffusionSafetyChecker(CLIPConfig(
        text_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16), projection_dim=8)) if safety_checker else None
    return StableDiffusionPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"],
                                   tokenizer=toy_configs.tiny_tokenizer(), unet=parts["unet"],
                                   scheduler=PNDMScheduler(**SD_SCHEDULER), safety_checker=checker,
                                   feature_extractor=CLIPImageProcessor() if safety_checker else None,
                                   requires_safety_checker=safety_checker)


def _save_sd(pipe: StableDiffusionPipeline, folder: Path) -> None:
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(folder / "tokenizer")
    tokenizer_files(folder / "tokenizer")


def write_realistic_vision(folder: Path, seed: int) -> None:
    """SG161222/Realistic_Vision_V5.1_noVAE: diffusers' layout without safety checker or feature
    extractor folders (its model_index still lists them), fp32 safetensors only, and eight single
    files at the root; ``Realistic_Vision_V5.1_fp16-no-ema.safetensors`` is a real original-layout
    export of this fake (float16), the others small decoys."""
    pipe = sd_pipeline(seed)
    _save_sd(pipe, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index.update(feature_extractor=["transformers", "CLIPImageProcessor"], requires_safety_checker=True,
                 safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"])
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    checkpoint_formats.export_single_file(pipe, folder / "Realistic_Vision_V5.1_fp16-no-ema.safetensors", torch.float16)
    stub = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}
    for name in ("Realistic_Vision_V5.1", "Realistic_Vision_V5.1-inpainting", "Realistic_Vision_V5.1_fp16-no-ema-inpainting"):
        save_file(stub, folder / f"{name}.safetensors")
    for name in ("Realistic_Vision_V5.1", "Realistic_Vision_V5.1-inpainting", "Realistic_Vision_V5.1_fp16-no-ema",
                 "Realistic_Vision_V5.1_fp16-no-ema-inpainting"):
        _pickle(folder / f"{name}.ckpt", pipe.unet.state_dict())


def write_dreamshaper(folder: Path, seed: int) -> None:
    """Lykon/dreamshaper-8: diffusers' layout with its safety checker, fp16 variants of every
    model and a DEISMultistepScheduler."""
    pipe = sd_pipeline(seed, safety_checker=True)
    pipe.scheduler = DEISMultistepScheduler.from_config(pipe.scheduler.config)
    _save_sd(pipe, folder)
    for part, name in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model"), ("safety_checker", "model")):
        _fp16_copy(folder / part, name)


def kohya_style_lora(seed: int, rank: int = 4, text_encoder: bool = False) -> dict:
    """A style LoRA for the fake base in kohya's format: the attention projections of every spatial
    transformer (``lora_unet_*``), plus with ``text_encoder`` every projection of the text encoder's
    layer 0 (``lora_te_text_model_encoder_layers_0_*``); ``.alpha`` = rank / 2."""
    g = torch.Generator().manual_seed(seed)
    out = {}

    def add(name, fan_in, fan_out):
        out[f"{name}.lora_down.weight"] = (torch.randn(rank, fan_in, generator=g) * 0.3).half()
        out[f"{name}.lora_up.weight"] = (torch.randn(fan_out, rank, generator=g) * 0.3).half()
        out[f"{name}.alpha"] = torch.tensor(rank / 2, dtype=torch.float16)

    for name, module in base_unet().named_modules():
        if name.endswith((".attn1.to_q", ".attn1.to_k", ".attn1.to_v", ".attn2.to_q", ".attn2.to_k", ".attn2.to_v")):
            add("lora_unet_" + name.replace(".", "_"), module.in_features, module.out_features)
    if text_encoder:
        hidden, inner = 16, 32
        for proj, (i, o) in {"self_attn_q_proj": (hidden, hidden), "self_attn_k_proj": (hidden, hidden),
                             "self_attn_v_proj": (hidden, hidden), "self_attn_out_proj": (hidden, hidden),
                             "mlp_fc1": (hidden, inner), "mlp_fc2": (inner, hidden)}.items():
            add(f"lora_te_text_model_encoder_layers_0_{proj}", i, o)
    return out


def _jpeg(path: Path, seed: int) -> None:
    from PIL import Image

    rgb = torch.randint(0, 255, (8, 8, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8).numpy()
    Image.fromarray(rgb).save(path, format="JPEG")


def write_style_lora(folder: Path, repo_id: str, seed: int) -> None:
    """A style-LoRA repository as the model cards ship them: the kohya .safetensors and the
    example images (the coloring-book LoRA also on the text encoder)."""
    for f in manifest()["repos"][repo_id]["files"]:
        path = folder / f["path"]
        if path.suffix == ".jpeg":
            _jpeg(path, seed + len(f["path"]))
        elif path.suffix == ".safetensors":
            save_file(kohya_style_lora(seed, text_encoder="coloringbook" in repo_id), path)


# The official motion modules' names (AnimateDiff's original layout, AnimateLCM's motion_module.py) from
# diffusers' (the inverse of i2v.MOTION_KEY_RENAMES): norm1/norm2 -> norms.0/1, norm3 -> ff_norm,
# attn1/attn2 -> attention_blocks.0/1, and the temporal_transformer level.
I2V_MOTION = dict(MOTION, use_motion_mid_block=True, motion_max_seq_length=64)


def official_motion_key(key: str) -> str:
    key = re.sub(r"(motion_modules\.\d+)\.", r"\1.temporal_transformer.", key)
    for new, old in ((".norm1.", ".norms.0."), (".norm2.", ".norms.1."), (".norm3.", ".ff_norm."),
                     (".attn1.", ".attention_blocks.0."), (".attn2.", ".attention_blocks.1.")):
        key = key.replace(new, old)
    return key


def official_i2v_checkpoint(seed: int) -> dict:
    """``AnimateLCM_sd15_i2v.ckpt`` at the fake base's size: the motion modules of a MotionAdapter
    matching it (blocks 8/16/16/16, 2 layers a block, a mid-block module, as inference-i2v.yaml) in
    the official names, no PE buffers, plus ``img_encoder.*`` (the official Adapter, sk=True,
    nums_rb=2, ksize=1) with every weight drawn (no zero-initialised layer)."""
    adapter = _randomise(MotionAdapter(**I2V_MOTION), seed, 0.05)
    state = {official_motion_key(k): v for k, v in adapter.state_dict().items() if not k.endswith(".pos_embed.pe")}
    encoder = _randomise(i2v.I2VImageEncoder(cin=4, channels=SD_BLOCKS, nums_rb=2, ksize=1, sk=True), seed + 1, 0.1)
    state.update({"img_encoder." + k: v for k, v in encoder.state_dict().items()})
    return {k: v.contiguous() for k, v in state.items()}


def write_animatelcm_i2v(folder: Path, seed: int) -> None:
    torch.save(official_i2v_checkpoint(seed), folder / "AnimateLCM_sd15_i2v.ckpt")
    save_file(kohya_lcm_lora(base_unet(), seed + 1), folder / "AnimateLCM_sd15_i2v_lora.safetensors")


def base_unet(repo_id: str = "emilianJR/epiCRealism") -> UNet2DConditionModel:
    """The fake base's UNet (the motion adapters, LoRAs and ControlNets are made for it)."""
    return sd_parts(_seed(repo_id))["unet"]


def motion_adapter(seed: int) -> MotionAdapter:
    return _randomise(MotionAdapter(**MOTION), seed, 0.05)


def write_motion_adapter(folder: Path, seed: int, fp16: bool) -> None:
    motion_adapter(seed).save_pretrained(folder, safe_serialization=True)
    if fp16:
        _fp16_copy(folder, "diffusion_pytorch_model")


def write_lightning(folder: Path, seed: int) -> None:
    """AnimateDiff-Lightning's files: per step count a bare MotionAdapter state dict in half precision
    (``*_diffusers.safetensors``, the fake v1.5.2 adapter's architecture, no config.json) and the same
    weights in AnimateDiff's original names (``*_comfyui.safetensors``, never read by the course)."""
    for n in (1, 2, 4, 8):
        state = {k: v.half().contiguous() for k, v in motion_adapter(seed + n).state_dict().items()}
        save_file(state, folder / f"animatediff_lightning_{n}step_diffusers.safetensors")
        save_file({official_motion_key(k): v for k, v in state.items()}, folder / f"animatediff_lightning_{n}step_comfyui.safetensors")


def kohya_lcm_lora(unet: UNet2DConditionModel, seed: int) -> dict:
    """A LoRA on the base UNet in kohya's format, as AnimateLCM ships its LCM LoRA:
    ``lora_unet_<module path, '.' -> '_'>.lora_down.weight`` (A), ``.lora_up.weight`` (B) and
    ``.alpha`` (alpha / rank = 1/8), float16."""
    import copy

    unet = copy.deepcopy(unet)
    unet.add_adapter(LoraConfig(r=LCM_LORA_RANK, lora_alpha=LCM_LORA_RANK, target_modules=LCM_LORA_TARGETS,
                                init_lora_weights="gaussian"))
    _randomise(unet, seed, 0.2)  # B too: a LoRA that changes the model
    out = {}
    for key, value in get_peft_model_state_dict(unet).items():
        module, kind = key.rsplit(".lora_", 1)
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = value.half()
        out[f"{name}.alpha"] = torch.tensor(LCM_LORA_ALPHA, dtype=torch.float16)
    return out


def motion_lora_state(seed: int, rank: int = 4) -> dict:
    """An AnimateDiff motion LoRA as diffusers' converter writes it (the old attention-processor
    form): ``unet.<block>.motion_modules.<i>.transformer_blocks.0.attn{1,2}.processor.to_{q,k,v,out}_lora.{down,up}.weight``."""
    adapter = motion_adapter(0)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, module in adapter.named_modules():
        for proj in ("to_q", "to_k", "to_v", "to_out"):
            if name.endswith((".attn1", ".attn2")):
                layer = getattr(module, proj)
                layer = layer[0] if proj == "to_out" else layer
                prefix = "unet." + name
                out[f"{prefix}.processor.{proj}_lora.down.weight"] = torch.randn(rank, layer.in_features, generator=g) * 0.1
                out[f"{prefix}.processor.{proj}_lora.up.weight"] = torch.randn(layer.out_features, rank, generator=g) * 0.1
    return out


def controlnet(unet: UNet2DConditionModel, seed: int) -> ControlNetModel:
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 4, 8, 8))
    return _randomise(net, seed, 0.05)


def write_controlnet(folder: Path, unet: UNet2DConditionModel, seed: int) -> None:
    net = controlnet(unet, seed)
    net.save_pretrained(folder, safe_serialization=True)
    _fp16_copy(folder, "diffusion_pytorch_model")
    _pickle(folder / "diffusion_pytorch_model.bin", net.state_dict())
    _pickle(folder / "diffusion_pytorch_model.fp16.bin", net.state_dict())


def svd_unet(seed: int) -> UNetSpatioTemporalConditionModel:
    torch.manual_seed(seed)
    return _randomise(UNetSpatioTemporalConditionModel(**SVD_UNET), seed, 0.05)


def write_svd_xt(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, projection_dim=16, num_hidden_layers=1, num_attention_heads=2,
        image_size=224, patch_size=32))
    pipe = StableVideoDiffusionPipeline(
        vae=_randomise(AutoencoderKLTemporalDecoder(**SVD_VAE), seed + 1, 0.02), image_encoder=_randomise(vision, seed + 2),
        unet=svd_unet(seed + 3), scheduler=EulerDiscreteScheduler.from_config(_SVD_SCHEDULER),
        feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}))
    pipe.save_pretrained(folder, safe_serialization=True)
    for part, name in (("image_encoder", "model"), ("vae", "diffusion_pytorch_model"), ("unet", "diffusion_pytorch_model")):
        _fp16_copy(folder / part, name)
    for single in ("svd_xt.safetensors", "svd_xt_image_decoder.safetensors"):  # SGM-layout decoys
        save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, folder / single)


_SVD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      prediction_type="v_prediction", interpolation_type="linear", use_karras_sigmas=True,
                      sigma_min=0.002, sigma_max=700.0, timestep_spacing="leading", timestep_type="continuous",
                      steps_offset=1)


def write_repo(repo_id: str, folder: Path) -> None:
    """Write one repository of the manifest into ``folder``."""
    seed = _seed(repo_id)
    folder.mkdir(parents=True, exist_ok=True)
    if repo_id in ("emilianJR/epiCRealism", "stable-diffusion-v1-5/stable-diffusion-v1-5"):
        write_sd_pipeline(folder, seed, fp16=repo_id.startswith("stable-diffusion"))
    elif repo_id == "wangfuyun/AnimateLCM":
        write_motion_adapter(folder, seed, fp16=True)
        save_file(kohya_lcm_lora(base_unet(), seed + 1), folder / "AnimateLCM_sd15_t2v_lora.safetensors")
        _pickle(folder / "AnimateLCM_sd15_t2v.ckpt", motion_adapter(seed).state_dict())
    elif repo_id == "guoyww/animatediff-motion-adapter-v1-5-2":
        write_motion_adapter(folder, seed, fp16=True)
    elif repo_id.startswith("guoyww/animatediff-motion-lora-"):
        save_file(motion_lora_state(seed), folder / "diffusion_pytorch_model.safetensors")
    elif repo_id == "stabilityai/stable-video-diffusion-img2vid-xt":
        write_svd_xt(folder, seed)
    elif repo_id == "wangfuyun/AnimateLCM-SVD-xt":
        for name in ("AnimateLCM-SVD-xt-1.1.safetensors", "AnimateLCM-SVD-xt.safetensors"):
            save_file(svd_unet(seed + len(name)).state_dict(), folder / name)
    elif repo_id.startswith("lllyasviel/control_v11"):
        write_controlnet(folder, base_unet(), seed)
    elif repo_id == "SG161222/Realistic_Vision_V5.1_noVAE":
        write_realistic_vision(folder, seed)
    elif repo_id == "Lykon/dreamshaper-8":
        write_dreamshaper(folder, seed)
    elif repo_id.startswith("artificialguybr/"):
        write_style_lora(folder, repo_id, seed)
    elif repo_id == "wangfuyun/AnimateLCM-I2V":
        write_animatelcm_i2v(folder, seed)
    elif repo_id == "ByteDance/AnimateDiff-Lightning":
        write_lightning(folder, seed)
    elif repo_id == "lllyasviel/Annotators":
        annotators.write_annotator_files(folder, seed=0)
        for name in ("sk_model.pth", "table5_pidinet.pth"):
            _pickle(folder / name, {"weight": torch.zeros(2)})
    else:
        raise KeyError(f"no fake for {repo_id}: add a builder in tests/fakehub/repos.py")
    (folder / "README.md").write_text(f"# {repo_id} (fake: tiny random weights in the real layout)\n")


def build_remote(root: Path, repo_ids=None) -> dict[str, Path]:
    """Write every repository (or ``repo_ids``) under ``root``; each folder's files must be exactly
    the manifest's list for it (a builder that drifts from the manifest fails here)."""
    repos = manifest()["repos"]
    out = {}
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:  # pytest-xdist workers: one builds, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        for repo_id in repo_ids or repos:
            out[repo_id] = _built(root, repo_id, repos)
    return out


def _built(root: Path, repo_id: str, repos: dict) -> Path:
    """One repository under ``root``, written once (``.complete`` marks it), checked against the manifest."""
    folder = root / repo_id
    if not (folder / ".complete").exists():
        if folder.exists():
            shutil.rmtree(folder)
        write_repo(repo_id, folder)
        (folder / ".complete").write_text("")
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != ".complete")
    listed = sorted(f["path"] for f in repos[repo_id]["files"])
    if written != listed:
        raise AssertionError(f"{repo_id}: the fake's files differ from the manifest: "
                             f"only written {sorted(set(written) - set(listed))}, only listed {sorted(set(listed) - set(written))}")
    return folder


def hub_repos(folders: dict[str, Path]) -> list[Repo]:
    """The server's repositories (one commit each, ``main`` pointing at it)."""
    return [Repo(repo_id, {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
                           if p.is_file() and p.name != ".complete"}) for repo_id, folder in folders.items()]
