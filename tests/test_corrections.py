"""Users' corrections: saved as an imagefolder that datasets and `train` read as it is, by many users at once."""

from __future__ import annotations

import csv
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pytest
import torch
from datasets import ClassLabel, load_dataset
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification

from demos import app as demo_app
from demos.serving.corrections import BONE_AGE, FOOD, CorrectionError, CorrectionStore
from tests.serving import serving
from tests.test_train import last_training_evaluation, read_json, train_argv
from tests.tiny_checkpoints import LABELS
from train.__main__ import main as train

CLIENTS = 8


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, size=(24, 32, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def served(tiny_checkpoints, tmp_path_factory):
    """(url, corrections folder) of an app collecting corrections, with a ViT food classifier and a bone-age ResNet."""
    folder = tmp_path_factory.mktemp("corrections")
    with serving(tiny_checkpoints, corrections_dir=folder) as app:
        yield app.url, folder


def metadata_rows(folder) -> list[dict]:
    with (folder / BONE_AGE / "metadata.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def test_eight_clients_correcting_at_once_lose_none(served, tmp_path):
    url, folder = served
    uploads = []
    for i in range(CLIENTS):
        picture(i).save(tmp_path / f"{i}.png")
        uploads.append(tmp_path / f"{i}.png")
    # Each client from an address of its own (as a share link's tunnel names visitors): one address may hold
    # only demos.guards.queue_limits.MAX_JOBS_PER_CLIENT jobs at once.
    clients = [Client(url, verbose=False, headers={"X-Forwarded-For": f"10.0.7.{i}"}) for i in range(CLIENTS)]
    start = threading.Barrier(CLIENTS)

    def correct(i: int) -> tuple[str, str]:
        start.wait()  # all eight send together
        food = clients[i].predict(handle_file(uploads[i]), LABELS[i % 3], api_name="/correct_food")
        sex = ["female", "male"][i % 2]
        age = clients[i].predict(handle_file(uploads[i]), 10.0 * (i + 1), sex, api_name="/correct_bone_age")
        return food, age

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(correct, range(CLIENTS)))

    assert all(food.startswith("Saved") and age.startswith("Saved") for food, age in answers)
    saved = sorted((folder / FOOD).rglob("*.png"))
    assert len(saved) == CLIENTS and {p.parent.name for p in saved} == set(LABELS)
    rows = metadata_rows(folder)
    assert len(rows) == CLIENTS and list(rows[0]) == ["file_name", "bone_age", "male"]
    assert sorted(float(row["bone_age"]) for row in rows) == [10.0 * (i + 1) for i in range(CLIENTS)]
    assert {row["male"] for row in rows} == {"true", "false"}
    assert all((folder / BONE_AGE / row["file_name"]).is_file() for row in rows)
    # The saved image is the decoded upload itself.
    assert any(np.array_equal(np.asarray(Image.open(p)), np.asarray(picture(0))) for p in saved)


def test_unknown_label_and_bad_months_are_refused_with_a_message(served, tmp_path):
    url, folder = served
    picture(0).save(tmp_path / "x.png")
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="'durian' is not a class the model knows: choose one of apple, banana, cherry"):
        client.predict(handle_file(tmp_path / "x.png"), "durian", api_name="/correct_food")
    with pytest.raises(AppError, match="between 0 and 240 months"):
        client.predict(handle_file(tmp_path / "x.png"), -3, "male", api_name="/correct_bone_age")
    with pytest.raises(AppError, match="Choose the sex"):
        client.predict(handle_file(tmp_path / "x.png"), 30, None, api_name="/correct_bone_age")
    assert not (folder / FOOD / "durian").exists()


