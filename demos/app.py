"""The Gradio app: loads the two models once and composes the tabs listed in `TABS`.

A tab is a module in demos/tabs/ with `TITLE: str` and `render(models: DemoModels)` (the app's model set,
demos/models.py), which builds its components and events (each with an `api_name`) inside the enclosing `gr.Tab`. To add
one, write the module and append it to `TABS`. `render` may return an event's arguments (`fn`, `inputs`, `outputs`,
...): the app runs that event when the tab is opened, for a view too costly to make at start-up (the Model tab's layer
table runs the model).

`python -m demos` serves the app (see demos/__main__.py); `from demos.app import demo` gives it with
the default models, built on first access so that importing this module loads no model.

The app is safe to share by default: what web visitors may load, and how many of their models stay in
memory, is demos/serving/sessions.py; expensive endpoints queue in groups of their own (`EXPENSIVE_ENDPOINTS`), and what
each client and each expensive group may queue is bounded (demos/guards/queue_limits.py).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from demos.guards.priority import at_low_priority
from demos.guards.queue_limits import MAX_WAITING_PER_EXPENSIVE_GROUP, SPACE_PROXIES, QueueLimits, limit_queue
from demos.guards.upload_budget import UPLOAD_MB_PER_CLIENT, UploadBudget
from demos.models import DemoModels, load_models
from demos.serving.corrections import CorrectionStore
from demos.serving.gradio_cache import apply_atomic_image_cache
from demos.serving.memory import releasing_memory
from demos.serving.precision import precision_notice
from demos.serving.sessions import MAX_LOADED_MODELS, MAX_MODEL_MB, SessionModels, current_session, visitor_limits
from demos.tabs import batch, bone_age, feature_maps, food, model_info, network_sees, train
from demos.tabs.train import TRAINING_GROUP
from demos.training.settings import TrainingSettings
from hub.serving_options import Precision

TABS = [food, bone_age, feature_maps, model_info, network_sees, batch, train]
CONCURRENCY_LIMIT = 2  # the machine this targets has 2 cores: more parallel requests only queue inside torch
# api_name -> concurrency group. Each group runs one job at a time in a queue of its own, so that a crowd of
# class visualisations or model loads waits behind itself instead of taking the cores /classify needs. What they
# queue is bounded per group and per client (demos/guards/queue_limits.py), so that they cannot fill the queue.
EXPENSIVE_ENDPOINTS = {
    "dream": "pixel-optimisation",
    "adversarial": "pixel-optimisation",
    "load_model": "model-load",
    "batch_predict": "batch",  # up to demos.tabs.batch.MAX_IMAGES predictions a call
    "feature_maps": "feature-maps",  # Grad-CAM's backward pass, on images of up to tens of megapixels
}
EXPENSIVE_CONCURRENCY = 1
# Jobs waiting in the cheap endpoints' queues (each has its own); the expensive groups' waiting jobs come on top,
# bounded by queue_limits.MAX_WAITING_PER_EXPENSIVE_GROUP each, so that however many wait there, this room stays.
CHEAP_QUEUE_SIZE = 32
QUEUE_SIZE = CHEAP_QUEUE_SIZE + MAX_WAITING_PER_EXPENSIVE_GROUP * len(set(EXPENSIVE_ENDPOINTS.values()))
# (every, older than) seconds: uploads and outputs of a demo left running for days must not fill the disk.
DELETE_CACHE = (3600, 24 * 3600)
MAX_FILE_SIZE = "20mb"  # a full-resolution 16-bit hand radiograph is ~8 MB; phone photos are smaller
TRAINING_MAX_FILE_SIZE = "200mb"  # where the Train tab is on: a zip of 2,000 phone photos (its image cap) is ~150 MB
# The Bone age tab's two images fill their boxes: Gradio never enlarges an image, so a 100 px X-ray and its 160 px
# Grad-CAM would sit at their own small, unequal sizes in the middle of them.
PAGE_CSS = "#boneage-decoded img, #boneage-cam img {width: 100%; height: 100%; object-fit: contain}"


# transformers 5 asks for a torchvision image processor first and warns when it falls back to PIL; timm checkpoints
# (the shipped ones) have a PIL processor only, so the warning at every start-up reports nothing wrong.
logging.getLogger("transformers.models.auto.image_processing_auto").addFilter(
    lambda record: "Requested torchvision backend is not available" not in record.getMessage()
)


def build_app(
    food_model: str | None = None,
    boneage_model: str | None = None,
    examples_dir: str | Path | None = None,
    *,
    models: DemoModels | None = None,
    allow_pickle: bool = False,
    allow_local_dirs: Sequence[str | Path] = (),
    max_loaded_models: int = MAX_LOADED_MODELS,
    max_model_mb: float = MAX_MODEL_MB,
    corrections_dir: str | Path | None = None,
    prediction_precision: Precision | str = Precision.FP32,
    training: TrainingSettings | None = None,
) -> gr.Blocks:
    """The app with every tab in `TABS`, queued with concurrency limits; serve it with `launch` (upload cap).

    What web visitors may load: hub ids and aliases, plus checkpoint folders under `allow_local_dirs`; hub models
    up to `max_model_mb` MB; at most `max_loaded_models` of their models in memory at once, each seen only by the
    session that loaded it. The start-up models (`food_model`, `boneage_model`) are the operator's and unlimited.
    `corrections_dir`: where users' corrections are saved (demos/serving/corrections.py); None collects none.
    `prediction_precision`: fp32, bf16 or int8 for the models it loads (`models` given carry their own).
    `training`: whether and within what limits the Train tab trains (demos/training/settings.py); None: it is off.
    """
    limits = visitor_limits(allow_local_dirs, max_loaded_models, max_model_mb)  # bad flags fail before loading
    apply_atomic_image_cache()  # output images are written whole before anyone can download them
    models = models or load_models(
        food_model, boneage_model, examples_dir, allow_pickle=allow_pickle, precision=prediction_precision
    )
    print(f"* {precision_notice(models.precision)}", flush=True)
    models.visitors = SessionModels(limits)
    if training is not None:
        models.training = training
    if corrections_dir is not None:  # the Food and Bone age tabs offer "Wrong? Correct it" (serving/corrections.py)
        models.corrections = CorrectionStore(corrections_dir)
    with gr.Blocks(title="TransferLab demo", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# TransferLab demo\n"
            "Fine-tuned vision checkpoints: classify food, estimate bone age, look inside the network."
        )
        for note in models.notes.values():
            gr.Markdown(f"> **Note:** {note}")
        for tab in TABS:
            with gr.Tab(tab.TITLE) as shown:
                when_opened = tab.render(models)
            if when_opened is not None:
                shown.select(**when_opened)
        demo.unload(lambda: models.visitors.forget(current_session()))  # a closed tab frees its models
    limit_expensive_endpoints(demo)
    # api_open=False: gradio would otherwise serve every endpoint at /gradio_api/run/<api> too, outside the queue.
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE, api_open=False)
    # /train holds its own slot ("training") while it follows a run: bounded per client like the expensive groups.
    slow_groups = frozenset({*EXPENSIVE_ENDPOINTS.values(), TRAINING_GROUP})
    limit_queue(demo, QueueLimits(expensive_groups=slow_groups))
    return demo


def limit_expensive_endpoints(demo: gr.Blocks) -> None:
    """Put each endpoint of `EXPENSIVE_ENDPOINTS` in its concurrency group, its work at a low CPU priority
    (demos/guards/priority.py), the memory it freed given back after it (demos/serving/memory.py); one missing is a
    KeyError: rename both."""
    events = {event.api_name: event for event in demo.fns.values() if event.api_name}
    for api_name, group in EXPENSIVE_ENDPOINTS.items():
        events[api_name].concurrency_id = group
        events[api_name].concurrency_limit = EXPENSIVE_CONCURRENCY
        events[api_name].fn = at_low_priority(releasing_memory(events[api_name].fn))


def launch_options(upload_mb_per_client: float = UPLOAD_MB_PER_CLIENT, *, training: bool = False) -> dict:
    """`demo.launch`'s arguments that every server of this app passes (`launch`, a Space's app.py): the size of one
    upload (larger where the Train tab is on, for its zips), the megabytes a client address may upload in an hour
    (demos/guards/upload_budget.py), and the page's style (`PAGE_CSS`)."""
    return {
        "max_file_size": TRAINING_MAX_FILE_SIZE if training else MAX_FILE_SIZE,
        "app_kwargs": {"middleware": [Middleware(UploadBudget, megabytes=upload_mb_per_client)]},
        "css": PAGE_CSS,
    }


