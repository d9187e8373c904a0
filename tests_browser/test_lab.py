"""The learner's path in a real browser: JupyterLab from the project's .venv, driven by Playwright
in headless Chromium (Debian's package, /usr/bin/chromium: no browser download). It opens the
quickstart and the demo, runs all their cells, clicks Generate in the demo and waits for the
HTML5 video, and finds no error output in any cell. A screenshot of the demo after Generate is
saved as a test artefact (artifacts/demo_after_generate.png; ANIMATELCM_ARTIFACTS moves it).

Run with `make test-browser` (it installs chromium with apt-get when it is missing). Kept out of
tests/ so that `make test` needs no browser. The notebooks run from copies in a temporary folder
(outputs cleared first), so the committed notebooks are never modified.
"""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ANIMATELCM_ARTIFACTS", ROOT / "artifacts"))
SOURCE = ROOT / "notebooks"
NOTEBOOKS = ("00_quickstart.ipynb", "08_demo.ipynb")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# the kernel runs the notebooks as CI's nbval does: toy world, test mode, offline
TEST_ENV = {"ANIMATELCM_WORLD": "toy", "ANIMATELCM_TEST_MODE": "1", "HF_HUB_OFFLINE": "1",
            "ANIMATELCM_CACHE": str(ROOT / ".cache" / "animatelcm_helpers")}
