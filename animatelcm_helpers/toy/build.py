"""Rebuild the toy zoo from scratch, one training job after another:

    python -m animatelcm_helpers.toy.build                    # into the package (ships with it)
    python -m animatelcm_helpers.toy.build --out /tmp/zoo     # anywhere else
    python -m animatelcm_helpers.toy.build --only vae image_teacher   # some stages (others reused)

Each stage checkpoints into ``<work>/<stage>/`` and resumes after an interruption; a finished
stage is reused unless ``--fresh``. The zoo is written in the Hub-like layout of
:mod:`animatelcm_helpers.toy.zoo`, with ``manifest.json`` recording for every stage its recipe,
seed, data, steps, wall time and measurements, and the sha256 of every file.
"""

from __future__ import annotations

import argparse
import copy
import functools
import inspect
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers import (
    AnimateDiffPipeline,
    AutoencoderKL,
    AutoencoderKLTemporalDecoder,
    MotionAdapter,
    StableVideoDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel

from .. import config, control, distill, evaluation, i2v, pipelines, utils
from ..training import checkpoint_seconds
from ..utils import quiet_loading
from . import configs, metrics, recipes, zoo
from . import svd as toy_svd

STYLES = tuple(s for s in recipes.STYLES if s != "plain")
NOT_SHIPPED = zoo.NOT_SHIPPED
STAGES = ("vae", "image_teacher", "stage1", "video_teacher", "motion_loras", "stage2", "adapters", "i2v_encoder",
          "styles", "metrics")  # the order they run in
# the teachers and the measuring stick (issue 3); stage1/stage2 distil
ZOO_STAGES = ("vae", "image_teacher", "video_teacher", "motion_loras", "styles", "metrics")
I2V_ENCODER_STEPS = 800  # the toy image encoder (AnimateLCM-I2V design); the keyframe adapter had 1500 (on a quieter CPU)
STEPS = {"vae": 1200, "image_teacher": 5000, "video_teacher": 1200, "motion_loras": 200, "styles": 600, "metrics": None,
         "stage1": 1000, "stage2": 400, "adapters": 1500, "i2v_encoder": I2V_ENCODER_STEPS}
TEST_STEPS = {"vae": 3, "image_teacher": 3, "video_teacher": 3, "motion_loras": 2, "styles": 2, "metrics": 3, "stage1": 2,
              "stage2": 2, "adapters": 2, "i2v_encoder": 2}
MOTION_LORAS = "motion-loras"  # the zoo's folder of motion LoRAs, <direction>.safetensors (float16)
# The toy SVD (issue 9): its temporal VAE, the SVD teacher, and the consistency-distilled student;
# written to the zoo's svd/ folder (toy.svd.TOY_SVD), weights in float16 (they load as float32).
# svd_decoder then fine-tunes the temporal decoder on the frozen encoder (the latents, so the UNets, stay valid).
SVD_STAGES = ("svd_vae", "svd_teacher", "svd_student", "svd_decoder")
STAGES = STAGES + SVD_STAGES
STEPS.update(svd_vae=250, svd_teacher=1200, svd_student=400, svd_decoder=300)
TEST_STEPS.update(svd_vae=2, svd_teacher=2, svd_student=2, svd_decoder=2)
# Teacher-free adapters: the consistency-training grid N of each (k = 1000 // N between the two
# points). The image-to-video models use a coarser grid (k = 100): each pair then spans a larger
# jump; an early trial of the keyframe adapter at k = 20 moved less in the same steps, a run
# that was not kept, so this is a setting, not a measured result.
ADAPTER_SOLVER_STEPS = {"controlnet-edges": 50, "i2v-adapter": 10, i2v.TOY_ENCODER_FOLDER: 10}
I2V_ENCODER_TRAINING = {"batch": 8, "lr": 1e-3, "ema": 0.95}  # as the keyframe adapter (train_adapter's batch and EMA)
I2V_SAVE_EVERY = 100  # checkpoints (and the first-frame check) of the image encoder's stage
I2V_CHECK_VIDEOS = 8
IMAGE_LCM = "image-lcm"  # stage 1's LCM LoRA (lcm_lora.safetensors) and full LCD student (full/)
IMAGE_LCM_LORA = "lcm_lora.safetensors"
# The teacher's check written into the manifest: DDIM with CFG over the 40 test prompts.
EVAL = {"steps": 50, "guidance": 7.5, "seeds": (0, 1)}
TEST_EVAL = {"steps": 2, "guidance": 7.5, "seeds": (0,)}


def _load_stage(work: Path, stage: str):
    meta = work / stage / "done.json"
    return json.loads(meta.read_text()) if meta.exists() else None


def _checkpointed_seconds(folder: Path) -> float:
    """Training seconds already held by the stage's checkpoints (work done before a resume)."""
    return sum(checkpoint_seconds(state.parent.parent) for state in folder.rglob("checkpoint/state.json"))


def _curve(fit, points: int = 200) -> list:
    """The loss curve thinned to about ``points`` values, for the manifest's loss_curves.json."""
    return fit.losses[:: max(1, len(fit.losses) // points)]


def _mark_done(work: Path, stage: str, info: dict) -> None:
    (work / stage).mkdir(parents=True, exist_ok=True)
    tmp = work / stage / "done.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, work / stage / "done.json")


def build(out: Path, work: Path, steps: dict, seed: int = 0, only=None, fresh: bool = False,
          limit: int | None = None, progress: bool = True, stages=STAGES) -> dict:
    """Run the stages in order and write the zoo to ``out``; returns the manifest.
    ``stages=ZOO_STAGES`` trains only the teachers and the measuring stick (issue 3's zoo, the
    part whose rebuild is timed) and writes just those parts."""
    work.mkdir(parents=True, exist_ok=True)
    only = set(only or ())  # stages to retrain even if finished
    tokenizer, text_encoder = configs.tiny_tokenizer(), configs.tiny_text_encoder(seed)
    manifest_stages = {}

    def run(stage, fn):
        if stage not in stages:
            return False
        done = _load_stage(work, stage)
        if done and not fresh and stage not in only:  # finished: reuse it
            print(f"[{stage}] reusing the finished stage in {work / stage}")
            manifest_stages[stage] = done
            return False
        if (fresh or stage in only) and (work / stage).exists():
            shutil.rmtree(work / stage)
        print(f"[{stage}] training {steps[stage]} steps (checkpoints in {work / stage})", flush=True)
        before = _checkpointed_seconds(work / stage)  # an interrupted run's training time
        t0 = time.perf_counter()
        info = fn()
        info.update(seconds=round(before + time.perf_counter() - t0, 1),
                    steps=steps[stage], seed=seed, threads=torch.get_num_threads())
        _mark_done(work, stage, info)
        manifest_stages[stage] = info
        print(f"[{stage}] done in {info['seconds']:.0f} s: {json.dumps({k: v for k, v in info.items() if k != 'loss_curve'})}", flush=True)
        return True

    # 1. VAE
    def stage_vae():
        vae, fit = recipes.train_vae(work / "vae", steps["vae"], seed=seed, limit=limit, progress=progress)
        vae.save_pretrained(work / "vae" / "model", safe_serialization=True)
        test = recipes.stack(recipes.MovingDigits("test", kind="image", styles=tuple(recipes.STYLES)), 512)[0]
        return {"recipe": "recipes.train_vae", "data": "train split: still images of every style + frames of moving digits",
                "psnr_test_db": round(recipes.vae_psnr(vae, test), 2), "scaling_factor": vae.config.scaling_factor,
                "loss_curve": _curve(fit)}

    run("vae", stage_vae)
    with quiet_loading():
        vae = AutoencoderKL.from_pretrained(work / "vae" / "model").eval()

    # 2. Image teacher
    def stage_image():
        unet, fit = recipes.train_image_teacher(work / "image_teacher", vae, tokenizer, text_encoder, steps["image_teacher"],
                                                seed=seed, limit=limit, progress=progress)
        unet.save_pretrained(work / "image_teacher" / "model", safe_serialization=True)
        return {"recipe": "recipes.train_image_teacher",
                "data": "train split: plain still digits ('a seven') + single frames of moving digits ('a seven moving left')",
                "loss_curve": _curve(fit)}

    run("image_teacher", stage_image)
    with quiet_loading():
        unet = UNet2DConditionModel.from_pretrained(work / "image_teacher" / "model").eval()

    # 2b. Stage 1 (needs only the image teacher): image consistency distillation (LCM-LoRA, and the full LCD student)

    text = recipes.encode_text(tokenizer, text_encoder, recipes.all_captions())
    alphas = recipes.noise_scheduler().alphas_cumprod

    def stage_1():
        latents, ids = recipes.image_teacher_data(vae, seed, limit)
        info = {"recipe": "distill.distill_image", "data": "the image teacher's training latents (stills + frames)",
                "target_ema": dict(distill.TARGET_EMA)}
        for variant in ("lora", "full"):
            student, fit = distill.distill_image(work / "stage1" / variant, unet, latents, ids, text, alphas,
                                                 steps["stage1"], variant, seed=seed, progress=progress)
            if variant == "lora":
                utils.save_unet_lora(work / "stage1" / "model", distill.lora_state_dict(student), IMAGE_LCM_LORA)
            else:
                student.to(torch.float16).save_pretrained(work / "stage1" / "model" / "full", safe_serialization=True)  # fp16 on disk: the zoo stays under 25 MB
            info[f"{variant}_seconds"] = round(fit.total_seconds, 1)
            info[f"{variant}_final_loss"] = round(float(sum(fit.losses[-50:]) / len(fit.losses[-50:])), 5)
            info.setdefault("loss_curve", _curve(fit))
        return info

    run("stage1", stage_1)

    # 3. Video teacher
    def stage_video():
        adapter, model, fit = recipes.train_video_teacher(work / "video_teacher", unet, vae, tokenizer, text_encoder,
                                                          steps["video_teacher"], seed=seed, limit=limit or 2400,
                                                          progress=progress)
        adapter.save_pretrained(work / "video_teacher" / "model", safe_serialization=True)
        pair = recipes.encode_text(tokenizer, text_encoder, ["a seven moving left", "a seven moving right"])
        latents, _ = recipes.video_teacher_data(vae, seed + 7, limit=32)
        sens = {t: round(recipes.prompt_sensitivity(model, latents, pair[:1], pair[1:], t), 4) for t in (999, 799, 499)}
        return {"recipe": "recipes.train_video_teacher", "data": "train split: the first 2400 plain Moving Digits videos (600 digits x 4 directions), 8 frames",
                "prompt_sensitivity_left_vs_right": sens, "loss_curve": _curve(fit)}

    run("video_teacher", stage_video)

    @functools.lru_cache(maxsize=None)  # the 2,400 training videos are encoded once for both stages below
    def video_latents(data_seed, n):
        return recipes.video_teacher_data(vae, data_seed, n)

    motion_lora_stage(work, steps, seed, run, unet, video_latents, tokenizer, text_encoder, limit, progress)

    # 3b. Stage 2: video consistency distillation, decoupled initialisation -> the toy AnimateLCM
    def stage_2():
        with quiet_loading():
            adapter = MotionAdapter.from_pretrained(work / "video_teacher" / "model")
        lora = distill.load_lora_state_dict(work / "stage1" / "model" / IMAGE_LCM_LORA)
        latents, ids = video_latents(seed, limit or 2400)
        student, fit = distill.distill_video(work / "stage2" / "decoupled", unet, adapter, latents, ids, text, alphas,
                                             steps["stage2"], init_lora=lora, seed=seed, progress=progress)
        distill.save_student(work / "stage2" / "model", student)
        return {"recipe": "distill.distill_video (decoupled: the stage-1 LoRA in the online student only)",
                "data": "the video teacher's training videos", "final_loss": round(float(sum(fit.losses[-50:]) / len(fit.losses[-50:])), 5),
                "loss_curve": _curve(fit)}

    run("stage2", stage_2)

    # 3c. Teacher-free adaptation (issue 8): a ControlNet for edge maps and an image-to-video
    # adapter, each trained against the toy AnimateLCM with consistency training, and each also
    # trained the naive way (diffusion loss on the video teacher) for the comparison.
    def stage_adapters():
        with quiet_loading():
            teacher_adapter = MotionAdapter.from_pretrained(work / "video_teacher" / "model")
            lcm_adapter = MotionAdapter.from_pretrained(work / "stage2" / "model")
        lora = distill.load_lora_state_dict(work / "stage2" / "model" / config.TOY_LCM_LORA)
        data = recipes.adapter_data(vae, seed, limit or 2400)
        models = {"consistency": recipes.consistency_model(unet, lcm_adapter, lora),
                  "diffusion": distill.motion_unet(copy.deepcopy(unet), teacher_adapter).eval()}
        info = {"recipe": "distill.train_adapter (consistency: teacher-free, against the toy AnimateLCM; "
                          "diffusion: the naive way, on the video teacher)",
                "data": "the video teacher's training videos; edge maps: controlnet-aux Canny (even videos) and "
                        "LineartStandard (odd); image-to-video: the first frame as frame 0's control, the empty gray image on the others",
                "solver_steps": ADAPTER_SOLVER_STEPS, "saved_dtype": "float16", "loss_curve": []}
        for name, cond in ((control.TOY_ADAPTERS["canny"], data["edges"]), (control.TOY_ADAPTERS["i2v"], data["first"])):
            for objective in distill.ADAPTER_OBJECTIVES:
                folder = name + ("" if objective == "consistency" else control.NAIVE_SUFFIX)
                net, fit = distill.train_adapter(work / "adapters" / folder, recipes.adapter_controlnet(unet, seed),
                                                 models[objective], data["latents"], cond, data["ids"], text, alphas,
                                                 steps["adapters"], objective, lr=1e-3, seed=seed, progress=progress,
                                                 recipe=f"toy-{folder}", solver_steps=ADAPTER_SOLVER_STEPS[name])
                net.to(torch.float16).save_pretrained(work / "adapters" / "model" / folder, safe_serialization=True)
                info[f"{folder}_seconds"] = round(fit.total_seconds, 1)
                info[f"{folder}_final_loss"] = round(float(sum(fit.losses[-50:]) / len(fit.losses[-50:])), 5)
        return info

    run("adapters", stage_adapters)
    i2v_encoder_stage(work, steps, seed, run, unet, vae, tokenizer, text_encoder, limit, progress)

    # 4. Styles (image-only LoRAs)
    def stage_styles():
        info = {"recipe": "recipes.train_style", "data": "train split: still images of one style, captioned 'a seven in <style> style'",
                "styles": list(STYLES), "steps_per_style": steps["styles"], "saved_dtype": "float16", "loss_curve": []}
        for style in STYLES:
            state, fit = recipes.train_style(work / "styles" / style, style, unet, vae, tokenizer, text_encoder,
                                             steps["styles"], seed=seed, limit=limit, progress=progress)
            (work / "styles" / "model").mkdir(parents=True, exist_ok=True)
            utils.save_unet_lora(work / "styles" / "model", {k: v.to(torch.float16) for k, v in state.items()},
                               weight_name=f"{style}.safetensors")  # float16 on disk: the zoo stays under 25 MB
            info[f"final_loss_{style}"] = round(float(sum(fit.losses[-50:]) / len(fit.losses[-50:])), 4)
        return info

    run("styles", stage_styles)

    # 5. The measuring stick: digit classifier and video encoder (metrics module)
    def stage_metrics():
        nets = metrics.train_metric_nets(work / "metrics", steps=steps["metrics"], seed=seed, progress=progress,
                                         test_limit=limit)
        return {"recipe": "metrics.train_metric_nets", "data": nets.info["data"], "test": nets.info["test"]}

    run("metrics", stage_metrics)
    svd_stages(work, steps, seed, run, limit, progress)

    # Write the zoo
    tmp = out.parent / (out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_loading():
        zoo.save_base(tmp / "base", vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                      scheduler=configs.sd_scheduler())
        for stage, dest in (("video_teacher", "motion-adapter"), ("motion_loras", MOTION_LORAS), ("styles", "styles"),
                            ("stage1", IMAGE_LCM), ("stage2", "animatelcm")):
            if stage in stages:
                shutil.copytree(work / stage / "model", tmp / dest)
        if "metrics" in stages:
            (tmp / "metrics").mkdir()
            for name in ("digit_classifier.safetensors", "video_encoder.safetensors", "metric_nets.json"):
                shutil.copy2(work / "metrics" / name, tmp / "metrics" / name)
        if "adapters" in stages:
            for folder in sorted((work / "adapters" / "model").iterdir()):
                if folder.name not in NOT_SHIPPED:
                    shutil.copytree(folder, tmp / folder.name)
        if "i2v_encoder" in stages:
            shutil.copytree(work / "i2v_encoder" / "model", tmp / i2v.TOY_ENCODER_FOLDER)
    if set(SVD_STAGES) <= set(stages):
        write_svd(tmp, work)
    if (out / "successors").is_dir():  # notebook 09's LoRAs (toy.build_successors, scripts/successors.py): kept
        shutil.copytree(out / "successors", tmp / "successors")
    manifest = {
        "zoo": "trained",
        "trained": True,
        "seed": seed,
        "built_with": {"torch": torch.__version__, "python": platform.python_version(),
                       "threads": torch.get_num_threads(), "test_mode": config.current().test_mode},
        "animatelcm": ("distilled (stage 2, decoupled initialisation): motion adapter + LCM LoRA" if "stage2" in stages
                       else "not built (only the stages " + ", ".join(s for s in STAGES if s in stages) + ")"),
        "stages": {k: {kk: vv for kk, vv in v.items() if kk != "loss_curve"} for k, v in manifest_stages.items()},
        "total_seconds": round(sum(v["seconds"] for v in manifest_stages.values()), 1),
        "zoo_seconds": round(sum(v["seconds"] for k, v in manifest_stages.items() if k in ZOO_STAGES), 1),
        "files": zoo.file_hashes(tmp),
        "not_shipped": NOT_SHIPPED,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (tmp / "loss_curves.json").write_text(json.dumps({k: v.get("loss_curve", []) for k, v in manifest_stages.items()}))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return manifest


def motion_lora_stage(work: Path, steps: dict, seed: int, run, unet, video_latents, tokenizer, text_encoder,
                      limit: int | None = None, progress: bool = True) -> None:
    """Motion LoRAs, one per direction, on the video teacher (``<work>/video_teacher/model``):
    AnimateDiff's answer to steering the motion, which its text-blind motion modules cannot read
    from the prompt. ``run(stage, fn)`` trains or reuses the stage, as in :func:`build`;
    ``video_latents(seed, n)`` gives :func:`recipes.video_teacher_data`'s latents and ids."""
    def stage_motion_loras():
        with quiet_loading():
            adapter = MotionAdapter.from_pretrained(work / "video_teacher" / "model")
        d = {k: v.default for k, v in inspect.signature(recipes.train_motion_lora).parameters.items()}
        info = {"recipe": f"recipes.train_motion_lora (rank-{d['rank']} LoRA on the motion modules' attention and "
                          f"feed-forward layers, lr {d['lr']:g}, batch {d['batch']}; the teacher frozen)",
                "data": "train split: the video teacher's videos that move the LoRA's way (about 600 each)",
                "directions": list(recipes.DIRECTIONS), "steps_per_direction": steps["motion_loras"],
                "saved_dtype": "float16", "loss_curve": []}
        latents, ids = video_latents(seed, limit or 2400)
        text = recipes.encode_text(tokenizer, text_encoder, recipes.all_captions())
        for direction in recipes.DIRECTIONS:
            state, fit = recipes.train_motion_lora(work / "motion_loras" / direction, direction, unet, adapter, latents,
                                                   ids, text, steps["motion_loras"], seed=seed, progress=progress)
            (work / "motion_loras" / "model").mkdir(parents=True, exist_ok=True)
            utils.save_unet_lora(work / "motion_loras" / "model", {k: v.to(torch.float16) for k, v in state.items()},
                               weight_name=f"{direction}.safetensors")
            info[f"final_loss_{direction}"] = round(float(sum(fit.losses[-50:]) / len(fit.losses[-50:])), 5)
        return info

    run("motion_loras", stage_motion_loras)


def i2v_first_frame_check(model, vae, tokenizer, text_encoder, n: int = I2V_CHECK_VIDEOS) -> Callable:
    """``check(encoder) -> dB``: the mean first-frame PSNR of image-to-video on the first ``n`` held-out
    videos of the control table (``evaluation.test_videos``; seed = index, 4 LCM steps, no colour
    correction), with ``model`` (the frozen consistency model) and a copy of ``encoder``: how the
    stage follows its progress at each checkpoint."""
    pipe = AnimateDiffPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=model, motion_adapter=None,
                               scheduler=pipelines.make_scheduler("lcm", configs.sd_scheduler().config))
    pipe.set_progress_bar_config(disable=True)
    videos, prompts = evaluation.test_videos(n)

    def check(encoder) -> float:
        i2v.load_i2v(pipe, copy.deepcopy(encoder).eval(), scheduler=None, layer=i2v.TOY_LAYER)
        gens = [i2v.generate_i2v(pipe, v[0], prompt, steps=4, frames=len(v), seed=i, match_colors=False)
                for i, (v, prompt) in enumerate(zip(videos, prompts))]
        return float(np.mean([utils.psnr(g.frames[0], v[0]) for g, v in zip(gens, videos)]))

    return check


def i2v_encoder_stage(work: Path, steps: dict, seed: int, run, unet, vae, tokenizer, text_encoder,
                      limit: int | None = None, progress: bool = True) -> None:
    """The toy AnimateLCM-I2V's image encoder (:data:`i2v.TOY_ENCODER`): trained teacher-free by
    ``distill.train_image_encoder`` against the toy AnimateLCM (``<work>/stage2/model``: motion
    adapter + LCM LoRA) on the adapters' videos, the first frame's VAE posterior sample as the
    image; its features enter each down block at ``i2v.TOY_LAYER``. Saved in float16 to
    ``<work>/i2v_encoder/model``. ``run(stage, fn)`` trains or reuses the stage, as in :func:`build`."""
    def stage_i2v_encoder():
        with quiet_loading():
            lcm_adapter = MotionAdapter.from_pretrained(work / "stage2" / "model")
        lora = distill.load_lora_state_dict(work / "stage2" / "model" / config.TOY_LCM_LORA)
        data = recipes.i2v_encoder_data(vae, seed, limit or 2400)
        text = recipes.encode_text(tokenizer, text_encoder, recipes.all_captions())
        model = recipes.consistency_model(unet, lcm_adapter, lora)
        model.fuse_lora(lora_scale=1.0)  # frozen: the same function (eps within 4e-6), 16 % less work a step
        condition = functools.partial(i2v.image_condition, layer=i2v.TOY_LAYER)
        solver_steps = ADAPTER_SOLVER_STEPS[i2v.TOY_ENCODER_FOLDER]
        check, checks = i2v_first_frame_check(model, vae, tokenizer, text_encoder), {}
        checks[0] = round(check(i2v.toy_image_encoder(seed)), 3)

        def on_save(step, encoder):  # the progress check, logged and recorded in the manifest
            checks[step] = round(check(encoder), 3)
            print(f"[i2v_encoder] step {step}: first-frame PSNR {checks[step]:.2f} dB on {I2V_CHECK_VIDEOS} held-out videos",
                  flush=True)

        encoder, fit = distill.train_image_encoder(
            work / "i2v_encoder" / "training", i2v.toy_image_encoder(seed), model, data["latents"], data["ids"], text,
            recipes.noise_scheduler().alphas_cumprod, steps["i2v_encoder"], condition, images=data["image_mean"],
            image_std=data["image_std"], seed=seed, save_every=I2V_SAVE_EVERY, progress=progress,
            recipe="toy-i2v-encoder", solver_steps=solver_steps, on_save=on_save, **I2V_ENCODER_TRAINING)
        encoder.to(torch.float16).save_pretrained(work / "i2v_encoder" / "model", safe_serialization=True)
        for file in (work / "i2v_encoder" / "model").iterdir():
            file.chmod(0o644)  # diffusers writes the weights private (0600); the zoo ships readable files
        return {"recipe": "distill.train_image_encoder (teacher-free consistency training against the toy AnimateLCM; "
                          "target: an EMA copy of the encoder)",
                "data": "the adapters' videos (the video teacher's 2400 training videos); the image: the first frame's "
                        "VAE posterior sample, drawn each step",
                "model": "the toy AnimateLCM (motion adapter + LCM LoRA at 1.0, the LoRA fused into the frozen weights)",
                "encoder": {k: (list(v) if isinstance(v, tuple) else v) for k, v in i2v.TOY_ENCODER.items()},
                "insertion_layer": i2v.TOY_LAYER, "motion_scale": distill.IMAGE_ENCODER_MOTION_SCALE,
                "solver_steps": solver_steps, **I2V_ENCODER_TRAINING, "saved_dtype": "float16",
                "parameters": sum(p.numel() for p in encoder.parameters()),
                "final_loss": round(float(np.mean(fit.losses[-50:])), 5),
                "first_frame_psnr_at_checkpoints": {str(k): v for k, v in sorted(checks.items())},
                "check": f"first-frame PSNR (dB), {I2V_CHECK_VIDEOS} held-out videos, 4 LCM steps, no colour correction "
                         "(checkpoints of a resumed run only from the resume on)",
                "loss_curve": _curve(fit)}

    run("i2v_encoder", stage_i2v_encoder)


def svd_stages(work: Path, steps: dict, seed: int, run, limit: int | None = None, progress: bool = True) -> None:
    """The toy SVD's three stages (``run(stage, fn)`` trains or reuses each, as in :func:`build`)."""
    videos = min(limit or 2400, 2400)

    def stage_svd_vae():
        vae, fit = toy_svd.train_toy_vae(work / "svd_vae", steps["svd_vae"], seed=seed, videos=min(videos, 1200),
                                     progress=progress)
        vae.to(torch.float16).save_pretrained(work / "svd_vae" / "model", safe_serialization=True)
        return {"recipe": "toy.svd.train_toy_vae", "data": "train split: the first 1200 plain Moving Digits videos, 8 frames",
                "psnr_test_db": round(toy_svd.vae_psnr(vae.float(), toy_svd.toy_videos("test", 64)[0]), 2),
                "scaling_factor": vae.config.scaling_factor, "loss_curve": _curve(fit)}

    run("svd_vae", stage_svd_vae)

    def stage_svd_teacher():
        with quiet_loading():
            vae = AutoencoderKLTemporalDecoder.from_pretrained(work / "svd_vae" / "model", torch_dtype=torch.float32)
        pipe = toy_svd.toy_parts(vae=vae.eval(), seed=seed)
        fit = toy_svd.train_toy_svd_teacher(work / "svd_teacher", pipe, toy_svd.toy_videos("train", videos)[0],
                                        steps["svd_teacher"], seed=seed, progress=progress)
        pipe.to(torch.float16).save_pretrained(work / "svd_teacher" / "model", safe_serialization=True)
        return {"recipe": "toy.svd.train_toy_svd_teacher (EDM, v-prediction, first frame as condition)",
                "data": f"train split: the first {videos} plain Moving Digits videos, 8 frames",
                "final_loss": round(float(np.mean(fit.losses[-50:])), 5), "loss_curve": _curve(fit)}

    run("svd_teacher", stage_svd_teacher)

    def stage_svd_student():
        with quiet_loading():
            pipe = StableVideoDiffusionPipeline.from_pretrained(work / "svd_teacher" / "model", torch_dtype=torch.float32)
        student, fit = toy_svd.distill_toy_svd(work / "svd_student", pipe, pipe.unet, toy_svd.toy_videos("train", videos)[0],
                                           steps["svd_student"], seed=seed, progress=progress)
        student.to(torch.float16).save_pretrained(work / "svd_student" / "model", safe_serialization=True)
        return {"recipe": "toy.svd.distill_toy_svd (one guided Euler teacher step to the adjacent index of 40, EMA 0.95, "
                          "pseudo-Huber weighted (1/(s_n - s_n+1))^0.1)",
                "data": "the teacher's training videos", "final_loss": round(float(np.mean(fit.losses[-50:])), 5),
                "loss_curve": _curve(fit)}

    run("svd_student", stage_svd_student)

    def stage_svd_decoder():
        with quiet_loading():
            vae = AutoencoderKLTemporalDecoder.from_pretrained(work / "svd_vae" / "model", torch_dtype=torch.float32)
        test = toy_svd.toy_videos("test", 64)[0]
        before = toy_svd.vae_psnr(vae, test)
        fit = toy_svd.finetune_toy_decoder(work / "svd_decoder", vae, steps["svd_decoder"], seed=seed,
                                       videos=min(videos, 1200), progress=progress)
        vae.to(torch.float16).save_pretrained(work / "svd_decoder" / "model", safe_serialization=True)
        return {"recipe": "toy.svd.finetune_toy_decoder (encoder frozen; clips of 1, 2, 4 or 8 frames)",
                "data": "train split: the first 1200 plain Moving Digits videos, 8 frames",
                "psnr_test_db_before": round(before, 2), "psnr_test_db": round(toy_svd.vae_psnr(vae.float(), test), 2),
                "loss_curve": _curve(fit)}

    run("svd_decoder", stage_svd_decoder)


def write_svd(zoo_folder: Path, work: Path) -> None:
    """Put the toy SVD into a zoo: ``svd/`` the teacher pipeline (the toy SVD-xt, Euler scheduler) with
    the fine-tuned temporal VAE, ``svd/animatelcm_unet/`` the distilled UNet (the toy AnimateLCM-SVD-xt)."""
    dest = zoo_folder / toy_svd.TOY_SVD
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(work / "svd_teacher" / "model", dest)
    shutil.copytree(work / "svd_student" / "model", dest / toy_svd.TOY_STUDENT_FOLDER)
    shutil.rmtree(dest / "vae")
    shutil.copytree(work / "svd_decoder" / "model", dest / "vae")  # the fine-tuned decoder, same encoder


def _add_to_zoo(out: Path, work: Path, steps: dict, seed: int, only, train, write) -> dict:
    """Train some stages (``train(run)``, reusing finished ones), ``write(out)`` them into the
    EXISTING zoo at ``out`` in place, and update its manifest's stages, files and loss curves."""
    only = set(only or ())
    infos = {}

    def run(stage, fn):
        done = _load_stage(work, stage)
        if done and stage not in only:
            print(f"[{stage}] reusing the finished stage in {work / stage}")
            infos[stage] = done
            return
        if stage in only and (work / stage).exists():
            shutil.rmtree(work / stage)
        print(f"[{stage}] training {steps[stage]} steps (checkpoints in {work / stage})", flush=True)
        before, t0 = _checkpointed_seconds(work / stage), time.perf_counter()
        info = fn()
        info.update(seconds=round(before + time.perf_counter() - t0, 1), steps=steps[stage], seed=seed,
                    threads=torch.get_num_threads())
        _mark_done(work, stage, info)
        infos[stage] = info
        print(f"[{stage}] done in {info['seconds']:.0f} s", flush=True)

    train(run)
    write(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["stages"].update({k: {kk: vv for kk, vv in v.items() if kk != "loss_curve"} for k, v in infos.items()})
    manifest["stages"] = {k: manifest["stages"][k] for k in STAGES if k in manifest["stages"]}  # build order
    manifest["total_seconds"] = round(sum(v["seconds"] for v in manifest["stages"].values()), 1)
    manifest["zoo_seconds"] = round(sum(v["seconds"] for k, v in manifest["stages"].items() if k in ZOO_STAGES), 1)
    curves = json.loads((out / "loss_curves.json").read_text()) if (out / "loss_curves.json").exists() else {}
    curves.update({k: v.get("loss_curve", []) for k, v in infos.items()})
    (out / "loss_curves.json").write_text(json.dumps(curves))
    manifest["files"] = zoo.file_hashes(out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def add_svd(out: Path, work: Path, steps: dict, seed: int = 0, only=None, limit: int | None = None,
            progress: bool = True) -> dict:
    """Train the toy SVD stages (reusing finished ones) and add them to the EXISTING zoo at ``out``
    in place: its svd/ folder, and the manifest's stages, files and loss curves."""
    return _add_to_zoo(out, work, steps, seed, only, lambda run: svd_stages(work, steps, seed, run, limit, progress),
                       lambda out: write_svd(out, work))


def add_motion_loras(out: Path, work: Path, steps: dict, seed: int = 0, only=None, limit: int | None = None,
                     progress: bool = True) -> dict:
    """Train the motion LoRAs on the EXISTING zoo's video teacher at ``out`` (``video_teacher``
    copied from it into ``<work>``) and add them in place, as :func:`add_svd` does."""
    if not (work / "video_teacher" / "model").exists():
        shutil.copytree(out / "motion-adapter", work / "video_teacher" / "model")
    with quiet_loading():
        vae = AutoencoderKL.from_pretrained(out / "base" / "vae").eval()
        unet = UNet2DConditionModel.from_pretrained(out / "base" / "unet").eval()
    tokenizer, text_encoder = configs.tiny_tokenizer(), configs.tiny_text_encoder(seed)

    def write(out):
        tmp = out / (MOTION_LORAS + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(work / "motion_loras" / "model", tmp)
        shutil.rmtree(out / MOTION_LORAS, ignore_errors=True)
        os.replace(tmp, out / MOTION_LORAS)

    return _add_to_zoo(out, work, steps, seed, only,
                       lambda run: motion_lora_stage(work, steps, seed, run, unet,
                                                     lambda s, n: recipes.video_teacher_data(vae, s, n),
                                                     tokenizer, text_encoder, limit, progress), write)


def add_i2v_encoder(out: Path, work: Path, steps: dict, seed: int = 0, only=None, limit: int | None = None,
                    progress: bool = True) -> dict:
    """Train the toy image encoder on the EXISTING zoo's AnimateLCM at ``out`` (its ``animatelcm/``
    copied into ``<work>/stage2/model``; base, VAE and text encoder from ``out/base``) and add it in
    place as ``out/i2v-encoder``, as :func:`add_svd` does."""
    if not (work / "stage2" / "model").exists():
        shutil.copytree(out / "animatelcm", work / "stage2" / "model")
    with quiet_loading():
        vae = AutoencoderKL.from_pretrained(out / "base" / "vae").eval()
        unet = UNet2DConditionModel.from_pretrained(out / "base" / "unet").eval()
        text_encoder = CLIPTextModel.from_pretrained(out / "base" / "text_encoder").eval()
    tokenizer = configs.tiny_tokenizer()

    def write(out):
        tmp = out / (i2v.TOY_ENCODER_FOLDER + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(work / "i2v_encoder" / "model", tmp)
        shutil.rmtree(out / i2v.TOY_ENCODER_FOLDER, ignore_errors=True)
        os.replace(tmp, out / i2v.TOY_ENCODER_FOLDER)

    return _add_to_zoo(out, work, steps, seed, only,
                       lambda run: i2v_encoder_stage(work, steps, seed, run, unet, vae, tokenizer, text_encoder, limit,
                                                     progress),
                       write)


def evaluate_teacher(out: Path, steps: int, guidance: float, seeds) -> dict:
    """Faithfulness and Frechet distance of the zoo's video teacher (DDIM with CFG), and the
    real-vs-real floor at the same number of videos; recorded in the manifest as
    ``teacher_check``, and with each prompt's motion LoRA (when the zoo has them) as
    ``teacher_check_motion_loras``."""
    os.environ[zoo.ZOO_ENV] = str(out)
    pipe = pipelines.load_t2v("teacher", world="toy")
    rows = {}
    for key, motion in (("teacher_check", False), ("teacher_check_motion_loras", True)):
        if motion and not (out / MOTION_LORAS).is_dir():
            continue
        row = evaluation.evaluate(pipe, steps=steps, guidance=guidance, scheduler="ddim", seeds=tuple(seeds),
                               label="video teacher" + (" + motion LoRAs" if motion else ""), motion_loras=motion)
        rows[key] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.update(rows)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m animatelcm_helpers.toy.build", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=zoo.SHIPPED, help="where the zoo goes (default: inside the package)")
    p.add_argument("--work", type=Path, default=None, help="checkpoints (default: <cache>/toy-zoo-work)")
    p.add_argument("--only", nargs="*", choices=STAGES, help="retrain only these stages (reuse the others)")
    p.add_argument("--fresh", action="store_true", help="discard finished stages and checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-mode", action="store_true", help="a few steps per stage (a smoke test)")
    p.add_argument("--add-svd", action="store_true",
                   help="train only the toy SVD stages and add them to the existing zoo at --out (the rest untouched)")
    p.add_argument("--zoo-only", action="store_true",
                   help="only the teachers and the measuring stick (" + ", ".join(ZOO_STAGES) + "): the timed rebuild")
    p.add_argument("--add-motion-loras", action="store_true",
                   help="train only the motion LoRAs on the existing zoo's video teacher at --out and add them")
    p.add_argument("--add-i2v-encoder", action="store_true",
                   help="train only the toy image encoder (AnimateLCM-I2V's design) on the existing zoo at --out and add it")
    args = p.parse_args(argv)
    config.setup(world="toy", test_mode=args.test_mode or None)
    steps = TEST_STEPS if config.current().test_mode else STEPS
    work = args.work or config.cache_dir() / "toy-zoo-work"
    if args.add_svd:
        manifest = add_svd(args.out, work, steps, seed=args.seed, only=args.only,
                           limit=64 if config.current().test_mode else None)
        print(json.dumps({k: manifest["stages"][k] for k in SVD_STAGES}, indent=1))
        return 0
    if args.add_i2v_encoder:
        manifest = add_i2v_encoder(args.out, work, steps, seed=args.seed, only=args.only,
                                   limit=64 if config.current().test_mode else None)
        print(json.dumps(manifest["stages"]["i2v_encoder"], indent=1))
        return 0
    if args.add_motion_loras:
        manifest = add_motion_loras(args.out, work, steps, seed=args.seed, only=args.only,
                                    limit=64 if config.current().test_mode else None)
        print(json.dumps(manifest["stages"]["motion_loras"], indent=1))
        return 0
    try:
        manifest = build(args.out, work, steps, seed=args.seed, only=args.only, fresh=args.fresh,
                         limit=64 if config.current().test_mode else None,
                         stages=ZOO_STAGES if args.zoo_only else STAGES)
    except config.UserError as err:
        print(f"error: {err}")
        return 2
    print(f"zoo written to {args.out} in {manifest['total_seconds']:.0f} s of training")
    check = TEST_EVAL if config.current().test_mode else EVAL
    for key, row in evaluate_teacher(args.out, **check).items():
        print(f"{key}:", json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
