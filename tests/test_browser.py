"""End to end in a real browser: JupyterLab on 127.0.0.1, headless Chromium driven by Playwright.

Opens a notebook of course widgets, runs it, moves a slider and presses a button, and checks that the widget
outputs changed in the page (not just in the kernel). Saves a screenshot to .cache/browser-test/.
Needs Debian's chromium (`apt-get install chromium`) and the playwright package (requirements-dev.txt);
never `playwright install`, which downloads a browser. Without them the test skips and says why.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("COURSE_REQUIRE_BROWSER") == "1"  # set by .ci/run: in CI a missing browser is a failure
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".cache" / "browser-test"
CELLS = [
    "import torch\n"
    "from course_lib.transformer import ModelConfig, Transformer\n"
    "from course_lib.labs.experts import moe_calculator\n"
    "from course_lib.labs.text import sampling_lab\n"
    "torch.manual_seed(0)\n"
    "model = Transformer(ModelConfig(context_length=64, d_model=32, n_layers=1, n_heads=2, ffn_hidden=64))",
    "moe_calculator()",
    "sampling_lab(model, {'code': 'def ', 'prose': 'The '})",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab_server(tmp_path):
    missing = [] if Path(CHROMIUM).is_file() else [
        f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set COURSE_CHROMIUM)"]
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("pip install playwright (it is in requirements-dev.txt)")
    if missing:
        (pytest.fail if REQUIRED else pytest.skip)("browser test: " + "; ".join(missing))
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
                          for i, s in enumerate(CELLS)]}
    (tmp_path / "widgets.ipynb").write_text(json.dumps(notebook))
    config = tmp_path / "jupyter-config" / "labconfig"
    config.mkdir(parents=True)  # JupyterLab's news pop-up would cover the page: disable it for this server
    (config / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    port, token = free_port(), "course-browser-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"), "COURSE_DEVICE": "cpu"}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--allow-root"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"))
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"JupyterLab did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}/lab/tree/widgets.ipynb?token={token}"
    server.terminate()
    server.wait(timeout=20)


def test_widgets_respond_in_a_real_browser(lab_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(lab_server)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        page.click(".jp-Notebook .jp-Cell")  # focus the notebook, then run every cell
        page.keyboard.press("Escape")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        button = page.get_by_role("button", name="Sample")
        button.wait_for(timeout=90_000)
        calculator_text = page.locator(".widget-html-content pre").first
        sample_text = page.locator(".widget-html-content pre").nth(1)
        page.wait_for_function("document.querySelectorAll('.widget-html-content pre').length >= 2", timeout=30_000)
        before_calculator, before_sample = calculator_text.inner_text(), sample_text.inner_text()
        assert "total parameters" in before_calculator and before_sample.startswith("def ")

        handle = page.locator(".widget-slider .noUi-handle").first  # the calculator's "experts" slider
        handle.focus()
        for _ in range(8):
            handle.press("ArrowRight")
        page.wait_for_function("(old) => document.querySelector('.widget-html-content pre').innerText !== old",
                               arg=before_calculator, timeout=20_000)
        button.click()
        page.wait_for_function(
            "(old) => document.querySelectorAll('.widget-html-content pre')[1].innerText !== old",
            arg=before_sample, timeout=20_000)
        after_calculator, after_sample = calculator_text.inner_text(), sample_text.inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "widgets.png"), full_page=True)
        browser.close()
    assert after_calculator != before_calculator and "total parameters" in after_calculator
    assert after_sample != before_sample and after_sample.startswith("def ")
