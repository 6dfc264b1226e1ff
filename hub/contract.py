"""The checkpoint contract as types: what a checkpoint predicts (`Task`), how it was trained (`TrainingRecord`), and
the choices both are made of (enums).

Everything that reads a checkpoint's facts reads them here: the loader builds one `Task` from config.json, training
writes one `TrainingRecord` as training_config.json, and cards, evaluation and the demos read both back. Nothing here
imports torch, transformers or gradio, so that command lines can build their options from these enums at once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

TRAINING_CONFIG = "training_config.json"


class TaskKind(StrEnum):
    """The one task vocabulary of hub, train and the demos; the values are what JSON files and configs say."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"

    @property
    def headline_metric(self) -> str:
        """The metric a run is judged by (and picks its snapshot and serving size by): accuracy, or MAE."""
        return "accuracy" if self is TaskKind.CLASSIFICATION else "mae"

    def better(self, score: float, than: float) -> bool:
        """Whether `score` of the headline metric beats `than` (higher accuracy, lower MAE)."""
        return score > than if self is TaskKind.CLASSIFICATION else score < than


class TrainingMode(StrEnum):
    """Which parameters train, and when: the three transfer-learning modes."""

    FEATURE_EXTRACTION = "feature-extraction"
    FULL = "full"
    TWO_STAGE = "two-stage"

    @property
    def trains_head_first(self) -> bool:
        """A head trained on cached features of the frozen backbone (the whole run, or its first stage)."""
        return self in (TrainingMode.FEATURE_EXTRACTION, TrainingMode.TWO_STAGE)

    @property
    def trains_backbone(self) -> bool:
        return self in (TrainingMode.FULL, TrainingMode.TWO_STAGE)

    @property
    def description(self) -> str:
        """What the mode does, as a model card says it."""
        return {
            TrainingMode.FEATURE_EXTRACTION: "frozen backbone, only the new head trained",
            TrainingMode.FULL: "all weights trained",
            TrainingMode.TWO_STAGE: "head trained on the frozen backbone first, then all weights",
        }[self]


class Augmentation(StrEnum):
    """The training augmentations hub/preprocessing.py builds."""

    NONE = "none"
    RANDOM_CROP = "random-crop"  # photos: timm's RandomResizedCrop transform, with its options
    RADIOGRAPH = "radiograph"  # X-rays: the whole hand kept, shown as other sources show it


class TrainingPrecision(StrEnum):
    """What training computes in. AUTO: bf16 where the device computes it natively, else fp32."""

    AUTO = "auto"
    BF16 = "bf16"
    FP32 = "fp32"


@dataclass(frozen=True)
class KindOfTask:
    """The `kind` field of a task (hub's Task, train's TaskData): checked, and asked by name."""

    kind: TaskKind  # a plain "classification" or "regression" is turned into its TaskKind

    def __post_init__(self):
        object.__setattr__(self, "kind", TaskKind(self.kind))  # a kind outside the vocabulary fails here

    @property
    def is_classification(self) -> bool:
        return self.kind is TaskKind.CLASSIFICATION

    @property
    def is_regression(self) -> bool:
        return self.kind is TaskKind.REGRESSION


@dataclass(frozen=True)
class Task(KindOfTask):
    """What a checkpoint predicts, read once from its config.json (`Task.from_config`)."""

    labels: tuple[str, ...] = ()  # classification: the class names in output order
    output_names: tuple[str, ...] = ()  # every output's id2label name (classes, or e.g. "bone age (female)")
    target: str | None = None  # regression: the predicted quantity, e.g. "bone age"
    unit: str | None = None  # regression: the unit of the logits, e.g. "months"
    target_column: str | None = None  # the dataset column it was trained on (None in checkpoints from elsewhere)
    condition_column: str | None = None  # regression: the side column that picks the output, e.g. "male"
    # condition value as written in metadata.csv -> output index, e.g. {"false": 0, "true": 1}
    condition_outputs: Mapping[str, int] = field(default_factory=dict, hash=False)
    ood_threshold: float | None = None  # classification: calibrated top probability below which nothing fits

    @classmethod
    def from_config(cls, config) -> Task:
        """The task facts the contract stores in config.json, from a loaded config or the file's raw dict."""
        read = config.get if isinstance(config, Mapping) else lambda key, default=None: getattr(config, key, default)
        names = _output_names(read)
        if read("problem_type") == "regression" or len(names) == 1:
            column = read("condition_column")
            return cls(
                kind=TaskKind.REGRESSION,
                output_names=names,
                target=read("target_name"),
                unit=read("target_unit"),
                target_column=read("target_column"),
                condition_column=column,
                condition_outputs={str(k): int(v) for k, v in (read("condition_outputs") or {}).items()}
                if column
                else {},
            )
        threshold = read("ood_threshold")
        return cls(
            kind=TaskKind.CLASSIFICATION,
            labels=names,
            output_names=names,
            target_column=read("target_column"),
            ood_threshold=None if threshold is None else float(threshold),
        )

    @property
    def headline_metric(self) -> str:
        return self.kind.headline_metric

    def output_indices(self, condition: str | None) -> list[int]:
        """The regression outputs that answer for a condition value: its own, or all of them when it is unknown
        (None). An unconditioned checkpoint has one output, logits[:, 0], whatever the condition."""
        if not self.condition_outputs:
            return [0]
        if condition is None:
            return sorted(self.condition_outputs.values())
        if condition not in self.condition_outputs:
            known = ", ".join(self.condition_outputs)
            raise ValueError(f"The model knows {self.condition_column} = {known}, not '{condition}'.")
        return [self.condition_outputs[condition]]


