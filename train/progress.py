"""`--progress-jsonl PATH`: a run's progress as one JSON object a line, for a program that follows it (the Train tab).

    {"event": "start", "stage": "head", "total_steps": 30, "epochs": 10.0}        each stage's Trainer starting
    {"event": "log", "stage": "head", "step": 5, "epoch": 1.67, "loss": 0.61, "learning_rate": 0.003}
    {"event": "eval", "stage": "head", "step": 9, "epoch": 3.0, "accuracy": 0.83}   the headline metric by name
    {"event": "eval", ..., "weights": "ema", "accuracy": 0.85}                        the EMA's evaluation, when kept
    {"event": "end", "run_dir": "runs/food10"}                                       the run saved and evaluated

Every line is flushed as it is written (the file is opened for each), so a reader sees it at once. Under torchrun
only the main process writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from hub.contract import TaskKind


@dataclass(frozen=True)
class ProgressLog:
    """Appends events to `path`; without a path (no --progress-jsonl) it writes nothing."""

    path: str | Path | None

    def write(self, event: str, **fields) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as stream:
            stream.write(json.dumps({"event": event, **fields}) + "\n")


class ProgressStream(TrainerCallback):
    """One stage's Trainer events (start, loss logs, evaluations) as ProgressLog lines."""

    def __init__(self, log: ProgressLog, *, metric: str, stage: str):
        self.log, self.metric, self.stage = log, metric, stage

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.log.write("start", stage=self.stage, total_steps=state.max_steps, epochs=args.num_train_epochs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:  # not the summary that ends training
            where = {"stage": self.stage, "step": state.global_step, "epoch": state.epoch}
            self.log.write("log", **where, loss=logs["loss"], learning_rate=logs.get("learning_rate"))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not state.is_world_process_zero or not metrics:
            return
        where = {"stage": self.stage, "step": state.global_step, "epoch": state.epoch}
        if f"eval_{self.metric}" in metrics:
            self.log.write("eval", **where, **{self.metric: metrics[f"eval_{self.metric}"]})
        elif f"eval_ema_{self.metric}" in metrics:  # recipe_trainer's evaluation of the weight EMA
            self.log.write("eval", **where, weights="ema", **{self.metric: metrics[f"eval_ema_{self.metric}"]})


def stage_callbacks(path: str | None, kind: TaskKind, *, stage: str) -> list[TrainerCallback]:
    """The callbacks a stage's Trainer gets for --progress-jsonl: none without it."""
    return [ProgressStream(ProgressLog(path), metric=kind.headline_metric, stage=stage)] if path else []
