"""The arguments of `python -m train` (one dataclass, as transformers' example scripts have), its parser and error.

The parser is built from the dataclass as transformers' HfArgumentParser builds one, without importing torch or
transformers, so that `python -m train --help` answers at once. Options are shown kebab-case (`--output-dir`), as
the README writes them; the snake_case spelling (`--output_dir`) is still accepted.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import enum
import json
import types
import typing
from dataclasses import dataclass, field

from hub.constants import ALLOW_PICKLE_HELP
from hub.contract import Augmentation, TrainingMode, TrainingPrecision

LOSSES = ("mae", "mse", "huber")  # train/regression.py builds each


@dataclass
class TrainArguments:
    dataset: str = field(metadata={"help": "A hub dataset id or a local imagefolder (with train/ and validation/)."})
    output_dir: str = field(metadata={"help": "The run folder: the checkpoint, its metrics, plots and logs."})
    model: str = field(
        default="efficientnet-lite0", metadata={"help": "Base checkpoint: hub id, folder or builtin alias."}
    )
    target_column: str | None = field(
        default=None, metadata={"help": "Class-label or numeric column (default: label)."}
    )
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: the first image column)."})
    train_split: str = field(default="train", metadata={"help": "The split to train on."})
    eval_split: str = field(default="validation", metadata={"help": "The split to validate on (and to calibrate on)."})
    mode: TrainingMode = field(
        default=TrainingMode.TWO_STAGE,
        metadata={"choices": tuple(TrainingMode), "help": "Which parameters train, and when."},
    )
    epochs: float = field(default=3.0, metadata={"help": "Epochs of the stage that trains the whole network."})
    head_epochs: float = field(
        default=10.0, metadata={"help": "Epochs of the frozen-backbone head stage (cached features)."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Head learning rate while the whole network trains."})
    backbone_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Backbone learning rate (default: 0.2x learning rate in two-stage, 1x in full)."},
    )
    head_learning_rate: float = field(
        default=3e-3, metadata={"help": "Learning rate of the frozen-backbone head stage."}
    )
    freeze_batchnorm: bool = field(
        default=True,
        metadata={
            "help": "Keep BatchNorm layers on the base checkpoint's statistics while the backbone trains.",
            "no_help": "Let BatchNorm layers adapt their statistics to the new data while the backbone trains "
            "(default: they keep the base checkpoint's).",
        },
    )
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Share of the steps that warm the learning rate up."})
    batch_size: int = field(default=32, metadata={"help": "Training images per step (per process under torchrun)."})
    eval_batch_size: int = field(default=64, metadata={"help": "Images per step when evaluating."})
    image_size: int | None = field(default=None, metadata={"help": "Train at this square size (timm checkpoints)."})
    resize: str | None = field(
        default=None,
        metadata={"choices": ("crop", "squash"), "help": "squash: the whole image to the input size (X-rays)."},
    )
    crop_pct: float | None = field(
        default=None, metadata={"help": "Fraction of the resized image the centre crop keeps."}
    )
    eval_image_size: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate at this size (train low, serve high: FixRes); the better of it and --image-size is saved."
        },
    )
    augment: Augmentation = field(
        default=Augmentation.RANDOM_CROP,
        metadata={
            "choices": tuple(Augmentation),
            "help": "random-crop: timm's photo transform; radiograph for X-rays.",
        },
    )
    auto_augment: str | None = field(
        default=None,
        metadata={"help": "random-crop: timm policy, e.g. rand-m9-mstd0.5 (RandAugment) or trivialaugment."},
    )
    crop_scale_min: float = field(
        default=0.25, metadata={"help": "random-crop: smallest crop area kept, as a fraction."}
    )
    color_jitter: float = field(
        default=0.3, metadata={"help": "random-crop: colour jitter (0 turns it off; off under --auto-augment)."}
    )
    random_erasing: float = field(default=0.0, metadata={"help": "random-crop: probability of timm's random erasing."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Classification: label smoothing of the targets."})
    reverse_ce_weight: float = field(
        default=0.0,
        metadata={
            "help": "Classification: add this times the reverse cross-entropy to the loss (symmetric cross-entropy, "
            "Wang et al. 2019: bounded, so wrongly labelled images pull less; 0 = off)."
        },
    )
    mixup: float = field(default=0.0, metadata={"help": "Classification: timm Mixup alpha (0 = off)."})
    cutmix: float = field(default=0.0, metadata={"help": "Classification: timm CutMix alpha (0 = off)."})
    ema_decay: float | None = field(
        default=None, metadata={"help": "Keep an EMA of the weights (e.g. 0.998); saved when it validates better."}
    )
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Classification: distil from this checkpoint (hub id, folder or alias; the same classes) while "
            "the whole network trains. It sees each augmented batch at its own input size; the student is saved."
        },
    )
    distill_weight: float = field(
        default=0.5, metadata={"help": "--teacher: its share of the loss (the labels' loss gets the rest)."}
    )
    distill_temperature: float = field(
        default=1.0, metadata={"help": "--teacher: softmax temperature of the distillation loss."}
    )
    cache_images: bool = field(
        default=True,
        metadata={
            "help": "Decode every image once into memory instead of each epoch.",
            "no_help": "Read and decode the image files every epoch (default: each is decoded once, into memory).",
        },
    )
    calibrate: bool = field(
        default=True,
        metadata={
            "help": "Classification: fold a temperature fitted on validation into the head.",
            "no_help": "Classification: save the head uncalibrated (default: a temperature fitted on validation is "
            "folded into it).",
        },
    )
    condition_column: str | None = field(
        default=None,
        metadata={"help": "Regression: one output per value of this column (e.g. male); each row uses its own."},
    )
    condition_labels: str | None = field(
        default=None, metadata={"help": "Names of the condition's values for id2label, e.g. false=female,true=male."}
    )
    robustness_check: bool = field(
        default=False,
        metadata={"help": "Regression on X-rays: also report MAE on validation given other sources' look."},
    )
    loss: str = field(default="mae", metadata={"choices": LOSSES, "help": "Regression loss."})
    target_name: str | None = field(default=None, metadata={"help": "Regression: what is predicted, e.g. 'bone age'."})
    target_unit: str | None = field(default=None, metadata={"help": "Regression: the unit of the target, e.g. months."})
    data_terms: str | None = field(default=None, metadata={"help": "The data's terms of use, for the model card."})
    seed: int = field(default=42, metadata={"help": "Seed of the head's initialisation, shuffling and augmentation."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint-* in the output dir."})
    torch_compile: bool = field(default=False, metadata={"help": "torch.compile the model (GPU)."})
    precision: TrainingPrecision = field(
        default=TrainingPrecision.AUTO,
        metadata={
            "choices": tuple(TrainingPrecision),
            "help": "bf16 autocast, or fp32. auto: bf16 where the GPU or CPU computes it natively (AVX512-BF16, AMX).",
        },
    )
    dataloader_workers: int = field(default=2, metadata={"help": "Data-loading processes (0: load in this one)."})
    logging_steps: int = field(default=20, metadata={"help": "Log the training loss every this many steps."})
    progress_jsonl: str | None = field(
        default=None,
        metadata={
            "metavar": "PATH",
            "help": "Append the run's progress to this file, one JSON object a line (for programs to follow).",
        },
    )
    allow_pickle: bool = field(default=False, metadata={"help": f"--model: {ALLOW_PICKLE_HELP}."})
    push_to_hub: bool = field(
        default=False, metadata={"help": "After training, publish the run folder as --hub-model-id."}
    )
    hub_model_id: str | None = field(default=None, metadata={"help": "The hub repo to push to: your-name/model-name."})
    private: bool = field(default=False, metadata={"help": "Create the hub repo private."})
    demo_space: str | None = field(
        default=None, metadata={"help": "After the push, publish the demo app running the model as this Space."}
    )

    def __post_init__(self):
        # A JSON config and a caller's keywords give plain strings: the choices become their enums (or fail here).
        self.mode = TrainingMode(self.mode)
        self.augment = Augmentation(self.augment)
        self.precision = TrainingPrecision(self.precision)


class TrainError(ValueError):
    """The requested run cannot start; the message says what to change."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Names each option once, kebab-case (its snake_case alias still parses), and states a default once: where the
    help does not already say it, and not for on/off flags, whose help says what they change."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = copy.copy(action)
        shown.option_strings = [option for option in action.option_strings if "_" not in option]
        return super()._format_action_invocation(shown)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # by identity: `in` would also match 0.0 and 1.0 (== False, True), whose defaults are worth stating
        unstated = any(action.default is value for value in (None, False, True, argparse.SUPPRESS))
        if unstated or "default" in text or action.nargs == 0:
            return text
        return f"{text} (default: %(default)s)"


