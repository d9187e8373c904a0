"""Training loses nothing: a stage-1 distillation run killed with SIGKILL at a random moment and
started again resumes from its last checkpoint and ends bit-identical to an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "helpers" / "kill_run.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def finish(folder, out):
    proc = subprocess.run([sys.executable, str(HELPER), str(folder), str(out)], env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split("resumed_from")[-1])


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    straight = tmp_path / "straight.safetensors"
    assert finish(tmp_path / "a", straight) == 0

    proc = subprocess.Popen([sys.executable, str(HELPER), str(tmp_path / "b"), str(tmp_path / "never.safetensors")],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "b" / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random().uniform(0.0, 0.6))  # somewhere between two checkpoints
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "never.safetensors").exists(), "the run finished before it could be killed"
    if not state.exists():  # killed between the two renames of a checkpoint write: the old one counts
        state = tmp_path / "b" / "checkpoint.old" / "state.json"
    killed_at = json.loads(state.read_text())["step"]
    assert 2 <= killed_at < 8

    resumed = tmp_path / "resumed.safetensors"
    assert finish(tmp_path / "b", resumed) == killed_at
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
