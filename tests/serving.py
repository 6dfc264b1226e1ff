"""The demo app served on tiny checkpoints, for the tests that drive it over HTTP (gradio_client, Playwright)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import gradio as gr
import httpx

from demos import app as demo_app
from demos.models import DemoModels


class ServedApp(NamedTuple):
    url: str
    models: DemoModels
    demo: gr.Blocks


@contextmanager
def serving(
    tiny_checkpoints, food: Path | None = None, boneage: Path | None = None, **build_options
) -> Iterator[ServedApp]:
    """The app served on a free loopback port, closed afterwards.

    Its models: `food` and `boneage` (checkpoint folders), by default the tiny ViT classifier and the tiny ResNet
    regressor; `build_options`: `demos.app.build_app`'s keyword arguments (visitor limits, corrections folder).
    """
    models = demo_app.load_models(
        str(food or tiny_checkpoints[("vit", "classification")]),
        str(boneage or tiny_checkpoints[("resnet", "regression")]),
    )
    demo = demo_app.build_app(models=models, **build_options)
    url, _ = demo_app.launch(demo, port=free_port(), prevent_thread_lock=True)
    try:
        yield ServedApp(url, models, demo)
    finally:
        demo.close()


def free_port() -> int:
    """A loopback port nobody listens on now, chosen by the OS.

    Not Gradio's own search, which starts at 7860: a test server there would stand in the way of the demo a user
    starts with `python -m demos` while the tests run (and the other way round).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def raw_call(url: str, api_name: str, data: list) -> tuple[str, object]:
    """(event, decoded data) of a hand-made `/gradio_api/call/<api_name>` request, without the client library.

    A job the queue refuses at the door (demos/guards/queue_limits.py: HTTP 400 or 429) answers as an error event would:
    ("error", {"error": its message}).
    """
    posted = httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data}, timeout=30)
    if posted.status_code in (400, 429):
        return "error", {"error": posted.json()["detail"]}
    posted.raise_for_status()
    stream = httpx.get(f"{url}gradio_api/call/{api_name}/{posted.json()['event_id']}", timeout=120).text
    events = [line.removeprefix("event: ") for line in stream.splitlines() if line.startswith("event: ")]
    payloads = [line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")]
    return events[-1], json.loads(payloads[-1])