def _output_names(read) -> tuple[str, ...]:
    """id2label in output order; a timm config that was never given id2label names its outputs in label_names."""
    id2label = read("id2label")
    if id2label:
        return tuple(id2label[key] for key in sorted(id2label, key=int))
    return tuple(read("label_names") or ())


@dataclass(frozen=True)
class Recipe:
    """The training-recipe options of a run that trained the backbone, as its card states them."""

    auto_augment: str | None = None
    crop_scale_min: float | None = None
    color_jitter: float | None = None
    random_erasing: float | None = None
    label_smoothing: float | None = None
    reverse_ce_weight: float | None = None  # symmetric cross-entropy's reverse term (train/stages.py)
    mixup: float | None = None
    cutmix: float | None = None
    ema_decay: float | None = None
    teacher: str | None = None  # the checkpoint it was distilled from (train/distillation.py)
    distill_weight: float | None = None
    distill_temperature: float | None = None
    warmup_ratio: float | None = None
    weight_decay: float | None = None
    precision: str | None = None  # what it computed in: bf16 or fp32 (TrainingPrecision.AUTO resolved)

    PHOTO_ONLY = ("auto_augment", "crop_scale_min", "color_jitter", "random_erasing")  # --augment random-crop only


@dataclass(frozen=True)
class TrainingRecord:
    """training_config.json: how a run was trained, what it measured while choosing, and how to run it again.

    `train` writes it (`write`), cards and evaluation read it (`read`). Fields that do not apply to a run's task or
    mode are None.
    """

    base_model: str
    dataset: str
    task: TaskKind
    mode: TrainingMode
    command: str
    target_column: str
    epochs: float | None = None
    head_epochs: float | None = None
    learning_rate: float | None = None
    head_learning_rate: float | None = None
    backbone_learning_rate: float | None = None
    freeze_batchnorm: bool | None = None
    batch_size: int | None = None
    image_size: tuple[int, int] | None = None  # (height, width) saved with the checkpoint
    train_image_size: int | None = None
    eval_image_size: int | None = None
    augment: Augmentation = Augmentation.NONE
    recipe: Recipe | None = None
    data_terms: str | None = None
    seed: int | None = None
    earlier_commands: tuple[str, ...] = ()  # the runs a local base checkpoint came from, oldest first
    resume_command: str | None = None  # the last `--resume` of an interrupted run
    # regression
    loss: str | None = None
    target_unit: str | None = None
    condition_column: str | None = None
    # what the run chose and measured at its end
    weights: str | None = None  # "ema" or "final": which weights were saved; "average" for train.average's
    averaged_from: tuple[str, ...] = ()  # train.average: the checkpoints whose weights were averaged into this one
    eval_sizes: Mapping[str, float] | None = field(default=None, hash=False)  # headline metric by served size
    calibration: Mapping[str, float] | None = field(default=None, hash=False)

    def __post_init__(self):
        # JSON gives strings and lists: turn them into the field types, refusing values outside the vocabularies
        object.__setattr__(self, "task", TaskKind(self.task))
        object.__setattr__(self, "mode", TrainingMode(self.mode))
        object.__setattr__(self, "augment", Augmentation(self.augment))
        object.__setattr__(self, "earlier_commands", tuple(self.earlier_commands))
        object.__setattr__(self, "averaged_from", tuple(self.averaged_from))
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(self.image_size))
        if isinstance(self.recipe, Mapping):
            object.__setattr__(self, "recipe", Recipe(**self.recipe))

    @property
    def all_commands(self) -> list[str]:
        """Every command that made this checkpoint, oldest first."""
        return [*self.earlier_commands, self.command]

    @classmethod
    def read(cls, folder: Path) -> TrainingRecord | None:
        """The record in `folder`, or None when no TransferLab run wrote the folder."""
        path = Path(folder) / TRAINING_CONFIG
        return cls.from_json(json.loads(path.read_text())) if path.is_file() else None

    @classmethod
    def from_json(cls, values: Mapping[str, object]) -> TrainingRecord:
        """A record from the file's dict; a key that is not a field is an error, not silently dropped."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{TRAINING_CONFIG} has keys this version does not know: {', '.join(sorted(unknown))}.")
        return cls(**values)

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples as lists, enums as their strings

    def write(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / TRAINING_CONFIG
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path
