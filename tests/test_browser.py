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
# every lab with controls or figures, as a learner meets them (untrained models: layout, not content, is tested)
LAB_CELLS = [
    "import torch\n"
    "from course_lib.config import ModelConfig, MoEConfig\n"
    "from course_lib.data import Corpus\n"
    "from course_lib.model import build_model\n"
    "from course_lib.train import TrainConfig\n"
    "from course_lib.labs.balancing import balancing_lab\n"
    "from course_lib.labs.experts import moe_calculator, routing_explorer\n"
    "from course_lib.labs.licences import licence_checker\n"
    "from course_lib.labs.text import attention_viewer, sampling_lab\n"
    "torch.manual_seed(0)\n"
    "model = build_model(ModelConfig(context_length=64, d_model=32, n_layers=2, n_heads=2, ffn_hidden=64,\n"
    "                                moe=MoEConfig(n_experts=8, top_k=2, expert_hidden=32)))",
    "attention_viewer(model, 'def add(a, b):\\n    return a + b')",
    "sampling_lab(model, {'code': 'def ', 'prose': 'The '})",
    "moe_calculator()",
    "routing_explorer(model, {'code': 'def add(a, b): return a + b'})",
    "balancing_lab(Corpus(), model_config=model.config, train_config=TrainConfig(steps=20, batch_size=4, seq_len=16))",
    "licence_checker()",
]
# what a script can check of a finished lab: labels not cut off, real tooltips, figures neither broken nor rescaled
LAYOUT_PROBE = """() => {
  const cut = [...document.querySelectorAll('.jp-OutputArea .widget-label, .jp-OutputArea .widget-label-basic')]
    .filter(e => e.offsetParent && e.scrollWidth > e.clientWidth + 1).map(e => e.innerText);
  const badTips = [...document.querySelectorAll('.jp-OutputArea [title]')]
    .filter(e => e.offsetParent && ['null', 'undefined'].includes(e.getAttribute('title')))
    .map(e => e.outerHTML.slice(0, 160));
  const images = [...document.querySelectorAll('.jp-OutputArea img.widget-image')].map(e => ({
    ok: e.complete && e.naturalWidth > 0, natural: [e.naturalWidth, e.naturalHeight],
    shown: [e.getBoundingClientRect().width, e.getBoundingClientRect().height]}));
  return {cut, badTips, images, height: window.innerHeight};
}"""


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
    notebook["cells"] = [{**notebook["cells"][0], "id": f"l{i}", "source": s} for i, s in enumerate(LAB_CELLS)]
    (tmp_path / "labs.ipynb").write_text(json.dumps(notebook))
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
    yield lambda name: f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}"
    server.terminate()
    server.wait(timeout=20)


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"])


def run_all_cells(page, url):
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    page.click(".jp-Notebook .jp-Cell")  # focus the notebook, then run every cell
    page.keyboard.press("Escape")
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def test_widgets_respond_in_a_real_browser(lab_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        run_all_cells(page, lab_server("widgets.ipynb"))
        button = page.get_by_role("button", name="Sample")
        try:
            button.wait_for(timeout=90_000)
        except Exception:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "failed.png"), full_page=True)
            raise
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


def test_labs_look_finished_on_a_laptop_screen(lab_server):
    """Every lab at a common laptop size (1366x768) and a desktop size (1920x1080): screenshots in
    .cache/browser-test/, and the properties a script can check, from a learner's walk through the labs."""
    from playwright.sync_api import sync_playwright

    probes = {}
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        run_all_cells(page, lab_server("labs.ipynb"))
        page.get_by_text("source marks").wait_for(timeout=120_000)  # the last lab has drawn
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        licence_text = page.locator(".jp-OutputArea table").last.inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for width, height in ((1366, 768), (1920, 1080)):
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(500)  # let the layout settle
            probes[width, height] = page.evaluate(LAYOUT_PROBE)
            page.screenshot(path=str(SCREENSHOTS / f"labs-{width}x{height}.png"), full_page=True)
        browser.close()
    for size, probe in probes.items():
        assert not probe["cut"], f"{size}: labels cut off: {probe['cut']}"
        assert not probe["badTips"], f"{size}: controls with the tooltip 'null': {probe['badTips']}"
        assert len(probe["images"]) >= 3 and all(image["ok"] for image in probe["images"]), f"{size}: a broken image"
        for image in probe["images"]:
            (natural_width, natural_height), (shown_width, shown_height) = image["natural"], image["shown"]
            assert abs(shown_width - natural_width) <= 2 and abs(shown_height - natural_height) <= 2, (size, image)
            assert shown_height < probe["height"] - 150, f"{size}: a figure taller than the screen: {image}"
    assert "commercial_mau" not in licence_text and "publish_finetune_as" not in licence_text
