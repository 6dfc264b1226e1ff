"""Class visualisation on tiny random checkpoints: the ascent raises the chosen class's logit."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from demos.explaining.dream import dream
from hub import load_checkpoint
from hub.preprocessing import image_spec, normalize, to_pixels

# A random tiny head's logits are ~0.01, so the default TV weight (set for ImageNet logits ~10) is scaled down.
TINY_TV_WEIGHT = 0.01


def _class_logit(checkpoint, pixels, index):
    spec = image_spec(checkpoint.processor)
    with torch.no_grad():
        return checkpoint.model(pixel_values=normalize(spec, pixels.unsqueeze(0))).logits[0, index].item()


@pytest.mark.parametrize("architecture", ["vit", "resnet", "timm"])
def test_dream_from_a_photo_raises_the_class_logit(tiny_checkpoints, architecture, photo):
    checkpoint = load_checkpoint(str(tiny_checkpoints[(architecture, "classification")]))
    spec = image_spec(checkpoint.processor)
    result = dream(checkpoint, "banana", start=photo, steps=15, frames=4, tv_weight=TINY_TV_WEIGHT)
    before = _class_logit(checkpoint, to_pixels(spec)(photo), 1)
    after = _class_logit(checkpoint, TF.to_dtype(TF.to_image(result.image), torch.float32, scale=True), 1)
    assert after > before
    assert result.image.size == (spec.width, spec.height)
    assert result.strip.size == (4 * spec.width + 3 * 4, spec.height)
    assert result.label == "banana" and 0 < result.probability < 1


def test_dream_from_noise_raises_the_class_logit(tiny_checkpoints):
    checkpoint = load_checkpoint(str(tiny_checkpoints[("timm", "classification")]))
    result = dream(checkpoint, "Cherry", steps=15, tv_weight=TINY_TV_WEIGHT)
    assert result.label == "cherry"
    assert result.final_logit > result.start_logit


def test_dream_refuses_a_regression_checkpoint(tiny_checkpoints):
    checkpoint = load_checkpoint(str(tiny_checkpoints[("vit", "regression")]))
    with pytest.raises(ValueError, match="regression checkpoint.*need a classification checkpoint"):
        dream(checkpoint, "banana")


def test_dream_names_close_classes_for_an_unknown_one(tiny_checkpoints):
    checkpoint = load_checkpoint(str(tiny_checkpoints[("vit", "classification")]))
    with pytest.raises(ValueError, match="Unknown class 'bananna'.*Did you mean 'banana'"):
        dream(checkpoint, "bananna")


def test_dream_refuses_a_step_count_out_of_range(tiny_checkpoints):
    checkpoint = load_checkpoint(str(tiny_checkpoints[("vit", "classification")]))
    with pytest.raises(ValueError, match="steps must be between 1 and 500"):
        dream(checkpoint, "banana", steps=0)
