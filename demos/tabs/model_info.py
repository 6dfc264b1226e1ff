"""Model tab: what a loaded checkpoint is (layer table, labels, preprocessing, card metrics); load another by ref."""

from __future__ import annotations

import gradio as gr

from demos.summary import describe, layer_table
from demos.tabs.common import user_errors

TITLE = "Model"


def summarise(models, name: str):
    checkpoint = models.get(name)
    return describe(checkpoint), layer_table(checkpoint)


def render(models) -> None:
    first = models.names()[0]
    with gr.Row():
        model_name = gr.Dropdown(models.names(), value=first, label="Model")
        with gr.Column():
            ref = gr.Textbox(
                label="Load another checkpoint: hub id, folder or alias", placeholder="google/vit-base-patch16-224"
            )
            load = gr.Button("Load")
    description = gr.Markdown(describe(models.get(first)), elem_id="model-description")
    table = gr.Dataframe(
        layer_table(models.get(first)),
        label="Layers (like Keras' model.summary())",
        interactive=False,
        wrap=True,
        elem_id="model-table",
    )

    model_name.change(
        user_errors(lambda name: summarise(models, name)),
        inputs=model_name,
        outputs=[description, table],
        api_name="model_summary",
    )

    @user_errors
    def load_checkpoint_ref(text: str):
        ref_text = text.strip()
        if not ref_text:
            raise ValueError("Type a hub id (owner/name), a checkpoint folder or an alias first.")
        models.load(ref_text)
        return (gr.Dropdown(choices=models.names(), value=ref_text), *summarise(models, ref_text))

    load.click(load_checkpoint_ref, inputs=ref, outputs=[model_name, description, table], api_name="load_model")
