"""scripts/benchmark_full.py: the GPU benchmark of the full world, run here at --small size on the CPU
(the same code path), and its full-size configs checked against the real models' parameter counts."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_full", ROOT / "scripts" / "benchmark_full.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_run(bench, tmp_path_factory):
    """One --small CPU run of every configuration: (JSON written, printed output)."""
    import contextlib
    import io

    path = tmp_path_factory.mktemp("bench") / "out" / "benchmark.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = bench.main(["--small", "--device", "cpu", "--repeats", "1", "--json", str(path)])
    assert rc == 0
    return json.loads(path.read_text()), out.getvalue()


# UNet evaluations per video: steps x (2 with CFG, the pipelines batch the unconditional half).
EXPECTED_EVALUATIONS = {
    "t2v_animatelcm_4": 4,  # LCM, guidance 1: no CFG
    "t2v_teacher_ddim_25_cfg": 50,  # DDIM 25 x CFG 7.5
    "svd_euler_25_cfg": 50,  # Euler 25, ramp 1 -> 3: CFG
    "svd_animatelcm_4_ramp": 8,  # 4 steps, the demo's ramp 1 -> 1.2 still runs CFG
    "svd_animatelcm_4_nocfg": 4,  # max guidance 1: no CFG
}


def test_every_configuration_runs_and_counts_its_unet_evaluations(small_run):
    data, _ = small_run
    assert set(data["configurations"]) == set(EXPECTED_EVALUATIONS)
    for name, expected in EXPECTED_EVALUATIONS.items():
        whole = data["configurations"][name]["whole"]
        assert whole["status"] == "ok", name
        assert whole["unet_evaluations"] == expected, name
        assert whole["seconds"] > 0 and whole["unet_seconds"] > 0 and whole["vae_decode_seconds"] > 0, name
        # the UNet and the decode run inside the pipeline call
        assert whole["unet_seconds"] + whole["vae_decode_seconds"] < whole["seconds"], name
        assert len(whole["seconds_runs"]) == 1


def test_memory_and_offload_are_na_on_the_cpu(small_run):
    data, out = small_run
    for name, r in data["configurations"].items():
        assert r["whole"]["peak_allocated_gib"] == "n/a", name
        assert r["whole"]["peak_reserved_gib"] == "n/a", name
        assert r["offload"]["status"] == "n/a", name
    assert data["environment"]["gpu"] is None and data["environment"]["dtype"] == "float32"
    assert data["settings"]["small"] is True and data["settings"]["repeats"] == 1
    assert "| model CPU offload |" not in out  # no offload rows without a GPU


def test_ratios_are_the_quotients_of_the_recorded_figures_and_are_printed(small_run):
    data, out = small_run
    conf, ratios = data["configurations"], data["ratios"]["whole"]
    pairs = {"t2v_teacher_over_animatelcm": ("t2v_teacher_ddim_25_cfg", "t2v_animatelcm_4"),
             "svd_euler25_over_animatelcm4_ramp": ("svd_euler_25_cfg", "svd_animatelcm_4_ramp"),
             "svd_euler25_over_animatelcm4_nocfg": ("svd_euler_25_cfg", "svd_animatelcm_4_nocfg")}
    assert set(ratios) == set(pairs)
    for key, (num, den) in pairs.items():
        for field in ("seconds", "unet_seconds", "unet_evaluations"):
            expected = conf[num]["whole"][field] / conf[den]["whole"][field]
            assert ratios[key][field] == pytest.approx(expected, rel=1e-12), (key, field)
            assert f"{expected:.2f}x" in out, (key, field)
    assert ratios["t2v_teacher_over_animatelcm"]["unet_evaluations"] == 12.5
    assert ratios["svd_euler25_over_animatelcm4_ramp"]["unet_evaluations"] == 6.25
    assert ratios["svd_euler25_over_animatelcm4_nocfg"]["unet_evaluations"] == 12.5
    assert all(v == "n/a" for e in data["ratios"]["offload"].values() for k, v in e.items()
               if k in ("seconds", "unet_seconds", "unet_evaluations"))
    # the table has one row per configuration
    for name in EXPECTED_EVALUATIONS:
        assert conf[name]["label"] in out


def test_json_records_the_environment_and_settings(small_run):
    import diffusers

    data, _ = small_run
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["diffusers"] == diffusers.__version__
    assert env["device"] == "cpu"
    assert data["settings"]["svd_decode_chunk_size"] == 4 and data["settings"]["svd_fps"] == 7
    assert data["configurations"]["svd_euler_25_cfg"]["motion_bucket_id"] == 127
    assert data["configurations"]["svd_animatelcm_4_ramp"]["motion_bucket_id"] == 80
    assert data["configurations"]["t2v_animatelcm_4"]["scheduler"] == "LCMScheduler"
    assert data["configurations"]["t2v_teacher_ddim_25_cfg"]["scheduler"] == "DDIMScheduler"
    assert data["configurations"]["svd_animatelcm_4_nocfg"]["scheduler"] == "AnimateLCMSVDScheduler"


def test_full_size_configs_have_the_real_models_parameter_counts(bench):
    """Built on the meta device (no memory, no time): a wrong config changes these counts."""
    with bench.quiet_libraries():
        t2v = bench.t2v_components("meta", torch.float16)
        svd = bench.svd_components("meta", torch.float16)
    counts = {name: bench.count(m) for name, m in {**t2v, "svd_" + "vae": svd["vae"], "svd_unet": svd["unet"],
                                                    "image_encoder": svd["image_encoder"]}.items()}
    assert counts["unet2d"] == pytest.approx(859.52e6, rel=1e-4)  # SD1.5: 859,520,964
    assert counts["text_encoder"] == pytest.approx(123.06e6, rel=1e-4)  # CLIP ViT-L/14 text
    assert counts["vae"] == pytest.approx(83.65e6, rel=1e-3)  # SD1.5's AutoencoderKL
    # AnimateLCM's motion adapter: 1,813,041,929 bytes in fp32 (AnimateLCM_sd15_t2v.ckpt) ~ 453 M
    assert counts["motion_adapter"] == pytest.approx(453.2e6, rel=1e-3)
    assert counts["svd_unet"] == pytest.approx(1.5246e9, rel=1e-4)  # SVD-xt's UNet, 1.52 B
    assert counts["svd_vae"] == pytest.approx(97.7e6, rel=1e-3)  # the temporal VAE
    assert counts["image_encoder"] == pytest.approx(632.08e6, rel=1e-4)  # ViT-H/14 vision + projection
    assert all(p.device.type == "meta" and p.dtype == torch.float16 for p in svd["unet"].parameters())


def test_bad_arguments_are_one_line_errors(bench, capsys):
    assert bench.main(["--small", "--device", "cpu", "--repeats", "0"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err
    assert bench.main(["--device", "cpu"]) == 2  # full size on a CPU: hours
    assert "--small" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert bench.main(["--device", "cuda", "--small"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def test_json_is_written_atomically(bench, tmp_path):
    path = tmp_path / "a" / "b.json"
    bench.write_json(path, {"x": 1})
    bench.write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]  # no temporary file left behind


def test_out_of_memory_is_recorded_and_the_run_goes_on(bench):
    """A configuration that runs out of GPU memory becomes "OOM" (ratios "n/a"), not a crash."""

    class Vae(torch.nn.Module):
        def decode(self, z):
            return z

    class OutOfMemoryPipe:
        scheduler = None

        def __init__(self):
            self.unet, self.vae = torch.nn.Identity(), Vae()

        def __call__(self, *args, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    by_name = {c["name"]: c for c in bench.CONFIGS}
    pipe = OutOfMemoryPipe()
    oom = bench.measure(pipe, by_name["svd_euler_25_cfg"], "cpu", torch.float32, True, 1)
    assert oom["status"] == "OOM" and oom["seconds"] == "n/a" and oom["peak_allocated_gib"] == "OOM"
    assert "out of memory" in oom["error"]
    assert "decode" not in vars(pipe.vae) and not pipe.unet._forward_pre_hooks  # the timer cleaned up
    ok = {"status": "ok", "seconds": 2.0, "unet_seconds": 1.0, "unet_evaluations": 8}
    results = {"svd_euler_25_cfg": bench.describe(by_name["svd_euler_25_cfg"]) | {"whole": oom},
               "svd_animatelcm_4_ramp": bench.describe(by_name["svd_animatelcm_4_ramp"]) | {"whole": ok}}
    ratio = bench.ratios(results, modes=("whole",))["whole"]["svd_euler25_over_animatelcm4_ramp"]
    assert [ratio[f] for f in ("seconds", "unet_seconds", "unet_evaluations")] == ["n/a"] * 3
    assert "(OOM)" in bench.table(results, "cuda")
