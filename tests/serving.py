"""The demo app served on tiny checkpoints, for the tests that drive it over HTTP (gradio_client, Playwright)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import gradio as gr

from demos import app as demo_app
from demos.app import DemoModels


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
