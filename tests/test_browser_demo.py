"""Debian's headless Chromium, driven by Playwright, uses every tab of the demo like a person would.

Each result is checked against the answer the model gives outside the app, not merely for being there.
Needs /usr/bin/chromium (`apt-get install chromium`, done by .ci/run); skipped, saying so, without it.
Playwright's own browser downloads are never used. Screenshots land in the test's tmp dir.
"""

import importlib.util
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from demos.explaining.adversarial import attack
from demos.explaining.summary import human_label
from demos.serving.images import load_image
from demos.serving.inference import regress, top_k
from demos.tabs.bone_age import IMAGE_HEIGHT_PX
from tests.serving import serving
from tests.test_demos_images import cat_photo, not_an_image, xray_16bit

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
# Generous, and still below pytest's 300 s: the slow endpoints (feature maps, attacks) run 10 nice levels below the
# app, so while the suite's other worker keeps both cores busy they get about a tenth of a core, and in a fresh venv
# their first call also imports and byte-compiles pytorch-grad-cam, OpenCV, scikit-learn and matplotlib. In a fresh
# clone's suite a first feature map once took over 60 s; alone it takes 3.5 s.
RESULT_TIMEOUT_MS = 180_000
OOD_THRESHOLD = 0.99  # above any top probability of the tiny 3-class model: every photo gets the notice
ATTACK_BUDGET = 48

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason="Debian's Chromium is not installed (/usr/bin/chromium): apt-get install chromium",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="playwright is not installed: pip install -r requirements-dev.txt",
    ),
]


def with_ood_threshold(folder: Path, out: Path, threshold: float) -> Path:
    """A copy of a classification checkpoint whose config stores a calibrated `ood_threshold`."""
    shutil.copytree(folder, out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "ood_threshold": threshold}))
    return out


@pytest.fixture(scope="module")
def served(tiny_checkpoints, tmp_path_factory):
    """(url, models, folder a visitor may load) of an app with a ViT food classifier and a ResNet bone-age model."""
    root = tmp_path_factory.mktemp("browser")
    food = with_ood_threshold(tiny_checkpoints[("vit", "classification")], root / "food", OOD_THRESHOLD)
    loadable = shutil.copytree(tiny_checkpoints[("timm", "regression")], root / "visitor" / "timm-regression")
    with serving(tiny_checkpoints, food=food, allow_local_dirs=[root / "visitor"]) as app:
        yield app.url, app.models, loadable


