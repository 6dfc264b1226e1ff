"""The small-data recipe (timm transforms, Mixup/CutMix, EMA, FixRes, image cache, calibration) and the
conditioned bone-age head, on tiny random checkpoints and images the tests draw."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.utils import ModelEmaV3
from torch import nn
from transformers import AutoConfig, TrainingArguments

from hub.checkpoint import load_checkpoint
from hub.preprocessing import build_transform, crop_to_hand, hand_box, image_spec
from tests.test_train import (  # noqa: F401 (fixtures)
    ages_dir,
    classes_dir,
    last_training_evaluation,
    read_json,
    train_argv,
)
from train import calibration, data, metrics
from train.__main__ import main
from train.recipe_trainer import RecipeTrainer
from train.regression import TargetScaler, own_outputs, regression_loss
from train.robustness import other_source_look


def test_recipe_options_run_end_to_end_and_serve_the_better_size(tiny_checkpoints, classes_dir, tmp_path):
    run_dir = tmp_path / "run"
    argv = train_argv(
        model=tiny_checkpoints[("timm", "classification")],
        dataset=classes_dir,
        output_dir=run_dir,
        mode="full",
        epochs=2,
        image_size=32,
        eval_image_size=40,
        auto_augment="rand-m9-mstd0.5",
        random_erasing=0.25,
        label_smoothing=0.1,
        mixup=0.2,
        cutmix=1.0,
        ema_decay=0.9,
    )
    assert main(argv) == 0

    config = read_json(run_dir / "training_config.json")
    assert config["recipe"]["auto_augment"] == "rand-m9-mstd0.5" and config["recipe"]["mixup"] == 0.2
    assert config["weights"] in ("ema", "final")
    results = read_json(run_dir / "eval_results.json")
    sizes = results["eval_sizes"]
    assert set(sizes) == {"32", "40"}
    served = AutoConfig.from_pretrained(run_dir).pretrained_cfg["input_size"][-1]
    assert sizes[str(served)] == max(sizes.values()), "the processor saved is the size that validated best"
    assert results["metrics"]["accuracy"] == pytest.approx(sizes[str(served)])
    # The saved head is calibrated: its plain softmax on validation gives the stored threshold and the ECE after.
    logits, labels = saved_logits(run_dir, classes_dir)
    top = torch.softmax(logits.double(), -1).max(-1).values.numpy()
    calibrated = results["calibration"]
    assert AutoConfig.from_pretrained(run_dir).ood_threshold == pytest.approx(np.quantile(top, 0.05), abs=1e-5)
    assert calibrated["ood_threshold"] == pytest.approx(np.quantile(top, 0.05), abs=1e-5)
    assert calibrated["ece_after"] == pytest.approx(
        metrics.expected_calibration_error(logits.numpy(), labels), abs=1e-5
    )
    # A temperature is fitted only on a validation set with a wrong answer (test_train_outputs.py checks the fold
    # with one far from 1), and stays in its range.
    wrong_answers = int((logits.argmax(-1).numpy() != np.asarray(labels)).sum())
    assert (calibrated["temperature"] == 1.0) == (wrong_answers == 0), wrong_answers
    low, high = calibration.TEMPERATURE_RANGE
    assert low <= calibrated["temperature"] <= high


def saved_logits(run_dir, dataset) -> tuple[torch.Tensor, np.ndarray]:
    """(logits, labels) of the saved checkpoint on the validation split, image by image through its own processor."""
    saved = load_checkpoint(str(run_dir))
    _, validation = data.load_splits(str(dataset), train_split="train", eval_split="validation")
    transform = build_transform(image_spec(saved.processor))
    with torch.no_grad():
        logits = torch.cat(
            [saved.model(pixel_values=transform(row["image"]).unsqueeze(0)).logits for row in validation]
        )
    return logits, np.array(validation["label"])


def test_ema_weights_are_kept_only_when_they_validate_better(tiny_checkpoints, tmp_path):
    model = load_checkpoint(str(tiny_checkpoints[("vit", "classification")])).model
    trainer = RecipeTrainer(
        model=model,
        args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]),
        ema=ModelEmaV3(model, decay=0.5),
        metric="accuracy",
        greater_is_better=True,
    )
    ema_state = {name: tensor + 1.0 for name, tensor in model.state_dict().items()}
    live_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    trainer.live_score, trainer.best_ema = 0.8, (0.7, ema_state)
    assert trainer.keep_better_weights() == "final"
    assert all(torch.equal(model.state_dict()[k], live_state[k]) for k in live_state)

    trainer.best_ema = (0.9, ema_state)
    assert trainer.keep_better_weights() == "ema"
    assert all(torch.equal(model.state_dict()[k], ema_state[k]) for k in ema_state)


def test_a_resumed_run_still_keeps_the_best_ema_snapshot(tiny_checkpoints, tmp_path):
    def recipe_trainer():
        model = load_checkpoint(str(tiny_checkpoints[("vit", "classification")])).model
        arguments = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
        ema = ModelEmaV3(model, decay=0.5)
        return RecipeTrainer(model=model, args=arguments, ema=ema, metric="accuracy", greater_is_better=True)

    first = recipe_trainer()
    best_state = {name: tensor + 1.0 for name, tensor in first.model.state_dict().items()}
    first.live_score, first.best_ema = 0.8, (0.9, best_state)
    first.save_ema(tmp_path)

    resumed = recipe_trainer()  # as --resume builds it: the scores and the snapshot live only in the checkpoint
    resumed.restore_ema(str(tmp_path))
    assert resumed.live_score == 0.8 and resumed.best_ema[0] == 0.9
    assert resumed.keep_better_weights() == "ema"
    assert all(torch.equal(resumed.model.state_dict()[k], best_state[k]) for k in best_state)


def test_the_image_cache_gives_the_same_tensors_as_reading_files(tiny_checkpoints, classes_dir):
    train, _ = data.load_splits(str(classes_dir), train_split="train", eval_split="validation")
    task = data.resolve_task(train, target_column=None, image_column=None)
    transform = build_transform(
        image_spec(load_checkpoint(str(tiny_checkpoints[("timm", "classification")])).processor)
    )
    from_files = data.with_image_transform(train, task, transform)
    cached = data.DecodedImages(train, task, transform, max_side=1000)
    assert len(cached) == len(from_files)
    for index in range(len(cached)):
        assert torch.equal(cached[index]["pixel_values"], from_files[index]["pixel_values"])
        assert cached[index]["labels"] == from_files[index]["labels"]


def test_the_folded_temperature_changes_probabilities_never_the_ranking():
    torch.manual_seed(0)
    head, features = nn.Linear(8, 5), torch.randn(20, 8)
    before = head(features).detach()
    calibration.fold_temperature(head, 2.5)
    after = head(features).detach()
    assert torch.allclose(after, before / 2.5, atol=1e-6)
    assert not torch.allclose(after.softmax(-1), before.softmax(-1))
    assert torch.equal(after.argsort(dim=-1), before.argsort(dim=-1))


def test_fitted_temperature_recovers_an_overconfident_models_scale():
    rng = np.random.default_rng(0)
    calibrated = rng.normal(0, 2, size=(4000, 6))
    probabilities = np.exp(calibrated) / np.exp(calibrated).sum(-1, keepdims=True)
    labels = np.array([rng.choice(6, p=p) for p in probabilities])
    overconfident = calibrated * 3.0
    temperature = calibration.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert metrics.expected_calibration_error(overconfident / temperature, labels) < metrics.expected_calibration_error(
        overconfident, labels
    )


def test_a_validation_set_without_mistakes_leaves_the_temperature_alone():
    """Nothing to measure overconfidence by: an unbounded fit ran T towards 0 (0.005 on a tiny run)."""
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 0.0, 3.0]])
    assert calibration.fit_temperature(logits, np.array([0, 1, 2])) == 1.0


def test_the_fitted_temperature_stays_in_its_range():
    """One mistake among very confident answers: the fit may not run off to an extreme temperature."""
    logits = np.array([[40.0, 0.0], [0.0, 40.0], [40.0, 0.0], [0.01, 0.0]])
    temperature = calibration.fit_temperature(logits, np.array([0, 1, 0, 1]))
    assert calibration.TEMPERATURE_RANGE[0] <= temperature <= calibration.TEMPERATURE_RANGE[1]


def test_ood_threshold_lets_the_stated_share_of_validation_through():
    logits = np.random.default_rng(1).normal(0, 3, size=(1000, 10))
    threshold = calibration.ood_threshold(logits, pass_rate=0.95)
    top = torch.softmax(torch.as_tensor(logits), -1).max(-1).values.numpy()
    assert (top >= threshold).mean() == pytest.approx(0.95, abs=0.002)


# ----------------------------------------------------------------------------- the conditioned regression head


def test_each_rows_loss_uses_its_own_output():
    """Each row's loss compares its own output with its target normalised as (months - 100) / 50."""
    loss = regression_loss("mae", TargetScaler(mean=100.0, std=50.0))
    logits = torch.tensor([[1.0, 50.0], [50.0, -2.0]])
    labels = torch.tensor([[150.0, 0.0], [0.0, 1.0]])  # (months, output index): normalised 1 and -2, hit exactly
    assert loss({"logits": logits}, labels).item() == 0.0
    swapped = torch.tensor([[150.0, 1.0], [0.0, 0.0]])
    assert loss({"logits": logits}, swapped).item() == pytest.approx((abs(50.0 - 1.0) + abs(50.0 + 2.0)) / 2)
    predicted, targets = own_outputs(logits.numpy(), labels.numpy())
    assert predicted.tolist() == [1.0, -2.0] and targets.tolist() == [150.0, 0.0]


