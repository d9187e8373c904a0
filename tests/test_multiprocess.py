"""Scale: stage-1 and stage-2 distillation under `accelerate launch --num_processes 2` (CPU, gloo) trains like
one process with the whole batch: the same loss curve and weights, within float tolerance."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd + [str(ROOT / "tests" / "helpers" / "dp_run.py"), str(out)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(Path(out).read_text())


def test_two_processes_equal_one_process_with_the_whole_batch(tmp_path):
    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists():
        pytest.skip("accelerate's launcher is not installed next to this Python")
    one = run([sys.executable], tmp_path / "one.json")
    two = run([str(accelerate), "launch", "--config_file", str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml")],
              tmp_path / "two.json")
    assert one["world"] == 1 and two["world"] == 2
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-4, abs=1e-7)
    assert two["lora_sum"] == pytest.approx(one["lora_sum"], rel=1e-4)
    # Stage 2 runs the video UNet on a batch of 8 per process against 16 in one: CPU kernels may pick another algorithm
    # for another batch size, and after a few optimizer steps that float noise reaches 6.5e-4 of a loss (measured at the
    # lower bounds, torch 2.6, on this project's machine); data-parallel averaging done wrong would differ by far more.
    assert two["video_losses"] == pytest.approx(one["video_losses"], rel=2e-3, abs=1e-7)
    assert two["motion_sum"] == pytest.approx(one["motion_sum"], rel=2e-3)
