"""The app in a real headless Chromium (Debian's `chromium`, driven by Playwright): upload, invert, see the result.

Runs on a small random generator (its "faces" are colour blobs) unless `APP_TEST_MODEL` names another model,
e.g. `APP_TEST_MODEL=default` for the embedded one. Saves a screenshot of the page in the test's tmp dir;
`UPDATE_SCREENSHOT=1 APP_TEST_MODEL=default` also writes it to docs/screenshots/app.png for the README.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from app_server import REPO_ROOT, face_photo, running_app, small_generator
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "app.png"
UPDATE = os.environ.get("UPDATE_SCREENSHOT", "0") == "1"
# the Reference tab's pair of held-out photos: a fair-haired woman takes a black-haired woman's hair (how often the
# default editor transfers black hair: models/face128-v2/REFERENCE_EDIT.md)
REFERENCE_PAIR, REFERENCE_ATTRIBUTE = (3, 17), "Black_Hair"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium: apt-get install -y chromium"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module (Playwright's sync API allows one running instance per thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    model = os.environ.get("APP_TEST_MODEL") or small_generator(tmp_path_factory.mktemp("app") / "G.safetensors")
    with running_app(model) as app:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app.url)
        page.get_by_role("tab", name="Invert & PTI").wait_for()
        page.app_log = app.log  # the server's output, for what a user cannot see
        yield page
        page.close()


def set_number(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def invert(page, latent_steps: int, tune_steps: int) -> None:
    set_number(page, "invert-latent-steps", latent_steps)
    set_number(page, "invert-tune-steps", tune_steps)
    page.get_by_role("button", name="Invert", exact=True).click()


@pytest.fixture(scope="module")
def photo():
    path = face_photo()
    if path is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    return path


def test_upload_invert_and_see_the_result(page, photo, tmp_path):
    page.locator("#invert-photo input[type=file]").set_input_files(str(photo))
    page.locator("#invert-crop img").wait_for(timeout=60_000)  # aligned as soon as it is uploaded
    if UPDATE:  # the README's screenshot shows what a user gets: the shipped defaults
        page.get_by_role("button", name="Invert", exact=True).click()
    else:
        invert(page, 20, 20)
    result = page.locator("#invert-reconstruction img")
    result.wait_for(timeout=600_000 if UPDATE else 180_000)
    assert "PTI" in page.locator("#invert-measures").inner_text()
    assert "LPIPS" in page.locator("#invert-measures").inner_text()
    assert "/gradio_api/file=" in result.get_attribute("src")

    path = tmp_path / "app.png"
    page.screenshot(path=path, full_page=True)
    shot = np.asarray(Image.open(path).convert("RGB"))
    assert shot.shape[1] == 1280 and shot.std() > 10
    if UPDATE:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(path).convert("RGB")  # 256 dithered colours: a third of the size, photos still smooth
        palette = image.quantize(256, method=Image.Quantize.MEDIANCUT)
        image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(SCREENSHOT, optimize=True)


def test_edit_the_inversion_with_a_slider(page, photo):  # edits the inversion of the test above
    page.get_by_role("tab", name="Edit", exact=True).click()
    edited = page.locator("#edit-tuned img")
    edited.wait_for(timeout=60_000)
    unedited = edited.get_attribute("src")
    strength = page.get_by_label("pc0").and_(page.locator("input[type=number]"))
    strength.fill("3")
    strength.press("Enter")
    page.wait_for_function(f"document.querySelector('#edit-tuned img').src != {unedited!r}", timeout=60_000)
    page.get_by_role("tab", name="Invert & PTI").click()


def test_stop_ends_a_long_inversion_at_once(page, photo):  # the photo uploaded above
    invert(page, 1000, 500)  # minutes of work, even for the small test generator
    page.get_by_text("finding the pivot latent").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    deadline = time.monotonic() + 30
    while not any("run: stopped by the user" in line for line in page.app_log):  # the loop itself ended
        assert time.monotonic() < deadline, "the stopped job is still running"
        time.sleep(0.5)
    page.get_by_label("W", exact=True).check()
    invert(page, 10, 10)
    page.locator("#invert-measures").get_by_text("W", exact=True).wait_for(timeout=60_000)


def test_a_photo_without_a_face_says_so(page, tmp_path):
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (240, 240, 3), np.uint8)).save(noise)
    page.locator("#invert-photo input[type=file]").set_input_files(str(noise))
    page.get_by_text("No face found in this photo").first.wait_for(timeout=60_000)


@pytest.fixture(scope="module")
def embedded_app():
    """The app on the embedded model, as `make app` serves it (the Style and Reference tabs need its trained files)."""
    with running_app("default") as app:
        yield app


@contextmanager
def tab_of(app, browser, tab: str):
    """A fresh page of `app` with `tab` open."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(app.url)
    page.get_by_role("tab", name=tab, exact=True).click()
    try:
        yield page
    finally:
        page.close()


