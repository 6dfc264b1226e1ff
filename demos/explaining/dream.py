"""Class visualisation: gradient ascent on one class's logit, from noise or from a photo.

The image is sigmoid of a sum of octaves (full, 1/2, 1/4, 1/8 resolution, upsampled), so pixels stay
in [0, 1] and coarse shapes change as fast as fine detail; each step rolls it by a random jitter, the
loss adds a total-variation penalty, and every few steps the finest octave is blurred a little: without
these the ascent finds high-frequency noise that the model scores highly but no one can read.
Optimised in pixel space before the processor's normalisation (hub.preprocessing), at the input size.

    from hub import load_checkpoint
    from demos.explaining.dream import dream
    result = dream(load_checkpoint("efficientnet-lite0"), "goldfish, Carassius auratus")
    result.image.save("goldfish.png"); result.strip.save("steps.png"); print(result.probability)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from demos.explaining.pixel_space import MAX_STEPS, class_index, filmstrip, logits, quantise, to_image
from hub import Checkpoint
from hub.preprocessing import image_spec, to_pixels

JITTER_FRACTION = 28  # default jitter: up to 1/28 of the input side, 8 px at 224 px


@dataclass(frozen=True)
class Dream:
    image: Image.Image  # the final image, 8-bit, at the model's input size
    strip: Image.Image  # intermediate steps side by side, the start first
    strip_steps: tuple[int, ...]  # the step each frame of `strip` shows (0: the start)
    label: str
    probability: float  # softmax probability of `label` for `image`
    start_logit: float  # the class logit before the ascent and after it, both on 8-bit images
    final_logit: float


def total_variation(pixels: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV)."""
    down = (pixels[..., 1:, :] - pixels[..., :-1, :]).abs().mean()
    right = (pixels[..., :, 1:] - pixels[..., :, :-1]).abs().mean()
    return down + right


def _pyramid(pixels: torch.Tensor, levels: int, generator: torch.Generator, noise: float) -> list[torch.Tensor]:
    """Pre-sigmoid image as a sum of `levels` octaves; the start goes into the finest, noise into the coarser."""
    _, height, width = pixels.shape
    finest = torch.logit(pixels.clamp(0.01, 0.99)).unsqueeze(0)
    coarser = [noise * torch.randn(1, 3, height >> k, width >> k, generator=generator) for k in range(1, levels)]
    return [tensor.requires_grad_(True) for tensor in [finest, *coarser]]


def _compose(octaves: list[torch.Tensor]) -> torch.Tensor:
    size = octaves[0].shape[-2:]
    total = sum(F.interpolate(octave, size=size, mode="bilinear", align_corners=False) for octave in octaves[1:])
    return torch.sigmoid(octaves[0] + total)


def _checked(steps: int, frames: int, tv_weight: float, learning_rate: float) -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {steps}.")
    if frames < 2:
        raise ValueError(f"frames must be at least 2 (the start and the end), got {frames}.")
    if tv_weight < 0 or learning_rate <= 0:
        raise ValueError("tv_weight must be >= 0 and learning_rate > 0.")


def dream(
    checkpoint: Checkpoint,
    target: str,
    *,
    start: Image.Image | None = None,
    steps: int = 60,
    learning_rate: float = 0.03,
    tv_weight: float = 30.0,
    jitter: int | None = None,
    blur_every: int = 4,
    octaves: int = 4,
    frames: int = 6,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
) -> Dream:
    """Raise the logit of class `target` by gradient ascent on the pixels, from noise or from `start`.

    `on_step(step, steps)` is called after each step (a progress bar).
    """
    index = class_index(checkpoint, target)
    _checked(steps, frames, tv_weight, learning_rate)
    spec = image_spec(checkpoint.processor)
    generator = torch.Generator().manual_seed(seed)
    jitter = max(1, min(spec.size) // JITTER_FRACTION) if jitter is None else jitter
    pixels = torch.full((3, *spec.size), 0.5) if start is None else to_pixels(spec)(start)
    # From noise, the coarse octaves get it: blobs to grow from rather than pixel noise.
    parts = _pyramid(pixels, octaves, generator, noise=0.1 if start is None else 0.0)
    optimizer = torch.optim.Adam(parts, lr=learning_rate)
    frames = min(frames, steps + 1)  # a short run shows every step it has
    keep = {round(i * steps / (frames - 1)) for i in range(1, frames)}
    first = _compose(parts).detach()
    strip = [to_image(first[0])]
    for step in range(1, steps + 1):
        dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
        image = _compose(parts)
        score = logits(checkpoint, spec, torch.roll(image, (dy, dx), dims=(2, 3)))[0, index]
        loss = -score + tv_weight * total_variation(image)
        for part, gradient in zip(parts, torch.autograd.grad(loss, parts)):
            part.grad = gradient
        optimizer.step()
        if blur_every and step % blur_every == 0:
            with torch.no_grad():
                parts[0].copy_(TF.gaussian_blur(parts[0], kernel_size=[3, 3], sigma=[0.5, 0.5]))
        if step in keep:
            strip.append(to_image(_compose(parts).detach()[0]))
        if on_step is not None:
            on_step(step, steps)
    final = quantise(_compose(parts).detach())
    with torch.no_grad():
        start_logit = logits(checkpoint, spec, quantise(first))[0, index]
        final_logits = logits(checkpoint, spec, final)[0]
    return Dream(
        image=to_image(final[0]),
        strip=filmstrip(strip),
        strip_steps=(0, *sorted(keep)),
        label=checkpoint.task.labels[index],
        probability=final_logits.softmax(-1)[index].item(),
        start_logit=start_logit.item(),
        final_logit=final_logits[index].item(),
    )
