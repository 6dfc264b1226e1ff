"""Issue 25, findings 5 and 6: what a visitor can make the server write to disk, and what the server tells a visitor
(and its operator's console) when it refuses a request. Every test drives the served app over HTTP.

    OMP_WAIT_POLICY=PASSIVE python -m pytest -q tests/test_hostile_disk_and_paths.py
"""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from demos.serving.corrections import FOOD, PER_SESSION
from demos.tabs import network_sees
from demos.tabs.common import user_errors
from tests.serving import raw_call, serving
from tests.test_train import draw_classes, train_argv
from tests.tiny_checkpoints import LABELS
from train.__main__ import main as train

REPO = Path(__file__).resolve().parent.parent
UPLOAD = "an uploaded image"  # in a test's arguments: stands for one
PYTHON_INTERNALS = ("int()", "long long", "Traceback", "Error:", "NoneType", "unhashable", "object has no attribute")


@pytest.fixture(scope="module")
def app(tiny_checkpoints, tmp_path_factory):
    """(url, corrections folder): the app on tiny checkpoints, collecting corrections."""
    corrections = tmp_path_factory.mktemp("corrections")
    with serving(tiny_checkpoints, corrections_dir=corrections) as served:
        yield served.url, corrections


@pytest.fixture
def server_paths(tiny_checkpoints) -> list[str]:
    """Paths a visitor must never read: the checkout's, and the folder the served checkpoints were loaded from."""
    return [str(REPO), str(Path(tiny_checkpoints[("vit", "classification")]).parent)]


def phone_jpeg(path: Path) -> Path:
    """A noisy 640x480 JPEG, as a camera writes one: as a PNG its pixels would take several times its size."""
    pixels = np.random.default_rng(0).integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def raw_upload(url: str, path: Path) -> dict:
    """A file uploaded as the page uploads it, as the FileData payload that names it."""
    with path.open("rb") as file:
        uploaded = httpx.post(f"{url}gradio_api/upload", files={"files": (path.name, file)}, timeout=30)
    uploaded.raise_for_status()
    return {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}


def refused(client: Client, *args, api_name: str) -> str:
    with pytest.raises(AppError) as error:
        client.predict(*args, api_name=api_name)
    return str(error.value)


# ------------------------------------------------------------------------------------------------ 5. disk


def test_a_correction_keeps_the_uploaded_jpeg_as_it_came(app, tmp_path):
    url, corrections = app
    photo = phone_jpeg(tmp_path / "phone.jpg")
    answer = Client(url, verbose=False).predict(handle_file(photo), LABELS[1], api_name="/correct_food")
    assert answer.startswith("Saved")
    saved = [path for path in (corrections / FOOD / LABELS[1]).iterdir()]
    assert [path.suffix for path in saved] == [".jpg"]
    assert saved[0].read_bytes() == photo.read_bytes()  # not re-encoded: no bigger, and no generation lost


def test_a_session_saves_at_most_its_quota_of_corrections(app, tmp_path):
    url, corrections = app
    Image.new("RGB", (8, 8), "red").save(tmp_path / "small.png")
    upload = handle_file(tmp_path / "small.png")
    visitor = Client(url, verbose=False)
    for _ in range(PER_SESSION):
        assert visitor.predict(upload, LABELS[0], api_name="/correct_food").startswith("Saved")
    before = len(list((corrections / FOOD).rglob("*.png")))
    message = refused(visitor, upload, LABELS[0], api_name="/correct_food")
    assert f"this session has saved {PER_SESSION} corrections" in message
    assert len(list((corrections / FOOD).rglob("*.png"))) == before
    # Another visitor's session still saves.
    assert Client(url, verbose=False).predict(upload, LABELS[0], api_name="/correct_food").startswith("Saved")


def test_the_adversarial_png_is_written_into_gradios_cache_only(app, tmp_path, monkeypatch):
    url, _ = app
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the server runs in this process: its temp root too
    Image.new("RGB", (40, 30), "orange").save(tmp_path / "photo.png")
    photo = raw_upload(url, tmp_path / "photo.png")
    event, data = raw_call(url, "adversarial", ["food", photo, 2, network_sees.ANY_OTHER_CLASS, "fgsm"])
    assert event == "complete", data
    png = data[3]
    assert Path(png["path"]).is_relative_to(get_upload_folder()) and Path(png["path"]).name == "adversarial.png"
    assert not list(tmp_path.glob("adversarial-*")), "nothing is left in the system temp folder"


# ------------------------------------------------------------------------------------------------ 6. paths


def test_the_page_config_names_no_server_path(app, server_paths):
    url, _ = app
    config = httpx.get(f"{url}config", timeout=30).text
    assert not [path for path in server_paths if path in config]


def test_error_messages_name_no_server_path(app, server_paths):
    url, _ = app
    client = Client(url, verbose=False)
    messages = [
        refused(client, "food", "pizza", None, 1, 0, api_name="/dream"),  # an unknown class of a folder checkpoint
        refused(client, "boneage", "pizza", None, 1, 0, api_name="/dream"),  # a regression checkpoint
        refused(client, server_paths[1], api_name="/load_model"),
        refused(client, f"{server_paths[0]}/checkpoints/food10", api_name="/load_model"),
    ]
    assert "pizza" in messages[0] and "regression" in messages[1]
    assert not [(path, text) for text in messages for path in server_paths if path in text]


