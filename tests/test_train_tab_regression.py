"""A regression through the Train tab, end to end (issue 28): a zip of generated images with metadata.csv, its
numeric column picked as the target, a tiny head-only run, and the result's MAE and predicted-vs-true plot."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from demos.tabs import train
from demos.training.datasets import metadata_columns
from tests.test_train_tab import HEAD_ONLY, OUTPUTS, served  # noqa: F401
from tests.test_train_tab_jobs import tiny_base  # noqa: F401


@pytest.fixture(scope="module")
def ages_zip(tmp_path_factory) -> Path:
    """10 grey 16 px squares whose brightness grows with the age, in a zip with metadata.csv (file_name, age, site)."""
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["file_name", "age", "site"])
    archive = tmp_path_factory.mktemp("ages") / "ages.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for i in range(10):
            image = io.BytesIO()
            Image.fromarray(np.full((16, 16, 3), 25 * i, np.uint8)).save(image, "PNG")
            zipped.writestr(f"ages/{i}.png", image.getvalue())
            writer.writerow([f"{i}.png", 12 * i, "north" if i % 2 else "south"])
        zipped.writestr("ages/metadata.csv", table.getvalue())
    return archive


def regression_inputs(archive: Path, base: str, target: str) -> list:
    """/train's (and /check_training_data's) inputs for a zip with metadata.csv: a head-only run of 1 epoch."""
    rows = [""] * train.MAX_CLASSES + [None] * train.MAX_CLASSES  # names, then files, of the per-class rows
    return [
        train.SOURCES[2], None, handle_file(archive), target, train.NO_CONDITION, base, HEAD_ONLY, 1, 1, 1e-3, 3e-3,
        train.OWN_SIZE, True, *rows,
    ]  # fmt: skip


def test_a_regression_from_a_zip_trains_and_shows_its_mae_and_predicted_vs_true_plot(served, ages_zip):  # noqa: F811
    demo, settings = served
    assert metadata_columns(ages_zip) == ["file_name", "age", "site"]  # what the tab's pickers offer
    client = Client(demo.local_url, verbose=False)
    inputs = regression_inputs(ages_zip, settings.base_models[0], "age")
    summary = client.predict(*inputs, api_name="/check_training_data")
    assert "target `age`: 10 images** (train 8, validation 2)" in summary and "stretch of the target's range" in summary

    result = dict(zip(OUTPUTS, client.predict(*inputs, api_name="/train"), strict=True))
    assert result["status"].startswith("**Done**"), result
    assert "--dataset data" in result["command"] and "--target-column age" in result["command"]
    assert "**MAE**" in result["metrics"] and "**R²**" in result["metrics"]
    assert Path(result["plot"]).name == "predicted_vs_true.png" and Path(result["plot"]).stat().st_size > 0
    assert result["per_class"]["data"] == []  # no classes to score
    with zipfile.ZipFile(result["download"]) as zipped:
        assert any(name.endswith("/predicted_vs_true.png") for name in zipped.namelist())
