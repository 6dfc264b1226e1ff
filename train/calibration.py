"""Calibrated confidences: a temperature fitted on validation logits and folded into the classifier head.

After `fold_temperature(head, t)` the plain softmax of the saved checkpoint's logits is the calibrated
probability, for this project and for anyone who loads it with transformers. Dividing every logit by the
same positive number never changes their ranking. Why hand-written: the fit is ten lines of LBFGS, and no
maintained library folds the result into a transformers head.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

OOD_PASS_RATE = 0.95  # the share of validation images the "fits none of the classes" threshold lets through
# The temperatures a fit may reach. Without a wrong answer in validation the likelihood keeps rising as T falls to 0
# (every right answer grows surer), so an unbounded fit on a small, easy validation set gave T = 0.005: logits x 200,
# and an OOD threshold of 1.0 that flagged every photo. Published fits on ImageNet models lie around 1-3.
TEMPERATURE_RANGE = (0.05, 20.0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T in TEMPERATURE_RANGE that minimises the negative log-likelihood of softmax(logits / T);
    1.0 (no change) when validation holds no wrong answer, which gives the fit nothing to measure overconfidence by."""
    if (np.asarray(logits).argmax(-1) == np.asarray(labels)).all():
        return 1.0
    logits_t = torch.as_tensor(logits, dtype=torch.float64)
    labels_t = torch.as_tensor(labels, dtype=torch.int64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # optimise log T: T stays positive
    low, high = (float(np.log(t)) for t in TEMPERATURE_RANGE)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits_t / log_t.clamp(low, high).exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().clamp(low, high).exp())


@torch.no_grad()
def fold_temperature(head: nn.Linear, temperature: float) -> None:
    """Make `head` output logits / temperature (in place)."""
    head.weight.div_(temperature)
    if head.bias is not None:
        head.bias.div_(temperature)


def ood_threshold(logits: np.ndarray, pass_rate: float = OOD_PASS_RATE) -> float:
    """The top softmax probability that `pass_rate` of these (in-distribution) images reach or exceed."""
    probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=-1).numpy()
    return float(np.quantile(probabilities.max(axis=-1), 1.0 - pass_rate))
