"""The figures that go into eval_results.json and the published model cards, against hand computations."""

import math

import numpy as np
import pytest

from train.metrics import (
    classification_metrics,
    classification_scalars,
    expected_calibration_error,
    regression_metrics,
)


def logits_predicting(predictions: list[int], num_classes: int) -> np.ndarray:
    """Logits whose argmax is `predictions`; the other classes rank by index, lowest first."""
    logits = np.tile(-np.arange(num_classes, dtype=np.float64), (len(predictions), 1))
    logits[np.arange(len(predictions)), predictions] = 10.0
    return logits


# Six validation images of three classes; a fourth class ("durian") is in the model but absent from the split.
LABELS = [0, 0, 1, 1, 2, 2]
PREDICTIONS = [0, 1, 1, 1, 2, 0]
NAMES = ["apple", "banana", "cherry", "durian"]


def test_accuracy_is_the_share_of_right_answers():
    scalars = classification_scalars(logits_predicting(PREDICTIONS, 4), np.array(LABELS))
    assert scalars["accuracy"] == pytest.approx(4 / 6)


def test_macro_f1_averages_only_the_classes_present_in_the_split():
    # apple: precision 1/2, recall 1/2 -> F1 1/2; banana: 2/3 and 1 -> 4/5; cherry: 1 and 1/2 -> 2/3.
    # durian: no image and never predicted, so it is left out instead of counting as 0.
    scalars = classification_scalars(logits_predicting(PREDICTIONS, 4), np.array(LABELS))
    assert scalars["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_an_absent_class_that_is_predicted_costs_the_true_class_its_recall():
    # The last cherry is called durian instead of apple: durian is still left out of the average.
    predictions = [0, 1, 1, 1, 2, 3]
    scalars = classification_scalars(logits_predicting(predictions, 4), np.array(LABELS))
    # apple: precision 1/1, recall 1/2 -> 2/3; banana: 2/3 and 1 -> 4/5; cherry: 1 and 1/2 -> 2/3.
    assert scalars["macro_f1"] == pytest.approx((2 / 3 + 4 / 5 + 2 / 3) / 3)
    assert scalars["accuracy"] == pytest.approx(4 / 6)


def test_per_class_accuracy_is_each_present_class_recall():
    metrics = classification_metrics(logits_predicting(PREDICTIONS, 4), np.array(LABELS), NAMES)
    assert metrics["per_class_accuracy"] == pytest.approx({"apple": 0.5, "banana": 1.0, "cherry": 0.5})


def test_top5_with_fewer_than_five_classes_counts_every_image():
    # With 3 classes the top 5 hold every class: top-5 accuracy is 1 whatever the model says.
    logits = logits_predicting([2, 2, 2, 2, 2, 2], 3)
    scalars = classification_scalars(logits, np.array(LABELS))
    assert scalars["top5_accuracy"] == 1.0
    assert scalars["accuracy"] == pytest.approx(2 / 6)


def test_top5_with_seven_classes_misses_labels_ranked_sixth_or_lower():
    logits = np.tile(np.arange(7, 0, -1, dtype=np.float64), (4, 1))  # class 0 ranked first ... class 6 last
    labels = np.array([0, 4, 5, 6])  # ranks 1, 5, 6, 7
    scalars = classification_scalars(logits, labels)
    assert scalars["top5_accuracy"] == pytest.approx(2 / 4)
    assert scalars["accuracy"] == pytest.approx(1 / 4)


def test_regression_metrics_by_hand():
    predictions, targets = np.array([10.0, 20.0, 30.0, 40.0]), np.array([12.0, 18.0, 33.0, 40.0])
    # errors -2, 2, -3, 0; mean target 25.75, total sum of squares 504.75, residual sum of squares 17
    metrics = regression_metrics(predictions, targets)
    assert metrics["mae"] == pytest.approx(7 / 4)
    assert metrics["rmse"] == pytest.approx(math.sqrt(17 / 4))
    assert metrics["r2"] == pytest.approx(1 - 17 / 504.75)


def test_regression_metrics_take_column_shaped_predictions():
    metrics = regression_metrics(np.array([[1.0], [3.0]]), np.array([2.0, 4.0]))  # logits[:, :1] of a batch
    assert metrics == pytest.approx({"mae": 1.0, "rmse": 1.0, "r2": 1 - 2 / 2})


@pytest.mark.parametrize("predictions", [[4.0, 5.0, 7.0], [5.0, 5.0, 5.0]], ids=["off", "exact"])
def test_constant_targets_keep_mae_and_rmse_and_leave_r2_undefined(predictions):
    # R² divides by the targets' variance, zero here: the metric is undefined, not 0 or 1.
    metrics = regression_metrics(np.array(predictions), np.array([5.0, 5.0, 5.0]))
    errors = np.array(predictions) - 5.0
    assert metrics["mae"] == pytest.approx(np.abs(errors).mean())
    assert metrics["rmse"] == pytest.approx(math.sqrt((errors**2).mean()))
    assert math.isnan(metrics["r2"])


def two_class_logits(confidences: list[float], predicted: list[int]) -> np.ndarray:
    """Logits of two classes whose softmax gives `predicted` the probability `confidences` (each above 1/2)."""
    logits = np.zeros((len(confidences), 2))
    for row, (confidence, winner) in enumerate(zip(confidences, predicted)):
        logits[row, winner] = math.log(confidence / (1 - confidence))
    return logits


def test_ece_weights_each_confidence_bin_by_its_share_of_images():
    # Bin (0.867, 0.933]: three images at confidence 0.9, two right -> |0.9 - 2/3| = 7/30, weight 3/5.
    # Bin (0.6, 0.667]: two images at confidence 0.65, both right -> |0.65 - 1| = 0.35, weight 2/5.
    # An unweighted mean of the bins would give (7/30 + 0.35) / 2, their plain sum 7/30 + 0.35.
    logits = two_class_logits([0.9, 0.9, 0.9, 0.65, 0.65], predicted=[0, 1, 0, 1, 0])
    labels = np.array([0, 1, 1, 1, 0])
    assert expected_calibration_error(logits, labels) == pytest.approx(3 / 5 * 7 / 30 + 2 / 5 * 0.35)


def test_ece_of_a_model_right_as_often_as_it_is_confident_is_zero():
    logits = two_class_logits([0.75] * 4, predicted=[0, 0, 0, 0])
    assert expected_calibration_error(logits, np.array([0, 0, 0, 1])) == pytest.approx(0.0, abs=1e-12)
