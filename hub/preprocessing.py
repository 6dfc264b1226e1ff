"""The one preprocessing: resolved once from a checkpoint's image processor, built by one factory.

`image_spec(processor)` reads the input size, resize rule, mean and std that the processor applies
(timm, ViT and ConvNeXt/ResNet style processors). `build_transform(spec, augment=...)` makes the
training transform; with `augment="none"` it is the eval transform, which tests check against the
processor's own output. No other file in the project knows an input size or normalises images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import v2

AUGMENTATIONS = ("none", "random-crop", "keep-whole")


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
    if hasattr(processor, "data_config"):  # transformers' TimmWrapperImageProcessor
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


def _augment_steps(spec: ImageSpec, augment: str) -> list:
    interpolation = _interpolation(spec)
    if augment == "random-crop":  # photos: the object may be anywhere, at any scale
        return [
            v2.RandomResizedCrop(spec.size, scale=(0.25, 1.0), interpolation=interpolation, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        ]
    if augment == "keep-whole":  # radiographs: the whole hand matters, so only small geometric changes
        return resize_steps(spec) + [
            v2.RandomAffine(degrees=15, translate=(0.06, 0.06), scale=(0.9, 1.1), interpolation=v2.InterpolationMode.BILINEAR),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.25, contrast=0.25),
        ]
    raise ValueError(f"Unknown augmentation '{augment}': choose one of {', '.join(AUGMENTATIONS)}.")


def to_pixels(spec: ImageSpec, augment: str = "none") -> v2.Compose:
    """PIL image -> float tensor in [0, 1] at the model's input size, before normalisation."""
    steps = resize_steps(spec) if augment == "none" else _augment_steps(spec, augment)
    return v2.Compose([v2.RGB(), *steps, v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


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


def build_transform(spec: ImageSpec, augment: str = "none") -> v2.Compose:
    """PIL image -> normalised model input; `augment="none"` is the eval transform."""
    return v2.Compose([to_pixels(spec, augment), v2.Normalize(list(spec.mean), list(spec.std))])
