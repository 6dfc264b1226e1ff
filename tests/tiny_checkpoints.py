"""Tiny random checkpoints (ViT, ResNet, timm) in the project's checkpoint layout, built in seconds offline."""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from transformers import (
    ConvNextImageProcessor,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

LABELS = ("apple", "banana", "cherry")
ARCHITECTURES = ("vit", "resnet", "timm")
TASKS = ("classification", "regression")
# Every build draws the same weights: a test's outcome cannot depend on the draw (an unlucky random tiny ResNet
# predicts one class for every input). tests/test_tiny_checkpoints.py checks these depend on their input.
SEED = 0


def _head_config(task: str) -> dict:
    if task == "regression":
        return dict(num_labels=1, problem_type="regression", target_name="bone age", target_unit="months")
    return dict(
        num_labels=len(LABELS),
        problem_type="single_label_classification",
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )


def _write_timm(out: Path, task: str) -> None:
    """A timm checkpoint as timm/* hub repos hold it, with the head config transformers reads."""
    model = timm.create_model("test_efficientnet", num_classes=_head_config(task)["num_labels"])
    timm.models.save_for_hf(model, str(out), safe_serialization=True)
    config = json.loads((out / "config.json").read_text())
    config.pop("model_args", None)  # see hub/default_backbone.py
    head = _head_config(task)
    if task == "classification":
        config["label_names"] = list(LABELS)
    else:
        config.update({k: v for k, v in head.items() if k != "num_labels"})
    config["pretrained_cfg"].update(input_size=[3, 32, 32], crop_pct=1.0, crop_mode="squash")
    (out / "config.json").write_text(json.dumps(config, indent=2))


def build_tiny_checkpoint(out: Path, architecture: str, task: str) -> Path:
    """Write a random `architecture` checkpoint for `task`, drawn from SEED, to `out` and return `out`."""
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():  # the caller's random state is left as it was
        torch.manual_seed(SEED)
        _write_checkpoint(out, architecture, task)
    return out


def _write_checkpoint(out: Path, architecture: str, task: str) -> None:
    head = _head_config(task)
    if architecture == "vit":
        config = ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            **head,
        )
        ViTForImageClassification(config).save_pretrained(out)
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    elif architecture == "resnet":
        config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", **head)
        ResNetForImageClassification(config).save_pretrained(out)
        ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875).save_pretrained(out)
    elif architecture == "timm":
        _write_timm(out, task)
    else:
        raise ValueError(architecture)
