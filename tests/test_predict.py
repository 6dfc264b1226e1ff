"""python -m demos.predict: one CSV row per image, the same answers as the app's, errors in their rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demos.predict import main
from demos.serving import inference
from demos.serving.images import load_image
from demos.serving.inference import regress, top_k
from hub import load_checkpoint


def photo_folder(root: Path) -> Path:
    """Three made-up photos (one in a subfolder), a broken 'JPEG' and a text file that is not an image."""
    rng = np.random.default_rng(3)
    (root / "more").mkdir(parents=True)
    for name in ("a.png", "b.jpg", "more/c.png"):
        Image.fromarray(rng.integers(0, 255, size=(30, 40, 3), dtype=np.uint8)).save(root / name)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "notes.txt").write_text("not an image, not listed")
    return root


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_a_folder_with_a_broken_file_gives_every_row_and_the_error(tiny_checkpoints, tmp_path, capsys):
    folder = photo_folder(tmp_path / "photos")
    ref = str(tiny_checkpoints[("vit", "classification")])
    out = tmp_path / "predictions.csv"
    assert main([ref, str(folder), "--out", str(out), "--top-k", "2", "--batch-size", "2"]) == 0

    rows = read_rows(out)
    assert list(rows[0]) == ["file", "label_1", "confidence_1", "label_2", "confidence_2", "error"]
    assert sorted(Path(row["file"]).name for row in rows) == ["a.png", "b.jpg", "broken.jpg", "c.png"]
    (broken,) = [row for row in rows if row["file"].endswith("broken.jpg")]
    assert "broken.jpg" in broken["error"] and broken["label_1"] == ""
    checkpoint = load_checkpoint(ref)
    for row in rows:
        if row is broken:
            continue
        expected = top_k(checkpoint, load_image(row["file"]), k=2)  # the app's single-image path
        assert row["error"] == "" and [row["label_1"], row["label_2"]] == list(expected)
        assert float(row["confidence_1"]) == pytest.approx(next(iter(expected.values())), abs=1e-4)
    assert "1 unreadable" in capsys.readouterr().out


def test_regression_rows_give_the_value_and_unit_and_globs_work(tiny_checkpoints, tmp_path):
    folder = photo_folder(tmp_path / "photos")
    ref = str(tiny_checkpoints[("resnet", "regression")])
    out = tmp_path / "ages.csv"
    assert main([ref, str(folder / "*.png"), str(folder / "more" / "c.png"), "--out", str(out)]) == 0
    rows = read_rows(out)
    assert [Path(row["file"]).name for row in rows] == ["a.png", "c.png"]
    checkpoint = load_checkpoint(ref)
    for row in rows:
        assert row["unit"] == "months" and row["error"] == ""
        assert float(row["value"]) == pytest.approx(regress(checkpoint, load_image(row["file"])), abs=1e-3)


def test_the_prediction_precision_option_is_what_the_model_computes_in(tiny_checkpoints, tmp_path, monkeypatch):
    served, serve = [], inference.serve

    def recording_serve(checkpoint, precision=inference.Precision.FP32, **options):
        served.append(precision)
        return serve(checkpoint, precision, **options)

    monkeypatch.setattr(inference, "serve", recording_serve)
    folder = photo_folder(tmp_path / "photos")
    ref = str(tiny_checkpoints[("vit", "regression")])
    assert main([ref, str(folder), "--out", str(tmp_path / "a.csv"), "--prediction-precision", "int8"]) == 0
    assert served == ["int8"]  # tests/test_serving_precision.py: batches compute in the precision served


def test_a_path_that_finds_nothing_stops_before_loading(tmp_path, capsys):
    assert main(["no-such-model", str(tmp_path / "nothing-*.png"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "nothing-*.png" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