def keep_screenshot(page, path: Path) -> None:
    """Screenshot the whole page to `path`, check it is a picture, and with UPDATE_SCREENSHOT=1 keep it for the README
    in docs/screenshots under the same name (256 colours)."""
    page.screenshot(path=path, full_page=True)
    image = Image.open(path).convert("RGB")
    assert np.asarray(image).std() > 10
    if UPDATE:
        image.quantize(256).save(SCREENSHOT.with_name(path.name), optimize=True)


def test_the_style_tab_restyles_a_photo_on_the_embedded_model(browser, embedded_app, photo, tmp_path):
    """The Style tab as a user meets it: the first shipped style, its recommended structure weight on the slider, a
    photo uploaded and stylised; the result and the identity measures shown."""
    with tab_of(embedded_app, browser, "Style") as page:
        assert page.locator("#style-structure input[type=number]").input_value() == "0.2"
        page.locator("#style-gallery img").first.wait_for(timeout=60_000)  # the exemplars, drawn by the model
        page.locator("#style-photo input[type=file]").set_input_files(str(photo))
        page.locator("#style-crop img").wait_for(timeout=60_000)
        page.get_by_role("button", name="Stylize", exact=True).click()
        page.locator("#style-result img").wait_for(timeout=120_000)
        measures = page.locator("#style-table").inner_text()
        assert "the reconstruction is the photo's person" in measures and "identity kept by the style" in measures
        keep_screenshot(page, tmp_path / "style.png")
        page.get_by_text("Per-layer weights (override the two sliders)").click()
        layers = page.locator("#style-layers textarea")  # the style's own structure layers at its recommended weight
        assert layers.input_value() == ", ".join(["0.2"] * 7 + ["1"] * 5)
        page.locator("#style-keep-face").click()  # the sliders' weights, the colour path on the last resolution only
        page.wait_for_function("document.querySelector('#style-layers textarea').value.startsWith('0.2, ')")
        assert layers.input_value() == ", ".join(["0.2"] * 7 + ["0"] * 3 + ["1"] * 2)
        assert page.locator("#style-per-layer input").is_checked()


def test_the_reference_tab_edits_a_photo_on_the_embedded_model(browser, embedded_app, photo, tmp_path):
    """The Reference edit tab as a user meets it: two photos uploaded, an attribute picked, the photo, the reference
    and the edit shown with what the edit did, and the edit pasted back into the photo."""
    photo, reference = (sorted(photo.parent.glob("*.jpg"))[i] for i in REFERENCE_PAIR)
    with tab_of(embedded_app, browser, "Reference edit") as page:
        page.locator("#reference-photo-photo input[type=file]").set_input_files(str(photo))
        page.locator("#reference-reference-photo input[type=file]").set_input_files(str(reference))
        page.locator("#reference-photo-crop img").wait_for(timeout=60_000)
        page.locator("#reference-reference-crop img").wait_for(timeout=60_000)
        page.locator("#reference-attribute input").fill(REFERENCE_ATTRIBUTE)
        page.locator("#reference-attribute input").press("Enter")
        page.get_by_role("button", name="Edit by reference", exact=True).click()
        page.locator("#reference-pasted img").wait_for(timeout=120_000)
        assert page.locator("#reference-gallery img").count() == 3
        measures = page.locator("#reference-table").inner_text()
        assert f"{REFERENCE_ATTRIBUTE}: edited" in measures and "the encoded photo is the photo's person" in measures
        keep_screenshot(page, tmp_path / "reference.png")
