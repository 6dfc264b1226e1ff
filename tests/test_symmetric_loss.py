"""Symmetric cross-entropy (`python -m train --reverse-ce-weight`): the reverse term's value and bound, the blended
loss, a run that trains with it and says so on its card, and the runs it refuses."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from tests.test_train import ages_dir, classes_dir, read_json, train_argv  # noqa: F401 (fixtures)
from train import stages
from train.__main__ import main
from train.stages import REVERSE_LOG_ZERO, classification_loss, reverse_cross_entropy


def test_for_hard_labels_the_reverse_term_is_a_mean_absolute_error_on_the_labels_probability():
    logits, labels = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 4, 0])
    probability_of_label = logits.softmax(-1)[torch.arange(6), labels]
    expected = (-REVERSE_LOG_ZERO * (1 - probability_of_label)).mean()
    assert reverse_cross_entropy(logits, labels, label_smoothing=0.0) == pytest.approx(float(expected), rel=1e-6)


def test_a_confidently_contradicted_label_costs_at_most_the_bound_and_pulls_far_less_than_under_cross_entropy():
    logits = torch.tensor([[12.0, 0.0, 0.0]], requires_grad=True)  # sure of class 0; the label says class 2
    label = torch.tensor([2])
    reverse = reverse_cross_entropy(logits, label, label_smoothing=0.1)
    assert reverse.item() <= -REVERSE_LOG_ZERO
    (reverse_pull,) = torch.autograd.grad(reverse, logits)
    (cross_entropy_pull,) = torch.autograd.grad(F.cross_entropy(logits, label, label_smoothing=0.1), logits)
    assert reverse_pull.norm() < 0.01 * cross_entropy_pull.norm()


def test_mixups_soft_targets_enter_the_reverse_term_as_they_are():
    logits, targets = torch.tensor([[1.0, 0.5, -1.0]]), torch.tensor([[0.7, 0.3, 0.0]])
    p = logits.softmax(-1)[0]
    expected = -(p[0] * math.log(0.7) + p[1] * math.log(0.3) + p[2] * REVERSE_LOG_ZERO)
    assert reverse_cross_entropy(logits, targets, label_smoothing=0.0) == pytest.approx(float(expected), rel=1e-6)


def test_the_loss_adds_the_weighted_reverse_term_to_the_smoothed_cross_entropy():
    logits, labels = torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 2, 1, 1])
    cross_entropy = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert classification_loss(0.1)({"logits": logits}, labels) == pytest.approx(float(cross_entropy))
    blended = classification_loss(0.1, reverse_weight=0.5)({"logits": logits}, labels)
    assert blended == pytest.approx(float(cross_entropy + 0.5 * reverse_cross_entropy(logits, labels, 0.1)))


def test_a_run_with_the_reverse_term_trains_on_it_and_says_so_on_its_card(
    tiny_checkpoints,
    classes_dir,
    tmp_path,
    monkeypatch,  # noqa: F811
):
    training_batches, real_reverse = [], stages.reverse_cross_entropy

    def counted_reverse(logits, labels, label_smoothing):
        if torch.is_grad_enabled():  # a training step, not an evaluation
            training_batches.append(len(logits))
        return real_reverse(logits, labels, label_smoothing)

    monkeypatch.setattr(stages, "reverse_cross_entropy", counted_reverse)
    run_dir = tmp_path / "run"
    argv = train_argv(
        model=tiny_checkpoints[("timm", "classification")],
        dataset=classes_dir,
        output_dir=run_dir,
        mode="full",
        epochs=2,
        label_smoothing=0.1,
        reverse_ce_weight=0.5,
    )
    assert main(argv) == 0
    assert training_batches == [4] * 6, "12 training images in batches of 4, 2 epochs"
    assert read_json(run_dir / "training_config.json")["recipe"]["reverse_ce_weight"] == 0.5
    assert "| reverse_ce_weight | 0.5 |" in (run_dir / "README.md").read_text()


def test_a_negative_weight_is_refused_before_training(tiny_checkpoints, classes_dir, tmp_path, capsys):  # noqa: F811
    argv = train_argv(
        model=tiny_checkpoints[("timm", "classification")],
        dataset=classes_dir,
        output_dir=tmp_path / "run",
        reverse_ce_weight=-1,
    )
    assert main(argv) == 2
    assert "--reverse-ce-weight must be 0 (off) or above" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_regression_run_with_the_reverse_term_is_refused(tiny_checkpoints, ages_dir, tmp_path, capsys):  # noqa: F811
    argv = train_argv(
        model=tiny_checkpoints[("timm", "regression")],
        dataset=ages_dir,
        output_dir=tmp_path / "run",
        target_column="boneage",
        reverse_ce_weight=0.5,
    )
    assert main(argv) == 2
    assert "applies to classification only" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.safetensors").exists()
