"""The web app in a real browser (headless Chromium from the system, driven by Playwright): a demo
persona opens the printed link, creates a user, rates with the keyboard, picks from 10 slates of four
and a pair (with an undo), describes its taste in words, trains from all of it, runs a short
optimization and judges it blind. A screenshot of every page goes to the test's temporary folder, and
axe-core checks every page it passes through (and the ones it does not: a user's list, a taste page
without a model, a run list, the page without the token): no serious or critical violation."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the app extra is not installed: pip install -e '.[app]'")
pytest.importorskip("playwright", reason="playwright is not installed: pip install playwright")

from ppo_demo.answers import choose, describe  # noqa: E402
from ppo_demo.attributes import measure, measure_many  # noqa: E402
from ppo_demo.personas import make_persona, rate  # noqa: E402

pytestmark = pytest.mark.integration
CHROMIUM = next((p for p in (os.environ.get("PPO_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and os.path.exists(p)), None)
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


BLOCKING = ("serious", "critical")
"""The axe-core impacts that fail the test; moderate and minor ones are printed."""


def axe_check(page, name: str, found: dict[str, list[dict]]) -> None:
    """Runs axe-core on the page as it is now and keeps its violations under ``name``."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    found[name] = [{"id": v["id"], "impact": v["impact"],
                    "targets": [" ".join(map(str, node["target"])) for node in v["nodes"]]}
                   for v in results.response["violations"]]
    counts = ", ".join(f"{v['id']} ({v['impact']}, {len(v['targets'])})" for v in found[name])
    print(f"axe {name}: {counts or 'no violations'}")


def images_loaded(page) -> None:
    """Waits until every image on the page has loaded (a screenshot shows them)."""
    page.wait_for_function("Array.from(document.images).every(image => image.complete)")


def blocking_violations(found: dict[str, list[dict]]) -> list[str]:
    return [f"{name}: {v['id']} ({v['impact']}) at {target}" for name, violations in found.items() for v in violations
            if v["impact"] in BLOCKING for target in v["targets"]]


