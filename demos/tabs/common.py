"""Glue shared by the tabs: uploads to PIL images, user-facing failures to `gr.Error`, the lists of loaded models.

Every tab wires its events the same way, after its components:
- each handler is a named function inside `render` (it closes over `models`), wrapped in `user_errors`, so that bad
  input is a message on the page, for events the page fires as much as for API calls;
- an event is an endpoint with an `api_name`, or marked `api_visibility="private"` when only the page needs it;
- events that take an upload are registered with `preprocess=False`, so Gradio hands over the uploaded file
  untouched (gr.Image would otherwise decode it to 8-bit RGB itself and fail on DICOM or with an opaque error),
  demos/guards/uploads.py checks that it is an upload and demos/serving/images.py is the one decoder;
- a model list refreshes itself when opened (`refresh_when_opened`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable

import gradio as gr
from PIL import Image

from demos.explaining.summary import card_link, card_text
from demos.guards.refusals import refusal
from demos.guards.uploads import upload_path
from demos.models import DemoModels
from demos.serving.images import ImageDecodeError, load_image
from hub import Checkpoint, CheckpointError

# Heat maps laid over a photo or an X-ray (Grad-CAM, attention rollout): JPEG encoded food10's 320 px one of a real
# photo in 0.5 ms, where PNG took 34 ms and Gradio's default WebP 8 ms, and lost less than WebP (1.8 levels on average).
OVERLAY_FORMAT = "jpeg"
SMALLEST_SIDE_PX = 32  # below this on a side, a picture holds too little to classify (or to read an age from)


def read_upload(payload) -> Image.Image:
    path = upload_path(payload)
    if path is None:
        raise gr.Error("No image yet: upload or paste one first.")
    return load_image(path)


def decoded_upload(payload) -> Image.Image | None:
    """The uploaded image, or None after telling the user (a toast) why the file cannot be used.

    For upload events: a file that is no image is caught as it arrives, not when a button is pressed later.
    """
    try:
        return read_upload(payload)
    except ImageDecodeError as err:
        gr.Warning(str(err))
        return None


def too_small(size: tuple[int, int]) -> str:
    """Markdown warning when a picture of `size` (width, height) is too small on a side to mean anything, else "".

    The same limit for photos (Food tab) and X-rays (Bone age tab)."""
    width, height = size
    if min(size) >= SMALLEST_SIDE_PX:
        return ""
    return (
        f"**This picture is only {width}x{height} pixels**: too small to show anything (at least "
        f"{SMALLEST_SIDE_PX} on a side). The model enlarges it and still answers, but its answer means nothing."
    )


def model_header(models: DemoModels, role: str) -> None:
    """The model's name above a tab, why a fallback stands in for it (if one does), and its model card."""
    checkpoint = models.get(role)
    gr.Markdown(f"Model: **{checkpoint.name}** ({card_link(checkpoint)})")
    if role in models.notes:
        gr.Markdown(f"> {models.notes[role]}")
    model_card(checkpoint)


def model_card(checkpoint: Checkpoint) -> tuple[gr.Accordion, gr.Markdown]:
    """The rendered model card in a closed accordion (hidden when the checkpoint has none)."""
    text = card_text(checkpoint)
    with gr.Accordion("Model card", open=False, visible=text is not None) as accordion:
        card = gr.Markdown(text or "")
    return accordion, card


def model_card_update(checkpoint: Checkpoint) -> tuple[gr.Accordion, str]:
    """New values for the two components of `model_card`, for another checkpoint."""
    text = card_text(checkpoint)
    return gr.Accordion(visible=text is not None), text or ""


def user_errors(fn):
    """Turn the errors that describe bad input into gr.Error: the user sees the message, the app keeps serving.

    A refusal (demos/guards/refusals.py) names no server path and prints one line on the console, not a traceback; any
    other exception is a bug, and Gradio logs its traceback and shows the visitor a bare "Error".
    """

    @contextlib.contextmanager
    def refusals():
        try:
            yield
        except gr.Error as err:
            options = {"title": err.title, "duration": err.duration, "visible": err.visible}
            raise refusal(fn.__name__, err.message, **options) from err
        except (ImageDecodeError, CheckpointError, ValueError) as err:
            raise refusal(fn.__name__, str(err)) from err

    if inspect.isgeneratorfunction(fn):  # Gradio streams a generator's updates: the wrapper must be one too

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            with refusals():
                yield from fn(*args, **kwargs)

        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with refusals():
            return fn(*args, **kwargs)

    return wrapper


def refresh_when_opened(dropdown: gr.Dropdown, names: Callable[[], list[str]], api_name: str | None = None) -> None:
    """Models loaded later in the Model tab join the list's choices when it is opened; those dropped for room leave.

    With `api_name` the choices are also an endpoint; without, the event is the page's own.
    """

    @user_errors
    def current_choices():
        return gr.Dropdown(choices=names())

    visibility = "public" if api_name else "private"
    dropdown.focus(current_choices, outputs=dropdown, api_name=api_name, api_visibility=visibility)
