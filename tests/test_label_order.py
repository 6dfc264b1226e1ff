"""Class names stay attached to the right outputs when the order is not alphabetical: a colour classifier trained
here, and the same model with its outputs reordered (red, green, blue), must name a red square "red" everywhere
(plain transformers, train.evaluate, the demo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

from demos.models import load_model
from demos.serving.inference import top_k
from tests.test_train import read_json, train_argv
from tests.tiny_checkpoints import build_tiny_checkpoint
from train import heads
from train.__main__ import main as train
from train.evaluate import main as evaluate

COLOURS = {"red": (210, 40, 40), "green": (40, 190, 40), "blue": (40, 40, 210)}
NOT_ALPHABETICAL = ("red", "green", "blue")


def square(colour: str, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).normal(COLOURS[colour], 30, size=(36, 44, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def draw_colours(root: Path, per_split: dict[str, int]) -> Path:
    """An imagefolder with one class folder per colour of COLOURS (datasets numbers them alphabetically)."""
    for split, count in per_split.items():
        for k, colour in enumerate(COLOURS):
            (root / split / colour).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                square(colour, seed=1000 * k + 10 * i + len(split)).save(root / split / colour / f"{i}.jpg")
    return root


@pytest.fixture(scope="module")
def colours_dir(tmp_path_factory):
    return draw_colours(tmp_path_factory.mktemp("colours"), {"train": 6, "validation": 3})


@pytest.fixture(scope="module")
def colour_run(colours_dir, tmp_path_factory):
    """A tiny ViT whose head learnt the three colours (feature extraction: a second or two)."""
    base = build_tiny_checkpoint(tmp_path_factory.mktemp("base") / "vit", "vit", "classification")
    run_dir = tmp_path_factory.mktemp("runs") / "colours"
    argv = train_argv(
        model=base,
        dataset=colours_dir,
        output_dir=run_dir,
        mode="feature-extraction",
        head_epochs=10,
        head_learning_rate=0.05,
        no_calibrate=True,
    )
    assert train(argv) == 0
    assert read_json(run_dir / "eval_results.json")["metrics"]["accuracy"] == 1.0, "the colours are easy to learn"
    return run_dir


def reordered(run_dir: Path, order: tuple[str, ...], out: Path) -> Path:
    """The same model with its outputs (head rows and id2label) in `order`."""
    model = AutoModelForImageClassification.from_pretrained(run_dir)
    rows = [model.config.label2id[name] for name in order]
    head = heads.head_layer(model)
    with torch.no_grad():
        head.weight.copy_(head.weight[rows].clone())
        head.bias.copy_(head.bias[rows].clone())
    model.config.id2label = dict(enumerate(order))
    model.config.label2id = {name: i for i, name in enumerate(order)}
    model.save_pretrained(out)
    AutoImageProcessor.from_pretrained(run_dir).save_pretrained(out)
    return out


def pipeline_names(folder: Path) -> dict[str, str]:
    """{colour: the top label plain transformers' pipeline gives a fresh square of that colour}."""
    classify = pipeline("image-classification", model=str(folder))
    return {colour: classify(square(colour, seed=99))[0]["label"] for colour in COLOURS}


def test_training_names_outputs_in_the_datasets_label_order(colour_run):
    config = AutoModelForImageClassification.from_pretrained(colour_run).config
    assert config.id2label == {0: "blue", 1: "green", 2: "red"}
    assert pipeline_names(colour_run) == {colour: colour for colour in COLOURS}


def test_a_checkpoint_with_outputs_out_of_alphabetical_order_keeps_its_names(colour_run, tmp_path):
    folder = reordered(colour_run, NOT_ALPHABETICAL, tmp_path / "reordered")
    assert AutoModelForImageClassification.from_pretrained(folder).config.id2label == dict(enumerate(NOT_ALPHABETICAL))
    assert pipeline_names(folder) == {colour: colour for colour in COLOURS}
    demo_model = load_model(str(folder))
    assert {colour: next(iter(top_k(demo_model, square(colour, seed=99)))) for colour in COLOURS} == {
        colour: colour for colour in COLOURS
    }


def test_evaluate_matches_an_alphabetical_split_to_a_reordered_checkpoint_by_name(
    colour_run, colours_dir, tmp_path, capsys
):
    # The split numbers blue=0, green=1, red=2; the checkpoint red=0, green=1, blue=2: matched by id, only green
    # would count as right (accuracy 1/3).
    folder = reordered(colour_run, NOT_ALPHABETICAL, tmp_path / "reordered")
    out = tmp_path / "eval"
    argv = [str(folder), "--dataset", str(colours_dir), "--split", "validation", "--output-dir", str(out)]
    assert evaluate([*argv, "--batch-size", "4", "--workers", "0"]) == 0
    results = json.loads((out / "eval_results_validation.json").read_text())
    assert results["metrics"]["accuracy"] == 1.0
    assert results["metrics"]["per_class_accuracy"] == {"red": 1.0, "green": 1.0, "blue": 1.0}
    matrix = json.loads((out / "confusion_matrix_validation.json").read_text())
    assert matrix == {"labels": list(NOT_ALPHABETICAL), "matrix": [[3, 0, 0], [0, 3, 0], [0, 0, 3]]}
    assert capsys.readouterr().out.splitlines()[-1] == "accuracy=1.0000"