def _option_names(name: str, prefix: str = "") -> list[str]:
    """`--prefix-name` as shown, then `--prefix_name` as transformers' HfArgumentParser also accepts it."""
    kebab = f"--{prefix}{name}".replace("_", "-")
    snake = f"--{prefix.replace('-', '_')}{name}"
    return [kebab] if kebab == snake else [kebab, snake]


def _value_type(annotation) -> type:
    """str for `str | None`, int for `int`: the type argparse converts a value to. A choice stays a string for
    argparse, so that a typo is told the choices; TrainArguments turns it into its enum."""
    if isinstance(annotation, types.UnionType):
        return next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return str if issubclass(annotation, enum.Enum) else annotation


def _add_field(parser: argparse.ArgumentParser, spec: dataclasses.Field, annotation) -> None:
    names, help_text = _option_names(spec.name), spec.metadata.get("help")
    if annotation is bool and spec.default is True:  # on by default: --no-NAME turns it off, --NAME is implied
        no_names = _option_names(spec.name, "no-")
        parser.add_argument(*no_names, dest=spec.name, action="store_false", help=spec.metadata["no_help"])
        parser.add_argument(*names, dest=spec.name, action="store_true", help=argparse.SUPPRESS)
    elif annotation is bool:
        parser.add_argument(*names, dest=spec.name, action="store_true", help=help_text)
    else:
        required = spec.default is dataclasses.MISSING
        parser.add_argument(
            *names,
            dest=spec.name,
            type=_value_type(annotation),
            choices=spec.metadata.get("choices"),
            required=required,
            default=None if required else spec.default,
            metavar=None if "choices" in spec.metadata else spec.metadata.get("metavar", spec.name.upper()),
            help=help_text,
        )


