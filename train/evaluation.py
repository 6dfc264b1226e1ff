"""Measuring a checkpoint on a split: its logits through the checkpoint's own processor (as the demos serve it), its
metrics, and the results file and plot. Training's evaluation and `python -m train.evaluate` both run these."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hub.checkpoint import Checkpoint
from hub.contract import TaskKind, TrainingRecord
from hub.preprocessing import ProcessorTransform
from train import data, metrics
from train.regression import own_outputs

HEADLINE_DECIMALS = {TaskKind.CLASSIFICATION: 4, TaskKind.REGRESSION: 2}  # accuracy=0.9467, mae=8.69


@torch.no_grad()
def predict(
    model, dataset, *, batch_size: int = 64, workers: int = 2, desc: str = "evaluating"
) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) of `model` over a dataset of {"pixel_values", "labels"} rows (leaves the model in eval mode)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=data.collate, num_workers=workers)
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    for batch in tqdm(loader, desc=desc):
        logits.append(model(pixel_values=batch["pixel_values"].to(device)).logits.float().cpu())
        labels.append(batch["labels"])
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def split_logits(model, processor, split, task: data.TaskData, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) on a datasets split through the checkpoint's own processor."""
    return predict(model, data.with_image_transform(split, task, ProcessorTransform(processor)), **kwargs)


def task_metrics(task: data.TaskData, logits: np.ndarray, labels: np.ndarray) -> dict:
    if task.is_classification:
        return metrics.classification_metrics(logits, labels, list(task.labels))
    return metrics.regression_metrics(*own_outputs(logits, labels))


def headline(task: data.TaskData, results: dict) -> str:
    """The line a run is judged by: `accuracy=0.xxxx` or `mae=x.xx`."""
    metric = task.kind.headline_metric
    return f"{metric}={results[metric]:.{HEADLINE_DECIMALS[task.kind]}f}"


# ----------------------------------------------------------------------------- a split as the checkpoint sees it


def load_split(dataset: str, split: str, *, defaulted: bool):
    """The split; when it is missing and the user did not name it, the error says it was --split's default."""
    try:
        return data.load_split(dataset, split)
    except data.DataError as err:
        if not defaulted or "has no split" not in str(err):
            raise
        raise data.DataError(f"{err} --split defaults to {split}: name the split to measure.") from None


def checkpoint_task(checkpoint: Checkpoint, rows, *, target_column: str | None, image_column: str | None):
    """(rows, task): the split's task as the checkpoint sees it (its label ids, its conditioned outputs)."""
    trained = checkpoint.task
    if trained.is_regression:
        target_column = target_column or trained_target_column(checkpoint)
        if target_column is None:
            raise data.DataError("Pass --target-column: the checkpoint does not record which column it regresses.")
    task = data.resolve_task(
        rows, target_column=target_column, image_column=image_column, condition_column=trained.condition_column
    )
    if task.kind != trained.kind:
        raise data.DataError(
            f"The checkpoint is a {trained.kind} model but column '{task.target_column}' of the dataset "
            f"calls for {task.kind}: pass the column it was trained on with --target-column."
        )
    if task.is_regression:
        if trained.condition_column:  # the checkpoint's own value -> output mapping, not the one this split would give
            task = data.TaskData(**{**task.__dict__, "condition_outputs": dict(trained.condition_outputs)})
        return rows, task
    return aligned_labels(rows, task, trained.labels)


def trained_target_column(checkpoint: Checkpoint) -> str | None:
    """The column the checkpoint learnt: config.json says so; older checkpoints name it in training_config.json."""
    if checkpoint.task.target_column:
        return checkpoint.task.target_column
    record = TrainingRecord.read(checkpoint.folder)
    return record.target_column if record else None


def aligned_labels(rows, task: data.TaskData, model_labels: tuple[str, ...]):
    """The split's class ids renumbered to the checkpoint's (matched by name); a class it lacks is an error."""
    unknown = sorted({name.lower() for name in task.labels} - {name.lower() for name in model_labels})
    if unknown:
        raise data.DataError(
            f"The dataset has classes the checkpoint does not know: {', '.join(unknown)} "
            f"(it knows: {', '.join(model_labels)})."
        )
    rows = rows.align_labels_with_mapping({name: i for i, name in enumerate(model_labels)}, task.target_column)
    return rows, data.TaskData(TaskKind.CLASSIFICATION, task.image_column, task.target_column, tuple(model_labels))


# ----------------------------------------------------------------------------- the results file and plot


def results_payload(task: data.TaskData, dataset: str, split: str, results: dict, examples: int, **more) -> dict:
    """What eval_results*.json holds: the task, where it was measured, the metrics, and `more` (e.g. the command)."""
    return {
        "task": task.kind,
        "dataset": data.dataset_name(dataset),
        "split": split,
        "num_examples": int(examples),
        "metrics": results,
        **more,
    }


def write_eval_results(
    out: Path, payload: dict, task: data.TaskData, logits, labels, *, unit: str | None, suffix: str = ""
) -> Path:
    """eval_results{suffix}.json and the split's plot (confusion matrix, or predicted vs true) beside it.

    Training writes its validation without a suffix; `python -m train.evaluate` names each split (`_test`), so that
    the splits sit side by side with training's.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"eval_results{suffix}.json"
    path.write_text(json.dumps(payload, indent=2))
    # The plot functions write fixed names: draw them aside and move them in under the suffixed name.
    with tempfile.TemporaryDirectory(dir=out) as staging:
        staged = Path(staging)
        if task.is_classification:
            matrix = metrics.confusion_matrix(labels.astype(np.int64), logits.argmax(axis=-1), len(task.labels))
            metrics.save_confusion_matrix(matrix, list(task.labels), staged)
        else:
            metrics.save_predicted_vs_true(*own_outputs(logits, labels), unit, staged)
        for drawn in staged.iterdir():
            drawn.replace(out / f"{drawn.stem}{suffix}{drawn.suffix}")
    return path
