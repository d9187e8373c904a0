"""README's other command, `make lab`, serves JupyterLab with the course's notebooks."""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(), reason="needs the project's .venv (make setup)")
def test_make_lab_serves_the_notebooks(tmp_path):
    port = free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "BROWSER": "true"}
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"PORT={port}", "LAB_ARGS=--allow-root --no-browser --ServerApp.ip=127.0.0.1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        token, log = None, ""
        deadline = time.time() + 90
        while time.time() < deadline and token is None:
            line = proc.stdout.readline()
            log += line
            match = re.search(r"token=([0-9a-f]+)", line)
            token = match.group(1) if match else None
            assert proc.poll() is None or token, f"make lab exited:\n{log}"
        assert token, f"no server URL in the output:\n{log}"
        for _ in range(60):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=5) as r:
                    names = [c["name"] for c in json.load(r)["content"]]
                break
            except OSError:
                time.sleep(0.5)
        assert "00_quickstart.ipynb" in names
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=5) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
