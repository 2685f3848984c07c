"""TensorBoard in a real browser: two plain ``train`` runs (Fourier and linear heads), ``tensorboard --logdir``,
headless Chromium through Playwright. Custom Scalars and Time Series must show both runs' curves, HParams both
rows, and the pmf image must render.

Needs Playwright (the test extra) and Debian's ``chromium-headless-shell`` (or ``chromium``); ``.ci/run``
installs both and sets ``FH_RL_REQUIRE_BROWSER=1``, which turns a missing browser into a failure instead of a
skip. ``FH_RL_SCREENSHOT=<png>`` also saves the test's Custom Scalars page there.

The documentation's picture (docs/tensorboard.png) is a real comparison, taken with this module's server and
browser code on a study's run root (every run of it must have finished):

    python tests/test_tensorboard_browser.py <run root, e.g. a study's margin16 sweep> docs/tensorboard.png
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from fh_rl import evaluate as evaluate_cli
from fh_rl import train as train_cli
from fh_rl.infra.cli import run_cli

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")


def _missing(reason: str) -> None:
    if os.environ.get("FH_RL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (FH_RL_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium():
    try:
        import playwright  # noqa: F401
    except ImportError:
        _missing('playwright is not installed: pip install -e ".[test]"')
    path = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if path is None:
        _missing("no Chromium found: apt-get install -y chromium-headless-shell")
    return path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, pendulum_hdf5):
    """A Fourier-head and a linear-head DT trained with plain ``python -m fh_rl.train`` into one run root."""
    root = tmp_path_factory.mktemp("tb") / "runs"
    sets = ["agent.embed_dim=16", "agent.n_layer=1", "agent.n_head=2", "agent.context_len=4", "train.batch_size=8",
            "train.steps=30", "train.log_every=3", "train.val_every=10", "train.val_batches=1", "train.pmf_states=4",
            "train.threads=1", "dataset.val_fraction=0.25", "eval.episodes=1", "eval.workers=0",
            f"dataset.path={pendulum_hdf5}", f"run_root={root}"]
    for head, margin in (("fourier", 4), ("linear", 0)):  # the runs differ in the head and in env.margin_bins
        argv = [a for s in [*sets, f"env.margin_bins={margin}"] for a in ("--set", s)]
        assert run_cli(train_cli.main, argv + ["--head", head, "--no-progress"]) == 0
    (fourier,) = (root / "Pendulum-v1" / "dt-fourier").iterdir()  # watched: one episode recorded into TensorBoard
    assert run_cli(evaluate_cli.main, [str(fourier), "--episodes", "1", "--workers", "0", "--video", "1",
                                       "--no-progress"]) == 0
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(logdir: Path, runs: int, log: Path):
    """``tensorboard --logdir <logdir>`` on a free local port until ``runs`` runs are loaded; yields its URL."""
    port = _free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port),
             "--load_fast=false", "--reload_interval", "1"],
            stdout=out, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90 + runs
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/data/plugin/scalars/tags", timeout=5) as r:
                        tags = json.load(r)
                    if sum("train/loss" in t for t in tags.values()) >= runs:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"TensorBoard did not load {runs} runs: {log.read_text()}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@contextmanager
def browser_page(chromium: str):
    """A page of headless Chromium (Playwright), 1400 x 1000."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


