"""Adversarial examples: FGSM and PGD under an L-infinity budget in 8-bit levels, in pixel space.

The attack perturbs the pixels the model sees (after the processor's resize and crop, before its
normalisation) and every candidate is rounded to 8-bit levels before it is judged, so the PNG it
returns is exactly what was attacked. That PNG is the photo resized as the processor resizes it with
the attacked crop pasted back in: the processor's resize is then the identity and its crop takes the
attacked pixels, so uploading the PNG to any classifier using the checkpoint's processor reproduces it.

    from PIL import Image
    from hub import load_checkpoint
    from demos.explaining.adversarial import attack
    result = attack(load_checkpoint("efficientnet-lite0"), Image.open("cat.jpg"), budget=4)
    result.upload.save("adversarial.png"); print(result.original_label, "->", result.adversarial_label)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from demos.explaining.pixel_space import (
    MAX_STEPS,
    class_index,
    class_labels,
    input_gradient,
    logits,
    quantise,
    to_image,
)
from hub import Checkpoint
from hub.preprocessing import ImageSpec, image_spec, resize_steps, to_pixels

METHODS = ("pgd", "fgsm")
MAX_BUDGET = 255  # L-infinity, in 8-bit levels


@dataclass(frozen=True)
class Attack:
    original: Image.Image  # what the model sees of the photo (its input size)
    adversarial: Image.Image  # what the model sees after the attack
    perturbation: Image.Image  # adversarial - original, stretched so the largest change is full range
    upload: Image.Image  # the PNG to save: the processor turns it back into `adversarial`
    original_label: str
    original_probability: float
    adversarial_label: str
    adversarial_probability: float
    target: str | None  # the class asked for, None for "any other class"
    success: bool  # the adversarial image reaches the goal (8-bit pixels, as saved)
    budget: int  # the L-infinity budget asked for and the one used, in 8-bit levels
    achieved: int
    method: str
    steps: int  # gradient steps taken


def _goal_margin(scores: torch.Tensor, source: int, goal: int | None) -> torch.Tensor:
    """How far past the goal the logits are: > 0 once `goal` wins (or, with no goal, once `source` lost)."""
    if goal is None:
        return scores.clone().index_fill_(-1, torch.tensor([source]), -torch.inf).amax(-1) - scores[..., source]
    return scores[..., goal] - scores.clone().index_fill_(-1, torch.tensor([goal]), -torch.inf).amax(-1)


def _ascent_direction(
    checkpoint: Checkpoint, spec: ImageSpec, pixels: torch.Tensor, source: int, goal: int | None
) -> torch.Tensor:
    """Sign of the gradient that moves the pixels away from `source` (or towards `goal`)."""
    pixels = pixels.detach().requires_grad_(True)
    scores = logits(checkpoint, spec, pixels)
    if goal is None:
        objective = F.cross_entropy(scores, torch.tensor([source]))
    else:
        objective = -F.cross_entropy(scores, torch.tensor([goal]))
    return input_gradient(objective, pixels).sign()


def _fgsm(checkpoint, spec, pixels, epsilon, source, goal) -> tuple[torch.Tensor, int]:
    step = epsilon * _ascent_direction(checkpoint, spec, pixels, source, goal)
    return quantise(pixels + step), 1


def _pgd(checkpoint, spec, pixels, epsilon, source, goal, *, steps: int, margin: float) -> tuple[torch.Tensor, int]:
    """Signed-gradient steps projected onto the budget; stops once the 8-bit image is `margin` logits past the goal."""
    step_size = max(epsilon / 8, 1 / 255)
    delta = torch.zeros_like(pixels)
    best, best_margin = pixels, -torch.inf
    for step in range(1, steps + 1):
        delta = delta + step_size * _ascent_direction(checkpoint, spec, pixels + delta, source, goal)
        delta = (pixels + delta.clamp(-epsilon, epsilon)).clamp(0, 1) - pixels
        # Judge the rounded image, the one that will be saved, not the continuous iterate.
        candidate = quantise(pixels + delta)
        with torch.no_grad():
            reached = _goal_margin(logits(checkpoint, spec, candidate)[0], source, goal).item()
        if reached > best_margin:
            best, best_margin = candidate, reached
        if reached >= margin:
            break
    return best, step


def _upload_image(spec: ImageSpec, photo: Image.Image, adversarial: torch.Tensor) -> Image.Image:
    """The photo resized as the processor resizes it, with the attacked centre crop pasted where the crop takes it."""
    *resize, crop = resize_steps(spec)
    canvas = v2.Compose([v2.RGB(), *resize])(photo)
    # Where the centre crop lies, found by cropping an image of pixel indices with the same transform.
    indices = torch.arange(canvas.height * canvas.width).view(1, canvas.height, canvas.width)
    top, left = divmod(int(crop(indices)[0, 0, 0]), canvas.width)
    canvas = canvas.copy()
    canvas.paste(to_image(adversarial), (left, top))
    return canvas


def _checked_budget(budget: float) -> int:
    if not (isinstance(budget, (int, float)) and 1 <= budget <= MAX_BUDGET and float(budget).is_integer()):
        raise ValueError(
            f"The budget is the largest change of any pixel in 8-bit levels: a whole number from 1 to {MAX_BUDGET}, "
            f"got {budget}."
        )
    return int(budget)


def attack(
    checkpoint: Checkpoint,
    photo: Image.Image | None,
    *,
    budget: float = 8,
    target: str | None = None,
    method: str = "pgd",
    steps: int = 40,
    margin: float = 0.5,
) -> Attack:
    """Perturb `photo` by at most `budget` 8-bit levels per pixel until `target` wins (with none: the top-1 changes)."""
    labels = class_labels(checkpoint)
    if photo is None:
        raise ValueError("No image: upload a photo to attack.")
    if method not in METHODS:
        raise ValueError(f"Unknown attack '{method}': choose one of {', '.join(METHODS)}.")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {steps}.")
    budget = _checked_budget(budget)
    spec = image_spec(checkpoint.processor)
    pixels = to_pixels(spec)(photo).unsqueeze(0)
    with torch.no_grad():
        before = logits(checkpoint, spec, pixels)[0].softmax(-1)
    source = int(before.argmax())
    goal = class_index(checkpoint, target) if target else None
    if goal == source:
        raise ValueError(
            f"The model already predicts '{labels[goal]}': choose another target, or none to just change the top-1."
        )
    epsilon = budget / 255
    if method == "fgsm":
        adversarial, taken = _fgsm(checkpoint, spec, pixels, epsilon, source, goal)
    else:
        adversarial, taken = _pgd(checkpoint, spec, pixels, epsilon, source, goal, steps=steps, margin=margin)
    with torch.no_grad():
        scores = logits(checkpoint, spec, adversarial)[0]
    after = scores.softmax(-1)
    change = torch.round((adversarial - pixels) * 255)
    achieved = int(change.abs().max())
    return Attack(
        original=to_image(pixels[0]),
        adversarial=to_image(adversarial[0]),
        perturbation=to_image(0.5 + change[0] / (2 * max(achieved, 1))),
        upload=_upload_image(spec, photo, adversarial[0]),
        original_label=labels[source],
        original_probability=before[source].item(),
        adversarial_label=labels[int(after.argmax())],
        adversarial_probability=after.max().item(),
        target=None if goal is None else labels[goal],
        success=_goal_margin(scores, source, goal).item() > 0,
        budget=budget,
        achieved=achieved,
        method=method,
        steps=taken,
    )
