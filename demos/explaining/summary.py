"""What a checkpoint is, in words a person reads: a Keras-style layer table, the facts read from the checkpoint,
its model card, and its class names as labels ("bread_pudding" -> "Bread pudding").
"""

from __future__ import annotations

import re
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch
import torchinfo
from huggingface_hub import ModelCard
from pandas.io.formats.style import Styler

from demos.serving.inference import served
from hub import Checkpoint, builtin_aliases, parameter_counts
from hub.preprocessing import image_spec

if TYPE_CHECKING:
    from demos.models import DemoModels

TABLE_DEPTH = 3  # nesting levels shown: deep enough for stages and blocks, short enough to read
LABELS_SHOWN = 20
LABEL_SEPARATOR = "; "  # ImageNet labels hold commas themselves ("tench, Tinca tinca")
# Each model's table, made by its first request: it runs the model once, which a start-up need not wait for. Weak:
# a visitor's model dropped from memory takes its table with it.
_TABLES: weakref.WeakKeyDictionary[torch.nn.Module, pd.DataFrame] = weakref.WeakKeyDictionary()


def human_label(label: str) -> str:
    """A class name as a person reads it: "bread_pudding" -> "Bread pudding". For display only: id2label stays."""
    text = label.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def model_choices(models: DemoModels, names: list[str] | None = None) -> list[tuple[str, str]]:
    """(shown, value) of the loaded models (or of `names`) for the tabs' model lists.

    The operator's models are shown by their checkpoint's name ("food10", as the captions and model cards call it);
    the value stays their role ("food"), the name API callers pass. A visitor's model is shown as they typed it.
    """
    names = models.names() if names is None else names
    return [(models.get(name).name if name in models.checkpoints else name, name) for name in names]


def label_names(checkpoint: Checkpoint, limit: int = LABELS_SHOWN) -> str:
    """The class names as the checkpoint stores them (id2label), each in code quotes: ImageNet's hold commas."""
    labels = checkpoint.task.labels
    shown = ", ".join(f"`{label}`" for label in labels[:limit])
    return f"{shown}, … ({len(labels)} in all)" if len(labels) > limit else shown


def known_classes(checkpoint: Checkpoint, limit: int = LABELS_SHOWN) -> str:
    """The classes a classifier knows, as human labels: all of them, or the first `limit` and how many in all."""
    labels = [human_label(label) for label in checkpoint.task.labels]
    shown = LABEL_SEPARATOR.join(labels[:limit])
    return f"{shown}{LABEL_SEPARATOR}… ({len(labels)} in all)" if len(labels) > limit else shown


def layer_table(checkpoint: Checkpoint) -> pd.DataFrame:
    """One row per module down to TABLE_DEPTH: name, type, output shape, parameters, trainable (like Keras'
    summary()); made once per checkpoint."""
    if checkpoint.model not in _TABLES:
        _TABLES[checkpoint.model] = _new_layer_table(checkpoint, TABLE_DEPTH)
    return _TABLES[checkpoint.model]


def _new_layer_table(checkpoint: Checkpoint, depth: int) -> pd.DataFrame:
    spec = image_spec(checkpoint.processor)
    with served(checkpoint).hookable() as explanation_copy:  # torchinfo hooks every module: not the served one
        stats = torchinfo.summary(
            explanation_copy,
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


def readable_layer_table(checkpoint: Checkpoint) -> Styler:
    """layer_table as shown in the app: parameter counts with thousands separators (the values stay numbers)."""
    return layer_table(checkpoint).style.format({"parameters": "{:,}"})


def _dotted_name(info) -> str:
    """'timm_model.blocks.0' for a torchinfo row: its path from the model, as in named_modules()."""
    names = []
    while info.parent_info is not None:
        names.append(info.var_name)
        info = info.parent_info
    return ".".join(reversed(names)) or info.class_name


def is_hub_id(checkpoint: Checkpoint) -> bool:
    return checkpoint.source not in builtin_aliases() and not Path(checkpoint.source).expanduser().is_dir()


def card_link(checkpoint: Checkpoint) -> str:
    """Where the model card is, in words for a web visitor (never a path on the server)."""
    if is_hub_id(checkpoint):
        return f"[{checkpoint.name} on the hub](https://huggingface.co/{checkpoint.source})"
    return "the model card below" if (checkpoint.folder / "README.md").is_file() else "no model card"


def card_text(checkpoint: Checkpoint) -> str | None:
    """The model card's Markdown without its YAML metadata (which the page would show raw), or None without a card.

    Images the card embeds by relative path (a confusion matrix) are files of the checkpoint folder, not web
    addresses: they are named instead of shown.
    """
    path = checkpoint.folder / "README.md"
    if not path.is_file():
        return None
    return _name_local_images(ModelCard.load(path).text)


def _name_local_images(markdown: str) -> str:
    # ![Confusion matrix](confusion_matrix.png) -> *(image in the checkpoint folder: confusion_matrix.png)*
    return re.sub(r"!\[([^\]]*)\]\((?!https?://)([^)]+)\)", r"*(\1: the image \2 in the checkpoint folder)*", markdown)


def describe(checkpoint: Checkpoint) -> str:
    """Markdown: name, card, task (labels or target and unit), input size and preprocessing, card metrics."""
    task = checkpoint.task
    spec = image_spec(checkpoint.processor)
    trainable, total = parameter_counts(checkpoint.model)
    if task.is_regression:
        task_line = f"regression: {task.target or 'a number'} in {task.unit or 'an unstated unit'}"
    else:
        task_line = f"classification into {len(task.labels)} classes: {label_names(checkpoint)}"
    metrics = (
        ", ".join(f"{name} = {value:g}" for name, value in checkpoint.metrics.items()) or "none stated in the card"
    )
    return "\n".join(
        [
            f"**{checkpoint.name}** ({type(checkpoint.model).__name__}), card: {card_link(checkpoint)}",
            f"- task: {task_line}",
            (
                f"- input: {spec.height}x{spec.width} px, resize `{spec.resize}` (crop_pct {spec.crop_pct:g}, "
                f"{spec.interpolation}), mean {spec.mean}, std {spec.std}"
            ),
            f"- parameters: {total:,} ({trainable:,} trainable)",
            f"- card metrics: {metrics}",
        ]
    )
