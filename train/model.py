"""Building the model a run trains: the base checkpoint with a new head, its input size, and the device it runs on."""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import AutoConfig, PretrainedConfig

from hub.checkpoint import is_timm, load_checkpoint
from hub.contract import Task
from train import data, heads
from train.arguments import TrainError
from train.regression import TargetScaler, unfold_from_head


def build_model(
    base_ref: str, head: dict, *, allow_pickle: bool = False, scaler: TargetScaler | None = None
) -> tuple[nn.Module, object]:
    """The base checkpoint with a new `head` (the config keys of `head_config`), and its image processor.

    A base whose head already predicts these outputs keeps it; a regression head is turned back from the
    target's unit to the normalised scale we train on.
    """
    base = load_checkpoint(base_ref, allow_pickle=allow_pickle, config_overrides=head)
    if not keeps_head(AutoConfig.from_pretrained(base.folder), head):  # same size, other classes: still a new head
        heads.head_layer(base.model).reset_parameters()
    elif scaler is not None:
        unfold_from_head(heads.head_layer(base.model), scaler)
    return base.model, base.processor


def head_config(
    task: data.TaskData, *, target_name: str | None, target_unit: str | None, condition_labels: str | None
) -> dict:
    """The config keys of a new head for `task`: one name per output, the problem type, the target column, and the
    regression facts (all read back by hub.contract.Task.from_config)."""
    if task.is_classification:
        names, facts = list(task.labels), {"problem_type": "single_label_classification"}
    else:
        target_name = target_name or task.target_column.replace("_", " ")
        names = output_names(task, target_name, condition_labels)
        facts = {"problem_type": "regression", "target_name": target_name, "target_unit": target_unit}
        if task.condition_column:  # any program picks the row's output from these (DESIGN.md, the checkpoint contract)
            facts.update(condition_column=task.condition_column, condition_outputs=dict(task.condition_outputs))
    return {
        "num_labels": len(names),  # with id2label: a timm config otherwise keeps the base's number of classes
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
        "target_column": task.target_column,  # the dataset column it learnt: evaluation and corrections read it
        **facts,
    }


def keeps_head(base: PretrainedConfig, head: dict) -> bool:
    """Whether the base's head already predicts `head`'s outputs: the same classes, or as many regression outputs."""
    base_task = Task.from_config(base)
    if head["problem_type"] == "regression":
        return base_task.is_regression and base.num_labels == head["num_labels"]
    return base_task.labels == tuple(head["id2label"].values())


def output_names(task: data.TaskData, target_name: str, condition_labels: str | None) -> list[str]:
    """One name per output: "bone age", or "bone age (female)", "bone age (male)" for a conditioned head.

    `condition_labels` ("false=female,true=male") names the condition's values; by default "male=true".
    """
    if not task.condition_column:
        return [target_name]
    named = dict(pair.split("=", 1) for pair in condition_labels.split(",")) if condition_labels else {}
    unknown = set(named) - set(task.condition_outputs)
    if unknown:
        raise TrainError(
            f"--condition-labels names {', '.join(sorted(unknown))}, which '{task.condition_column}' never takes "
            f"(its values: {', '.join(task.condition_outputs)})."
        )
    return [
        f"{target_name} ({named.get(value, f'{task.condition_column}={value}')})"
        for value in sorted(task.condition_outputs, key=task.condition_outputs.get)
    ]


def resolution_processor(model, processor, *, image_size: int | None, resize: str | None, crop_pct: float | None):
    """Apply --image-size/--resize/--crop-pct to a timm checkpoint's pretrained_cfg, which the saved config carries."""
    if image_size is None and resize is None and crop_pct is None:
        return processor
    cfg = _pretrained_cfg(model, "--image-size/--resize/--crop-pct")
    if image_size is not None:
        cfg["input_size"] = [3, image_size, image_size]
        cfg.pop("test_input_size", None)  # timm would prefer it over input_size at eval time
    if resize is not None:
        cfg["crop_mode"] = {"squash": "squash", "crop": "center"}[resize]
    if crop_pct is not None:
        cfg["crop_pct"] = crop_pct
    return _with_cfg(model, processor, cfg)


def processor_at_size(model, processor, size: int):
    """The processor (and the saved pretrained_cfg) at another square input size: train low, serve high (FixRes)."""
    cfg = _pretrained_cfg(model, "--eval-image-size")
    cfg["input_size"] = [3, size, size]
    cfg.pop("test_input_size", None)
    return _with_cfg(model, processor, cfg)


def _pretrained_cfg(model, flags: str) -> dict:
    if not is_timm(model.config):
        raise TrainError(
            f"{flags} change a timm checkpoint's pretrained_cfg; "
            f"for {model.config.model_type} checkpoints train at the processor's own size."
        )
    return dict(model.config.pretrained_cfg)


def _with_cfg(model, processor, cfg: dict):
    model.config.pretrained_cfg = cfg
    return type(processor)(pretrained_cfg=cfg, architecture=model.config.architecture)


def prepare_for_device(model: nn.Module) -> nn.Module:
    """This process's GPU if there is one, and channels_last for CNNs (a ViT has one patch-embedding convolution).

    channels_last trains EfficientNet-Lite 1.6x faster in fp32 on a 2-core AVX-512 CPU too (bench/RESULTS.md).
    """
    if torch.cuda.is_available():
        model = model.to(torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))))
    if sum(isinstance(module, nn.Conv2d) for module in model.modules()) > 1:
        model = model.to(memory_format=torch.channels_last)
    return model