def build_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """The parser of TrainArguments: one option per field, help from the field's metadata."""
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=f"{prog} --dataset DATASET --output-dir OUTPUT_DIR [OPTIONS]\n       {prog} CONFIG.json",
        description=description,
        epilog=epilog,
        formatter_class=_HelpFormatter,
    )
    annotations = typing.get_type_hints(TrainArguments)
    for spec in dataclasses.fields(TrainArguments):
        _add_field(parser, spec, annotations[spec.name])
    return parser


def arguments_from_json(parser: argparse.ArgumentParser, path: str) -> TrainArguments:
    """TrainArguments from a JSON file of {field name: value}; an unknown or missing name is a usage error."""
    with open(path) as file:
        values = {key.replace("-", "_"): value for key, value in json.load(file).items()}
    fields = {spec.name: spec for spec in dataclasses.fields(TrainArguments)}
    unknown = sorted(set(values) - set(fields))
    missing = [name for name, spec in fields.items() if spec.default is dataclasses.MISSING and name not in values]
    problems = [f"unknown arguments: {', '.join(unknown)}"] if unknown else []
    problems += [f"missing arguments: {', '.join(missing)}"] if missing else []
    if problems:
        parser.error(f"{path}: {'; '.join(problems)}")
    try:
        return TrainArguments(**values)
    except ValueError as err:  # a choice outside its enum, e.g. "mode": "partial"
        parser.error(f"{path}: {err}")
