"""What a run decides after training, before it saves (train/outputs.py): the calibration folded into the head with
its out-of-distribution threshold, and the serving size kept by its validation score."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hub.checkpoint import load_checkpoint
from hub.preprocessing import image_spec
from tests.test_train import draw_ages
from train import calibration, data, heads
from train.metrics import regression_metrics
from train.outputs import best_eval_size, calibrate
from train.regression import own_outputs


def overconfident_logits(scale: float, count: int = 3000, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Logits `scale` times too sharp for their labels, which are drawn from the calibrated softmax."""
    rng = np.random.default_rng(0)
    calibrated = rng.normal(0, 1.5, size=(count, classes))
    probabilities = np.exp(calibrated) / np.exp(calibrated).sum(-1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in probabilities])
    return calibrated * scale, labels


def top_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return (shifted / shifted.sum(-1, keepdims=True)).max(-1)


def test_calibration_folds_the_temperature_and_fits_the_threshold_on_calibrated_probabilities(tiny_checkpoints):
    model = load_checkpoint(str(tiny_checkpoints[("vit", "classification")])).model
    head = heads.head_layer(model)
    weight, bias = head.weight.detach().clone(), head.bias.detach().clone()
    logits, labels = overconfident_logits(scale=4.0)

    outcome = calibrate(model, logits, labels)

    temperature = outcome["temperature"]
    assert temperature == pytest.approx(4.0, rel=0.1)
    assert torch.allclose(head.weight, weight / temperature) and torch.allclose(head.bias, bias / temperature)
    # 95% of the validation images' calibrated top probabilities reach the threshold: their 5th percentile.
    expected = float(np.quantile(top_softmax(logits / temperature), 0.05))
    assert outcome["ood_threshold"] == pytest.approx(expected, abs=1e-9)
    assert model.config.ood_threshold == pytest.approx(expected, abs=1e-9), "the demo reads it from the config"
    uncalibrated = float(np.quantile(top_softmax(logits), 0.05))
    assert abs(uncalibrated - expected) > 0.1, "the check above tells calibrated and raw logits apart"
    assert outcome["ood_pass_rate"] == calibration.OOD_PASS_RATE


@pytest.fixture(scope="module")
def ages_validation(tmp_path_factory):
    root = draw_ages(tmp_path_factory.mktemp("ages"), {"train": 2, "validation": 8})
    _, validation = data.load_splits(str(root), train_split="train", eval_split="validation")
    task = data.resolve_task(validation, target_column="boneage", image_column=None)
    return validation, task


def test_a_regressor_serves_at_the_size_with_the_lower_mae(tiny_checkpoints, ages_validation):
    validation, task = ages_validation
    checkpoint = load_checkpoint(str(tiny_checkpoints[("timm", "regression")]))
    model, processor = checkpoint.model.eval(), checkpoint.processor
    with torch.no_grad():  # months from the outputs: a bias of 100 puts the MAEs of both sizes near their spread
        heads.head_layer(model).weight.mul_(200.0)
        heads.head_layer(model).bias.fill_(100.0)
    train_spec = image_spec(processor)
    args = SimpleNamespace(eval_image_size=64, eval_batch_size=8, dataloader_workers=0)

    kept, sizes, (logits, labels) = best_eval_size(model, processor, validation, task, args, train_spec)

    assert set(sizes) == {"32", "64"}
    assert abs(sizes["32"] - sizes["64"]) > 0.01, "the sizes must score differently for the choice to show"
    lower = min(sizes, key=sizes.get)
    assert image_spec(kept).size == (int(lower), int(lower))
    assert model.config.pretrained_cfg["input_size"] == [3, int(lower), int(lower)], "the config saved says so too"
    # The outputs returned (for calibration and the card) are those at the kept size.
    targets = np.array(validation["boneage"], dtype=np.float64)
    assert np.array_equal(labels, targets)
    assert regression_metrics(*own_outputs(logits, labels))["mae"] == pytest.approx(sizes[lower])
