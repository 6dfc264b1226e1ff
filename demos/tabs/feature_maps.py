"""Feature-map tab: one layer of either model seen four ways (endpoint /feature_maps).

The strongest channels, a PCA-to-RGB view of the features, Grad-CAM for a class (or the regression
output), and attention rollout for ViT models. ViT tokens are shown on their patch grid.
"""

from __future__ import annotations

import gradio as gr

from demos.inference import feature_layers, feature_views
from demos.tabs.common import read_upload, user_errors

TITLE = "Feature maps"
TOP_CLASS = "top prediction"
REGRESSION_OUTPUT = "regression output"


def class_choices(checkpoint) -> list[str]:
    return [REGRESSION_OUTPUT] if checkpoint.task.is_regression else [TOP_CLASS, *checkpoint.task.labels]


def class_index(checkpoint, choice: str | None) -> int | None:
    if checkpoint.task.is_regression or not choice or choice == TOP_CLASS:
        return None
    if choice not in checkpoint.task.labels:
        raise ValueError(f"'{choice}' is not a class of {checkpoint.source}.")
    return checkpoint.task.labels.index(choice)


def explore(models, payload, model_name: str, layer: str | None, target: str | None):
    """(channel grid, PCA view, Grad-CAM overlay, attention rollout or None, caption markdown)."""
    checkpoint = models.get(model_name)
    views = feature_views(checkpoint, read_upload(payload), layer or None, class_index(checkpoint, target))
    channels, rows, cols = views.shape
    rollout = (
        "attention rollout below"
        if views.rollout is not None
        else "no attention rollout (not a ViT with attention weights)"
    )
    caption = f"**{checkpoint.source}**, {views.layer}: {channels} channels on a {rows}x{cols} grid; {rollout}."
    return views.channels, views.pca, views.cam, views.rollout, caption


def render(models) -> None:
    first = models.get(models.names()[0])
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="features-image")
            model_name = gr.Dropdown(models.names(), value=models.names()[0], label="Model")
            layer = gr.Dropdown(
                list(feature_layers(first.model)),
                value=list(feature_layers(first.model))[-1],
                label="Layer / stage",
                allow_custom_value=True,
            )
            target = gr.Dropdown(
                class_choices(first), value=class_choices(first)[0], label="Grad-CAM target", allow_custom_value=True
            )
            button = gr.Button("Show feature maps", variant="primary")
        with gr.Column():
            caption = gr.Markdown(elem_id="features-caption")
            # PNG: the views are shown pixel for pixel, and PNG encodes them faster than Gradio's default WebP.
            channels = gr.Image(label="Strongest channels", format="png", interactive=False)
    with gr.Row():
        pca = gr.Image(label="PCA of the features (first 3 components as RGB)", format="png", interactive=False)
        cam = gr.Image(label="Grad-CAM", format="png", interactive=False, elem_id="features-cam")
        rollout = gr.Image(label="Attention rollout (ViT)", format="png", interactive=False)

    def model_changed(name: str):
        checkpoint = models.get(name)
        layers = list(feature_layers(checkpoint.model))
        choices = class_choices(checkpoint)
        return gr.Dropdown(choices=layers, value=layers[-1]), gr.Dropdown(choices=choices, value=choices[0])

    # Models loaded later in the Model tab join the choices when the list is opened.
    model_name.focus(lambda: gr.Dropdown(choices=models.names()), outputs=model_name, api_name="feature_models")
    model_name.change(user_errors(model_changed), inputs=model_name, outputs=[layer, target], api_name="feature_layers")
    button.click(
        user_errors(
            lambda payload, name, chosen_layer, chosen_target: explore(
                models, payload, name, chosen_layer, chosen_target
            )
        ),
        inputs=[image, model_name, layer, target],
        outputs=[channels, pca, cam, rollout, caption],
        api_name="feature_maps",
        preprocess=False,
    )
