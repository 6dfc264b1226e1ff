"""The Train tab's hub dataset source (issue 28) against the local hub stand-in: tiny imagefolders published with
`transferlab-hub push-dataset`, read by id and checked as a zip is (counts, warnings, the validation split drawn when
there is none), a run of one by `python -m train --dataset <id>`; a regression's columns picked, a missing one named;
offline or with the hub out of reach, a refusal saying to give the images another way; a bad id refused before any
request, a private dataset not read. Generated images only."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import datasets.config
import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from gradio_client import Client
from gradio_client.exceptions import AppError
from huggingface_hub import HfApi, constants
from PIL import Image

from demos.tabs import train
from demos.training.datasets import IntakeError, IntakeLimits
from demos.training.hub_dataset import OUTSIDE, from_hub_dataset
from hub.__main__ import main as hub_cli
from hub.contract import TaskKind
from tests.serving import free_port
from tests.test_hub_push import downloads_in_this_process, stand_in  # noqa: F401
from tests.test_train_tab import CLASSES, HEAD_ONLY, OUTPUTS, served  # noqa: F401
from tests.test_train_tab_jobs import draw_images, tiny_base, wait_for  # noqa: F401

COLOURS, TRAIN_ONLY, AGES = "alice/colours", "alice/colours-train-only", "alice/ages"


@pytest.fixture
def hub(stand_in, tmp_path, monkeypatch):  # noqa: F811
    """The stand-in, reached by this process (the served app runs in it) and by the runs it starts; fresh caches."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    for name, value in (("HF_ENDPOINT", stand_in.url), ("HF_HUB_OFFLINE", "0"), ("HF_HOME", str(tmp_path / "hf"))):
        monkeypatch.setenv(name, value)  # `python -m train`'s process: huggingface_hub reads them at import
    with downloads_in_this_process(stand_in):
        yield stand_in


def publish(folder: Path, dataset_id: str, *, public: bool = True) -> None:
    assert hub_cli(["push-dataset", str(folder), dataset_id, *(["--public"] if public else [])]) is None


def colours(folder: Path, *, splits: tuple[str, ...] = ()) -> Path:
    """Class folders of 5 noisy colour squares each; with `splits`, under train/, one of each moved to each split."""
    drawn = draw_images(folder / "train" if splits else folder, 5, CLASSES)
    for split in splits:
        for name, paths in drawn.items():
            (folder / split / name).mkdir(parents=True)
            moved = paths.pop()
            moved.rename(folder / split / name / moved.name)
    return folder


