"""Issue 25, finding 4: a visitor who floods the queue. Jobs nobody reads must not make cheap endpoints refuse, and
one client (session or address) holds only a few jobs. Every test sends raw requests to the served app over HTTP.

    OMP_WAIT_POLICY=PASSIVE python -m pytest -q tests/test_hostile_flood.py

The slow endpoints are made to block until the test releases them (as tests/test_public_demo.py simulates a slow
dream), so that what the queue holds is known when each request arrives. The app serves on the loopback, which
uvicorn trusts to name the client in X-Forwarded-For, as a share link's tunnel does: that is how a test is several
clients.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import gradio as gr
import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from demos import app as demo_app
from demos.guards import queue_limits
from demos.guards.priority import slow_work_niceness
from demos.guards.queue_limits import (
    MAX_EXPENSIVE_JOBS_PER_CLIENT,
    MAX_JOBS_PER_CLIENT,
    MAX_WAITING_PER_EXPENSIVE_GROUP,
)
from demos.tabs import network_sees
from tests.serving import free_port, serving
from tests.test_demos_images import cat_photo

FLOOD = 40
HANG_GUARD_S = 60  # a bound against a hang, not a speed figure


@pytest.fixture(scope="module")
def app(tiny_checkpoints):
    with serving(tiny_checkpoints) as served:
        yield served


@pytest.fixture
def held(app, monkeypatch):
    """/dream, and /classify once `hold_classify` is set, block until the test ends; then the queue drains."""
    release, hold_classify = threading.Event(), threading.Event()

    def held_dream(*_):
        release.wait(HANG_GUARD_S)
        image = Image.new("RGB", (8, 8))
        return image, image, 0.5, "dreamt"

    models_get = app.models.get

    def held_get(name):
        if hold_classify.is_set():
            release.wait(HANG_GUARD_S)
        return models_get(name)

    monkeypatch.setattr(network_sees, "run_dream", held_dream)
    monkeypatch.setattr(app.models, "get", held_get)  # /classify asks for its model first
    yield hold_classify
    release.set()
    queue, deadline = app.demo._queue, time.monotonic() + HANG_GUARD_S
    while queue.event_ids_to_events and time.monotonic() < deadline:
        time.sleep(0.05)


def post(url: str, api_name: str, data: list, client: str | None = None) -> httpx.Response:
    """A raw `/gradio_api/call/<api_name>` POST (a fresh session each), from `client`'s address when given."""
    headers = {"X-Forwarded-For": client} if client else {}
    return httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data}, headers=headers, timeout=30)


def dream_data(app) -> list:
    return ["food", app.models.checkpoints["food"].task.labels[0], None, 4, 0]


def classify_answers(app, tmp_path) -> bool:
    label = Client(app.url, verbose=False).predict(handle_file(cat_photo(tmp_path / "cat.png")), api_name="/classify")
    return label["label"] in app.models.checkpoints["food"].task.labels


def statuses(responses: list[httpx.Response]) -> list[int]:
    return [response.status_code for response in responses]


def test_classify_answers_while_40_dreams_nobody_reads_were_posted_from_one_address(app, held, tmp_path):
    flood = [post(app.url, "dream", dream_data(app)) for _ in range(FLOOD)]
    assert classify_answers(app, tmp_path)  # from the flood's own address too
    assert statuses(flood) == [200] * MAX_EXPENSIVE_JOBS_PER_CLIENT + [429] * (FLOOD - MAX_EXPENSIVE_JOBS_PER_CLIENT)


def test_classify_answers_while_40_clients_each_post_a_dream(app, held, tmp_path):
    flood = [post(app.url, "dream", dream_data(app), client=f"10.0.1.{i}") for i in range(FLOOD)]
    assert classify_answers(app, tmp_path)
    accepted = 1 + MAX_WAITING_PER_EXPENSIVE_GROUP  # one runs, the rest wait
    assert statuses(flood) == [200] * accepted + [429] * (FLOOD - accepted)


def test_one_address_holds_at_most_a_few_jobs_and_another_still_queues(app, held):
    held.set()
    dreams = [
        post(app.url, "dream", dream_data(app), client="10.0.2.1") for _ in range(MAX_EXPENSIVE_JOBS_PER_CLIENT + 1)
    ]
    cheap_room = MAX_JOBS_PER_CLIENT - MAX_EXPENSIVE_JOBS_PER_CLIENT
    classified = [post(app.url, "classify", [None], client="10.0.2.1") for _ in range(cheap_room + 1)]
    assert statuses(dreams) == [200] * MAX_EXPENSIVE_JOBS_PER_CLIENT + [429]
    assert statuses(classified) == [200] * cheap_room + [429]
    other = [post(app.url, "dream", dream_data(app), client="10.0.2.2"), post(app.url, "classify", [None], "10.0.2.2")]
    assert statuses(other) == [200, 200]