@pytest.mark.parametrize(
    ("api_name", "data", "field"),
    [
        ("dream", ["food", "apple", None, 1, "abc"], "The seed must be a whole number from 0 to 4294967295"),
        ("dream", ["food", "apple", None, 1, 10**30], "The seed must be between 0 and 4294967295"),
        ("dream", ["food", "apple", None, 1e9, 0], "The number of steps must be between 1 and 500"),
        ("dream", ["food", "apple", None, 2.5, 0], "The number of steps must be a whole number from 1 to 500"),
        ("dream", [{"a": 1}, "apple", None, 1, 0], "The model must be a text"),
        ("dream", ["food", ["apple"], None, 1, 0], "The class must be a text"),
        ("adversarial", ["food", UPLOAD, 10**30, network_sees.ANY_OTHER_CLASS, "fgsm"], "a whole number from 1 to 255"),
        ("adversarial", ["food", None, 8, network_sees.ANY_OTHER_CLASS, {"x": 1}], "The attack must be one of: pgd"),
        ("feature_maps", [None, "food", ["layer"], "top prediction"], "The layer must be a text"),
        ("bone_age", [UPLOAD, {"sex": 1}], "The sex must be one of: female, male, unknown"),
        ("correct_bone_age", [None, 10, ["male"]], "Choose the sex"),
        ("correct_bone_age", [None, 10**400, "male"], "The bone age must be a number of months"),
        ("model_summary", [["food"]], "The model must be a text"),
        ("batch_predict", [[UPLOAD], "food", "abc"], "The number of labels per image must be a whole number"),
        ("batch_predict", [[UPLOAD], "food", 10**30], "The number of labels per image must be between 1 and 10"),
        ("batch_predict", [[UPLOAD], ["food"], 3], "The model must be a text"),
    ],
)
def test_a_bad_value_gets_a_message_that_names_the_field_not_pythons_own(app, tmp_path, api_name, data, field):
    url, _ = app
    Image.new("RGB", (40, 30), "grey").save(tmp_path / "image.png")
    upload = raw_upload(url, tmp_path / "image.png")
    data = [[upload] if value == [UPLOAD] else upload if value == UPLOAD else value for value in data]
    event, message = raw_call(url, api_name, data)
    assert event == "error" and message is not None and field in message["error"], message
    assert not [internal for internal in PYTHON_INTERNALS if internal in message["error"]]


def test_a_refused_request_prints_one_line_on_the_console(app, tiny_checkpoints, capfd):
    url, _ = app
    client = Client(url, verbose=False)
    capfd.readouterr()
    refused(client, None, api_name="/classify")  # "Classify" with no image
    refused(client, "no such/model here", api_name="/load_model")  # a refusal that chains the loader's error
    refused(client, str(tiny_checkpoints[("vit", "classification")]), api_name="/load_model")
    raw_call(url, "bone_age", [{"path": "/etc/passwd"}, "unknown"])  # refused by the queue: Gradio would trace it
    printed = capfd.readouterr()
    lines = [line for line in (printed.out + printed.err).splitlines() if line.strip()]
    assert len(lines) == 4 and all(line.startswith("* refused ") for line in lines), lines


def test_a_bug_is_no_refusal_and_keeps_its_traceback():
    @user_errors
    def broken():
        return {}["missing"]

    with pytest.raises(KeyError):
        broken()


def absolute_arguments(command: str) -> list[str]:
    """The arguments of a recorded command line that are absolute paths (also as `--option=/path`)."""
    values = [argument.partition("=")[2] or argument for argument in shlex.split(command)]
    return [value for value in values if value.startswith(("/", "~"))]


@pytest.mark.parametrize("name", ["food10", "boneage"])
def test_the_shipped_checkpoints_record_commands_without_absolute_paths(name):
    folder = REPO / "checkpoints" / name
    training = json.loads((folder / "training_config.json").read_text())
    commands = [training["command"], *training.get("earlier_commands", [])]
    assert not [path for command in commands for path in absolute_arguments(command)]
    card = (folder / "README.md").read_text()
    assert str(REPO) not in card and "/work/" not in card and training["command"] in card


def test_a_run_records_its_paths_as_the_user_could_rerun_them(tiny_checkpoints, tmp_path, monkeypatch):
    data = draw_classes(tmp_path / "data", {"train": 2, "validation": 1})
    monkeypatch.chdir(tmp_path / "data")  # the data under the working directory, the base checkpoint outside it
    run = tmp_path / "data" / "runs" / "tiny"
    argv = train_argv(
        model=tiny_checkpoints[("vit", "classification")], dataset=data, output_dir=run, mode="feature-extraction"
    )
    assert train([*argv, "--head-epochs", "1"]) == 0
    training = json.loads((run / "training_config.json").read_text())
    assert not absolute_arguments(training["command"]) and not training["base_model"].startswith("/")
    assert "--output-dir runs/tiny" in training["command"] and "--dataset ." in training["command"]
    written = (run / "training_config.json").read_text() + (run / "README.md").read_text()
    assert str(tmp_path) not in written and str(REPO) not in written
