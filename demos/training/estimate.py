"""How long a run will take on this server, from one short step measured here before it starts (the Train tab).

The step is the base model's forward pass (and, where the backbone trains, its backward pass) on a batch of random
images at the run's input size. A run's work is counted in such steps: the head-only stage computes each image's
features once, then trains on them (seconds); the whole-network stage runs forward and backward over the training
images each epoch and evaluates each epoch; at its end the saved model is evaluated again. What the count leaves out
(starting the process, decoding and augmenting the images) is a fixed allowance, so the estimate is a rough one,
and says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from demos.training.choices import TrainOptions
from hub import load_checkpoint
from hub.preprocessing import image_spec

MEASURED_BATCH = 8
# `python -m train` importing torch, transformers and datasets, loading the base and the images, and saving: seconds
# on this project's 2-core machine (bench/train_tab.py's run: 79 s in all, of which about this much outside steps).
FIXED_S = 30.0
END_EVALUATIONS = 2  # the saved model evaluated, and (at another size, or for calibration) once more


@dataclass(frozen=True)
class MeasuredSteps:
    """One step of the base model, timed here: MEASURED_BATCH images forward, and forward and backward where the
    backbone trains (None where it does not)."""

    forward_s: float
    backward_s: float | None = None


@dataclass(frozen=True)
class Estimate:
    seconds: float
    steps: MeasuredSteps

    def describe(self) -> str:
        """The estimate as the tab states it, with the step it comes from."""
        measured = f"{MEASURED_BATCH} images through the network in {self.steps.forward_s:.2f} s"
        if self.steps.backward_s is not None:
            measured += f", {self.steps.backward_s:.2f} s with the backward pass"
        return f"Estimated time: **about {_duration(self.seconds)}** (rough: measured here, {measured})."


def estimate(options: TrainOptions, train_images: int, eval_images: int) -> Estimate:
    """The run's time from its images and choices, and one measured step of its base model."""
    steps = measure(options)
    return Estimate(run_seconds(options, steps, train_images, eval_images), steps)


def measure(options: TrainOptions) -> MeasuredSteps:
    """The base model's step at the run's input size (its own, unless the run chooses one)."""
    checkpoint = load_checkpoint(options.base_model)
    size = options.image_size or image_spec(checkpoint.processor).height
    forward_s = timed_step(checkpoint.model, size, backward=False)
    backward_s = timed_step(checkpoint.model, size, backward=True) if options.mode.trains_backbone else None
    return MeasuredSteps(forward_s, backward_s)


def run_seconds(options: TrainOptions, steps: MeasuredSteps, train_images: int, eval_images: int) -> float:
    """The run's seconds, counted in measured steps, plus the fixed allowance."""
    per_image, per_trained_image = steps.forward_s / MEASURED_BATCH, (steps.backward_s or 0.0) / MEASURED_BATCH
    seconds = FIXED_S + END_EVALUATIONS * eval_images * per_image
    if options.mode.trains_head_first:  # each image's features once; the head trains on them in seconds
        seconds += (train_images + eval_images) * per_image
    if options.mode.trains_backbone:
        seconds += options.epochs * (train_images * per_trained_image + eval_images * per_image)
    return seconds


def timed_step(model: torch.nn.Module, size: int, *, backward: bool) -> float:
    """Seconds of one step on random images (after one untimed step: the first pays for allocations)."""
    pixels = torch.randn(MEASURED_BATCH, 3, size, size)

    def step() -> None:
        if backward:
            model.zero_grad(set_to_none=True)
            model(pixel_values=pixels).logits.sum().backward()
        else:
            with torch.inference_mode():
                model(pixel_values=pixels)

    model.train(backward)
    step()
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{seconds:.0f} s" if seconds < 90 else f"{minutes:.0f} min"
