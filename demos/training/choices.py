"""A run's choices as the Train tab offers them, and the `python -m train` arguments they make.

The modes are named in the lessons' words and mapped onto `TrainingMode`; the numbers default to the command's own
defaults (tests/test_train_tab_jobs.py checks them against `python -m train`'s), so that a run from the tab and the
same command typed by hand are one run.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hub.contract import Augmentation, TrainingMode

MODES = {  # the lessons' words -> the mode python -m train runs
    "train only a new head (fast)": TrainingMode.FEATURE_EXTRACTION,
    "fine-tune everything": TrainingMode.FULL,
    "head first, then everything": TrainingMode.TWO_STAGE,
}
MODE_NAMES = {mode: name for name, mode in MODES.items()}
DEFAULT_MODE = TrainingMode.FEATURE_EXTRACTION  # the tab's default: a usable model in about a minute on 2 cores
DEFAULT_BASE = "efficientnet-lite0"
# python -m train's defaults (train/arguments.py), which demos/ may not import
EPOCHS = 3.0  # of the stage that trains the whole network
HEAD_EPOCHS = 10.0  # of the stage that trains the new head on cached features
LEARNING_RATE = 1e-3
HEAD_LEARNING_RATE = 3e-3
AUGMENT_ON = Augmentation.RANDOM_CROP  # the recipe's augmentation: timm's random-resized crop, flip, colour jitter


@dataclass(frozen=True)
class TrainOptions:
    """One run's choices; each becomes the `python -m train` option of the same name."""

    base_model: str = DEFAULT_BASE
    mode: TrainingMode = DEFAULT_MODE
    epochs: float = EPOCHS
    head_epochs: float = HEAD_EPOCHS
    learning_rate: float = LEARNING_RATE
    head_learning_rate: float = HEAD_LEARNING_RATE
    image_size: int | None = None  # None: the base checkpoint's own input size
    augment: bool = True
    target_column: str | None = None  # regression: the numeric column of metadata.csv
    condition_column: str | None = None
    # options the tab does not show (the operator's or a test's, e.g. ("--batch-size", "4")), appended as they are
    extra: Sequence[str] = field(default=())

    def __post_init__(self):
        object.__setattr__(self, "mode", TrainingMode(self.mode))

    def argv(self, *, dataset: str | Path, output_dir: str | Path) -> list[str]:
        """`python -m train`'s arguments for this run of `dataset` into `output_dir`: only the epochs and learning
        rates of the stages the mode runs, so that the command reads as what it does."""
        argv = ["--model", self.base_model, "--dataset", str(dataset), "--output-dir", str(output_dir)]
        argv += ["--mode", self.mode.value]
        if self.mode.trains_head_first:
            argv += [
                "--head-epochs",
                _number(self.head_epochs),
                "--head-learning-rate",
                _number(self.head_learning_rate),
            ]
        if self.mode.trains_backbone:
            argv += ["--epochs", _number(self.epochs), "--learning-rate", _number(self.learning_rate)]
        if self.image_size:
            argv += ["--image-size", str(self.image_size)]
        argv += ["--augment", (AUGMENT_ON if self.augment else Augmentation.NONE).value]
        if self.target_column:
            argv += ["--target-column", self.target_column]
        if self.condition_column:
            argv += ["--condition-column", self.condition_column]
        return [*argv, *self.extra]


def command_line(argv: Sequence[str]) -> str:
    """The shell command a person types for `python -m train` with `argv` (quoted where needed)."""
    return shlex.join(["python", "-m", "train", *argv])


def _number(value: float) -> str:
    """3.0 -> '3', 0.001 -> '0.001': as a person writes it on a command line."""
    return f"{value:g}"
