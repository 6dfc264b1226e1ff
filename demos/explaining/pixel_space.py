"""A classifier as a differentiable function of its input pixels, for the "what the network sees" views.

The class visualisation (demos/explaining/dream.py) and the adversarial examples
(demos/explaining/adversarial.py) optimise pixels in [0, 1] at the model's input size, after the processor's
resize/crop and before its normalisation (hub.preprocessing), so what they show is an image anyone can save and
classify again.
"""

from __future__ import annotations

import difflib

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from hub import Checkpoint
from hub.preprocessing import ImageSpec, normalize

# Gradient steps one request may ask of the class visualisation or of an attack: bounds the CPU time it holds.
MAX_STEPS = 500


def class_labels(checkpoint: Checkpoint) -> tuple[str, ...]:
    """The checkpoint's class names; these views explain class scores, so a regression head is refused."""
    if not checkpoint.task.is_classification:
        raise ValueError(
            f"{checkpoint.name} is a {checkpoint.task.kind} checkpoint: class visualisation and adversarial "
            "examples need a classification checkpoint (one with class labels)."
        )
    return checkpoint.task.labels


def class_index(checkpoint: Checkpoint, name: str) -> int:
    """The index of class `name` (exact, else case-insensitive), with close matches named when unknown."""
    labels = class_labels(checkpoint)
    if name in labels:
        return labels.index(name)
    folded = [label.casefold() for label in labels]
    if name.strip().casefold() in folded:
        return folded.index(name.strip().casefold())
    close = difflib.get_close_matches(name, labels, n=3, cutoff=0.5)
    if close:
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?"
    else:
        hint = f" It has {len(labels)} classes, e.g. {', '.join(labels[:3])}."
    raise ValueError(f"Unknown class '{name}' for {checkpoint.name}.{hint}")


def logits(checkpoint: Checkpoint, spec: ImageSpec, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels (N, 3, H, W) in [0, 1] -> class logits (N, classes), differentiable with respect to the pixels."""
    return checkpoint.model(pixel_values=normalize(spec, pixels)).logits


def input_gradient(score: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    # autograd.grad, not backward(): nothing accumulates in the shared model's parameters.
    (gradient,) = torch.autograd.grad(score, [pixels])
    return gradient


def quantise(pixels: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels (k/255), so that a PNG of the result holds exactly these pixels."""
    return (pixels.clamp(0, 1) * 255).round() / 255


def to_image(pixels: torch.Tensor) -> Image.Image:
    """(3, H, W) pixels in [0, 1] -> 8-bit RGB PIL image."""
    return TF.to_pil_image((quantise(pixels.detach()) * 255).to(torch.uint8))


def filmstrip(frames: list[Image.Image], gap: int = 4) -> Image.Image:
    """Frames of one size side by side on a white strip, left to right."""
    width, height = frames[0].size
    strip = Image.new("RGB", (len(frames) * width + (len(frames) - 1) * gap, height), "white")
    for i, frame in enumerate(frames):
        strip.paste(frame, (i * (width + gap), 0))
    return strip
