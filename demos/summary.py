"""What a checkpoint is, for the Model tab: a Keras-style layer table and the facts read from the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import torchinfo

from hub import Checkpoint, builtin_aliases
from hub.preprocessing import image_spec

TABLE_DEPTH = 3  # nesting levels shown: deep enough for stages and blocks, short enough to read
LABELS_SHOWN = 20


def layer_table(checkpoint: Checkpoint, depth: int = TABLE_DEPTH) -> pd.DataFrame:
    """One row per module down to `depth`: name, type, output shape, parameters, trainable (like Keras' summary())."""
    spec = image_spec(checkpoint.processor)
    stats = torchinfo.summary(
        checkpoint.model,
        input_data={"pixel_values": torch.zeros(1, 3, *spec.size)},
        depth=depth,
        verbose=0,
        col_names=("output_size", "num_params", "trainable"),
    )
    rows = [
        {
            "layer": _dotted_name(info),
            "type": info.class_name,
            "output shape": str(info.output_size) if info.output_size else "",
            "parameters": info.num_params,
            "trainable": info.trainable,
        }
        for info in stats.summary_list
        if info.depth <= depth
    ]
    return pd.DataFrame(rows)


def _dotted_name(info) -> str:
    """'timm_model.blocks.0' for a torchinfo row: its path from the model, as in named_modules()."""
    names = []
    while info.parent_info is not None:
        names.append(info.var_name)
        info = info.parent_info
    return ".".join(reversed(names)) or info.class_name


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters), sum(p.numel() for p in parameters if p.requires_grad)


def card_link(checkpoint: Checkpoint) -> str:
    """Markdown link to the model card: the hub page for a hub id, the README.md path for a folder."""
    card = checkpoint.folder / "README.md"
    if checkpoint.source not in builtin_aliases() and not Path(checkpoint.source).expanduser().is_dir():  # a hub id
        return f"[{checkpoint.source}](https://huggingface.co/{checkpoint.source})"
    return f"`{card}`" if card.is_file() else "no model card"


def describe(checkpoint: Checkpoint) -> str:
    """Markdown: name, card, task (labels or target and unit), input size and preprocessing, card metrics."""
    task = checkpoint.task
    spec = image_spec(checkpoint.processor)
    total, trainable = parameter_counts(checkpoint.model)
    if task.is_regression:
        task_line = f"regression: {task.target or 'a number'} in {task.unit or 'an unstated unit'}"
    else:
        shown = ", ".join(task.labels[:LABELS_SHOWN])
        more = f", … ({len(task.labels)} in all)" if len(task.labels) > LABELS_SHOWN else ""
        task_line = f"classification into {len(task.labels)} classes: {shown}{more}"
    metrics = (
        ", ".join(f"{name} = {value:g}" for name, value in checkpoint.metrics.items()) or "none stated in the card"
    )
    return "\n".join(
        [
            f"**{checkpoint.source}** ({type(checkpoint.model).__name__}), card: {card_link(checkpoint)}",
            f"- task: {task_line}",
            f"- input: {spec.height}x{spec.width} px, resize `{spec.resize}` (crop_pct {spec.crop_pct:g}, "
            f"{spec.interpolation}), mean {spec.mean}, std {spec.std}",
            f"- parameters: {total:,} ({trainable:,} trainable)",
            f"- card metrics: {metrics}",
        ]
    )
