"""Which files a visitor's request may read: only those uploaded to this demo, whatever shape the payload has.

Events take raw payloads (`preprocess=False`), and Gradio checks that a payload's file was uploaded only when the
payload declares itself a FileData (`meta`): a hand-made `{"path": "/any/server/file"}` skips that check. So every
path is checked here, after resolving symlinks and `..`: it must name a file in Gradio's upload folder (where
uploads, the example pictures and the app's outputs live). Anything else, existing or not, is refused with one
message that names no path, so that the server's disk can be neither read nor probed.

The queue checks a request's files before it takes the job (`demos.guards.queue_limits`), so that a payload Gradio's own
models would refuse with a traceback on the console gets this one message too; the tabs check again as they read.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal

from demos.serving.images import ImageDecodeError

NOT_AN_UPLOAD = "That is not a file uploaded to this demo: upload the image (or, by API, send it with handle_file)."
FILE_INPUTS = (gr.Image, gr.File)  # the components whose payloads name files


def upload_path(payload) -> str | None:
    """The file path in an unprocessed gr.Image / gr.File payload, or None if empty; only ever an upload's."""
    if payload is None:
        return None
    path = payload.get("path") if isinstance(payload, dict) else payload
    if path is None:
        return None
    if not isinstance(path, str) or not is_uploaded_file(path):
        raise ImageDecodeError(NOT_AN_UPLOAD)
    return path


def is_uploaded_file(path: str) -> bool:
    return is_in_or_equal(path, get_upload_folder()) and Path(path).resolve().is_file()


def names_only_uploads(inputs, data) -> bool:
    """Whether every file payload in a request's `data` (for the event's input components) names an upload."""
    for component, value in zip(inputs, data or [], strict=False):
        if not isinstance(component, FILE_INPUTS):
            continue
        payloads = value if isinstance(value, list) else [value]  # gr.File(file_count="multiple") sends a list
        try:
            for payload in payloads:
                upload_path(payload)
        except ImageDecodeError:
            return False
    return True
