"""The Train tab in headless Chromium, as a person uses it: a zip of three classes of generated pictures, a head-only
run followed to its curves and metrics, the model tried in the tab and offered in the Batch tab, and the downloaded
checkpoint loading with plain `from_pretrained` and predicting as the tab does.

Needs /usr/bin/chromium and playwright, as tests/test_browser_demo.py does; skipped, saying so, without them.
"""

from __future__ import annotations

import zipfile

import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

from demos.models import load_model
from demos.serving.images import load_image
from demos.serving.inference import top_k
from demos.training.jobs import JobRunner
from demos.training.settings import TrainingSettings
from tests.serving import serving
from tests.test_browser_demo import browser, open_tab, page, pytestmark  # noqa: F401  (the browser fixtures, skips)
from tests.test_train_tab import photos  # noqa: F401  (the zip of three classes of colour squares)
from tests.test_train_tab_jobs import TINY, tiny_base  # noqa: F401

RUN_TIMEOUT_MS = 240_000  # a tiny run, on a shared 2-core machine that may be busy


@pytest.fixture(scope="module")
def served(tiny_checkpoints, tiny_base, tmp_path_factory):  # noqa: F811  (tiny_base is the imported fixture)
    """(url, models, folder) of the app with the Train tab on, training the tiny timm classifier."""
    training = TrainingSettings(
        runner=JobRunner(tmp_path_factory.mktemp("jobs")), base_models=(str(tiny_base),), extra_options=TINY
    )
    with serving(tiny_checkpoints, training=training) as app:
        yield app.url, app.models, None


def test_a_zip_trains_a_head_whose_model_is_tried_offered_and_downloaded(page, served, photos, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    archive, drawn = photos
    open_tab(page, "Train")
    page.get_by_label("a zip of class folders").check()
    page.locator("#train-class-zip input[type=file]").set_input_files(archive)
    page.get_by_label("train only a new head (fast)").check()
    page.get_by_role("button", name="Check the data").click()
    expect(page.locator("#train-data-summary")).to_contain_text("3 classes: 15 images")
    page.screenshot(path=tmp_path / "1-data.png", full_page=True)

    page.locator("#train-button").click()
    expect(page.locator("#train-status")).to_contain_text("Done", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#train-metrics")).to_contain_text("accuracy")
    expect(page.locator("#train-loss-plot")).to_contain_text("run 1: train only a new head (fast)")
    page.screenshot(path=tmp_path / "2-done.png", full_page=True)

    with page.expect_download() as download:
        page.locator("#train-download a").first.click()
    download.value.save_as(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as zipped:
        zipped.extractall(tmp_path / "model")
        folder = tmp_path / "model" / zipped.namelist()[0].split("/")[0]
    # Plain transformers, without this project, predicts what the demo's own path predicts with the download
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**processor(images=load_image(drawn["red"][0]), return_tensors="pt")).logits[0]
    plain = dict(zip(model.config.id2label.values(), logits.softmax(-1).tolist(), strict=True))
    scores = top_k(load_model(str(folder)), load_image(drawn["red"][0]), k=3)
    assert scores == pytest.approx({label: plain[label] for label in scores}, abs=1e-5)

    # ... and Try it answers as the download does
    page.locator("#train-try-photo input[type=file]").set_input_files(drawn["red"][0])
    page.locator("#train-try").click()
    best = next(iter(scores))
    expect(page.locator("#train-try-answer")).to_contain_text(best)
    expect(page.locator("#train-try-answer")).to_contain_text(f"{round(scores[best] * 100)}%")
    page.screenshot(path=tmp_path / "3-tried.png", full_page=True)

    open_tab(page, "Batch")  # the session's new model is among the Batch tab's models
    page.locator("#batch-model input").click()
    expect(page.get_by_role("option", name="your run 1: train only a new head (fast)")).to_be_visible()
    page.screenshot(path=tmp_path / "4-batch.png", full_page=True)
