"""The tiny random checkpoints the other tests stand on: the same weights on every build, and outputs that depend
on the input (tests of Grad-CAM, adversarial attacks and class visualisation need both)."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from hub import load_checkpoint
from tests.tiny_checkpoints import ARCHITECTURES, TASKS, build_tiny_checkpoint


def varied_images(count: int = 12) -> list[Image.Image]:
    """Noise at several contrasts and brightness levels, 40x48 RGB."""
    rng = np.random.default_rng(1)
    images = []
    for i in range(count):
        level, spread = 255 * (i % 4) / 3, 40 + 60 * (i // 4)
        pixels = np.clip(level + rng.normal(0, spread, (40, 48, 3)), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels))
    return images


def outputs(folder) -> torch.Tensor:
    checkpoint = load_checkpoint(str(folder))
    inputs = checkpoint.processor(varied_images(), return_tensors="pt")
    with torch.no_grad():
        return checkpoint.model(**inputs).logits


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_two_builds_hold_the_same_weights(tiny_checkpoints, architecture, tmp_path):
    again = build_tiny_checkpoint(tmp_path / architecture, architecture, "classification")
    first = load_file(tiny_checkpoints[(architecture, "classification")] / "model.safetensors")
    second = load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_build_leaves_the_callers_random_state_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_checkpoint(tmp_path / "vit", "vit", "classification")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("task", TASKS)
def test_outputs_depend_on_the_input(tiny_checkpoints, architecture, task):
    logits = outputs(tiny_checkpoints[(architecture, task)])
    if task == "classification":
        assert len(set(logits.argmax(-1).tolist())) > 1, "one class for every input"
    else:
        assert logits[:, 0].std() > 1e-4 * logits[:, 0].abs().mean(), "the same number for every input"
