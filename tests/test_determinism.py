"""Determinism: a seed gives bit-identical videos on the CPU, across runs and across processes,
for every pipeline the course uses (text-to-video student and teacher, text-to-image, SVD)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from hashes import hashes  # noqa: E402


def test_same_seed_same_bits_across_runs_and_processes(toy_settings):
    here = hashes()
    assert hashes() == here  # a second run in this process
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "helpers" / "hashes.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == here
