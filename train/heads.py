"""The head a run trains and the backbone around it: find the head, freeze the rest, group the learning rates.

The modes (hub.contract.TrainingMode) use these: feature-extraction freezes the backbone and trains the head alone;
full trains everything (the backbone at its own learning rate); two-stage does the first, then the second.
"""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from hub.checkpoint import is_timm


def head_layer(model: nn.Module) -> nn.Linear:
    """The final Linear layer that maps pooled features to logits (the layer the new head replaces)."""
    if is_timm(model.config):  # transformers' TimmWrapper: timm knows its own classifier
        head = model.timm_model.get_classifier()
    else:  # ViT, ResNet, ConvNeXt, ...: `classifier` is a Linear or ends with one
        head = getattr(model, "classifier", None)
        if isinstance(head, nn.Sequential):
            linears = [module for module in head if isinstance(module, nn.Linear)]
            head = linears[-1] if linears else None
    if not isinstance(head, nn.Linear):
        raise ValueError(f"Cannot find the final Linear classifier of {type(model).__name__}.")
    return head


def head_parameter_ids(model: nn.Module) -> set[int]:
    return {id(parameter) for parameter in head_layer(model).parameters()}


def freeze_backbone(model: nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) every parameter except the head's."""
    head_ids = head_parameter_ids(model)
    for parameter in model.parameters():
        parameter.requires_grad = (not frozen) or id(parameter) in head_ids


@contextmanager
def batchnorm_statistics_kept(model: nn.Module, keep: bool):
    """While inside, every BatchNorm layer runs on the base checkpoint's running statistics, training or not.

    In train mode a BatchNorm normalises with the statistics of the current batch, which on a new domain
    (a few dozen food photos) are far from the pretrained ones: the features the new head was fitted to
    shift before any step is taken. A forward pre-hook, because the Trainer calls `model.train()` before
    every step. The affine weights still train (timm's `freeze_batch_norm_2d` would freeze them too and
    change the state_dict's layout).
    """
    hooks = [
        module.register_forward_pre_hook(_use_running_statistics)
        for module in model.modules()
        if keep and isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm))
    ]
    try:
        yield len(hooks)
    finally:
        for hook in hooks:
            hook.remove()


def _use_running_statistics(layer: nn.Module, inputs) -> None:
    layer.training = False  # this layer alone (train(False) would recurse into e.g. timm's activation children)


def parameter_groups(
    model: nn.Module, *, learning_rate: float, backbone_learning_rate: float, weight_decay: float
) -> list[dict]:
    """AdamW groups: head at `learning_rate`, backbone at `backbone_learning_rate`; no decay on norms/biases."""
    head_ids = head_parameter_ids(model)
    groups: dict[tuple[bool, bool], list] = {}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        key = (id(parameter) in head_ids, parameter.ndim > 1)
        groups.setdefault(key, []).append(parameter)
    return [
        {
            "params": params,
            "lr": learning_rate if is_head else backbone_learning_rate,
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (is_head, decays), params in groups.items()
    ]
