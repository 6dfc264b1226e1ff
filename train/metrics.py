"""The one metrics module: classification and regression metrics, and their plots.

Computed here with numpy because `evaluate.load` needs the hub. `compute_metrics` for the Trainer and
the final `eval_results.json` both come from these functions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def classification_scalars(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, top-5 accuracy (top-k with k = min(5, classes)) and macro-F1."""
    labels = np.asarray(labels).astype(np.int64)
    predictions = logits.argmax(axis=-1)
    top_k = min(5, logits.shape[-1])
    top = np.argsort(-logits, axis=-1)[:, :top_k]
    matrix = confusion_matrix(labels, predictions, logits.shape[-1])
    true_positives = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, actual, out=np.zeros_like(true_positives), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positives), where=denominator > 0)
    present = actual > 0  # classes absent from this split would drag macro-F1 down for no reason
    return {
        "accuracy": float((predictions == labels).mean()),
        "top5_accuracy": float((top == labels[:, None]).any(axis=1).mean()),
        "macro_f1": float(f1[present].mean()),
    }


def classification_metrics(logits: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict:
    """The scalars plus per-class accuracy (label -> recall of that class)."""
    labels = np.asarray(labels).astype(np.int64)
    matrix = confusion_matrix(labels, logits.argmax(axis=-1), len(label_names))
    actual = matrix.sum(axis=1)
    per_class = {name: float(matrix[i, i] / actual[i]) for i, name in enumerate(label_names) if actual[i] > 0}
    return {**classification_scalars(logits, labels), "per_class_accuracy": per_class}


def regression_metrics(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R^2, in the target's unit."""
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    errors = predictions - targets
    total = ((targets - targets.mean()) ** 2).sum()
    return {
        "mae": float(np.abs(errors).mean()),
        "rmse": float(np.sqrt((errors**2).mean())),
        "r2": float(1.0 - (errors**2).sum() / total) if total > 0 else float("nan"),
    }


def save_confusion_matrix(matrix: np.ndarray, label_names: list[str], run_dir: Path) -> None:
    """confusion_matrix.json (labels + counts) and confusion_matrix.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (run_dir / "confusion_matrix.json").write_text(
        json.dumps({"labels": list(label_names), "matrix": matrix.tolist()}, indent=2)
    )
    size = max(4.0, 0.55 * len(label_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(label_names)), label_names, rotation=60, ha="right")
    ax.set_yticks(range(len(label_names)), label_names)
    for (row, col), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=color, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(run_dir / "confusion_matrix.png", dpi=120)
    plt.close(fig)


def save_predicted_vs_true(predictions: np.ndarray, targets: np.ndarray, unit: str | None, run_dir: Path) -> None:
    """predicted_vs_true.png: a scatter of predictions against targets with the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = f" ({unit})" if unit else ""
    low, high = float(min(targets.min(), predictions.min())), float(max(targets.max(), predictions.max()))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(targets, predictions, s=6, alpha=0.5)
    ax.plot([low, high], [low, high], color="black", linewidth=1)
    ax.set_xlabel(f"true{suffix}")
    ax.set_ylabel(f"predicted{suffix}")
    fig.tight_layout()
    fig.savefig(run_dir / "predicted_vs_true.png", dpi=120)
    plt.close(fig)


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins by their size."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == np.asarray(labels).astype(np.int64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        members = (confidence > low) & (confidence <= high)
        if members.any():
            error += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(error)