@pytest.fixture(scope="module")
def browser():
    """Chromium, started once per module (1.5-2 s a start here); each test's page has a context of its own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, served):
    """The app in a fresh browser context: no cookies, storage or cache from another test, as in a new browser."""
    from playwright.sync_api import expect

    expect.set_options(timeout=RESULT_TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(RESULT_TIMEOUT_MS)
    page.goto(served[0])
    yield page
    context.close()


def open_tab(page, title: str) -> None:
    # Gradio also renders hidden copies of the tab buttons (for overflow menus): click the visible one.
    page.locator("button[role=tab]").filter(has_text=title).filter(visible=True).first.click()


def test_every_tab_takes_an_upload_and_shows_the_models_answer(page, served, tmp_path):
    from playwright.sync_api import expect

    _, models, _ = served
    photo, xray = cat_photo(tmp_path / "cat.png"), xray_16bit(tmp_path / "hand.png")
    # Other tabs may follow (demos/app.py TABS); these four come first, in this order.
    expect(page.locator("button[role=tab]").filter(visible=True)).to_contain_text(
        ["Food", "Bone age", "Feature maps", "Model"]
    )

    expect(page.locator("#food-knowledge")).to_contain_text("The model knows 3 classes: Apple; Banana; Cherry")
    page.locator("#food-photo input[type=file]").set_input_files(photo)  # classified on upload: no button
    scores = top_k(models.get("food"), load_image(photo))
    best = next(iter(scores))
    expect(page.locator("#food-labels")).to_contain_text(human_label(best))
    expect(page.locator("#food-labels")).to_contain_text(f"{round(scores[best] * 100)}%")
    expect(page.locator("#food-notice")).to_contain_text("fits none of the 3 classes the model knows")
    expect(page.locator("#food-notice")).to_contain_text(f"below the {OOD_THRESHOLD:.0%}")
    page.screenshot(path=tmp_path / "food.png", full_page=True)

    open_tab(page, "Bone age")
    page.locator("#boneage-xray input[type=file]").set_input_files(xray)  # estimated on upload
    months = regress(models.get("boneage"), load_image(xray))
    expect(page.locator("#boneage-text")).to_contain_text(f"{months:.1f} months ({months / 12:.1f} years)")
    expect(page.locator("#boneage-cam img")).to_be_visible()
    expect(page.locator("#boneage-sex")).to_be_hidden()  # the tiny model is not conditioned on sex
    # Both images are drawn to fill their boxes (demos/app.py PAGE_CSS): Gradio's own style never enlarges an image
    # (its boxes are as large, the picture inside them is not), and here they are 48x64 and 32x32 pixels.
    for box in ("boneage-decoded", "boneage-cam"):
        image = page.locator(f"#{box} img")
        assert image.evaluate("e => getComputedStyle(e).objectFit") == "contain", box
        assert image.bounding_box()["height"] > IMAGE_HEIGHT_PX / 2, box
    page.screenshot(path=tmp_path / "bone_age.png", full_page=True)

    open_tab(page, "Feature maps")
    page.locator("#features-image input[type=file]").set_input_files(photo)
    page.get_by_role("button", name="Show feature maps").click()
    expect(page.locator("#features-caption")).to_contain_text("4x4 grid")
    expect(page.locator("#features-caption")).to_contain_text(f"the top prediction, {human_label(best)}")
    expect(page.locator("#features-cam img")).to_be_visible()
    expect(page.locator("#features-rollout img")).to_be_visible()  # a ViT: its attention rollout is shown
    page.screenshot(path=tmp_path / "feature_maps.png", full_page=True)
    assert all((tmp_path / f"{name}.png").stat().st_size > 10_000 for name in ("food", "bone_age", "feature_maps"))


def test_a_non_image_is_refused_as_it_is_uploaded(page, tmp_path):
    from playwright.sync_api import expect

    page.locator("#food-photo input[type=file]").set_input_files(not_an_image(tmp_path / "notes.jpg"))
    expect(page.locator("#food-notice")).to_contain_text("not a usable image")
    expect(page.get_by_text("is not an image that can be read")).to_be_visible()  # the toast says why
    expect(page.locator("#food-photo img")).to_have_count(0)  # cleared: no broken-image icon
    page.screenshot(path=tmp_path / "not_an_image.png", full_page=True)


def test_model_tab_loads_a_folder_and_recovers_from_a_failed_load(page, served, tmp_path):
    from playwright.sync_api import expect

    _, _, loadable = served
    open_tab(page, "Model")
    expect(page.locator("#model-description")).to_contain_text("classification into 3 classes")
    page.locator("#model-ref textarea").fill(str(loadable))
    page.get_by_role("button", name="Load", exact=True).click()
    expect(page.locator("#model-description")).to_contain_text("regression: bone age in months")
    expect(page.locator("#model-table")).to_contain_text("TimmWrapperForImageClassification")

    page.locator("#model-ref textarea").fill("someone/not-cached-model")
    page.get_by_role("button", name="Load", exact=True).click()
    expect(page.get_by_text("the hub cannot be reached from it")).to_be_visible()  # the toast
    # The loaded model's summary stays, readable, with no "Error" badge over it.
    expect(page.locator("#model-description")).to_contain_text("regression: bone age in months")
    expect(page.locator("#model-table")).to_contain_text("TimmWrapperForImageClassification")
    expect(page.locator("#model-description").get_by_text("Error", exact=True)).to_have_count(0)
    expect(page.locator("#model-table").get_by_text("Error", exact=True)).to_have_count(0)
    page.screenshot(path=tmp_path / "model_failed_load.png", full_page=True)


def test_what_the_network_sees_visualises_a_class_and_attacks_a_photo(page, served, tmp_path):
    from playwright.sync_api import expect

    _, models, _ = served
    photo = cat_photo(tmp_path / "cat.png")
    open_tab(page, "What the network sees")
    page.get_by_role("button", name="Visualise the class").click()
    expect(page.locator("#dream-caption")).to_contain_text("Apple")  # the first class, by default
    expect(page.locator("#dream-caption")).to_contain_text("probability")
    expect(page.locator("#dream-strip img")).to_be_visible()

    result = attack(models.get("food"), load_image(photo), budget=ATTACK_BUDGET)  # what the tab must report
    page.locator("#adversarial-photo input[type=file]").set_input_files(photo)
    page.locator("#adversarial-budget input[type=number]").fill(str(ATTACK_BUDGET))
    page.locator("#adversarial-budget input[type=number]").press("Enter")
    page.get_by_role("button", name="Attack").click()
    caption = page.locator("#adversarial-caption")
    expect(caption).to_contain_text(
        f"{human_label(result.original_label)} ({result.original_probability:.1%}) -> "
        f"{human_label(result.adversarial_label)} ({result.adversarial_probability:.1%})"
    )
    expect(caption).to_contain_text("It worked" if result.success else "did not work")
    # The file itself in the link, which names no server folder, and its size said where it is offered.
    link = page.locator("#adversarial-png a")
    expect(link).to_have_attribute("href", re.compile(r"^data:image/png;base64,"))
    expect(link).to_have_attribute("download", "adversarial.png")
    expect(page.locator("#adversarial-png")).to_contain_text(f"({result.upload.width}x{result.upload.height} px")
    page.screenshot(path=tmp_path / "network_sees.png", full_page=True)


def test_the_batch_table_puts_the_answers_first_and_names_a_zips_members(page, served, tmp_path):
    """The file, the answers as the Food tab writes them, the error last; a zip member is named as in the zip."""
    from playwright.sync_api import expect

    _, models, _ = served
    photo = cat_photo(tmp_path / "cat.png")
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(photo, "cat.png")
        zipped.writestr("notes.jpg", "plain text, not an image")  # unpacked under a temporary name
    open_tab(page, "Batch")
    page.locator("#batch-files input[type=file]").set_input_files(archive)
    # Gradio's file list shows the stem and the extension in elements of their own, which some layouts space apart
    expect(page.locator("#batch-files")).to_contain_text(re.compile(r"photos\s*\.zip"))
    page.get_by_role("button", name="Predict all").click()
    table = page.locator("#batch-table")
    expect(table).to_contain_text("notes.jpg is not an image that can be read")

    headers = [text.strip() for text in table.locator("thead th").all_inner_texts() if text.strip()]
    assert headers == ["file", "top 1", "top 2", "top 3", "error"]  # the tiny model knows 3 classes
    # Gradio's table draws its data rows as grid cells (its <tbody> rows are hidden, for measuring widths).
    cells = [row.locator("[role=gridcell]").all_inner_texts() for row in table.locator("[role=row]").all()]
    rows = [[cell.strip() for cell in row] for row in cells if row]
    best, probability = next(iter(top_k(models.get("food"), load_image(photo)).items()))
    assert rows[0][:2] == ["cat.png", f"{human_label(best)} {probability:.0%}"] and rows[0][-1] == ""
    assert rows[1][0] == "notes.jpg" and rows[1][-1].startswith("notes.jpg is not an image")
    page.screenshot(path=tmp_path / "batch.png", full_page=True)
