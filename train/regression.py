"""Regression: target normalisation during training, folded back into the head at save time.

The model learns (y - mean) / std, which keeps the head's outputs near unit scale whatever the unit.
Before saving, the final Linear layer is rescaled (W' = W * std, b' = b * std + mean) so that the saved
checkpoint's `logits[:, 0]` is in the target's own unit for anyone who loads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from train.arguments import LOSSES


@dataclass(frozen=True)
class TargetScaler:
    mean: float
    std: float

    @classmethod
    def fit(cls, targets) -> TargetScaler:
        values = np.asarray(targets, dtype=np.float64)
        std = float(values.std())
        return cls(mean=float(values.mean()), std=std if std > 0 else 1.0)

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / self.std

    def denormalize(self, values):
        return values * self.std + self.mean


def first_output(predictions) -> np.ndarray:
    """logits[:, 0] of gathered predictions, whatever shape the Trainer stacked them in."""
    predictions = np.asarray(predictions)
    return predictions.reshape(len(predictions), -1)[:, 0]


def own_outputs(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, target) per row: a conditioned head's labels are (target, output index) pairs."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if labels.ndim == 1:
        return first_output(predictions), labels
    outputs = predictions.reshape(len(predictions), -1)
    return outputs[np.arange(len(outputs)), labels[:, 1].astype(np.int64)], labels[:, 0]


def regression_loss(name: str, scaler: TargetScaler):
    """A Trainer `compute_loss_func`: the chosen loss between the row's output and its normalised target."""
    losses = {"mae": nn.functional.l1_loss, "mse": nn.functional.mse_loss, "huber": nn.functional.huber_loss}
    if name not in losses:
        raise ValueError(f"Unknown regression loss '{name}': choose one of {', '.join(LOSSES)}.")
    loss_fn = losses[name]

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits, labels = outputs["logits"].float(), labels.float()
        if labels.ndim == 2:  # conditioned head: each row's loss uses its own output
            logits, labels = logits.gather(1, labels[:, 1:].long()), labels[:, :1]
        return loss_fn(logits[:, 0], scaler.normalize(labels.reshape(-1)))

    return compute_loss


@torch.no_grad()
def fold_into_head(head: nn.Linear, scaler: TargetScaler) -> None:
    """Make `head` output the target's own unit instead of its normalised value (in place)."""
    head.weight.mul_(scaler.std)
    if head.bias is None:
        head.bias = nn.Parameter(torch.zeros(head.out_features, dtype=head.weight.dtype, device=head.weight.device))
    head.bias.mul_(scaler.std).add_(scaler.mean)


@torch.no_grad()
def unfold_from_head(head: nn.Linear, scaler: TargetScaler) -> None:
    """The inverse of `fold_into_head`: a saved regression head back to the normalised scale (in place)."""
    if head.bias is not None:
        head.bias.sub_(scaler.mean).div_(scaler.std)
    head.weight.div_(scaler.std)