def launch(
    demo: gr.Blocks,
    *,
    port: int | None = None,
    share: bool = False,
    prevent_thread_lock: bool = False,
    upload_mb_per_client: float = UPLOAD_MB_PER_CLIENT,
    training: bool = False,
):
    """Serve on 127.0.0.1 with the upload caps and the page's style (`launch_options`; `training`: the Train tab is
    on); when a share link cannot be made, say why and keep serving locally."""
    _, local_url, share_url = demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        share=share,
        **launch_options(upload_mb_per_client, training=training),
        prevent_thread_lock=True,
        quiet=not share,  # without --share Gradio's banner says "set `share=True` in `launch()`": ours names the flag
    )
    if not share:
        print(f"* Running on {local_url} (for a temporary public link: python -m demos --share)", flush=True)
    if share and share_url is None:
        # Gradio catches the tunnel failure itself (no exception reaches us) and leaves share_url empty.
        print(
            "* No public link was made: Gradio could not set up its share tunnel (reason above: it must reach "
            "api.gradio.app and, the first time, download its tunnel client, so this machine is offline or "
            f"firewalled). The demo keeps serving locally on {local_url}",
            flush=True,
        )
    if not prevent_thread_lock:
        demo.block_thread()
    return local_url, share_url


def share_cores_between_requests() -> None:
    """Split the cores between the concurrent requests: oversubscribed torch threads spin against each other
    (measured on this busy 2-core machine: Grad-CAM 0.2 s on 1 thread, 1.2-8 s on 2). Called before the models load:
    their compiled copies are built for the number of threads set when they compile."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // CONCURRENCY_LIMIT))


def build_space_app(food_model: str | None, boneage_model: str | None, prediction_precision: str) -> gr.Blocks:
    """The app as a Hugging Face Space serves it (its app.py calls this, then `demo.launch(**launch_options())`).

    The public-demo limits: visitors load hub ids and aliases only, never a folder of the Space's disk, and a
    bounded number and size of models. Visitors reach a Space through its proxies, so each request's peer is a
    proxy: they (and only they) are trusted to name the visitor in X-Forwarded-For, or every visitor would count as
    one client in the per-client limits.
    """
    os.environ.setdefault("FORWARDED_ALLOW_IPS", SPACE_PROXIES)
    share_cores_between_requests()
    return build_app(
        food_model=food_model,
        boneage_model=boneage_model,
        allow_local_dirs=(),
        max_loaded_models=MAX_LOADED_MODELS,
        max_model_mb=MAX_MODEL_MB,
        prediction_precision=prediction_precision,
    )


@functools.cache
def _default_app() -> gr.Blocks:
    return build_app()


def __getattr__(name: str):
    # `demo` at module level, as Gradio apps are conventionally importable, without loading models at import.
    if name == "demo":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
