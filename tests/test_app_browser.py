"""The app in a real headless Chromium (Debian's `chromium`, driven by Playwright): upload, invert, see the result.

Saves a screenshot of the page in the test's tmp dir; `UPDATE_SCREENSHOT=1` also copies it to
docs/screenshots/app.png for the README.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from app_server import REPO_ROOT, face_photo, running_app, small_generator
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "app.png"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium: apt-get install -y chromium"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with running_app(small_generator(tmp_path_factory.mktemp("app") / "G.safetensors")) as app, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app.url)
        page.get_by_role("tab", name="Invert & PTI").wait_for()
        yield page
        browser.close()


def set_slider(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_upload_invert_and_see_the_result(page, tmp_path):
    photo = face_photo()
    if photo is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    page.locator("#invert-photo input[type=file]").set_input_files(str(photo))
    page.locator("#invert-crop img").wait_for(timeout=60_000)  # aligned as soon as it is uploaded
    set_slider(page, "invert-latent-steps", 20)
    set_slider(page, "invert-tune-steps", 20)
    page.get_by_role("button", name="Invert", exact=True).click()

    result = page.locator("#invert-reconstruction img")
    result.wait_for(timeout=180_000)
    page.get_by_text("PTI", exact=True).first.wait_for()
    assert "MSE" in page.locator("#invert-measures").inner_text()
    source = result.get_attribute("src")
    assert source and not source.endswith(".svg")

    path = tmp_path / "app.png"
    page.screenshot(path=path, full_page=True)
    shot = np.asarray(Image.open(path).convert("RGB"))
    assert shot.shape[1] == 1280 and shot.std() > 10
    if os.environ.get("UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOT)


def test_a_photo_without_a_face_says_so(page, tmp_path):
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (240, 240, 3), np.uint8)).save(noise)
    page.locator("#invert-photo input[type=file]").set_input_files(str(noise))
    page.get_by_text("No face found in this photo").first.wait_for(timeout=60_000)
