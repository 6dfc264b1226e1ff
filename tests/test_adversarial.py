"""Adversarial examples on tiny random checkpoints: PGD flips the prediction, and the saved PNG keeps it flipped."""

import pytest
import skimage.data
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from demos.explaining.adversarial import attack
from hub import load_checkpoint
from hub.preprocessing import image_spec, to_pixels
from tests.tiny_checkpoints import ARCHITECTURES


@pytest.fixture(scope="module")
def classifiers(tiny_checkpoints):
    """{architecture: folder}: seeded tiny classifiers whose prediction depends on the input (an attack can flip it;
    tests/test_tiny_checkpoints.py checks that)."""
    return {architecture: str(tiny_checkpoints[(architecture, "classification")]) for architecture in ARCHITECTURES}


def _classify_file(checkpoint, path):
    """What a /classify upload does: the checkpoint's own processor on the decoded file."""
    inputs = checkpoint.processor(Image.open(path), return_tensors="pt")
    with torch.no_grad():
        return checkpoint.task.labels[int(checkpoint.model(**inputs).logits.argmax())]


@pytest.mark.parametrize("architecture", ["vit", "resnet", "timm"])
def test_pgd_flips_the_prediction_and_the_saved_png_keeps_it(classifiers, architecture, photo, tmp_path):
    checkpoint = load_checkpoint(classifiers[architecture])
    result = attack(checkpoint, photo, budget=48)
    assert result.success and result.adversarial_label != result.original_label
    assert 0 < result.achieved <= 48
    result.upload.save(tmp_path / "adversarial.png")
    assert _classify_file(checkpoint, tmp_path / "adversarial.png") == result.adversarial_label
    assert _classify_file(checkpoint, tmp_path / "adversarial.png") != result.original_label


def test_the_saved_png_holds_exactly_the_attacked_pixels(classifiers, photo, tmp_path):
    checkpoint = load_checkpoint(classifiers["resnet"])  # its processor resizes, then crops
    spec = image_spec(checkpoint.processor)
    result = attack(checkpoint, photo, budget=16)
    result.upload.save(tmp_path / "adversarial.png")
    reread = to_pixels(spec)(Image.open(tmp_path / "adversarial.png"))
    attacked = TF.to_dtype(TF.to_image(result.adversarial), torch.float32, scale=True)
    assert torch.equal(reread, attacked)
    change = (attacked - to_pixels(spec)(photo)) * 255
    assert change.abs().max().round() == result.achieved <= 16


def test_targeted_pgd_reaches_the_target(classifiers, photo, tmp_path):
    checkpoint = load_checkpoint(classifiers["timm"])
    target = next(
        label
        for label in checkpoint.task.labels
        if label != attack(checkpoint, photo, budget=1, steps=1).original_label
    )
    result = attack(checkpoint, photo, budget=64, target=target)
    assert result.success and result.adversarial_label == result.target == target
    result.upload.save(tmp_path / "adversarial.png")
    assert _classify_file(checkpoint, tmp_path / "adversarial.png") == target


def test_fgsm_moves_pixels_by_the_whole_budget_in_one_step(tiny_checkpoints, photo):
    checkpoint = load_checkpoint(str(tiny_checkpoints[("vit", "classification")]))
    result = attack(checkpoint, photo, budget=6, method="fgsm")
    assert (result.steps, result.achieved, result.method) == (1, 6, "fgsm")
    assert result.perturbation.size == result.adversarial.size == result.original.size == (32, 32)


@pytest.mark.parametrize(
    "photo_given, options, message",
    [
        (False, {}, "No image: upload a photo"),
        (True, {"budget": 0}, "whole number from 1 to 255, got 0"),
        (True, {"budget": 300}, "whole number from 1 to 255, got 300"),
        (True, {"budget": 2.5}, "whole number from 1 to 255, got 2.5"),
        (True, {"target": "durian"}, "Unknown class 'durian'"),
        (True, {"method": "cw"}, "Unknown attack 'cw'"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(tiny_checkpoints, photo, photo_given, options, message):
    checkpoint = load_checkpoint(str(tiny_checkpoints[("vit", "classification")]))
    with pytest.raises(ValueError, match=message):
        attack(checkpoint, photo if photo_given else None, **options)


def test_the_current_prediction_is_refused_as_a_target(tiny_checkpoints, photo):
    checkpoint = load_checkpoint(str(tiny_checkpoints[("vit", "classification")]))
    predicted = attack(checkpoint, photo, budget=1, steps=1).original_label
    with pytest.raises(ValueError, match=f"already predicts '{predicted}'"):
        attack(checkpoint, photo, target=predicted)


def test_attack_refuses_a_regression_checkpoint(tiny_checkpoints, photo):
    checkpoint = load_checkpoint(str(tiny_checkpoints[("resnet", "regression")]))
    with pytest.raises(ValueError, match="regression checkpoint"):
        attack(checkpoint, photo)


def test_the_default_backbone_attack_survives_its_own_processor(tmp_path):
    """The real ImageNet model, whose timm processor resizes to 256 px and centre-crops 224: the PNG keeps the
    attack."""
    checkpoint = load_checkpoint("efficientnet-lite0")
    result = attack(checkpoint, Image.fromarray(skimage.data.chelsea()), budget=2)
    assert result.success and result.achieved <= 2 and result.adversarial_label != result.original_label
    result.upload.save(tmp_path / "adversarial.png")
    assert Image.open(tmp_path / "adversarial.png").size == (384, 256)  # chelsea (451x300) resized, not cropped
    assert _classify_file(checkpoint, tmp_path / "adversarial.png") == result.adversarial_label