def test_one_session_holds_at_most_a_few_jobs_whatever_address_it_comes_from(app, held):
    dream = next(fn for fn in app.demo.fns.values() if fn.api_name == "dream")
    body = {"data": dream_data(app), "fn_index": dream._id, "session_hash": "one-visitor", "trigger_id": None}
    joined = [
        httpx.post(f"{app.url}gradio_api/queue/join", json=body, headers={"X-Forwarded-For": f"10.0.3.{i}"}, timeout=30)
        for i in range(MAX_EXPENSIVE_JOBS_PER_CLIENT + 1)
    ]
    assert statuses(joined) == [200] * MAX_EXPENSIVE_JOBS_PER_CLIENT + [429]


def test_a_refusal_says_to_try_again_later_and_names_nothing_internal(app, held):
    refused = [post(app.url, "dream", dream_data(app), client="10.0.4.1") for _ in range(3)][-1]
    busy = [post(app.url, "dream", dream_data(app), client=f"10.0.5.{i}") for i in range(FLOOD)][-1]
    for response in (refused, busy):
        assert response.status_code == 429 and response.headers["Retry-After"] == str(queue_limits.RETRY_AFTER_S)
        detail = response.json()["detail"]
        assert "try again" in detail and "Queue is full" not in detail
        assert not any(word in detail for word in ("Traceback", "Error", "/", "gradio"))
    assert "wait for one to finish" in refused.json()["detail"] and "busy" in busy.json()["detail"]


def test_no_endpoint_runs_outside_the_queue(app, held):
    """gradio serves every endpoint at /gradio_api/run/<api> too, outside the queue and its bounds, unless closed."""
    response = httpx.post(f"{app.url}gradio_api/run/dream", json={"data": dream_data(app)}, timeout=30)
    assert response.status_code == 404


def test_the_queue_hook_fits_the_installed_gradio_and_refuses_another():
    assert gr.__version__ in queue_limits.PATCHED_GRADIO, "demos/guards/queue_limits.py hooks gradio internals"
    with pytest.raises(queue_limits.GradioVersionError, match="PATCHED_GRADIO"):
        queue_limits.limit_queue(gr.Blocks(), queue_limits.QueueLimits(frozenset()), gradio_version="7.0.0")


def priority_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's (setpriority on its id)")
def test_slow_endpoints_run_at_a_lower_cpu_priority_than_predictions(app, monkeypatch, tmp_path):
    """So that a running class visualisation, attack, batch or feature map leaves the cores to /classify first."""
    seen = {}

    def recording_dream(models, name, *_args):
        seen["dream"] = priority_of_this_thread(), models.get(name).name  # the visitor's session reaches the thread
        image = Image.new("RGB", (8, 8))
        return image, image, 0.5, "dreamt"

    models_get = app.models.get

    def recording_get(name):
        seen.setdefault("classify", priority_of_this_thread())
        return models_get(name)

    monkeypatch.setattr(network_sees, "run_dream", recording_dream)
    client = Client(app.url, verbose=False)
    assert client.predict(*dream_data(app), api_name="/dream")[-1] == "dreamt"
    monkeypatch.setattr(app.models, "get", recording_get)
    client.predict(handle_file(cat_photo(tmp_path / "cat.png")), api_name="/classify")
    assert seen["dream"] == (slow_work_niceness(priority_of_this_thread()), app.models.get("food").name)
    assert seen["classify"] == priority_of_this_thread()


def test_slow_work_is_niced_relative_to_the_app_so_an_app_under_nice_keeps_its_order():
    """The suite itself, or a demo, may run under `nice`: the slow work still ranks below the predictions."""
    assert [slow_work_niceness(app) for app in (0, 5, 9, 15, 19)] == [10, 15, 19, 19, 19]


def upload(url: str, size: int, client: str) -> httpx.Response:
    """A file of `size` random bytes uploaded as the page uploads one, from `client`'s address."""
    data = os.urandom(size)  # random: Gradio stores uploads under the hash of their bytes
    return httpx.post(
        f"{url}gradio_api/upload", files={"files": ("noise.bin", data)}, headers={"X-Forwarded-For": client}, timeout=30
    )


def test_one_client_uploads_at_most_its_budget_of_bytes_an_hour(tiny_checkpoints):
    """Uploads run outside the queue: without a budget, a script could fill the disk 20 MB at a time."""
    models = demo_app.load_models(
        str(tiny_checkpoints[("vit", "classification")]), str(tiny_checkpoints[("resnet", "regression")])
    )
    demo = demo_app.build_app(models=models)
    url, _ = demo_app.launch(demo, port=free_port(), prevent_thread_lock=True, upload_mb_per_client=1)
    try:
        assert upload(url, 600_000, "10.0.9.1").status_code == 200
        refused = upload(url, 600_000, "10.0.9.1")
        assert refused.status_code == 429 and "try again later" in refused.json()["detail"]
        assert upload(url, 600_000, "10.0.9.2").status_code == 200, "another client keeps its own budget"
        assert upload(url, 300_000, "10.0.9.1").status_code == 200, "what fits in the budget still passes"
    finally:
        demo.close()
