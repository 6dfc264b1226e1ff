"""The one preprocessing: the eval transform resolved from a processor reproduces that processor."""

import pytest
import torch

from hub import load_checkpoint
from hub.preprocessing import build_transform, denormalize, image_spec, normalize, to_pixels


@pytest.mark.parametrize("architecture", ["vit", "resnet", "timm"])
def test_eval_transform_matches_the_checkpoint_processor(tiny_checkpoints, architecture, photo):
    processor = load_checkpoint(str(tiny_checkpoints[(architecture, "classification")])).processor
    spec = image_spec(processor)
    expected = processor(photo, return_tensors="pt")["pixel_values"][0]
    ours = build_transform(spec)(photo)
    assert ours.shape == expected.shape == (3, spec.height, spec.width)
    # PIL and torchvision resampling differ by a few grey levels at most.
    assert (ours - expected).abs().mean() < 0.05


def test_default_backbone_spec_is_the_timm_one():
    spec = image_spec(load_checkpoint("efficientnet-lite0").processor)
    assert (spec.size, spec.resize, spec.crop_pct, spec.mean) == ((224, 224), "crop", 0.875, (0.5, 0.5, 0.5))


@pytest.mark.parametrize("augment", ["random-crop", "radiograph"])
def test_augmentations_keep_the_input_size(tiny_checkpoints, augment, photo):
    spec = image_spec(load_checkpoint(str(tiny_checkpoints[("timm", "regression")])).processor)
    assert build_transform(spec, augment)(photo).shape == (3, 32, 32)


def test_normalize_round_trips(tiny_checkpoints, photo):
    spec = image_spec(load_checkpoint(str(tiny_checkpoints[("vit", "classification")])).processor)
    pixels = to_pixels(spec)(photo)
    assert torch.allclose(denormalize(spec, normalize(spec, pixels)), pixels, atol=1e-6)


def test_unknown_augmentation_is_named(tiny_checkpoints):
    spec = image_spec(load_checkpoint(str(tiny_checkpoints[("vit", "classification")])).processor)
    with pytest.raises(ValueError, match="Unknown augmentation 'mixup'"):
        build_transform(spec, "mixup")
