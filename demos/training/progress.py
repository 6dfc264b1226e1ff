"""A running job's progress read from its `--progress-jsonl` stream: how far, how long still, and the curves.

`python -m train` writes (train/progress.py) a "start" event as each stage's Trainer starts (the head stage on
cached features, then the whole network), "log" events with the training loss, "eval" events with the headline
metric (accuracy or MAE) after each epoch, and "end" once the run is saved. The events carry no clock: the reader
notes when it first saw each one, which is what the ETA needs (the rate of steps since the stage started).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from demos.training.jobs import Job

STAGE_NAMES = {"head": "the new head", "whole network": "the whole network"}


@dataclass
class Curves:
    """Per-epoch points of a run, the epochs of its stages laid end to end (head stage first)."""

    loss: list[tuple[float, float]] = field(default_factory=list)  # (epoch, training loss)
    metric: list[tuple[float, float]] = field(default_factory=list)  # (epoch, validation accuracy or MAE)
    metric_name: str | None = None


@dataclass
class RunProgress:
    """Where a run stands: its stage, steps, fraction done and the seconds it still needs (None: not known yet)."""

    stage: int = 0  # 1-based; 0 before the first stage started (loading the model, decoding or caching images)
    stages: int = 1
    stage_name: str = ""
    step: int = 0
    total_steps: int = 0
    eta_s: float | None = None
    ended: bool = False  # the "end" event: the run folder is saved
    curves: Curves = field(default_factory=Curves)

    @property
    def fraction(self) -> float:
        """Of the whole run, each stage counting the same."""
        if self.ended:
            return 1.0
        if not self.stage:
            return 0.0
        within = self.step / self.total_steps if self.total_steps else 0.0
        return min(1.0, (self.stage - 1 + within) / self.stages)

    def describe(self) -> str:
        """One line for the progress bar."""
        if self.ended:
            return "Done: the model is saved."
        if not self.stage:
            return "Starting: loading the model and reading the images…"
        stage = f"stage {self.stage} of {self.stages}, " if self.stages > 1 else ""
        eta = f", about {_duration(self.eta_s)} left" if self.eta_s is not None else ", measuring the speed…"
        later = " (then the whole network trains)" if self.stage < self.stages else ""
        return f"Training {stage}{self.stage_name}: step {self.step} of {self.total_steps}{eta}{later}"


class ProgressReader:
    """Follows one job's events; `read()` as often as the page should update."""

    def __init__(self, job: Job, clock=time.monotonic):
        self.job, self.clock = job, clock
        self.seen_at: list[float] = []  # when each event was first read

    def read(self) -> RunProgress:
        """The job's progress now, from every event written so far."""
        events = self.job.events()
        now = self.clock()
        self.seen_at += [now] * (len(events) - len(self.seen_at))
        return progress_of(events, self.seen_at, stages=self.job.stages, now=now)


def progress_of(events: list[dict], seen_at: list[float], *, stages: int, now: float) -> RunProgress:
    """The progress that `events` (first seen at the times `seen_at`) show at `now`."""
    progress = RunProgress(stages=stages)
    offset, stage_epochs, stage_start = 0.0, 0.0, now
    for event, seen in zip(events, seen_at, strict=False):
        kind = event.get("event")
        if kind == "start":
            offset += stage_epochs if progress.stage else 0.0
            stage_epochs = float(event.get("epochs") or 0)
            progress.stage, progress.step, stage_start = progress.stage + 1, 0, seen
            progress.total_steps = int(event.get("total_steps") or 0)
            progress.stage_name = STAGE_NAMES.get(event.get("stage"), str(event.get("stage", "")))
        elif kind == "log" and isinstance(event.get("loss"), (int, float)):
            progress.step = int(event.get("step") or 0)
            progress.curves.loss.append((offset + float(event.get("epoch") or 0), float(event["loss"])))
        elif kind == "eval":
            _add_metric(progress.curves, event, offset)
        elif kind == "end":
            progress.ended = True
    progress.stages = max(progress.stages, progress.stage)
    if progress.step and progress.total_steps and not progress.ended:
        elapsed = now - stage_start
        progress.eta_s = elapsed * (progress.total_steps - progress.step) / progress.step
    return progress


def _add_metric(curves: Curves, event: dict, offset: float) -> None:
    """An evaluation's headline metric (the live weights'; the EMA's only where the live weights' is missing)."""
    names = [key for key in event if key not in ("event", "stage", "step", "epoch", "weights")]
    if not names or not isinstance(event[names[0]], (int, float)):
        return
    curves.metric_name = names[0]
    point = (offset + float(event.get("epoch") or 0), float(event[names[0]]))
    if curves.metric and curves.metric[-1][0] == point[0]:
        if event.get("weights") == "ema":
            return  # the same epoch's live evaluation is already there
        curves.metric[-1] = point
    else:
        curves.metric.append(point)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
