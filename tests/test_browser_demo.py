"""Debian's headless Chromium, driven by Playwright, uses every tab of the demo like a person would.

Needs /usr/bin/chromium (`apt-get install chromium`, done by .ci/run); skipped, saying so, without it.
Playwright's own browser downloads are never used. Screenshots land in the test's tmp dir.
"""

from pathlib import Path

import pytest

from demos import app as demo_app
from tests.test_demos_images import cat_photo, xray_16bit
from tests.tiny_checkpoints import LABELS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RESULT_TIMEOUT_MS = 60_000  # a shared 2-core machine can be slow to answer the first request

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="Debian's Chromium is not installed (/usr/bin/chromium): apt-get install chromium"
)


@pytest.fixture(scope="module")
def app_url(tiny_checkpoints):
    models = demo_app.load_models(
        str(tiny_checkpoints[("vit", "classification")]), str(tiny_checkpoints[("resnet", "regression")])
    )
    demo = demo_app.build_app(models=models)
    url, _ = demo_app.launch(demo, prevent_thread_lock=True)  # Gradio picks a free port
    yield url
    demo.close()


@pytest.fixture
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.set_default_timeout(RESULT_TIMEOUT_MS)
        page.goto(app_url)
        yield page
        browser.close()


def open_tab(page, title: str) -> None:
    # Gradio also renders hidden copies of the tab buttons (for overflow menus): click the visible one.
    page.locator("button[role=tab]").filter(has_text=title).filter(visible=True).first.click()


def test_every_tab_takes_an_upload_and_shows_its_result(page, tmp_path):
    from playwright.sync_api import expect

    photo, xray = cat_photo(tmp_path / "cat.png"), xray_16bit(tmp_path / "hand.png")
    # Other tabs may follow (demos/app.py TABS); these four come first, in this order.
    expect(page.locator("button[role=tab]").filter(visible=True)).to_contain_text(
        ["Food", "Bone age", "Feature maps", "Model"]
    )

    page.locator("#food-photo input[type=file]").set_input_files(photo)
    page.get_by_role("button", name="Classify").click()
    expect(page.locator("#food-labels")).to_contain_text(LABELS[0])
    expect(page.locator("#food-labels")).to_contain_text("%")
    page.screenshot(path=tmp_path / "food.png", full_page=True)

    open_tab(page, "Bone age")
    page.locator("#boneage-xray input[type=file]").set_input_files(xray)
    page.get_by_role("button", name="Estimate bone age").click()
    expect(page.locator("#boneage-text")).to_contain_text("months")
    expect(page.locator("#boneage-text")).to_contain_text("years")
    expect(page.locator("#boneage-cam img")).to_be_visible()
    page.screenshot(path=tmp_path / "bone_age.png", full_page=True)

    open_tab(page, "Feature maps")
    page.locator("#features-image input[type=file]").set_input_files(photo)
    page.get_by_role("button", name="Show feature maps").click()
    expect(page.locator("#features-caption")).to_contain_text("4x4 grid")
    expect(page.locator("#features-cam img")).to_be_visible()
    page.screenshot(path=tmp_path / "feature_maps.png", full_page=True)

    open_tab(page, "Model")
    expect(page.locator("#model-description")).to_contain_text("classification into 3 classes")
    expect(page.locator("#model-table")).to_contain_text("ViTForImageClassification")
    page.screenshot(path=tmp_path / "model.png", full_page=True)
    assert all(
        (tmp_path / f"{name}.png").stat().st_size > 10_000 for name in ("food", "bone_age", "feature_maps", "model")
    )
