"""The checkpoints shipped in checkpoints/ load as the contract says, and their cards publish what training measured."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

from hub import load_checkpoint
from hub.cards import CLASSIFICATION_METRICS, REGRESSION_METRICS

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = sorted(config.parent for config in CHECKPOINTS.glob("*/config.json"))


def test_the_demos_default_checkpoints_are_shipped():
    assert {"food10", "boneage"} <= {folder.name for folder in SHIPPED}


def evaluation(folder: Path) -> dict:
    return json.loads((folder / "eval_results.json").read_text())


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda folder: folder.name)
def test_a_shipped_checkpoint_loads_with_plain_transformers(folder):
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    with torch.no_grad():
        logits = model(**processor(image, return_tensors="pt")).logits
    assert logits.shape == (1, model.config.num_labels) and torch.isfinite(logits).all()


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda folder: folder.name)
def test_a_shipped_checkpoint_loads_by_its_alias_with_the_task_it_was_trained_for(folder):
    checkpoint = load_checkpoint(folder.name)
    assert checkpoint.folder.resolve() == folder
    assert checkpoint.task.kind == evaluation(folder)["task"]
    if checkpoint.task.kind == "classification":
        assert set(evaluation(folder)["metrics"]["per_class_accuracy"]) == set(checkpoint.task.labels)


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda folder: folder.name)
def test_the_card_metrics_equal_eval_results(folder):
    measured = evaluation(folder)
    names = REGRESSION_METRICS if measured["task"] == "regression" else CLASSIFICATION_METRICS
    expected = {metric_type: measured["metrics"][key] for key, (metric_type, _) in names.items()}
    card = load_checkpoint(str(folder)).metrics  # the model-index of README.md
    assert card.keys() == expected.keys()
    assert card == pytest.approx(expected, abs=5e-5)  # the card states 4 decimals