@pytest.fixture()
def app_link(triton_server, tmp_path):
    command = [sys.executable, "-m", "ppo_client.cli", "app", "--store", str(tmp_path / "store.sqlite"), "--url",
               triton_server.grpc_url, "--port", "0", "--gallery-steps", "2", "--runs", str(tmp_path / "runs")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    link = process.stdout.readline().strip()
    assert link.startswith("http://127.0.0.1:"), process.stderr.read()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(link.split("/?")[0] + "/static/app.css", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    yield link
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=15)  # and close its pipes
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (Debian: apt-get install chromium; or set PPO_CHROMIUM)")
def test_a_persona_rates_trains_optimizes_and_judges_blind_in_a_real_browser(app_link, tmp_path):
    from playwright.sync_api import sync_playwright

    persona = make_persona("warm-minimalist", seed=3)
    rng = np.random.default_rng(0)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    presses = 0
    axe: dict[str, list[dict]] = {}

    def press(page, key):
        nonlocal presses
        presses += 1
        page.keyboard.press(key)

    def pixels(page, src: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))

    def persona_rating(page, selector) -> int:
        src = page.eval_on_selector(selector, "element => element.src")  # absolute
        return rate(persona, measure(pixels(page, src)), rng)

    def persona_pick(page, size: int) -> int:
        """The persona's pick among the slate on the page (waited for: ``size`` images, all loaded)."""
        try:
            page.wait_for_selector(f"#slate button.pick >> nth={size - 1}", timeout=120_000)
        except Exception:
            raise AssertionError(f"no slate of {size}: {page.inner_text('main')!r}") from None
        images_loaded(page)
        sources = page.eval_on_selector_all("#slate img", "elements => elements.map(element => element.src)")
        assert len(sources) == size
        return choose(persona, measure_many([pixels(page, src) for src in sources]), rng)

    def answered(page, picks: int, previous: str) -> None:
        page.wait_for_function(f"document.getElementById('chosen').textContent === '{picks}'")
        page.wait_for_function("previous => document.getElementById('slate').dataset.slate !== previous", arg=previous,
                               timeout=120_000)

    def slate_id(page) -> str:
        return page.eval_on_selector("#slate", "element => element.dataset.slate")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.on("pageerror", lambda error: print("page error:", error))
        page.goto(app_link)  # the link sets the token cookie and lands on the users page
        page.wait_for_selector("#new-user")
        page.screenshot(path=str(shots / "users.png"))
        axe_check(page, "users (none yet)", axe)
        for key in "lena":
            press(page, key)
        press(page, "Enter")
        page.wait_for_url("**/u/lena/rate")
        page.wait_for_function("document.getElementById('current').src.includes('/api/images/')", timeout=60_000)
        images_loaded(page)
        page.screenshot(path=str(shots / "rate.png"))
        axe_check(page, "rate", axe)
        for count in range(1, 21):
            previous = page.eval_on_selector("#current", "element => element.src")
            rating = persona_rating(page, "#current")
            press(page, "0" if rating == 10 else str(rating))
            page.wait_for_function(f"document.getElementById('rated').textContent === '{count}'")
            page.wait_for_function(f"document.getElementById('current').src !== '{previous}'")
        press(page, "u")  # undo the last one and rate it again
        page.wait_for_function("document.getElementById('rated').textContent === '19'")
        press(page, "5")
        page.wait_for_function("document.getElementById('rated').textContent === '20'")

        press(page, "f")  # pick one of four: 10 slates, each answer stored as it is given
        for count in range(1, 11):
            picked = persona_pick(page, 4)
            if count == 1:
                page.screenshot(path=str(shots / "pick.png"))
                axe_check(page, "rate (pick one of four)", axe)
            previous = slate_id(page)
            press(page, str(picked + 1))
            answered(page, count, previous)
        press(page, "w")  # which of two, with an undo
        picked = persona_pick(page, 2)
        axe_check(page, "rate (which of two)", axe)
        previous = slate_id(page)
        press(page, "ArrowLeft" if picked == 0 else "ArrowRight")
        answered(page, 11, previous)
        press(page, "u")
        page.wait_for_function("document.getElementById('chosen').textContent === '10'")
        assert slate_id(page) == previous, "the undone pair is shown again"
        press(page, "ArrowLeft" if picked == 0 else "ArrowRight")
        answered(page, 11, previous)

        press(page, "t")
        page.wait_for_url("**/u/lena/taste")
        page.wait_for_load_state("networkidle")
        axe_check(page, "taste (no model yet)", axe)
        page.fill("#description", describe(persona))
        page.click("#describe button[type=submit]")
        page.wait_for_function("document.getElementById('description-version').textContent === 'saved: version 1'")
        press(page, "t")
        page.wait_for_selector("#models tbody tr", timeout=120_000)
        assert "on 20 ratings, 11 picks, description v1" in page.inner_text("#training")
        page.wait_for_selector("#likes figure")
        images_loaded(page)
        page.screenshot(path=str(shots / "taste.png"), full_page=True)
        axe_check(page, "taste", axe)
        first_model_presses = presses

        press(page, "p")
        page.wait_for_url("**/u/lena/optimize")
        page.wait_for_load_state("networkidle")
        axe_check(page, "optimize (the form)", axe)
        page.fill("#prompt", "a red circle on a blue background")
        page.fill("#iterations", "1")
        page.fill("#steps", "2")
        page.select_option("#optimizer", "mix")
        assert page.input_value("#screen") == "4", "the mix's every candidate is an LLM generation: K 4"
        page.select_option("#optimizer", "random")
        assert page.input_value("#screen") == "32", "keyword candidates are free: K 32"
        page.press("#prompt", "Enter")
        page.wait_for_function("document.getElementById('run-status').textContent.startsWith('finished')", timeout=120_000)
        assert page.locator("#iterations-list li").count() == 2
        images_loaded(page)
        page.screenshot(path=str(shots / "optimize.png"), full_page=True)
        axe_check(page, "optimize (a finished run)", axe)
        link = page.locator("#compare-link")
        assert link.is_visible()
        page.keyboard.press("c")
        page.wait_for_url("**/compare")
        page.wait_for_function("document.getElementById('pair-total').textContent !== '0'", timeout=120_000)
        images_loaded(page)
        page.screenshot(path=str(shots / "compare.png"))
        axe_check(page, "compare", axe)
        for _ in range(int(page.inner_text("#pair-total"))):
            left, right = persona_rating(page, "#left"), persona_rating(page, "#right")
            page.keyboard.press("ArrowLeft" if left > right else "ArrowRight" if right > left else "=")
            page.wait_for_timeout(150)
        page.wait_for_selector("#result:not([hidden])")
        text = page.inner_text("#result-text")
        page.screenshot(path=str(shots / "result.png"))
        axe_check(page, "compare (the result)", axe)
        for name, path, ready in [("users (one user)", "/", "#users li"),
                                  ("optimize (earlier runs)", "/u/lena/optimize", "#runs li")]:
            page.goto(app_link.split("/?")[0] + path)
            page.wait_for_selector(ready)
            axe_check(page, name, axe)
        stranger = browser.new_page()  # no token: the refusal page
        stranger.goto(app_link.split("/?")[0] + "/")
        axe_check(stranger, "no token", axe)
        browser.close()
    (tmp_path / "axe.json").write_text(json.dumps(axe, indent=1))
    blocking = blocking_violations(axe)
    assert blocking == [], "axe-core: serious or critical violations:\n" + "\n".join(blocking)
    assert "The optimized prompt won" in text and "95% interval" in text
    # name, Enter, 20 ratings, undo and re-rate, 10 picks of four (and f), a pair (and w) undone and picked again, taste, train
    assert first_model_presses == 4 + 1 + 20 + 2 + 11 + 4 + 2
    assert sorted(p.name for p in shots.iterdir()) == ["compare.png", "optimize.png", "pick.png", "rate.png", "result.png",
                                                     "taste.png", "users.png"]