def test_conditioned_regression_saves_months_per_output_and_names_them(tiny_checkpoints, ages_dir, tmp_path):
    run_dir = tmp_path / "run"
    argv = train_argv(
        model=tiny_checkpoints[("timm", "regression")],
        dataset=ages_dir,
        output_dir=run_dir,
        mode="full",
        epochs=1,
        target_column="boneage",
        target_name="bone age",
        target_unit="months",
        condition_column="male",
        condition_labels="false=female,true=male",
        augment="radiograph",
        robustness_check=True,
        precision="fp32",  # the Trainer's own evaluation, compared below, must compute as the saved checkpoint's does
    )
    assert main(argv) == 0

    config = AutoConfig.from_pretrained(run_dir)
    assert config.num_labels == 2 and config.problem_type == "regression"
    assert config.condition_column == "male" and config.condition_outputs == {"false": 0, "true": 1}
    assert config.id2label == {0: "bone age (female)", 1: "bone age (male)"}

    saved = load_checkpoint(str(run_dir))
    _, validation = data.load_splits(str(ages_dir), train_split="train", eval_split="validation")
    transform = build_transform(image_spec(saved.processor))
    errors = []
    with torch.no_grad():
        for row in validation:
            logits = saved.model(pixel_values=transform(row["image"]).unsqueeze(0)).logits[0]
            own = logits[config.condition_outputs[str(row["male"]).lower()]]
            errors.append(abs(float(own) - row["boneage"]))
    results = read_json(run_dir / "eval_results.json")
    assert results["metrics"]["mae"] == pytest.approx(np.mean(errors), rel=1e-4)
    # Independently of the fold: the Trainer's last evaluation denormalised each row's own output of the trained head.
    assert last_training_evaluation(run_dir)["eval_mae"] == pytest.approx(np.mean(errors), rel=1e-4), "saved in months"
    assert results["robustness"]["mae"] > 0


