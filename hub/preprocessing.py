"""The one preprocessing: resolved once from a checkpoint's image processor, built by one factory.

`image_spec(processor)` reads the input size, resize rule, mean and std that the processor applies
(timm, ViT and ConvNeXt/ResNet style processors). `build_transform(spec, augment=...)` makes the
training transform; with `Augmentation.NONE` it reproduces the processor, as tests check. Evaluation runs
the processor itself (`processor_transform`), as the demos do, so that a measured figure is the served
model's. No other file in the project knows an input size or normalises images.

Photo augmentation is timm's `create_transform(is_training=True)` on the same spec. What timm lacks
is written here: the radiograph transforms (keep the whole hand, vary how it looks and how much of
the frame it fills), which serve X-ray training and the robustness check set alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from torchvision.transforms import v2
from transformers import TimmWrapperImageProcessor

from hub.contract import Augmentation


@dataclass(frozen=True)
class PhotoAugment:
    """timm's training-transform options for `Augmentation.RANDOM_CROP` (photos)."""

    crop_scale_min: float = 0.25  # random-resized-crop area range (crop_scale_min, 1)
    color_jitter: float | None = 0.3  # timm turns it off when auto_augment is set
    auto_augment: str | None = None  # e.g. "rand-m9-mstd0.5" (RandAugment) or "trivialaugment"
    random_erasing: float = 0.0  # probability per image


@dataclass(frozen=True)
class ImageSpec:
    height: int
    width: int
    resize: str  # "crop": shorter side to size/crop_pct then centre crop; "squash": whole image to size/crop_pct
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # "bicubic" or "bilinear"

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


_PIL_TO_NAME = {Image.Resampling.BICUBIC: "bicubic", Image.Resampling.BILINEAR: "bilinear"}


def image_spec(processor) -> ImageSpec:
    """Resolve what `processor` does to an image into one ImageSpec."""
    if isinstance(processor, TimmWrapperImageProcessor):  # timm's own data config, as timm resolves it
        config = processor.data_config
        _, height, width = config["input_size"]
        return ImageSpec(
            height=height,
            width=width,
            resize="squash" if config.get("crop_mode") == "squash" else "crop",
            crop_pct=config.get("crop_pct") or 1.0,
            mean=tuple(config["mean"]),
            std=tuple(config["std"]),
            interpolation=config.get("interpolation", "bicubic"),
        )
    size = processor.size
    resample = getattr(processor, "resample", Image.Resampling.BILINEAR)
    common = dict(
        mean=tuple(processor.image_mean) if processor.do_normalize else (0.0, 0.0, 0.0),
        std=tuple(processor.image_std) if processor.do_normalize else (1.0, 1.0, 1.0),
        interpolation=_PIL_TO_NAME.get(Image.Resampling(int(resample)), "bilinear"),
    )
    if "height" in size:  # ViT style: the whole image resized to (height, width)
        return ImageSpec(height=size["height"], width=size["width"], resize="squash", crop_pct=1.0, **common)
    edge = size["shortest_edge"]
    if getattr(processor, "crop_pct", None) is not None:  # ConvNeXt style (ResNet checkpoints use it)
        # Above 384 px ConvNeXt processors warp to a square without cropping.
        if edge >= 384:
            return ImageSpec(height=edge, width=edge, resize="squash", crop_pct=1.0, **common)
        return ImageSpec(height=edge, width=edge, resize="crop", crop_pct=processor.crop_pct, **common)
    crop = processor.crop_size if getattr(processor, "do_center_crop", False) else {"height": edge, "width": edge}
    return ImageSpec(
        height=crop["height"], width=crop["width"], resize="crop", crop_pct=crop["height"] / edge, **common
    )


def _interpolation(spec: ImageSpec) -> v2.InterpolationMode:
    return v2.InterpolationMode.BICUBIC if spec.interpolation == "bicubic" else v2.InterpolationMode.BILINEAR


def resize_steps(spec: ImageSpec) -> list:
    """The deterministic resize + crop the checkpoint's processor applies (PIL in, PIL out)."""
    interpolation = _interpolation(spec)
    if spec.resize == "squash":
        scaled = (int(spec.height / spec.crop_pct), int(spec.width / spec.crop_pct))
        return [v2.Resize(scaled, interpolation=interpolation, antialias=True), v2.CenterCrop(spec.size)]
    shorter = int(min(spec.size) / spec.crop_pct)
    return [v2.Resize(shorter, interpolation=interpolation, antialias=True), v2.CenterCrop(spec.size)]


def _otsu_threshold(gray: np.ndarray) -> int:
    """The grey level that best splits `gray` into two classes (hand and background); -1 for a single-level image."""
    histogram = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    weight = np.cumsum(histogram)
    mass = np.cumsum(histogram * np.arange(256))
    total, total_mass = weight[-1], mass[-1]
    background, foreground = weight[:-1], total - weight[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mass * background / total - mass[:-1]) ** 2 / (background * foreground)
    return -1 if np.isnan(between).all() else int(np.nanargmax(between))


