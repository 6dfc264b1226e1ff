"""The atomic image cache (demos/serving/gradio_cache.py): applied by build_app on the gradio versions it fits."""

import gradio as gr
import pytest
from gradio import processing_utils
from PIL import Image

from demos.app import build_app, load_models
from demos.serving import gradio_cache

# Read while pytest collects, after demos.app is imported (above) and before any test builds an app.
GRADIOS_OWN_SAVER = processing_utils.save_pil_to_cache


@pytest.fixture
def gradios_own_saver(monkeypatch):
    """gradio's save_pil_to_cache in place for the test, whatever an earlier test applied; restored after it."""
    monkeypatch.setattr(processing_utils, "save_pil_to_cache", GRADIOS_OWN_SAVER)
    return GRADIOS_OWN_SAVER


def test_it_is_applied_by_build_app_not_at_import(gradios_own_saver, tiny_checkpoints):
    assert GRADIOS_OWN_SAVER is not gradio_cache.save_pil_to_cache_atomically, "importing demos.app patched gradio"
    folder = str(tiny_checkpoints[("resnet", "classification")])
    build_app(models=load_models(folder, folder))
    assert processing_utils.save_pil_to_cache is gradio_cache.save_pil_to_cache_atomically


def test_it_writes_what_gradio_would_at_the_same_path_and_leaves_no_staging_file(gradios_own_saver, tmp_path):
    image = Image.new("RGB", (8, 8), (200, 30, 40))
    ours = gradio_cache.save_pil_to_cache_atomically(image, str(tmp_path / "ours"), format="png")
    theirs = gradios_own_saver(image, str(tmp_path / "theirs"), format="png")
    assert ours == theirs.replace(str(tmp_path / "theirs"), str(tmp_path / "ours"))
    assert open(ours, "rb").read() == open(theirs, "rb").read()
    assert [path.name for path in (tmp_path / "ours").rglob("*") if path.is_file()] == ["image.png"]


def test_it_is_applied_once_on_the_versions_it_was_written_for(gradios_own_saver):
    assert gr.__version__ in gradio_cache.PATCHED_GRADIO, "requirements.txt pins the gradio it was written for"
    assert gradio_cache.apply_atomic_image_cache() and gradio_cache.apply_atomic_image_cache()
    assert processing_utils.save_pil_to_cache is gradio_cache.save_pil_to_cache_atomically


def test_another_gradio_keeps_its_own_saver_and_is_told_so(gradios_own_saver):
    with pytest.warns(UserWarning, match="gradio 6.32.0: the atomic image cache .* is not applied"):
        assert not gradio_cache.apply_atomic_image_cache("6.32.0")
    assert processing_utils.save_pil_to_cache is gradios_own_saver