def test_the_folders_load_with_datasets_and_train_for_one_step(tiny_checkpoints, tmp_path):
    store = CorrectionStore(tmp_path / "corrections")
    for i in range(6):
        store.save_label(picture(i), LABELS[i % 3], LABELS)
        store.save_values(picture(10 + i), {"bone_age": 12.0 * (i + 1), "male": ["false", "true"][i % 2]})

    food = load_dataset("imagefolder", data_dir=str(tmp_path / "corrections" / FOOD))
    assert list(food) == ["train"] and food["train"].num_rows == 6
    assert food["train"].features["label"] == ClassLabel(names=list(LABELS))
    ages = load_dataset("imagefolder", data_dir=str(tmp_path / "corrections" / BONE_AGE))
    assert ages["train"].num_rows == 6 and sorted(ages["train"]["bone_age"]) == [12.0 * (i + 1) for i in range(6)]
    assert set(ages["train"]["male"]) == {True, False}

    # Six images, a batch of six, one epoch: one optimisation step ("train" is the folders' only split).
    # fp32: the Trainer's own evaluation, compared below with the saved checkpoint's, computes as it does.
    one_step = partial(train_argv, mode="full", epochs=1, batch_size=6, eval_split="train", precision="fp32")
    food_base, age_base = tiny_checkpoints[("vit", "classification")], tiny_checkpoints[("resnet", "regression")]
    run = tmp_path / "food-run"
    assert train(one_step(model=food_base, dataset=tmp_path / "corrections" / FOOD, output_dir=run)) == 0
    assert read_json(run / "checkpoint-1" / "trainer_state.json")["global_step"] == 1
    trained = AutoModelForImageClassification.from_pretrained(run)
    assert trained.config.id2label == dict(enumerate(LABELS)), "the corrected classes, in the folders' order"
    base, after = load_file(food_base / "model.safetensors"), load_file(run / "model.safetensors")
    assert not torch.equal(base["classifier.weight"], after["classifier.weight"]), "the step trained the head"
    results = read_json(run / "eval_results.json")
    assert results["num_examples"] == 6 and set(results["metrics"]["per_class_accuracy"]) == set(LABELS)

    run = tmp_path / "age-run"
    argv = one_step(
        model=age_base,
        dataset=tmp_path / "corrections" / BONE_AGE,
        output_dir=run,
        target_column="bone_age",
        condition_column="male",
    )
    assert train(argv) == 0
    assert read_json(run / "checkpoint-1" / "trainer_state.json")["global_step"] == 1
    config = AutoModelForImageClassification.from_pretrained(run).config
    assert (config.num_labels, config.condition_column, config.condition_outputs) == (
        2,
        "male",
        {"false": 0, "true": 1},
    )
    results = read_json(run / "eval_results.json")
    assert results["num_examples"] == 6
    # The saved checkpoint (normalisation folded into its head) predicts what the trained head did.
    assert results["metrics"]["mae"] == pytest.approx(last_training_evaluation(run)["eval_mae"], rel=1e-4)


def test_the_store_is_atomic_under_threads_and_capped(tmp_path):
    store = CorrectionStore(tmp_path, max_images=40)
    start = threading.Barrier(CLIENTS)

    def save(i: int) -> None:
        start.wait()
        for j in range(4):
            store.save_values(picture(i), {"months": float(i * 10 + j), "male": "true"})

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(save, range(CLIENTS)))
    assert len(metadata_rows(tmp_path)) == 4 * CLIENTS == store.count()
    assert not list((tmp_path / ".staging").iterdir()), "no staged file is left behind"

    for i in range(8):
        store.save_label(picture(i), "apple", LABELS)
    with pytest.raises(CorrectionError, match="full .*40 images"):
        store.save_label(picture(0), "apple", LABELS)
    with pytest.raises(CorrectionError, match="columns file_name, months, male"):
        CorrectionStore(tmp_path, max_images=100).save_values(picture(0), {"boneage": 1.0, "male": "true"})


def test_no_corrections_folder_means_no_controls_and_no_endpoints(tiny_checkpoints):
    models = demo_app.load_models(
        str(tiny_checkpoints[("vit", "classification")]), str(tiny_checkpoints[("resnet", "regression")])
    )
    demo = demo_app.build_app(models=models)
    names = {event.api_name for event in demo.fns.values()}
    assert "classify" in names and not {"correct_food", "correct_bone_age"} & names