@pytest.fixture(scope="module")
def board(two_runs):
    """TensorBoard on the two runs; its URL."""
    with serve(two_runs, 2, two_runs.parent / "tensorboard.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(chromium, board):
    with browser_page(chromium) as p:
        yield p


def _line_colours(locator) -> set[str]:
    """Stroke colours of the drawn data lines (SVG paths with a stroke) inside ``locator`` (shadow DOM included)."""
    strokes = locator.locator("svg path").evaluate_all(
        """paths => paths
             .filter(p => (p.getAttribute('d') || '').length > 20)
             .map(p => getComputedStyle(p).stroke)
             .filter(s => s && s !== 'none')"""
    )
    return set(strokes)


def _wait_for_colours(locator, n: int, timeout: float = 30.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        colours = _line_colours(locator)
        if len(colours) >= n or time.monotonic() > deadline:
            return colours
        time.sleep(0.5)


def test_custom_scalars_overlay_both_heads(page, board):
    page.goto(f"{board}/#custom_scalars")
    card = page.locator("tf-custom-scalar-multi-line-chart-card", has_text="held-out NLL").first
    card.wait_for(timeout=60_000)
    card.get_by_text("Matches (2)").wait_for(timeout=30_000)  # the layout's regex matched val/nll in both runs
    assert len(_wait_for_colours(card, 2)) == 2  # and both runs' curves are drawn, one colour each
    loss = page.locator("tf-custom-scalar-multi-line-chart-card", has_text="loss").first
    assert len(_wait_for_colours(loss, 2)) == 2
    shot = os.environ.get("FH_RL_SCREENSHOT")
    if shot:
        page.screenshot(path=shot)


def test_time_series_show_both_runs_and_the_pmf_image(page, board):
    page.goto(f"{board}/?forceSVG=true#timeseries")  # SVG lines (headless Chromium may lack WebGL) can be inspected
    tag_filter = page.get_by_role("combobox", name="Filter tags (regex)")
    tag_filter.fill("val/smoothness")
    card = page.locator("scalar-card", has_text="val/smoothness").first
    card.wait_for(timeout=60_000)
    assert len(_wait_for_colours(card, 2)) == 2

    tag_filter.fill("^eval/return_mean")  # training's evaluation (the re-evaluation below is reeval/return_mean)
    page.locator("scalar-card", has_text="eval/return_mean").first.wait_for(timeout=30_000)
    deadline = time.monotonic() + 20
    while page.locator("scalar-card:visible").count() != 1 and time.monotonic() < deadline:  # the filter settles
        time.sleep(0.5)
    assert "".join(page.locator("scalar-card:visible").all_inner_texts()[0].split()).startswith("eval/return_mean")
    assert page.locator("scalar-card:visible").count() == 1  # one chart for the metric, no /target_ twin

    tag_filter.fill("val/pmf")
    images = page.locator("image-card img")
    images.first.wait_for(timeout=30_000)
    deadline = time.monotonic() + 30
    while True:
        sizes = [images.nth(i).evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]") for i in range(images.count())]
        if (len(sizes) == 2 and all(c and w > 0 for c, w, _ in sizes)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(sizes) == 2 and all(complete and w >= 600 and h >= 400 for complete, w, h in sizes), sizes  # both heads


def test_hparams_list_both_heads(page, board):
    with urllib.request.urlopen(f"{board}/data/runs", timeout=10) as r:
        assert len(json.load(r)) == 2  # the two runs, no pseudo-run for the run root
    page.goto(f"{board}/#hparams")
    table = page.locator("tf-hparams-table-view")
    table.get_by_text("fourier", exact=True).wait_for(timeout=60_000)
    table.get_by_text("linear", exact=True).wait_for(timeout=30_000)
    # the settings that differ between the runs are the first columns TensorBoard displays
    table.get_by_text("env.margin_bins").first.wait_for(timeout=10_000)
    page.get_by_text("head.num_frequencies").first.wait_for(timeout=10_000)  # listed (only the Fourier run has it)
    assert page.get_by_text("dataset.build_steps").count() == 0 and page.get_by_text("val/smoothness").count() > 0


def screenshot_comparison(root: Path, out: Path) -> None:
    """Save the Custom Scalars page of TensorBoard on ``root`` (every run's curves loaded) to ``out``."""
    chromium = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if chromium is None:
        raise SystemExit("no Chromium found: apt-get install -y chromium-headless-shell")
    runs = sum(1 for _ in root.rglob("config.yaml"))
    if runs == 0:
        raise SystemExit(f"{root}: no run directories (a config.yaml each) below it")
    with serve(root, runs, out.with_suffix(".tensorboard.log")) as url, browser_page(chromium) as page:
        page.goto(f"{url}/#custom_scalars")
        card = page.locator("tf-custom-scalar-multi-line-chart-card", has_text="held-out NLL").first
        card.wait_for(timeout=120_000)
        colours = _wait_for_colours(card, min(runs, 10), timeout=120)
        page.screenshot(path=str(out))
        if not colours:
            raise SystemExit(f"{root}: TensorBoard drew no held-out NLL curve (see {out})")
    out.with_suffix(".tensorboard.log").unlink(missing_ok=True)
    print(f"wrote {out}: {runs} runs, {len(colours)} colours in the held-out NLL chart")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python tests/test_tensorboard_browser.py RUN_ROOT OUT.png")
    screenshot_comparison(Path(sys.argv[1]), Path(sys.argv[2]))


def test_the_recorded_episode_plays_in_images(page, board):
    page.goto(f"{board}/?forceSVG=true#timeseries")
    page.get_by_role("combobox", name="Filter tags (regex)").fill("video/")
    images = page.locator("image-card img")
    images.first.wait_for(timeout=60_000)
    deadline = time.monotonic() + 30
    while True:
        sizes = [images.nth(i).evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]") for i in range(images.count())]
        if (sizes and all(c and w > 0 for c, w, _ in sizes)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # one episode of the Fourier run: the 500x500 Pendulum frame + the 240-pixel pmf panel, scaled to 480 wide
    assert sizes == [[True, 480, round(500 * 480 / 740)]], sizes
    assert "".join(page.locator("image-card").first.inner_text().split()).startswith("video/episode_0Pendulum-v1/dt-fourier")
