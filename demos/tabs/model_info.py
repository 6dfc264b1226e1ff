"""Model tab: what a loaded checkpoint is (layer table, labels, preprocessing, card metrics); load another by ref.

What a visitor may load, and for how long it stays, is set by the operator (demos/serving/sessions.py); the tab says so.
"""

from __future__ import annotations

import gradio as gr

from demos.explaining.summary import describe, model_choices, readable_layer_table
from demos.guards.refusals import checked_text
from demos.models import DemoModels
from demos.tabs.common import model_card, model_card_update, refresh_when_opened, user_errors
from hub import CheckpointError
from hub.checkpoint import builtin_aliases, hub_offline

TITLE = "Model"


def summarise(models: DemoModels, name: str):
    checkpoint = models.get(checked_text(name, "The model"))
    return describe(checkpoint), readable_layer_table(checkpoint)


def what_loads(limits) -> str:
    """The rules of the load box, in a visitor's words: what can be loaded from here, and what not."""
    if limits.max_loaded_models == 0:
        return "This demo loads no other models."
    if hub_offline():
        loads = f"The hub cannot be reached from this server: load {loadable(limits)}."
    else:
        loads = f"Load a hub id (owner/name) up to {limits.max_model_mb:g} MB, or {loadable(limits)}."
    return (
        f"{loads} What you load is seen by you only; the server keeps {limits.max_loaded_models} visitor models at "
        "most."
    )


def loadable(limits) -> str:
    """What loads without the hub: the aliases, and the folders the operator allows (if any)."""
    folders = ", or a checkpoint folder this server allows" if limits.allowed_local_dirs else ""
    return f"one of the aliases {', '.join(builtin_aliases())}{folders}"


def load_for_visitor(models: DemoModels, ref: str) -> None:
    """Load `ref` for this visitor; offline, a hub id that is not on the server is refused saying what they can do."""
    try:
        models.load(ref)
    except CheckpointError as err:
        # hub's message tells a person at the command line to give a folder instead, which a visitor may not do.
        if hub_offline() and "not in the local hub cache" in str(err):
            raise CheckpointError(
                f"'{ref}' is not on this server, and the hub cannot be reached from it to download it: instead, "
                f"load {loadable(models.visitors.limits)}."
            ) from None
        raise


def render(models: DemoModels) -> dict:
    """The tab's components and events; returns the event that fills the layer table when the tab is opened."""
    first = models.names()[0]
    with gr.Row():
        model_name = gr.Dropdown(model_choices(models), value=first, label="Model")
        with gr.Column():
            ref = gr.Textbox(
                label="Load another checkpoint",
                info=what_loads(models.visitors.limits),
                placeholder="efficientnet-lite1 (an alias)" + ("" if hub_offline() else ", or owner/name on the hub"),
                elem_id="model-ref",
            )
            load = gr.Button("Load")
    description = gr.Markdown(describe(models.get(first)), elem_id="model-description")
    card_panel, card_text = model_card(models.get(first))
    # Filled when the tab is opened (`opened` below): the table runs the model once, which the start need not wait for.
    table = gr.Dataframe(
        None,
        label="Layers (like Keras' model.summary())",
        interactive=False,
        wrap=True,
        elem_id="model-table",
    )

    @user_errors
    def summary(name: str):
        return summarise(models, name)

    @user_errors
    def card(name: str):
        return model_card_update(models.get(checked_text(name, "The model")))

    @user_errors
    def load_checkpoint_ref(text: str):
        ref_text = checked_text(text, "The checkpoint to load").strip()
        if not ref_text:
            raise ValueError("Type a hub id (owner/name) or an alias first.")
        load_for_visitor(models, ref_text)
        return (gr.Dropdown(choices=model_choices(models), value=ref_text), *summarise(models, ref_text))

    refresh_when_opened(model_name, lambda: model_choices(models), api_name="model_names")
    model_name.change(summary, inputs=model_name, outputs=[description, table], api_name="model_summary")
    # Also after a load, which sets the list's value.
    model_name.change(card, inputs=model_name, outputs=[card_panel, card_text], api_visibility="private")
    load.click(
        load_checkpoint_ref,
        inputs=ref,
        outputs=[model_name, description, table],
        api_name="load_model",
        # Progress, and after a failed load the "Error" badge, go on the box that was typed in, not over the current
        # model's summary, which stays as it was (the message itself is a toast).
        show_progress_on=ref,
    )

    @user_errors
    def opened(name: str):
        return readable_layer_table(models.get(checked_text(name, "The model")))

    return {"fn": opened, "inputs": model_name, "outputs": table, "api_visibility": "private"}
