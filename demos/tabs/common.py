"""Glue shared by the tabs: uploads to PIL images, and user-facing failures to `gr.Error`.

Events are registered with `preprocess=False`, so Gradio hands over the uploaded file untouched
(gr.Image would otherwise decode it to 8-bit RGB itself and fail on DICOM or with an opaque error)
and demos/images.py is the one decoder.
"""

from __future__ import annotations

import functools

import gradio as gr
from PIL import Image

from demos.images import ImageDecodeError, load_image
from demos.summary import card_link
from hub import CheckpointError


def upload_path(payload) -> str | None:
    """The file path in an unprocessed gr.Image / gr.File payload (a FileData dict), or None if empty."""
    if payload is None:
        return None
    if isinstance(payload, dict):
        return payload.get("path")
    return str(payload)


def read_upload(payload) -> Image.Image:
    path = upload_path(payload)
    if path is None:
        raise gr.Error("No image yet: upload or paste one first.")
    return load_image(path)


def model_header(models, role: str) -> None:
    """The model's name and card link above a tab, and why a fallback stands in for it, if one does."""
    checkpoint = models.get(role)
    gr.Markdown(f"Model: **{checkpoint.source}**, card: {card_link(checkpoint)}")
    if role in models.notes:
        gr.Markdown(f"> {models.notes[role]}")


def user_errors(fn):
    """Turn the errors that describe bad input into gr.Error: the user sees the message, the app keeps serving."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ImageDecodeError, CheckpointError, ValueError) as err:
            raise gr.Error(str(err)) from err

    return wrapper