RUN_TIMEOUT_MS = 300_000  # one notebook's "Run All Cells": 20-100 s each here; generous for a busy CI machine

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: `make test-browser` installs it"),
    pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "jupyter").exists(), reason="needs the project's .venv (make setup)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free local port, serving copies of the notebooks (outputs cleared)."""
    work = tmp_path_factory.mktemp("lab")
    books = work / "notebooks"
    books.mkdir()
    for name in NOTEBOOKS:
        nb = nbformat.read(SOURCE / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata.pop("widgets", None)
        # a plain notebook, not a jupytext pair: paired, JupyterLab's jupytext writes the .py beside it on the
        # first save and reloads the notebook, which can drop its kernel session mid-test
        nb.metadata.pop("jupytext", None)
        nbformat.write(nb, books / name)
    # a fresh JupyterLab profile: start the kernel without asking, no news prompt, no cell virtualisation
    settings = work / "settings"
    for plugin, values in {"docmanager-extension/plugin": {"autoStartDefaultKernel": True},
                           "apputils-extension/notification": {"fetchNews": "false"},
                           "notebook-extension/tracker": {"windowingMode": "none"}}.items():  # every cell in the DOM
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, **TEST_ENV, "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
           "BROWSER": "true"}
    env.pop("MPLBACKEND", None)  # the notebooks' own %matplotlib inline
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "jupyter"), "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={books}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=books, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                assert proc.poll() is None, "JupyterLab exited:\n" + (work / "lab.log").read_text()[-3000:]
                assert time.time() < deadline, "JupyterLab did not answer:\n" + (work / "lab.log").read_text()[-3000:]
                time.sleep(0.5)
        yield {"url": url, "token": token, "dir": books, "log": work / "lab.log"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def page(lab, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


STATE = """() => {
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
    const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim());
    const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
    const failed = panel.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
    return {prompts: prompts, kernel: ind && ind.getAttribute('data-status'), stderr: !!failed};
}"""
# every code cell ran ("[n]:"; none queued "[*]:") and the kernel is idle; or a cell failed (stderr shown)
ALL_RAN = "() => { const s = (" + STATE + ")(); return s.prompts.length > 0 && s.kernel === 'idle' && " \
          "!s.prompts.some(p => p.includes('*')) && (s.prompts.every(p => /\\[\\d+\\]/.test(p)) || s.stderr); }"


def open_and_run_all(page, lab, name):
    """Open ``name`` in JupyterLab, run all its cells from the Run menu, and wait until every
    code cell has an execution count (or stop at a failed cell: the error check then names it)."""
    page.goto(f"{lab['url']}/lab/tree/{name}?token={lab['token']}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    notebook.wait_for(timeout=60_000)
    select = page.get_by_role("dialog").get_by_role("button", name="Select", exact=True)
    idle = """() => { const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
                      return !!s && s.getAttribute('data-status') === 'idle'; }"""
    # the kernel is up when the toolbar's kernel indicator says idle; JupyterLab may ask for the kernel
    # first (a "Select Kernel" dialog), late on a loaded machine: answer it whenever it shows
    def answer_kernel_dialog() -> bool:
        if select.is_visible():
            select.click()
            return True
        return False

    def run_all():
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()

    deadline = time.time() + 120
    while not (page.evaluate(idle) and not answer_kernel_dialog()):
        if time.time() > deadline:
            raise AssertionError(f"{name}: the kernel did not start in 120 s (server log {lab['log']})")
        page.wait_for_timeout(500)
    page.wait_for_timeout(1_000)  # the dialog can come after the indicator says idle
    answer_kernel_dialog()
    run_all()
    started = time.time()
    asked = started
    try:
        while not page.evaluate(ALL_RAN):
            prompts = page.evaluate(STATE)["prompts"]
            nothing_ran = all(p.strip() == "[ ]:" for p in prompts)
            if answer_kernel_dialog() or (nothing_ran and time.time() - asked > 20):
                run_all()  # the dialog swallowed the Run menu's click, or the kernel was not ready: run again
                asked = time.time()
            if time.time() - started > RUN_TIMEOUT_MS / 1000:
                raise TimeoutError
            page.wait_for_timeout(500)
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"failed_{name}.png"), full_page=True)
        state = page.evaluate(STATE)
        raise AssertionError(f"{name}: the cells did not finish in {RUN_TIMEOUT_MS / 1000:.0f} s: {state} "
                             f"(screenshot in {ARTIFACTS}; server log {lab['log']})") from None
    print(f"{name}: all cells ran in the browser in {time.time() - started:.0f} s")
    return notebook


def errors_in(notebook) -> list[str]:
    """The text of every stderr/error output that reports an error (tracebacks, one-line UserErrors)."""
    texts = notebook.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    return [t for t in texts if "Traceback" in t or re.search(r"\b\w*(Error|Exception)\b", t)]


def unexecuted(notebook) -> list[str]:
    prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    return [p for p in prompts if not re.search(r"\[\d+\]", p)]


def test_quickstart_runs_in_the_browser(page, lab):
    notebook = open_and_run_all(page, lab, "00_quickstart.ipynb")
    assert not errors_in(notebook), errors_in(notebook)
    assert not unexecuted(notebook)
    assert notebook.locator(".jp-OutputArea-output img").count() >= 3  # its videos (GIFs) and frames


def test_demo_generates_a_video_in_the_browser(page, lab):
    notebook = open_and_run_all(page, lab, "08_demo.ipynb")
    assert not errors_in(notebook), errors_in(notebook)
    assert not unexecuted(notebook)
    app = notebook.locator(".animatelcm-demo").first
    app.wait_for(timeout=30_000)
    tab = app.locator(".animatelcm-demo-tab").first
    # a new seed, typed in, so the video after the click is the click's own
    seed = tab.locator(".widget-inline-hbox", has_text="seed").locator("input")
    seed.fill("7")
    seed.press("Enter")
    tab.get_by_role("button", name="Generate").click()
    status = tab.locator(".animatelcm-demo-ok", has_text="seed 7")
    status.wait_for(timeout=60_000)
    text = status.inner_text()
    assert re.search(r"\d+ frames at 32x32, 4 steps, 4 UNet evaluations, [\d.]+ s, seed 7", text), text
    video = tab.locator("video")
    video.wait_for(timeout=30_000)
    # the browser decoded the H.264 video (readyState >= HAVE_METADATA) and knows its size
    page.wait_for_function("v => v.readyState >= 1 && v.videoWidth > 0", arg=video.element_handle(), timeout=30_000)
    # the progress bar counted the 4 steps to the end
    assert tab.locator(".widget-hprogress .progress-bar").evaluate("b => b.style.width") == "100%"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "demo_after_generate.png"
    app.scroll_into_view_if_needed()
    app.screenshot(path=str(shot))
    print(f"screenshot of the demo after Generate: {shot}")
    assert shot.stat().st_size > 10_000
    # a bad value is a message in the app, not an error output
    width = tab.locator(".widget-inline-hbox", has_text="width").locator("input")
    width.fill("30")
    width.press("Enter")
    tab.get_by_role("button", name="Generate").click()
    tab.locator(".animatelcm-demo-error", has_text="width 30 is not a multiple of 8").wait_for(timeout=30_000)
    assert not errors_in(notebook), errors_in(notebook)
