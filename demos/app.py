"""The Gradio app: loads the two models once and composes the tabs listed in `TABS`.

A tab is a module in demos/tabs/ with `TITLE: str` and `render(models: DemoModels) -> None`, which
builds its components and events (each with an `api_name`) inside the enclosing `gr.Tab`. To add
one, write the module and append it to `TABS`.

`python -m demos` serves the app (see demos/__main__.py); `from demos.app import demo` gives it with
the default models, built on first access so that importing this module loads no model.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from gradio import processing_utils

from demos.inference import predictor
from demos.tabs import bone_age, feature_maps, food, model_info, network_sees
from hub import Checkpoint, load_checkpoint
from hub.checkpoint import SHIPPED_CHECKPOINTS

TABS = [food, bone_age, feature_maps, model_info, network_sees]
FALLBACK_MODEL = "efficientnet-lite0"  # the offline default backbone, ImageNet labels
SHIPPED = {"food": "food10", "boneage": "boneage"}  # role -> alias of the checkpoint shipped in checkpoints/
CONCURRENCY_LIMIT = 2  # the machine this targets has 2 cores: more parallel requests only queue inside torch
QUEUE_SIZE = 32
# (every, older than) seconds: uploads and outputs of a demo left running for days must not fill the disk.
DELETE_CACHE = (3600, 24 * 3600)
MAX_FILE_SIZE = "20mb"  # a full-resolution 16-bit hand radiograph is ~8 MB; phone photos are smaller


def _save_pil_to_cache_atomically(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """gradio's save_pil_to_cache, but the file is written aside and renamed into place.

    Why: gradio 6.31 caches output images under their content hash and rewrites that path in place, so when two
    requests produce the same image one download can read the file while the other truncates it (seen under load).
    """
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    target = (folder / f"{name}.{format}").resolve()
    handle, staging = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(staging, target)
    except BaseException:
        os.unlink(staging)
        raise
    return str(target)


processing_utils.save_pil_to_cache = _save_pil_to_cache_atomically  # also used by save_img_array_to_cache


@dataclass
class DemoModels:
    """The checkpoints the tabs use: "food" and "boneage", plus any loaded by ref in the Model tab."""

    checkpoints: dict[str, Checkpoint]
    notes: dict[str, str] = field(default_factory=dict)  # role -> why a fallback model stands in
    examples_dir: Path | None = None

    def names(self) -> list[str]:
        return list(self.checkpoints)

    def get(self, name: str) -> Checkpoint:
        if name not in self.checkpoints:
            raise ValueError(f"No model '{name}' is loaded; choose one of: {', '.join(self.checkpoints)}.")
        return self.checkpoints[name]

    def load(self, ref: str) -> Checkpoint:
        """Load another checkpoint (hub id, folder or alias) and keep it under `ref`."""
        self.checkpoints[ref] = load_model(ref)
        return self.checkpoints[ref]


def load_model(ref: str, *, allow_pickle: bool = False) -> Checkpoint:
    checkpoint = load_checkpoint(ref, allow_pickle=allow_pickle)
    if not hasattr(checkpoint.model, "timm_model"):  # timm keeps its own attention; transformers warns if asked
        # Eager attention: SDPA returns no attention weights, and the feature-map tab shows ViT attention rollout.
        checkpoint.model.set_attn_implementation("eager")
    predictor(checkpoint)  # built now, so that the first request does not pay for it
    return checkpoint


def default_ref(role: str) -> tuple[str, str | None]:
    """(ref, note): the shipped checkpoint for `role`, or the offline default backbone with a note saying why."""
    alias = SHIPPED[role]
    if (SHIPPED_CHECKPOINTS[alias] / "config.json").is_file():
        return alias, None
    note = (
        f"{SHIPPED_CHECKPOINTS[alias]} does not exist yet (train it with `python -m train`), so the {role} model is "
        f"the offline default backbone {FALLBACK_MODEL}: a real ImageNet classifier, with ImageNet labels."
    )
    return FALLBACK_MODEL, note


def load_models(
    food_model: str | None = None,
    boneage_model: str | None = None,
    examples_dir: str | Path | None = None,
    *,
    allow_pickle: bool = False,
) -> DemoModels:
    """Load both models (each ref: hub id, folder or alias; None = the shipped default), printing any fallback.

    `allow_pickle` lets these two (chosen by whoever starts the app) be pickled; the Model tab never unpickles.
    """
    examples = Path(examples_dir) if examples_dir else None
    if examples is not None and not examples.is_dir():
        raise FileNotFoundError(f"--examples {examples}: no such folder.")
    refs, notes = {}, {}
    for role, ref in (("food", food_model), ("boneage", boneage_model)):
        if ref is None:
            ref, note = default_ref(role)
            if note:
                notes[role] = note
                print(f"* {note}", flush=True)
        refs[role] = ref
    loaded: dict[str, Checkpoint] = {}
    for ref in set(refs.values()):
        loaded[ref] = load_model(ref, allow_pickle=allow_pickle)
    return DemoModels(checkpoints={role: loaded[ref] for role, ref in refs.items()}, notes=notes, examples_dir=examples)


def build_app(
    food_model: str | None = None,
    boneage_model: str | None = None,
    examples_dir: str | Path | None = None,
    *,
    models: DemoModels | None = None,
    allow_pickle: bool = False,
) -> gr.Blocks:
    """The app with every tab in `TABS`, queued with a concurrency limit; serve it with `launch` (upload cap)."""
    models = models or load_models(food_model, boneage_model, examples_dir, allow_pickle=allow_pickle)
    with gr.Blocks(title="TransferLab demo", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# TransferLab demo\n"
            "Fine-tuned vision checkpoints: classify food, estimate bone age, look inside the network."
        )
        for note in models.notes.values():
            gr.Markdown(f"> **Note:** {note}")
        for tab in TABS:
            with gr.Tab(tab.TITLE):
                tab.render(models)
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)
    return demo


def launch(demo: gr.Blocks, *, port: int | None = None, share: bool = False, prevent_thread_lock: bool = False):
    """Serve on 127.0.0.1 with the upload cap; when a share link cannot be made, say why and keep serving locally."""
    _, local_url, share_url = demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        share=share,
        max_file_size=MAX_FILE_SIZE,
        prevent_thread_lock=True,
    )
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


@functools.cache
def _default_app() -> gr.Blocks:
    return build_app()


def __getattr__(name: str):
    # `demo` at module level, as Gradio apps are conventionally importable, without loading models at import.
    if name == "demo":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
