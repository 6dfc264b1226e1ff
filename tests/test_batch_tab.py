"""The Batch tab's /batch_predict: many images or one zip in, the rows of demos.predict and their CSV out."""

from __future__ import annotations

import csv
import zipfile

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from demos.explaining.summary import human_label
from demos.serving.images import load_image
from demos.serving.inference import predicted_logits, top_k
from demos.tabs import batch
from tests.serving import serving
from tests.test_predict import photo_folder


@pytest.fixture(scope="module")
def served(tiny_checkpoints):
    with serving(tiny_checkpoints) as app:
        yield Client(app.url, verbose=False), app.models, app.demo


def csv_rows(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_uploaded_images_give_a_table_and_a_csv_with_the_broken_files_error(served, tmp_path):
    client, models, _ = served
    folder = photo_folder(tmp_path / "photos")
    files = [folder / "a.png", folder / "b.jpg", folder / "broken.jpg"]
    table, csv_path = client.predict([handle_file(f) for f in files], "food", 3, api_name="/batch_predict")

    rows = csv_rows(csv_path)
    assert [row["file"] for row in rows] == ["a.png", "b.jpg", "broken.jpg"]
    assert "broken.jpg" in rows[2]["error"] and rows[2]["label_1"] == ""
    expected = top_k(models.get("food"), load_image(files[0]), k=3)
    assert [rows[0][f"label_{i}"] for i in (1, 2, 3)] == list(expected)  # the CSV: the model's own labels
    assert float(rows[0]["confidence_1"]) == pytest.approx(next(iter(expected.values())), abs=1e-6)
    # The table: the file, the answers as the Food tab writes them, the error last.
    assert table["headers"] == ["file", "top 1", "top 2", "top 3", "error"] and len(table["data"]) == 3
    assert table["data"][0][1:4] == [f"{human_label(label)} {p:.0%}" for label, p in expected.items()]
    assert table["data"][2][1:] == ["", "", "", rows[2]["error"]]


def test_a_zip_is_unpacked_by_member_and_a_regressor_gives_values(served, tmp_path):
    """Each member's row holds the regressor's own output for that image (its single-image prediction), in months."""
    client, models, _ = served
    folder = photo_folder(tmp_path / "photos")
    archive = tmp_path / "xrays.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(folder / "a.png", "hands/a.png")
        zipped.write(folder / "more" / "c.png", "../c.png")  # a hostile name stays a name, never a path
        zipped.writestr("readme.txt", "not an image: skipped")
    members = [folder / "a.png", folder / "more" / "c.png"]
    table, csv_path = client.predict([handle_file(archive)], "boneage", 5, api_name="/batch_predict")
    rows = csv_rows(csv_path)
    assert [row["file"] for row in rows] == ["hands/a.png", "../c.png"]
    assert [row["unit"] for row in rows] == ["months", "months"]
    expected = [predicted_logits(models.get("boneage"), load_image(path))[0].item() for path in members]
    assert [float(row["value"]) for row in rows] == pytest.approx(expected, abs=1e-4)  # the CSV rounds to 4 places
    assert expected[0] != pytest.approx(expected[1], abs=1e-3), "two different images: a swapped row would show"
    assert not (tmp_path / "c.png").exists()
    assert table["headers"] == ["file", "value (months)", "error"]
    assert [row[1] for row in table["data"]] == [f"{value:.1f}" for value in expected]


def test_a_zip_members_error_names_the_member(served, tmp_path):
    """Not the temporary name it was unpacked under."""
    client, _, _ = served
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for index in range(5):  # notes.jpg is unpacked as 4.jpg
            zipped.writestr(f"{index}.png" if index < 4 else "notes.jpg", b"plain text, not an image")
    table, csv_path = client.predict([handle_file(archive)], "food", 1, api_name="/batch_predict")
    (error,) = [row["error"] for row in csv_rows(csv_path) if row["file"] == "notes.jpg"]
    assert error.startswith("notes.jpg is not an image") and "4.jpg" not in error
    assert table["data"][-1] == ["notes.jpg", "", error]


def test_the_count_cap_and_mixed_uploads_are_refused_clearly(served, tmp_path, monkeypatch):
    client, _, _ = served
    folder = photo_folder(tmp_path / "photos")
    monkeypatch.setattr(batch, "MAX_IMAGES", 2)
    with pytest.raises(AppError, match="3 images is more than the 2"):
        client.predict([handle_file(folder / n) for n in ("a.png", "b.jpg", "broken.jpg")], "food", 5,
                       api_name="/batch_predict")  # fmt: skip
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(folder / "a.png", "a.png")
    with pytest.raises(AppError, match="either images or one zip"):
        client.predict([handle_file(archive), handle_file(folder / "a.png")], "food", 5, api_name="/batch_predict")


def test_batch_runs_in_its_own_concurrency_group(served):
    _, _, demo = served
    (event,) = [e for e in demo.fns.values() if e.api_name == "batch_predict"]
    assert event.concurrency_id == "batch" and event.concurrency_limit == 1
