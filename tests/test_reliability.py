"""Reliability: every kind of upload gets a prediction or a clear message and the app keeps serving;
a training run killed with SIGKILL resumes to the same end; a truncated training image stops the run by name.

    OMP_WAIT_POLICY=PASSIVE python -m pytest -q -s tests/test_reliability.py   # -s prints the zoo table
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from safetensors.torch import load_file

from demos import app as demo_app
from demos.images import load_image
from tests.bad_inputs import write_upload_zoo
from tests.test_demos_app import free_port
from tests.test_demos_images import cat_photo
from tests.test_train import FAST, draw_classes, run_expecting_error
from tests.tiny_checkpoints import LABELS

REPO = Path(__file__).resolve().parent.parent
CAP_BYTES = 20 * 1024 * 1024  # demos.app.MAX_FILE_SIZE, "20mb"
# What each refused upload's message must say (the user-facing part, not a traceback).
ERROR_MESSAGES = {
    "zero-bytes.jpg": "is not an image that can be read",
    "text-named.jpg": "is not an image that can be read",
    "truncated.jpg": "is damaged or truncated",
    "truncated.png": "is damaged or truncated",
    "bomb.png": "decompression bomb",
    "huge-20000.png": "decompression bomb",
    "corrupt.dcm": "is not a DICOM image",
    "over-cap.jpg": "exceeds the maximum file size of 20971520 bytes",
}


@contextmanager
def serving(tiny_checkpoints):
    """The app on tiny checkpoints (ViT food classifier, ResNet bone-age regressor), served on a free loopback port."""
    models = demo_app.load_models(
        str(tiny_checkpoints[("vit", "classification")]), str(tiny_checkpoints[("resnet", "regression")])
    )
    demo = demo_app.build_app(models=models)
    url, _ = demo_app.launch(demo, port=free_port(), prevent_thread_lock=True)
    try:
        yield url, models
    finally:
        demo.close()


@pytest.fixture(scope="module")
def served(tiny_checkpoints):
    with serving(tiny_checkpoints) as (url, models):
        yield Client(url, verbose=False), models


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return write_upload_zoo(tmp_path_factory.mktemp("zoo"), over_cap_bytes=CAP_BYTES)


@pytest.fixture(scope="module")
def good_photo(tmp_path_factory):
    return cat_photo(tmp_path_factory.mktemp("good") / "cat.png")


def call(client: Client, path: Path, endpoint: str) -> tuple[str, object]:
    """("ok", result) or ("error", message) for one upload."""
    try:
        return "ok", client.predict(handle_file(path), api_name=endpoint)
    except AppError as err:
        return "error", str(err)
    except ValueError as err:  # gradio_client refuses the upload itself (HTTP 413 over the size cap)
        return "error", str(err)


def check_prediction(endpoint: str, name: str, result, path: Path) -> str | None:
    """What is wrong with an "ok" file's answer, or None."""
    if endpoint == "/classify":
        return None if result["label"] in LABELS else f"label {result['label']!r}"
    months, text, _, decoded = result
    if not isinstance(months, float) or "months" not in text:
        return f"no months: {months!r}, {text!r}"
    size = Image.open(decoded).size
    if size != load_image(path).size:
        return f"decoded size {size}"
    if name == "exif-rotated.jpg" and size != (80, 120):  # stored 120x80 with orientation 6: shown upright
        return f"EXIF rotation not applied: {size}"
    return None


@pytest.mark.parametrize("endpoint", ["/classify", "/bone_age"])
def test_every_upload_in_the_zoo_gets_a_prediction_or_a_clear_error(served, zoo, good_photo, endpoint):
    client, _ = served
    assert set(ERROR_MESSAGES) == {name for name, (_, expected) in zoo.items() if expected == "error"}
    table, faults = [], []
    for name, (path, expected) in zoo.items():
        outcome, answer = call(client, path, endpoint)
        if outcome != expected:
            faults.append(f"{name}: expected {expected}, got {outcome}: {str(answer)[:300]}")
        elif outcome == "ok" and (problem := check_prediction(endpoint, name, answer, path)):
            faults.append(f"{name}: {problem}")
        elif outcome == "error" and (ERROR_MESSAGES[name] not in answer or "Traceback" in answer):
            faults.append(f"{name}: unclear message {answer[:300]!r}")
        still_serving = client.predict(handle_file(good_photo), api_name="/classify")["label"] in LABELS
        faults += [] if still_serving else [f"after {name} a good request failed"]
        table.append(f"{endpoint:10s} {name:16s} {outcome:5s} {str(answer)[:110]!r}")
    print("\n" + "\n".join(table))
    assert not faults, "\n".join(faults)