def test_condition_values_the_training_split_never_had_are_named(tiny_checkpoints, ages_dir, tmp_path, capsys):
    argv = train_argv(
        model=tiny_checkpoints[("timm", "regression")],
        dataset=ages_dir,
        output_dir=tmp_path / "run",
        target_column="boneage",
        condition_column="male",
        condition_labels="f=female",
    )
    assert main(argv) == 2
    assert "--condition-labels names f" in capsys.readouterr().err


# ----------------------------------------------------------------------------- radiograph transforms


def film(hand_box_xyxy=(30, 20, 70, 90), size=(100, 110)) -> Image.Image:
    """A grey film with a brighter rectangular 'hand' and a small bright side marker."""
    pixels = np.full((size[1], size[0]), 90, np.uint8)
    left, top, right, bottom = hand_box_xyxy
    pixels[top:bottom, left:right] = 200
    pixels[2:5, 2:5] = 255  # a marker: too small to count as the hand
    return Image.fromarray(pixels).convert("RGB")


def test_hand_box_finds_the_hand_and_ignores_small_markers():
    assert hand_box(film()) == (30, 20, 70, 90)
    assert crop_to_hand(film(), 0.0).size == (40, 70)


def test_radiograph_augmentation_is_deterministic_under_a_seed(tiny_checkpoints):
    spec = image_spec(load_checkpoint(str(tiny_checkpoints[("timm", "regression")])).processor)
    transform = build_transform(spec, "radiograph")

    def seeded(seed):
        random.seed(seed)
        torch.manual_seed(seed)
        return transform(film())

    assert torch.equal(seeded(3), seeded(3))
    assert not torch.equal(seeded(3), seeded(4))


def test_other_source_look_is_cropped_black_and_stretched():
    looked = np.asarray(other_source_look(film(), 1).convert("L"))  # index 1: no rotation
    assert looked.shape == (74, 42), "the 70x40 hand with a 3% margin on each side, marker and film cropped away"
    assert looked.min() == 0 and looked.max() >= 250, "black background, contrast stretched"
    assert np.array_equal(looked, np.asarray(other_source_look(film(), 1).convert("L")))
