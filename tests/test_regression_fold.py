"""Regression targets are learnt as (y - mean) / std and folded back into the head: checked by hand with a target
mean and spread far from 0 and 1 and a head whose bias is not 0, so that a dropped or swapped term shows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from train.regression import TargetScaler, fold_into_head, regression_loss, unfold_from_head

# Bone-age-like targets: mean 100 months, population std 50 months.
SCALER = TargetScaler(mean=100.0, std=50.0)


def head_with_bias() -> nn.Linear:
    """A 3 -> 2 head with hand-chosen weights and a bias far from 0."""
    head = nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        head.bias.copy_(torch.tensor([0.8, -1.2]))
    return head


def test_the_scaler_is_fitted_to_the_targets_mean_and_population_std():
    scaler = TargetScaler.fit([50.0, 150.0])
    assert (scaler.mean, scaler.std) == (100.0, 50.0)
    assert TargetScaler.fit([7.0, 7.0]) == TargetScaler(mean=7.0, std=1.0), "a constant target is left unscaled"


def test_normalize_subtracts_the_mean_and_divides_by_the_std():
    months = torch.tensor([150.0, 0.0, 100.0, 225.0])
    assert torch.equal(SCALER.normalize(months), torch.tensor([1.0, -2.0, 0.0, 2.5]))
    assert torch.allclose(torch.as_tensor(SCALER.denormalize(SCALER.normalize(months))), months)


@pytest.mark.parametrize("name", ["mae", "mse", "huber"])
def test_the_loss_compares_outputs_with_normalised_targets(name):
    loss = regression_loss(name, SCALER)
    labels = torch.tensor([150.0, 0.0, 225.0])
    exact = torch.tensor([[1.0], [-2.0], [2.5]])  # (labels - 100) / 50
    assert loss({"logits": exact}, labels).item() == 0.0
    off_by_half = exact + torch.tensor([[0.5], [-0.5], [0.5]])  # 25 months off each
    expected = {"mae": 0.5, "mse": 0.25, "huber": 0.5 * 0.5**2}[name]
    assert loss({"logits": off_by_half}, labels).item() == pytest.approx(expected)


def test_the_conditioned_loss_normalises_each_rows_own_target():
    loss = regression_loss("mae", SCALER)
    logits = torch.tensor([[1.0, -9.0], [9.0, -2.0]])
    labels = torch.tensor([[150.0, 0.0], [0.0, 1.0]])  # (months, output index)
    assert loss({"logits": logits}, labels).item() == 0.0


def test_the_folded_head_outputs_months_by_hand():
    head = head_with_bias()
    features = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]])
    with torch.no_grad():
        normalised = head(features)
        fold_into_head(head, SCALER)
        months = head(features)
    # Row 0, output 0: 0.5 - 2 + 6 + 0.8 = 5.3 normalised -> 5.3 * 50 + 100 = 365 months.
    assert normalised[0, 0].item() == pytest.approx(5.3)
    assert months[0, 0].item() == pytest.approx(365.0)
    assert torch.allclose(months, normalised * 50.0 + 100.0, atol=1e-4)
    assert torch.allclose(head.bias, torch.tensor([0.8 * 50 + 100, -1.2 * 50 + 100]))
    assert torch.allclose(head.weight, torch.tensor([[25.0, -50.0, 100.0], [75.0, 12.5, -25.0]]))


def test_unfolding_a_folded_head_gives_back_the_normalised_head():
    head = head_with_bias()
    fold_into_head(head, SCALER)
    unfold_from_head(head, SCALER)
    assert torch.allclose(head.weight, head_with_bias().weight) and torch.allclose(head.bias, head_with_bias().bias)


def test_a_head_without_bias_gets_the_mean_as_its_bias():
    head = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0, -1.0]]))
    fold_into_head(head, SCALER)
    assert head(torch.tensor([[2.0, 5.0, 1.0]])).item() == pytest.approx((2.0 - 1.0) * 50 + 100)
