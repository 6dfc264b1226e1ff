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
from tqdm.auto import tqdm

from hub.contract import KindOfTask, TaskKind


class DataError(ValueError):
    """The dataset cannot be used for training; the message says what is wrong and where."""


@dataclass(frozen=True)
class TaskData(KindOfTask):
    """What the dataset asks the model to predict."""

    kind: TaskKind  # a plain "classification" or "regression" is turned into its TaskKind
    image_column: str
    target_column: str
    labels: tuple[str, ...] = ()  # classification: class names in label-id order
    # regression conditioned on a side column (bone age by sex): one output per value of that column
    condition_column: str | None = None
    condition_outputs: dict[str, int] | None = None  # value as written in metadata.csv -> output index

    @property
    def num_outputs(self) -> int:
        if self.is_classification:
            return len(self.labels)
        return len(self.condition_outputs) if self.condition_outputs else 1


def condition_value(value) -> str:
    """A condition value as metadata.csv writes it: datasets reads `true`/`false` as booleans."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def dataset_name(dataset: str) -> str:
    """A short name for cards and results: the folder name of a local dataset, else the hub id."""
    path = Path(dataset).expanduser()
    return path.resolve().name if path.is_dir() else dataset


def _load_all(dataset: str) -> DatasetDict:
    """Every split of a local imagefolder or a hub dataset id."""
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
    return splits


def _split(splits: DatasetDict, dataset: str, split: str) -> Dataset:
    if split not in splits:
        raise DataError(f"'{dataset}' has no split '{split}'; its splits are: {', '.join(splits)}.")
    if len(splits[split]) == 0:
        raise DataError(f"The '{split}' split of '{dataset}' is empty.")
    return splits[split]


def load_split(dataset: str, split: str) -> Dataset:
    """One split of a local imagefolder or a hub dataset id."""
    return _split(_load_all(dataset), dataset, split)


def load_splits(dataset: str, *, train_split: str, eval_split: str) -> tuple[Dataset, Dataset]:
    """Load (train, eval) splits from a local imagefolder or a hub dataset id."""
    splits = _load_all(dataset)
    return _split(splits, dataset, train_split), _split(splits, dataset, eval_split)


def resolve_task(
    train: Dataset, *, target_column: str | None, image_column: str | None, condition_column: str | None = None
) -> TaskData:
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
        return TaskData(TaskKind.CLASSIFICATION, image_column, target_column, tuple(feature.names))
    if isinstance(feature, Value) and (feature.dtype.startswith(("int", "uint", "float"))):
        return TaskData(TaskKind.REGRESSION, image_column, target_column, **_condition(train, condition_column))
    raise DataError(f"Column '{target_column}' is {feature}: neither class labels (ClassLabel) nor numbers to regress.")


def _condition(train: Dataset, column: str | None) -> dict:
    """condition_column/condition_outputs for a conditioned regression: outputs in sorted value order."""
    if column is None:
        return {}
    if column not in train.features:
        raise DataError(
            f"The dataset has no column '{column}' for --condition-column (columns: {', '.join(train.features)})."
        )
    values = sorted({condition_value(value) for value in train[column] if value is not None})
    if not 2 <= len(values) <= 16:
        raise DataError(f"--condition-column {column} has {len(values)} distinct values; it needs 2 to 16 (e.g. sex).")
    return {"condition_column": column, "condition_outputs": {value: i for i, value in enumerate(values)}}


def check_targets(split: Dataset, task: TaskData, split_name: str) -> None:
    """Regression targets must all be finite numbers."""
    if not task.is_regression:
        return
    for index, value in enumerate(split[task.target_column]):
        if value is None or not math.isfinite(float(value)):
            raise DataError(f"Row {index} of the '{split_name}' split has no valid '{task.target_column}' ({value}).")
    if task.condition_column is None:
        return
    for index, value in enumerate(split[task.condition_column]):
        if value is None or condition_value(value) not in task.condition_outputs:
            known = ", ".join(task.condition_outputs)
            raise DataError(
                f"Row {index} of the '{split_name}' split has '{task.condition_column}' = {value}, "
                f"not one of the training split's values ({known})."
            )


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


def targets(split: Dataset, task: TaskData) -> list:
    """The `labels` the model trains on: class ids; floats; or (float, output index) for a conditioned regression."""
    values = split[task.target_column]
    if task.is_classification:
        return list(values)
    if task.condition_column is None:
        return [float(v) for v in values]  # targets may be stored as integers (months): the loss needs floats
    outputs = [task.condition_outputs[condition_value(v)] for v in split[task.condition_column]]
    return [(float(v), float(output)) for v, output in zip(values, outputs)]


def with_image_transform(split: Dataset, task: TaskData, transform) -> Dataset:
    """Apply `transform` lazily, batch by batch, producing the model's `pixel_values` and `labels`."""
    labelled = split.add_column("_labels", targets(split, task))

    def to_model_inputs(batch: dict) -> dict:
        return {"pixel_values": [transform(image) for image in batch[task.image_column]], "labels": batch["_labels"]}

    return labelled.with_transform(to_model_inputs)


class DecodedImages(torch.utils.data.Dataset):
    """Every image decoded once into memory, so each epoch's cores transform pixels instead of decoding files.

    Images whose shorter side exceeds `max_side` are reduced to it first (the transforms never need more).
    Why hand-written: datasets decodes on every access, and neither timm nor torchvision keeps decoded images.
    """

    def __init__(self, split: Dataset, task: TaskData, transform, *, max_side: int):
        self.images = [
            _reduced(image.convert("RGB"), max_side)
            for image in tqdm(split[task.image_column], desc="decoding images once")
        ]
        self.labels = targets(split, task)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.transform(self.images[index]), "labels": self.labels[index]}


def _reduced(image: Image.Image, max_side: int) -> Image.Image:
    shorter = min(image.size)
    if shorter <= max_side:
        return image
    scale = max_side / shorter
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack transformed examples into a batch."""
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples]),
    }
