"""Reliability: every kind of upload gets a prediction or a clear message and the app keeps serving;
a training run killed with SIGKILL resumes to the same end; a truncated training image stops the run by name.

    OMP_WAIT_POLICY=PASSIVE python -m pytest -q -s -n 0 tests/test_reliability.py   # -s -n 0 prints the zoo table
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from safetensors.torch import load_file

from demos import app as demo_app
from demos.serving.images import load_image
from hub.cards import write_model_card
from hub.push import PushError, push_checkpoint
from tests.bad_inputs import write_upload_zoo
from tests.serving import serving
from tests.test_cards import make_run_folder
from tests.test_demos_images import cat_photo
from tests.test_hub_push import FAKE_TOKEN, digest, online, stand_in  # noqa: F401  (online, stand_in: fixtures)
from tests.test_train import draw_classes, run_expecting_error, train_argv
from tests.tiny_checkpoints import LABELS
from train.__main__ import main as train_main

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


@pytest.fixture(scope="module")
def served(tiny_checkpoints):
    with serving(tiny_checkpoints) as (url, models, _):
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


# ----------------------------------------------------------------------------- training faults


def test_a_truncated_jpeg_in_a_class_folder_stops_the_run_before_training_naming_it(tiny_checkpoints, tmp_path, capsys):
    """tests/test_train.py covers a file that is not an image; a JPEG cut in half decodes partly and must fail too."""
    root = draw_classes(tmp_path / "classes", {"train": 3, "validation": 2})
    broken = root / "train" / "blue" / "2.jpg"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    argv = train_argv(model=tiny_checkpoints[("vit", "classification")], dataset=root, output_dir=tmp_path / "run")
    error = run_expecting_error(capsys, argv)
    assert "Unreadable image" in error and str(broken) in error and "truncated" in error
    assert not (tmp_path / "run").exists()


def train_command(model: Path, dataset: Path, run_dir: Path, *, resume: bool = False) -> list[str]:
    return train_argv(model=model, dataset=dataset, output_dir=run_dir, mode="full", epochs=3, resume=resume)


def kill_in_second_epoch(argv: list[str], run_dir: Path) -> Path:
    """Start `python -m train` and SIGKILL it once it logs a step of epoch 2; return the checkpoint it left."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "train", *argv],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 240
    try:
        for line in process.stdout:
            epoch = re.search(r"'epoch': '?([\d.]+)", line)
            if epoch and 1.0 < float(epoch.group(1)) < 2.0:
                os.kill(process.pid, signal.SIGKILL)
                print(f"\nSIGKILL at epoch {epoch.group(1)}")
                break
            assert time.monotonic() < deadline, "the run never reached epoch 2"
        else:
            pytest.fail(f"the run ended before epoch 2 (exit {process.wait()})")
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    (checkpoint,) = run_dir.glob("checkpoint-*")
    assert not (run_dir / "model.safetensors").exists(), "killed mid-run: no final checkpoint yet"
    return checkpoint


def test_a_run_killed_mid_epoch_resumes_to_the_same_step_count_and_weights(tiny_checkpoints, tmp_path):
    dataset = draw_classes(tmp_path / "classes", {"train": 6, "validation": 2})
    model = tiny_checkpoints[("vit", "classification")]
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    assert train_main(train_command(model, dataset, whole)) == 0

    checkpoint = kill_in_second_epoch(train_command(model, dataset, interrupted), interrupted)
    saved = load_file(checkpoint / "model.safetensors")  # what the killed run left loads whole
    steps_per_epoch = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert checkpoint.name == f"checkpoint-{steps_per_epoch}"  # the end of epoch 1

    assert train_main(train_command(model, dataset, interrupted, resume=True)) == 0
    (last,) = interrupted.glob("checkpoint-*")
    (reference,) = whole.glob("checkpoint-*")
    final_step = json.loads((last / "trainer_state.json").read_text())["global_step"]
    assert (
        final_step == json.loads((reference / "trainer_state.json").read_text())["global_step"] == 3 * steps_per_epoch
    )
    resumed, uninterrupted = load_file(interrupted / "model.safetensors"), load_file(whole / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys() == saved.keys()
    # Resumed from the epoch-1 weights (not re-initialised, transformers issue 43701): it ends where the whole run did.
    differences = {name: (resumed[name] - uninterrupted[name]).abs().max().item() for name in resumed}
    largest = max(differences.values())
    print(f"resumed to step {final_step} of {3 * steps_per_epoch}; largest weight difference {largest:.2e}")
    assert largest < 1e-4, sorted(differences.items(), key=lambda kv: -kv[1])[:3]


# ------------------------------------------------------------------ push faults (tests/test_hub_push.py covers 5xx)


@pytest.mark.parametrize("fault", ["timeout", "auth"])
def test_a_push_that_times_out_or_is_refused_keeps_the_folder_and_prints_the_retry_command(online, tmp_path, fault):
    run = make_run_folder(tmp_path / "run", "resnet", "regression")
    write_model_card(run)
    before = digest(run)
    if fault == "timeout":
        online.hang_writes, online.hang_s = 100, 2.0
    else:
        online.deny_writes = True
    with pytest.raises(PushError) as failure:
        push_checkpoint(run, "hana/bone-age", revision="try-2", request_timeout_s=0.3)
    message = str(failure.value)
    expected = "ReadTimeout" if fault == "timeout" else "HTTP 401"
    assert expected in message and ("after 4 tries" in message) == (fault == "timeout")
    assert f"The local checkpoint {run} is intact" in message
    assert message.endswith(f"Retry with:\n  python -m hub push {run} hana/bone-age --revision try-2")
    assert digest(run) == before and "hana/bone-age" not in online.repos
    assert FAKE_TOKEN not in message


def test_a_long_running_app_deletes_old_uploads_and_outputs_and_keeps_serving(tiny_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setattr(demo_app, "DELETE_CACHE", (1, 1))  # days in the shipped app; seconds here
    good = cat_photo(tmp_path / "cat.png")
    with serving(tiny_checkpoints) as (url, *_):
        raw = Client(url, verbose=False, download_files=False)  # answers carry the server's own file paths
        _, _, overlay, decoded = raw.predict(handle_file(good), api_name="/bone_age")
        made = [Path(overlay["path"]), Path(decoded["path"])]
        assert all(path.is_file() for path in made)
        deadline = time.monotonic() + 60  # a guard against a hang: the sweep runs every second
        while any(path.exists() for path in made) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(path.exists() for path in made), "outputs older than the age limit are still on disk"
        assert Client(url, verbose=False).predict(handle_file(good), api_name="/classify")["label"] in LABELS
