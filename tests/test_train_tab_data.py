"""The Train tab's data intake (demos/training/datasets.py): junk skipped and counted, hostile zips refused, columns
named, validation drawn stratified, caps kept."""

from __future__ import annotations

import csv
import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demos.training import datasets
from demos.training.datasets import IntakeError, IntakeLimits
from hub.contract import TaskKind


def png(value: int, size: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_junk_is_skipped_and_counted_and_a_wrapping_folder_is_taken_off(tmp_path):
    members = {f"food/train/{c}/{i}.png": png(40 * k) for k, c in enumerate(("apple", "pear"), 1) for i in range(10)}
    members |= {
        "__MACOSX/food/train/apple/._0.png": b"resource fork",
        "food/train/apple/.DS_Store": b"finder",
        "food/train/.ipynb_checkpoints/x-checkpoint.png": png(1),
        "food/train/apple/notes.txt": b"not an image",
        "food/train/pear/broken.jpg": b"not a jpeg",
        "food/train/stray.png": png(9),
    }
    prepared = datasets.from_imagefolder_zip(make_zip(tmp_path / "d.zip", members), tmp_path / "out")

    assert prepared.task is TaskKind.CLASSIFICATION
    assert prepared.skipped == {
        datasets.MACOS: 2, datasets.HIDDEN: 1, datasets.NOT_IMAGES: 1, datasets.UNREADABLE: 1, datasets.NO_CLASS: 1,
    }  # fmt: skip
    assert "Skipped 6 files" in prepared.summary()
    # Stratified: each class gives 20% to validation, the rest trains.
    assert prepared.counts == {"train": {"apple": 8, "pear": 8}, "validation": {"apple": 2, "pear": 2}}
    assert prepared.made_validation and "4 of the 20 images" in prepared.summary()
    assert len(files_in(tmp_path / "out" / "validation" / "apple")) == 2
    assert not prepared.warnings


def test_a_given_validation_split_is_kept_and_its_unknown_classes_refused(tmp_path):
    members = {f"train/{c}/{i}.png": png(60 * k) for k, c in enumerate("ab", 1) for i in range(6)}
    members |= {f"validation/{c}/{i}.png": png(60 * k) for k, c in enumerate("ab", 1) for i in range(2)}
    prepared = datasets.from_imagefolder_zip(make_zip(tmp_path / "d.zip", members), tmp_path / "out")
    assert not prepared.made_validation
    assert prepared.counts == {"train": {"a": 6, "b": 6}, "validation": {"a": 2, "b": 2}}

    members["validation/c/0.png"] = png(5)
    with pytest.raises(IntakeError, match="validation/ has classes that train/ lacks: c"):
        datasets.from_imagefolder_zip(make_zip(tmp_path / "e.zip", members), tmp_path / "out")


@pytest.mark.parametrize("name", ["../evil.png", "/etc/evil.png", "train/../../evil.png", "C:/evil.png"])
def test_zip_slip_is_refused_and_nothing_is_written_outside(tmp_path, name):
    members = {f"train/a/{i}.png": png(10) for i in range(3)} | {f"train/b/{i}.png": png(90) for i in range(3)}
    archive = make_zip(tmp_path / "d.zip", members | {name: png(1)})
    with pytest.raises(IntakeError, match="zip-slip"):
        datasets.from_imagefolder_zip(archive, tmp_path / "out" / "data")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.png").exists()


def test_a_link_in_the_zip_is_refused(tmp_path):
    archive = make_zip(tmp_path / "d.zip", {f"train/{c}/0.png": png(9) for c in "ab"})
    with zipfile.ZipFile(archive, "a") as zipped:
        link = zipfile.ZipInfo("train/a/passwd.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zipped.writestr(link, "/etc/passwd")
    with pytest.raises(IntakeError, match="holds a link"):
        datasets.from_imagefolder_zip(archive, tmp_path / "out")


def test_a_zip_bomb_and_an_oversized_zip_are_refused_before_unpacking(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("train/a/0.png", b"\0" * 50_000_000)  # 50 MB of zeros pack into ~50 kB
    with pytest.raises(IntakeError, match="zip bomb"):
        datasets.from_imagefolder_zip(bomb, tmp_path / "out")
    with pytest.raises(IntakeError, match="at most 10 MB"):
        datasets.from_imagefolder_zip(bomb, tmp_path / "out", IntakeLimits(max_unpacked_mb=10))
    assert not (tmp_path / "out").exists()
    (tmp_path / "photo.zip").write_bytes(png(1))
    with pytest.raises(IntakeError, match="not a zip"):
        datasets.from_imagefolder_zip(tmp_path / "photo.zip", tmp_path / "out")


def test_caps_on_image_count_and_megapixels_are_kept(tmp_path):
    members = {f"train/{c}/{i}.png": png(60 * k, size=100) for k, c in enumerate("ab", 1) for i in range(5)}
    archive = make_zip(tmp_path / "d.zip", members)
    with pytest.raises(IntakeError, match="10 images; this server trains on at most 8"):
        datasets.from_imagefolder_zip(archive, tmp_path / "out", IntakeLimits(max_images=8))
    with pytest.raises(IntakeError, match="more than 0 megapixels"):  # ten 100x100 images: 0.1 megapixels
        datasets.from_imagefolder_zip(archive, tmp_path / "out", IntakeLimits(max_megapixels=0.05))
    assert datasets.IntakeLimits() == IntakeLimits(max_images=2000, max_megapixels=1000.0, max_unpacked_mb=2048)


def test_per_class_uploads_warn_about_few_images_and_imbalance(tmp_path):
    sources = tmp_path / "uploads"
    sources.mkdir()
    for i in range(16):
        (sources / f"{i}.png").write_bytes(png(i * 10))
    (sources / "notes.txt").write_text("skipped")
    files = sorted(sources.glob("*.png"))
    prepared = datasets.from_class_uploads(
        [("mug", files[:12]), ("pen ", [*files[12:], sources / "notes.txt"])], tmp_path / "out"
    )
    assert prepared.counts == {"train": {"mug": 10, "pen": 3}, "validation": {"mug": 2, "pen": 1}}
    assert prepared.skipped == {datasets.NOT_IMAGES: 1}
    assert any("'pen' has only 3 training images" in w for w in prepared.warnings)
    assert any("unbalanced" in w and "'mug' has 10" in w for w in prepared.warnings)
    with pytest.raises(IntakeError, match="same name: mug"):
        datasets.from_class_uploads([("mug", files[:2]), ("mug", files[2:4])], tmp_path / "out")
    with pytest.raises(IntakeError, match="at least 2 classes"):
        datasets.from_class_uploads([("mug", files)], tmp_path / "out")
    with pytest.raises(IntakeError, match="cannot name a class"):
        datasets.from_class_uploads([("../x", files[:2]), ("y", files[2:4])], tmp_path / "out")


def regression_zip(path: Path, count: int = 20, *, header: str = "file_name,age,sex,site") -> Path:
    rows = [header] + [f"{i}.png,{10 * i},{'m' if i % 2 else 'f'},x" for i in range(count)]
    members = {f"xrays/{i}.png": png(i * 10) for i in range(count)}
    members |= {"xrays/metadata.csv": "\n".join(rows).encode(), "xrays/extra.png": png(3)}
    return make_zip(path, members)


def test_regression_zip_columns_are_offered_and_a_missing_one_is_named(tmp_path):
    archive = regression_zip(tmp_path / "r.zip")
    assert datasets.metadata_columns(archive) == ["file_name", "age", "sex", "site"]
    with pytest.raises(IntakeError, match=r"no column 'boneage'; its columns are: file_name, age, sex, site"):
        datasets.from_regression_zip(archive, tmp_path / "out", target_column="boneage")
    with pytest.raises(IntakeError, match="not a number"):
        datasets.from_regression_zip(archive, tmp_path / "out", target_column="sex")
    with pytest.raises(IntakeError, match="no metadata.csv"):
        datasets.metadata_columns(make_zip(tmp_path / "n.zip", {"a/0.png": png(1)}))


def test_regression_split_spreads_over_the_target_per_condition_and_keeps_the_column_names(tmp_path):
    archive = regression_zip(tmp_path / "r.zip")
    prepared = datasets.from_regression_zip(archive, tmp_path / "out", target_column="age", condition_column="sex")
    assert prepared.task is TaskKind.REGRESSION
    assert prepared.counts == {"train": {"f": 8, "m": 8}, "validation": {"f": 2, "m": 2}}
    assert prepared.skipped == {datasets.UNLISTED: 1}
    with open(tmp_path / "out" / "validation" / "metadata.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["file_name", "age", "sex"]
    # every 5th by age within each sex, from the middle of each stretch: neither end of the range alone
    assert sorted(int(row["age"]) for row in rows) == [40, 50, 140, 150]
    assert all((tmp_path / "out" / "validation" / row["file_name"]).is_file() for row in rows)
    again = datasets.from_regression_zip(archive, tmp_path / "again", target_column="age", condition_column="sex")
    assert again.fingerprint == prepared.fingerprint  # the same data: runs on it are compared