def hand_box(image: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the bright hand on a radiograph: rows and columns that are >5% above Otsu.

    The 5% ignores film borders' thin lines and side markers, which are small next to a hand.
    """
    gray = np.asarray(image.convert("L"))
    mask = gray > _otsu_threshold(gray)
    rows, cols = np.flatnonzero(mask.mean(axis=1) > 0.05), np.flatnonzero(mask.mean(axis=0) > 0.05)
    if len(rows) == 0 or len(cols) == 0:
        return 0, 0, image.width, image.height
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_to_hand(image: Image.Image, margin: float) -> Image.Image:
    """The hand's box grown by `margin` of its size on each side (clamped to the image)."""
    left, top, right, bottom = hand_box(image)
    dx, dy = margin * (right - left), margin * (bottom - top)
    box = (max(0, left - dx), max(0, top - dy), min(image.width, right + dx), min(image.height, bottom + dy))
    return image.crop(tuple(round(v) for v in box))


def black_background(image: Image.Image) -> Image.Image:
    """Everything darker than the Otsu level set to black, as scanners that mask the film do."""
    gray = np.asarray(image.convert("L"))
    pixels = np.asarray(image.convert("RGB")).copy()
    pixels[gray <= _otsu_threshold(gray)] = 0
    return Image.fromarray(pixels)


class RandomHandCrop(v2.Transform):
    """Crop to the hand with a random margin, so how much of the frame the hand fills is no cue."""

    def __init__(self, margin: tuple[float, float] = (0.0, 0.35)):
        super().__init__()
        self.margin = margin

    def forward(self, image):
        return crop_to_hand(image, random.uniform(*self.margin))


class RandomGamma(v2.Transform):
    """Gamma in [low, high] (film and detector response curves differ); torchvision has only the functional."""

    def __init__(self, gamma: tuple[float, float] = (0.7, 1.5)):
        super().__init__()
        self.gamma = gamma

    def forward(self, image):
        return v2.functional.adjust_gamma(image, random.uniform(*self.gamma))


def _radiograph_steps(spec: ImageSpec) -> list:
    """Radiographs: the whole hand stays in view; its framing, background, contrast and orientation vary."""
    return [
        v2.RandomApply([v2.Lambda(black_background)], p=0.3),
        v2.RandomApply([RandomHandCrop()], p=0.5),
        *resize_steps(spec),
        v2.RandomAffine(
            degrees=15, translate=(0.06, 0.06), scale=(0.85, 1.15), interpolation=v2.InterpolationMode.BILINEAR
        ),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=0.3, contrast=0.3),
        v2.RandomApply([RandomGamma()], p=0.3),
        v2.RandomAutocontrast(p=0.3),
        v2.RandomEqualize(p=0.2),
    ]


def to_pixels(spec: ImageSpec, augment: Augmentation = Augmentation.NONE) -> v2.Compose:
    """PIL image -> float tensor in [0, 1] at the model's input size, before normalisation."""
    steps = _radiograph_steps(spec) if augment is Augmentation.RADIOGRAPH else resize_steps(spec)
    return v2.Compose([v2.RGB(), *steps, v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def photo_train_transform(spec: ImageSpec, photo: PhotoAugment) -> v2.Compose:
    """timm's training transform (random-resized crop, flip, RandAugment/jitter, erasing) on this spec."""
    return v2.Compose(
        [
            v2.RGB(),
            create_transform(
                input_size=(3, *spec.size),
                is_training=True,
                scale=(photo.crop_scale_min, 1.0),
                hflip=0.5,
                color_jitter=photo.color_jitter,
                auto_augment=photo.auto_augment,
                re_prob=photo.random_erasing,
                interpolation=spec.interpolation,
                mean=spec.mean,
                std=spec.std,
            ),
        ]
    )


def normalize(spec: ImageSpec, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] (..., 3, H, W) -> the model's input. Differentiable, for attacks and visualisation."""
    mean = torch.tensor(spec.mean, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(spec.std, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    return (pixels - mean) / std


def denormalize(spec: ImageSpec, inputs: torch.Tensor) -> torch.Tensor:
    """The model's input -> pixels in [0, 1]."""
    mean = torch.tensor(spec.mean, dtype=inputs.dtype, device=inputs.device).view(3, 1, 1)
    std = torch.tensor(spec.std, dtype=inputs.dtype, device=inputs.device).view(3, 1, 1)
    return inputs * std + mean


def build_transform(
    spec: ImageSpec, augment: Augmentation | str = Augmentation.NONE, photo: PhotoAugment | None = None
) -> v2.Compose:
    """PIL image -> normalised model input, augmented as `augment` says (NONE: the processor's own steps)."""
    try:
        augment = Augmentation(augment)
    except ValueError:
        raise ValueError(f"Unknown augmentation '{augment}': choose one of {', '.join(Augmentation)}.") from None
    if augment is Augmentation.RANDOM_CROP:  # photos: the object may be anywhere, at any scale
        return photo_train_transform(spec, photo or PhotoAugment())
    return v2.Compose([to_pixels(spec, augment), v2.Normalize(list(spec.mean), list(spec.std))])


@dataclass(frozen=True)
class ProcessorTransform:
    """PIL image -> model input through the checkpoint's own image processor: what the demos serve with (for a timm
    checkpoint, timm's `create_transform(is_training=False)` of its data config), so evaluation measures it too."""

    processor: object

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]