def ages(folder: Path, count: int = 10) -> Path:
    """Grey squares whose brightness is the age, with metadata.csv: file_name, age, sex."""
    folder.mkdir(parents=True)
    with (folder / "metadata.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["file_name", "age", "sex"])
        for i in range(count):
            Image.fromarray(np.full((16, 16, 3), 20 * i, np.uint8)).save(folder / f"{i}.png")
            writer.writerow([f"{i}.png", 12 * i, ["female", "male"][i % 2]])
    return folder


def hub_inputs(dataset_id: str, base: str, target: str = "", condition: str = "") -> list:
    """/train's (and /check_training_data's) inputs for a hub dataset: a head-only run of 1 epoch."""
    rows = [""] * train.MAX_CLASSES + [None] * train.MAX_CLASSES  # names, then files, of the per-class rows
    return [
        train.SOURCES[3], None, None, None, train.NO_CONDITION, base, HEAD_ONLY, 1, 1, 1e-3, 3e-3, train.OWN_SIZE,
        True, *rows, dataset_id, target, condition,
    ]  # fmt: skip


def test_a_dataset_with_both_splits_is_checked_and_trained_by_its_id(served, hub, tmp_path):  # noqa: F811
    demo, settings = served
    publish(colours(tmp_path / "colours", splits=("validation", "test")), COLOURS)
    client = Client(demo.local_url, verbose=False)
    base = settings.base_models[0]
    summary = client.predict(*hub_inputs(COLOURS, base), api_name="/check_training_data")
    assert "3 classes: 12 images** (train 9, validation 3)" in summary
    assert f"Read from the hub dataset `{COLOURS}`, its train and validation splits: the run reads it by id" in summary
    assert "Not used: its `test` split" in summary and "only 3 training images" in summary
    assert "No validation split was given" not in summary

    running = client.submit(*hub_inputs(COLOURS, base), api_name="/train")
    wait_for(lambda: settings.runner.running is not None, what="the run to start")
    assert settings.runner.running.argv[:6] == ["--model", base, "--dataset", COLOURS, "--output-dir", "run"]
    result = dict(zip(OUTPUTS, running.result(timeout=300), strict=True))
    assert result["status"].startswith("**Done**"), result
    assert result["command"].startswith(f"python -m train --model {base} --dataset {COLOURS} --output-dir run")
    assert "--target-column label" in result["command"]
    assert {row[0] for row in result["per_class"]["data"]} == set(CLASSES) and COLOURS in result["card"]


def test_without_a_validation_split_one_is_drawn_and_the_run_reads_the_checked_copy(hub, tmp_path):
    publish(colours(tmp_path / "colours"), TRAIN_ONLY)
    prepared = from_hub_dataset(TRAIN_ONLY, tmp_path / "data")
    assert prepared.counts == {"train": {name: 4 for name in CLASSES}, "validation": {name: 1 for name in CLASSES}}
    assert prepared.dataset == "data" and prepared.target_column is None
    summary = prepared.summary()
    assert "3 of the 15 images (20% of each class) were set aside" in summary
    assert "The run trains on the checked copy in its job folder (`--dataset data`)" in summary
    # The caps of uploads: the files' weight before any download, then images and megapixels.
    for limits, refusal in (
        (IntakeLimits(max_unpacked_mb=0.001), "MB of files; this server reads at most"),
        (IntakeLimits(max_images=14), "holds 15 images; this server trains on at most 14"),
        (IntakeLimits(max_megapixels=0.005), "more than 0 megapixels in all"),
    ):
        with pytest.raises(IntakeError, match=refusal):
            from_hub_dataset(TRAIN_ONLY, tmp_path / "data", limits=limits)


def test_a_regression_column_is_picked_and_a_missing_one_named(hub, tmp_path):
    publish(ages(tmp_path / "ages"), AGES)
    prepared = from_hub_dataset(AGES, tmp_path / "data", target_column="age", condition_column="sex")
    assert prepared.task is TaskKind.REGRESSION and prepared.images == 10
    assert prepared.counts["validation"] == {"female": 1, "male": 1} and prepared.dataset == "data"
    assert (tmp_path / "data" / "train" / "metadata.csv").read_text().startswith("file_name,age,sex")
    with pytest.raises(IntakeError, match=r"no column 'boneage'; its columns are: image, age, sex"):
        from_hub_dataset(AGES, tmp_path / "data", target_column="boneage")
    with pytest.raises(IntakeError, match=r"no column 'label'; its columns are: image, age, sex"):
        from_hub_dataset(AGES, tmp_path / "data")
    with pytest.raises(IntakeError, match="'sex' .* holds neither classes"):
        from_hub_dataset(AGES, tmp_path / "data", target_column="sex")


def test_bad_ids_are_refused_before_any_request_and_private_datasets_are_not_read(hub, tmp_path):
    publish(colours(tmp_path / "colours"), "alice/private-colours", public=False)
    asked = len(hub.requests)
    for bad in ("colours", "alice/two words", "alice/../colours", "", None, 3):
        with pytest.raises(IntakeError, match="hub dataset"):
            from_hub_dataset(bad, tmp_path / "data")
    assert len(hub.requests) == asked
    with pytest.raises(IntakeError, match="no public dataset 'alice/private-colours'"):
        from_hub_dataset("alice/private-colours", tmp_path / "data")


def test_offline_or_out_of_reach_the_tab_says_to_give_the_images_another_way(served, tmp_path):  # noqa: F811
    demo, settings = served
    client = Client(demo.local_url, verbose=False)
    with pytest.raises(AppError) as offline:  # tests run with HF_HUB_OFFLINE=1
        client.predict(*hub_inputs(COLOURS, settings.base_models[0]), api_name="/check_training_data")
    assert "works offline (HF_HUB_OFFLINE=1): it cannot read a hub dataset" in str(offline.value)
    assert "a zip of class folders" in str(offline.value)
    notes = [block.value for block in demo.blocks.values() if getattr(block, "elem_id", None) == "train-hub-offline"]
    assert notes and "HF_HUB_OFFLINE=1" in notes[0]

    nobody_there = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}")
    with downloads_in_this_process(nobody_there), pytest.raises(IntakeError) as unreachable:
        from_hub_dataset(COLOURS, tmp_path / "data")
    assert "The hub cannot be reached from this server" in str(unreachable.value)
    assert "a zip of class folders" in str(unreachable.value)


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_images_given_as_bytes_are_read_and_a_path_outside_the_dataset_is_left_out(hub, tmp_path):
    """A parquet dataset holds each image's bytes, or names a file: one naming a file of the server's is left out,
    and the run then trains on the copy, whose images the check has seen."""
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["dark", "light"])})
    folder = tmp_path / "parquet"
    for split, count in (("train", 8), ("validation", 2)):
        rows = {
            "image": [{"bytes": png(200 * (i % 2)), "path": None} for i in range(count)],
            "label": [0, 1] * (count // 2),
        }
        if split == "train":
            rows["image"].append({"bytes": None, "path": "/etc/hostname"})
            rows["label"].append(0)
        Dataset.from_dict(rows, features=features).to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet")
    HfApi().create_repo("alice/parquet", repo_type="dataset")
    HfApi().upload_folder(folder_path=folder, repo_id="alice/parquet", repo_type="dataset")

    prepared = from_hub_dataset("alice/parquet", tmp_path / "data")
    assert prepared.counts == {"train": {"dark": 4, "light": 4}, "validation": {"dark": 1, "light": 1}}
    assert prepared.skipped == {OUTSIDE: 1} and prepared.dataset == "data"
    assert "without the files left out" in prepared.summary()
    assert {path.suffix for path in (tmp_path / "data").rglob("*.*")} == {".png"}
