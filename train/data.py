"""Datasets for training: a hub dataset id or a local imagefolder, validated before training starts.

Validation fails early with a message that names what is wrong: a missing split, an empty split, an
unknown column, a target of the wrong kind, or (decoding every image once) the unreadable file.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import ClassLabel, Dataset, DatasetDict, Value, load_dataset
from datasets import Image as ImageFeature
from PIL import Image


class DataError(ValueError):
    """The dataset cannot be used for training; the message says what is wrong and where."""


@dataclass(frozen=True)
class TaskData:
    """What the dataset asks the model to predict."""

    kind: str  # "classification" or "regression"
    image_column: str
    target_column: str
    labels: tuple[str, ...] = ()  # classification: class names in label-id order


def dataset_name(dataset: str) -> str:
    """A short name for cards and results: the folder name of a local dataset, else the hub id."""
    path = Path(dataset).expanduser()
    return path.resolve().name if path.is_dir() else dataset


def load_splits(dataset: str, *, train_split: str, eval_split: str) -> tuple[Dataset, Dataset]:
    """Load (train, eval) splits from a local imagefolder or a hub dataset id."""
    path = Path(dataset).expanduser()
    if path.exists() and not path.is_dir() or not path.exists() and dataset.startswith((".", "/", "~")):
        raise DataError(f"'{dataset}' is not a dataset folder (no such directory).")
    try:
        splits = load_dataset("imagefolder", data_dir=str(path)) if path.is_dir() else load_dataset(dataset)
    except (FileNotFoundError, ConnectionError, ValueError) as err:
        # datasets reports an empty split as 'Instruction "<split>" corresponds to no data!'
        raise DataError(f"Could not load the dataset '{dataset}' (is a split empty?): {err}") from err
    if not isinstance(splits, DatasetDict):
        raise DataError(f"'{dataset}' did not load as a set of named splits.")
    for split in (train_split, eval_split):
        if split not in splits:
            raise DataError(f"'{dataset}' has no split '{split}'; its splits are: {', '.join(splits)}.")
        if len(splits[split]) == 0:
            raise DataError(f"The '{split}' split of '{dataset}' is empty.")
    return splits[train_split], splits[eval_split]


def resolve_task(train: Dataset, *, target_column: str | None, image_column: str | None) -> TaskData:
    """Find the image and target columns and decide the task from the target's feature type."""
    features = train.features
    columns = ", ".join(features)
    images = [name for name, feature in features.items() if isinstance(feature, ImageFeature)]
    if image_column is None:
        if not images:
            raise DataError(f"The dataset has no image column (columns: {columns}).")
        image_column = images[0]
    elif image_column not in features or not isinstance(features[image_column], ImageFeature):
        raise DataError(f"'{image_column}' is not an image column of the dataset (columns: {columns}).")
    target_column = target_column or "label"
    if target_column not in features:
        raise DataError(
            f"The dataset has no column '{target_column}' (columns: {columns}). "
            "Pass the label or numeric target with --target-column."
        )
    feature = features[target_column]
    if isinstance(feature, ClassLabel):
        return TaskData("classification", image_column, target_column, tuple(feature.names))
    if isinstance(feature, Value) and (feature.dtype.startswith(("int", "uint", "float"))):
        return TaskData("regression", image_column, target_column)
    raise DataError(
        f"Column '{target_column}' is {feature}: neither class labels (ClassLabel) nor numbers to regress."
    )


def check_targets(split: Dataset, task: TaskData, split_name: str) -> None:
    """Regression targets must all be finite numbers."""
    if task.kind != "regression":
        return
    for index, value in enumerate(split[task.target_column]):
        if value is None or not math.isfinite(float(value)):
            raise DataError(f"Row {index} of the '{split_name}' split has no valid '{task.target_column}' ({value}).")


def check_images(split: Dataset, image_column: str, split_name: str) -> None:
    """Decode every image once, so a broken file stops the run now (naming it) and not hours later."""
    raw = split.cast_column(image_column, ImageFeature(decode=False))
    for index, item in enumerate(raw[image_column]):
        where = item.get("path") or f"row {index} of the '{split_name}' split"
        try:
            source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
            with Image.open(source) as image:
                image.load()
        except (OSError, ValueError, SyntaxError, TypeError) as err:
            raise DataError(f"Unreadable image {where}: {err}") from err


def with_image_transform(split: Dataset, task: TaskData, transform) -> Dataset:
    """Apply `transform` lazily, batch by batch, producing the model's `pixel_values` and `labels`."""

    def to_model_inputs(batch: dict) -> dict:
        return {
            "pixel_values": [transform(image) for image in batch[task.image_column]],
            # Regression targets may be stored as integers (months): the loss needs floats.
            "labels": [float(v) for v in batch[task.target_column]] if task.kind == "regression" else batch[task.target_column],
        }

    return split.with_transform(to_model_inputs)


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack transformed examples into a batch."""
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples]),
    }
