"""Evaluating a saved checkpoint on a split: its logits, its metrics, and what the run folder records."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from hub.preprocessing import build_transform, image_spec
from train import data, metrics
from train.regression import own_outputs


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
    transform = build_transform(image_spec(processor))
    return predict(model, data.with_image_transform(split, task, transform), **kwargs)


def task_metrics(task: data.TaskData, logits: np.ndarray, labels: np.ndarray) -> dict:
    if task.is_classification:
        return metrics.classification_metrics(logits, labels, list(task.labels))
    return metrics.regression_metrics(*own_outputs(logits, labels))
