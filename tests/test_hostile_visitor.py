"""Issue 25, a visitor who sends hand-made requests: no server file is read, no visitor sees another's activations,
and no request fails because a model is being compiled. Every test drives the served app over HTTP.

    OMP_WAIT_POLICY=PASSIVE python -m pytest -q tests/test_hostile_visitor.py
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image
from pytorch_grad_cam.base_cam import BaseCAM

from demos.guards.uploads import FILE_INPUTS, NOT_AN_UPLOAD
from demos.tabs import network_sees
from tests.serving import raw_call, serving
from tests.test_demos_images import cat_photo

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def app(tiny_checkpoints, tmp_path_factory):
    """(url, models, corrections folder, the Blocks): the app on tiny checkpoints, collecting corrections."""
    corrections = tmp_path_factory.mktemp("corrections")
    with serving(tiny_checkpoints, corrections_dir=corrections) as (url, models, demo):
        yield url, models, corrections, demo


def file_endpoints(models) -> dict[str, callable]:
    """{api name: the endpoint's arguments around one file payload} for every endpoint that reads a file."""
    label = models.get("food").task.labels[0]
    return {
        "classify": lambda file: [file],
        "bone_age": lambda file: [file, "unknown"],
        "feature_maps": lambda file: [file, "food", "", "top prediction"],
        "dream": lambda file: ["food", label, file, 1, 0],
        "adversarial": lambda file: ["food", file, 8, network_sees.ANY_OTHER_CLASS, "fgsm"],
        "batch_predict": lambda file: [[file], "food", 3],
        "correct_food": lambda file: [file, label],
        "correct_bone_age": lambda file: [file, 120, "female"],
    }


def refusal(event: str, data: dict) -> str | None:
    """The error message of a refused call."""
    assert event == "error", data
    return data["error"]


@pytest.fixture
def server_files(tmp_path) -> dict[str, str]:
    """Paths a visitor might name: a real image outside the upload folder, a secret, one that does not exist."""
    image = cat_photo(tmp_path / "private-photo.png")
    return {"image": str(image), "passwd": "/etc/passwd", "missing": str(tmp_path / "no-such-file.png")}


def test_no_endpoint_reads_a_server_file_named_without_meta(app, server_files):
    """The payload of the probe: FileData without `meta`, which Gradio 6.31 does not check."""
    url, models, corrections, _ = app
    answers = {}
    for api_name, arguments in file_endpoints(models).items():
        for what, path in server_files.items():
            answers[api_name, what] = refusal(*raw_call(url, api_name, arguments({"path": path})))
    assert set(answers.values()) == {NOT_AN_UPLOAD}, answers  # one answer whatever the path: no probing the disk
    assert not [path for path in corrections.rglob("*") if path.is_file()], "nothing was filed as a correction"


@pytest.mark.parametrize(
    "shape",
    ["plain string", "url beside the path", "meta", "upload folder and ..", "symlink in the upload folder"],
)
def test_no_payload_shape_reaches_a_server_file(app, server_files, shape, tmp_path):
    url, models, _, _ = app
    image = server_files["image"]
    upload_folder = Path(os.environ["GRADIO_TEMP_DIR"])
    if shape == "symlink in the upload folder":
        link = upload_folder / f"link-{tmp_path.name}.png"
        link.symlink_to(image)
    payload = {
        "plain string": image,
        "url beside the path": {"path": image, "url": None, "orig_name": "photo.png"},
        "meta": {"path": image, "meta": {"_type": "gradio.FileData"}},
        "upload folder and ..": {"path": str(upload_folder) + "/../../../.." + image},
        "symlink in the upload folder": {"path": str(upload_folder / f"link-{tmp_path.name}.png")},
    }[shape]
    for api_name, arguments in file_endpoints(models).items():
        assert refusal(*raw_call(url, api_name, arguments(payload))) == NOT_AN_UPLOAD, api_name


def test_the_pages_own_events_refuse_a_server_file_too(app, server_files):
    """Events without an api_name (an upload classifying at once, an example) are still callable by their index."""
    url, _, _, demo = app
    taking_files = [fn for fn in demo.fns.values() if any(isinstance(c, FILE_INPUTS) for c in fn.inputs)]
    assert any(fn.api_name is None or fn.api_visibility == "private" for fn in taking_files)
    for fn in taking_files:
        data = [{"path": server_files["passwd"]} if isinstance(c, FILE_INPUTS) else None for c in fn.inputs]
        body = {"data": data, "fn_index": fn._id, "session_hash": "a-visitor", "trigger_id": None}
        joined = httpx.post(f"{url}gradio_api/queue/join", json=body, timeout=30)
        assert (joined.status_code, joined.json()["detail"]) == (400, NOT_AN_UPLOAD), fn.api_name


def test_uploads_still_work_on_every_endpoint(app, tmp_path):
    url, models, corrections, _ = app
    client = Client(url, verbose=False)
    photo = handle_file(cat_photo(tmp_path / "cat.png"))
    for api_name, arguments in file_endpoints(models).items():
        client.predict(*arguments(photo), api_name=f"/{api_name}")  # raises on an error event
    assert len(list(corrections.rglob("*.png"))) == 2  # one correction of each kind


# ----------------------------------------------------------------------------- 2. no visitor sees another's data


def feature_maps(client: Client, image: Path) -> tuple[np.ndarray, np.ndarray]:
    channels, _, cam, _, _ = client.predict(handle_file(image), "food", "", "top prediction", api_name="/feature_maps")
    return np.asarray(Image.open(channels)), np.asarray(Image.open(cam))


def test_other_visitors_requests_never_reach_an_explanations_hooks(app, tmp_path, monkeypatch):
    """While one visitor's Grad-CAM has its hooks in place, another visitor's predictions, batch and attack run.

    The explanation must be exactly what it is when it runs alone.
    """
    url, models, _, _ = app
    mine = cat_photo(tmp_path / "mine.png")
    theirs = tmp_path / "theirs.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(theirs)
    alone = feature_maps(Client(url, verbose=False), mine)
    other = Client(url, verbose=False)
    other_requests = [
        lambda: other.predict(handle_file(theirs), api_name="/classify"),
        lambda: other.predict([handle_file(theirs)], "food", 3, api_name="/batch_predict"),
        lambda: other.predict(
            "food", handle_file(theirs), 4, network_sees.ANY_OTHER_CLASS, "fgsm", api_name="/adversarial"
        ),
    ]
    forward = BaseCAM.forward
    ran = []

    def forward_while_others_run(cam, *args, **kwargs):
        # Here every hook of the explanation is registered: run the other visitor's requests to their end first.
        with ThreadPoolExecutor(1) as pool:
            ran.extend(pool.submit(request).result(timeout=120) for request in other_requests)
        return forward(cam, *args, **kwargs)

    monkeypatch.setattr(BaseCAM, "forward", forward_while_others_run)
    during = feature_maps(Client(url, verbose=False), mine)
    assert len(ran) == len(other_requests)
    np.testing.assert_array_equal(during[0], alone[0], err_msg="the strongest channels")
    np.testing.assert_array_equal(during[1], alone[1], err_msg="the Grad-CAM overlay")


# ----------------------------------------------------------------------------- 7. requests while a model compiles


class TracedWhileHeld(torch.nn.Module):
    """A module whose forward waits for `release`: torch.fx traces it for as long as the test holds it."""

    def __init__(self, entered: threading.Event, release: threading.Event):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.entered, self.release = entered, release

    def forward(self, x):
        self.entered.set()
        self.release.wait(120)
        return self.linear(x)


def test_every_endpoint_answers_while_a_compile_traces_a_model(app, tmp_path):
    """torch.compile traces with torch.fx, which patches every module's __call__ while it traces (the start-up compile
    did so while a /dream ran, which failed with `NameError: module is not installed as a submodule`).

    Here a trace is held open in another thread for as long as the test calls every endpoint.
    """
    url, models, _, _ = app
    entered, release = threading.Event(), threading.Event()
    traced = {}
    tracer = threading.Thread(
        target=lambda: traced.update(graph=torch.fx.symbolic_trace(TracedWhileHeld(entered, release)))
    )
    tracer.start()
    try:
        assert entered.wait(30)
        client = Client(url, verbose=False)
        photo = handle_file(cat_photo(tmp_path / "cat.png"))
        answered = [
            client.predict(*arguments(photo), api_name=f"/{api_name}")
            for api_name, arguments in file_endpoints(models).items()
        ]
        answered.append(client.predict("boneage", api_name="/model_summary"))  # the layer table runs the model
    finally:
        release.set()
        tracer.join(60)
    assert len(answered) == len(file_endpoints(models)) + 1
    assert "call_module" in {node.op for node in traced["graph"].graph.nodes}, "the trace itself is unchanged"
