"""Refusing what a visitor sends: checks of endpoint arguments, and the refusal the visitor and the operator read.

Events take raw values (`preprocess=False`, and any API caller may send any JSON), so every argument a visitor
controls is checked here before use, with a message that names the field and what it accepts: never the text of
`int()`, numpy or torch. A refusal shows the visitor that message with no path of the server in it, and prints one
line on the operator's console instead of Gradio's traceback (a refused request is not a bug of the app).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Collection

import gradio as gr

# An absolute path (or one from a home folder), not a part of a URL ("https://host/a") or of a relative name
# ("owner/name", "runs/food10"): its start is not preceded by a name character, ':' or '/'.
SERVER_PATH = re.compile(r"(?<![\w:/.~-])~?/(?:[\w.@+-]+/)*([\w.@+-]+)/?")
SHOWN_CHARS = 80  # of a refused value, echoed back in a message


def visitor_text(message: str) -> str:
    """`message` as a visitor may read it: each server path replaced by its last part (a file or folder name)."""
    return SERVER_PATH.sub(r"\1", message)


def refusal(endpoint: str, message: str, **error_options) -> gr.Error:
    """The gr.Error that refuses a request with `message`, after printing one line about it for the operator."""
    text = visitor_text(message)
    tell_operator(endpoint, text)
    return gr.Error(text, print_exception=False, **error_options)


def tell_operator(endpoint: str, text: str) -> None:
    """The one console line of a refused request."""
    print(f"* refused {endpoint}: {' '.join(text.split())}", file=sys.stderr, flush=True)


def shown(value) -> str:
    """A refused value as a message quotes it: short, whatever a caller sent."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def whole_number(value, field: str, low: int, high: int) -> int:
    """`value` as an int when it is a whole number from `low` to `high`; else a ValueError that says so."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ValueError(f"{field} must be a whole number from {low} to {high}, not {shown(value)}.")
    if not low <= value <= high:
        raise ValueError(f"{field} must be between {low} and {high}, not {shown(value)}.")
    return int(value)


def one_of(value, choices: Collection[str], field: str) -> str:
    """`value` when it is one of `choices` (strings); else a ValueError that lists them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{field} must be one of: {', '.join(choices)}; not {shown(value)}.")
    return value


def checked_text(value, field: str) -> str:
    """`value` when it is a string (a name, a class, a layer); else a ValueError that says so."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a text, not {shown(value)}.")
    return value
