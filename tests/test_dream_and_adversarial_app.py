"""The /dream and /adversarial endpoints of the demo app, driven through gradio_client on tiny checkpoints."""

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from demos.explaining.summary import human_label
from tests.serving import serving
from tests.tiny_checkpoints import LABELS


@pytest.fixture(scope="module")
def client(tiny_checkpoints):
    """A client of the app with a ViT food classifier (the Food tab's /classify) and a ResNet regressor."""
    with serving(tiny_checkpoints) as app:
        yield Client(app.url, verbose=False)


@pytest.fixture
def photo_file(photo, tmp_path):
    photo.save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_both_endpoints_are_public(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/dream", "/adversarial"} <= set(endpoints)


def test_dream_returns_the_image_the_strip_and_the_probability(client):
    image, strip, probability, caption = client.predict("food", "banana", None, 8, 0, api_name="/dream")
    assert Image.open(image).size == (32, 32)
    assert Image.open(strip).size[0] > 32 and np.asarray(Image.open(strip)).std() > 0
    assert 0 < probability < 1 and "**Banana**" in caption and f"{probability:.1%}" in caption


def test_dream_can_start_from_an_upload(client, photo_file):
    image, _, _, caption = client.predict("food", "cherry", handle_file(photo_file), 4, 1, api_name="/dream")
    assert Image.open(image).size == (32, 32) and "starting from your image" in caption


def test_adversarial_png_reproduces_the_attack_on_classify(client, photo_file):
    original, perturbation, adversarial, png, caption = client.predict(
        "food", handle_file(photo_file), 48, "any other class (untargeted)", "pgd", api_name="/adversarial"
    )
    before = client.predict(handle_file(photo_file), api_name="/classify")["label"]
    after = client.predict(handle_file(png), api_name="/classify")["label"]
    assert after != before and f"-> **{human_label(after)}**" in caption and "It worked" in caption
    assert Image.open(original).size == Image.open(perturbation).size == Image.open(adversarial).size == (32, 32)


def test_adversarial_reaches_a_chosen_target(client, photo_file):
    before = client.predict(handle_file(photo_file), api_name="/classify")["label"]
    target = next(label for label in LABELS if label != before)
    *_, png, caption = client.predict("food", handle_file(photo_file), 64, target, "pgd", api_name="/adversarial")
    assert client.predict(handle_file(png), api_name="/classify")["label"] == target
    assert f"to make the model answer **{human_label(target)}**" in caption


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("food", None, 8, "any other class (untargeted)", "pgd"), "No image"),
        (("food", "PHOTO", 300, "any other class (untargeted)", "pgd"), "whole number from 1 to 255"),
        (("food", "PHOTO", "eight", "any other class (untargeted)", "pgd"), "whole number from 1 to 255"),
        (("food", "PHOTO", 8, "durian", "fgsm"), "Unknown class 'durian'"),
        (("boneage", "PHOTO", 8, "any other class (untargeted)", "pgd"), "need a classification checkpoint"),
    ],
)
def test_adversarial_bad_input_is_a_readable_error(client, photo_file, arguments, message):
    arguments = tuple(handle_file(photo_file) if value == "PHOTO" else value for value in arguments)
    with pytest.raises(AppError, match=message):
        client.predict(*arguments, api_name="/adversarial")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("food", "bananna", None, 4, 0), "Unknown class 'bananna'.*Did you mean 'banana'"),
        (("food", "banana", None, 2.5, 0), "number of steps must be a whole number"),
        (("food", "banana", None, 0, 0), "steps must be between 1 and 500"),
        (("boneage", "banana", None, 4, 0), "need a classification checkpoint"),
    ],
)
def test_dream_bad_input_is_a_readable_error(client, arguments, message):
    with pytest.raises(AppError, match=message):
        client.predict(*arguments, api_name="/dream")
