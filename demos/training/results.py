"""What a finished run left in its folder, as the Train tab shows it, and the checkpoint zip it offers to download.

The run folder is a checkpoint (hub/contract.py) plus what training measured: `eval_results.json` (the saved
checkpoint's validation metrics, per-class accuracy included), the confusion matrix or predicted-vs-true plot, and
the model card. The zip holds the checkpoint's top-level files only (`SAFE_CHECKPOINT_FILES`): the weights, configs,
card and plots, not the Trainer's `checkpoint-*` folders or TensorBoard logs.
"""

from __future__ import annotations

import fnmatch
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import ModelCard

from hub.constants import SAFE_CHECKPOINT_FILES
from hub.contract import TaskKind, TrainingRecord

PLOTS = ("confusion_matrix.png", "predicted_vs_true.png")  # what train writes, by task
SHOWN_METRICS = {  # eval_results.json's names -> how the tab names them
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "top5_accuracy": "top-5 accuracy",
    "mae": "MAE",
    "rmse": "RMSE",
    "r2": "R²",
}


@dataclass
class RunResult:
    """A finished run's metrics, plot, card and record."""

    run_dir: Path
    task: TaskKind
    metrics: dict[str, float]
    per_class: dict[str, float] = field(default_factory=dict)  # classification: class -> validation accuracy
    record: TrainingRecord | None = None

    @classmethod
    def read(cls, run_dir: Path) -> RunResult:
        """The result a finished run wrote into `run_dir` (its eval_results.json and training_config.json)."""
        results = json.loads((run_dir / "eval_results.json").read_text())
        metrics = dict(results["metrics"])
        per_class = metrics.pop("per_class_accuracy", {})
        return cls(run_dir, TaskKind(results["task"]), metrics, per_class, TrainingRecord.read(run_dir))

    @property
    def plot(self) -> Path | None:
        """The confusion matrix (classification) or predicted-vs-true plot (regression) train drew."""
        return next((self.run_dir / name for name in PLOTS if (self.run_dir / name).is_file()), None)

    @property
    def headline(self) -> tuple[str, float]:
        """(name, value) of the metric the run is judged by: accuracy, or MAE."""
        name = self.task.headline_metric
        return name, self.metrics[name]

    def metrics_markdown(self) -> str:
        unit = f" {self.record.target_unit}" if self.record and self.record.target_unit else ""
        shown = [
            f"**{SHOWN_METRICS.get(name, name)}** {value:.4g}{unit if name in ('mae', 'rmse') else ''}"
            for name, value in self.metrics.items()
            if isinstance(value, (int, float))
        ]
        return "Validation (the saved model): " + " · ".join(shown)

    def per_class_rows(self) -> list[list]:
        return [[name, round(accuracy, 4)] for name, accuracy in self.per_class.items()]

    def card(self) -> str:
        """The model card's Markdown without its YAML metadata (which the page would show raw)."""
        path = self.run_dir / "README.md"
        return ModelCard.load(path).text if path.is_file() else ""


def checkpoint_zip(run_dir: Path, out: Path) -> Path:
    """A zip of the run folder's checkpoint files (`SAFE_CHECKPOINT_FILES`, at its top), in a folder named after
    `out`'s stem, so that it unpacks into one folder that `from_pretrained` loads."""
    files = sorted(
        path
        for path in run_dir.iterdir()
        if path.is_file() and any(fnmatch.fnmatch(path.name, pattern) for pattern in SAFE_CHECKPOINT_FILES)
    )
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, f"{out.stem}/{path.name}")
    return out
