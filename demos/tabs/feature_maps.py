"""Feature-map tab: one layer of either model seen four ways (endpoint /feature_maps).

The strongest channels, a PCA-to-RGB view of the features, Grad-CAM for a class (or the regression
output), and attention rollout for ViT models (the panel is hidden for other models). ViT tokens are
shown on their patch grid.
"""

from __future__ import annotations

import gradio as gr

from demos.explaining.explain import GRID_CHANNELS, feature_views
from demos.explaining.layers import feature_layers, has_attention_rollout
from demos.explaining.pixel_space import class_index
from demos.explaining.summary import human_label, model_choices
from demos.guards.refusals import checked_text
from demos.models import DemoModels
from demos.serving.images import is_colour
from demos.serving.inference import ServedModel
from demos.tabs.common import OVERLAY_FORMAT, read_upload, refresh_when_opened, user_errors

TITLE = "Feature maps"
TOP_CLASS = "top prediction"
REGRESSION_OUTPUT = "regression output"
XRAY_ROLE = "boneage"  # the model that learnt from grey X-rays only
COARSE_CELLS = 16  # a map of this many cells or fewer (4x4) places its heat only roughly


def class_choices(checkpoint: ServedModel) -> list[tuple[str, str]]:
    """(shown, value) Grad-CAM targets: classes by human label; a conditioned regression's outputs, or their mean."""
    if not checkpoint.task.is_regression:
        return [(TOP_CLASS, TOP_CLASS), *((human_label(label), label) for label in checkpoint.task.labels)]
    task = checkpoint.task
    if not task.condition_outputs:
        return [(REGRESSION_OUTPUT, REGRESSION_OUTPUT)]
    each = [
        (f"{task.output_names[index]} ({task.condition_column} = {value})", value)
        for value, index in task.condition_outputs.items()
    ]
    return [(f"{REGRESSION_OUTPUT}: mean of all (condition unknown)", REGRESSION_OUTPUT), *each]


def cam_class_index(checkpoint: ServedModel, choice: str | None) -> int | None:
    """The class Grad-CAM explains: None for the top prediction, and for a regression model (its output)."""
    if checkpoint.task.is_regression or not choice or choice == TOP_CLASS:
        return None
    return class_index(checkpoint, choice)


def condition(checkpoint: ServedModel, choice: str | None) -> str | None:
    """The regression output asked for: a condition value, or None for the mean (the only output if unconditioned)."""
    if (
        not checkpoint.task.is_regression
        or choice in (None, "", REGRESSION_OUTPUT)
        or not checkpoint.task.condition_outputs
    ):
        return None
    return choice


def explained(checkpoint: ServedModel, views, index: int | None, chosen: str | None) -> str:
    """What the Grad-CAM explains, in words: the class and its probability, or the regression output's value."""
    if checkpoint.task.is_regression:
        value = views.logits[checkpoint.task.output_indices(chosen)].mean().item()
        which = "the mean of its outputs" if checkpoint.task.condition_outputs and chosen is None else "its output"
        return f"Grad-CAM explains {which}: {value:.1f} {checkpoint.task.unit or ''}".rstrip() + "."
    probabilities = views.logits.softmax(-1)
    top = int(probabilities.argmax())
    top_text = f"**{human_label(checkpoint.task.labels[top])}** ({probabilities[top]:.0%})"
    if index is None or index == top:
        return f"Grad-CAM explains the top prediction, {top_text}."
    return (
        f"Grad-CAM explains **{human_label(checkpoint.task.labels[index])}** ({probabilities[index]:.0%}); "
        f"the top prediction is {top_text}."
    )


def coarse_grid_note(rows: int, cols: int) -> str:
    """Why a Grad-CAM on a coarse map may light up background: each cell covers a large part of the picture."""
    return (
        f"This layer's map has {rows}x{cols} cells, so each warm cell of the Grad-CAM covers 1/{rows * cols} of the "
        "picture: it shows roughly where, and may sit on the background beside the object. An earlier layer gives a "
        "finer map."
    )


def explore(models: DemoModels, payload, model_name: str, layer: str | None, target: str | None):
    """(channel grid, PCA view, Grad-CAM overlay, attention rollout or None, caption markdown)."""
    checkpoint = models.get(checked_text(model_name, "The model"))
    layer = checked_text(layer, "The layer") if layer else None
    target = checked_text(target, "The Grad-CAM target") if target else None
    image = read_upload(payload)
    index, chosen = cam_class_index(checkpoint, target), condition(checkpoint, target)
    views = feature_views(checkpoint, image, layer, index, chosen)
    channels, rows, cols = views.shape
    lines = [
        f"**{checkpoint.name}**, {views.layer}: {channels} channels on a {rows}x{cols} grid; "
        + ("attention rollout below. " if views.rollout is not None else "no attention rollout (not a ViT). ")
        + explained(checkpoint, views, index, chosen),
        (
            f"Strongest channels: the {min(channels, GRID_CHANNELS)} with the highest mean activation, numbered as in "
            "the layer, each tile scaled to its own range (black = its lowest value, white = its highest, both "
            "written under it)."
        ),
    ]
    if rows * cols <= COARSE_CELLS:
        lines.append(coarse_grid_note(rows, cols))
    if model_name == XRAY_ROLE:
        lines.append(
            "The Bone age tab's Grad-CAM is this one at the last layer, for the sex chosen there (the mean of both "
            "outputs when unknown): with the same layer and output, the two maps are the same."
        )
    if model_name == XRAY_ROLE and is_colour(image):
        lines.append(
            "**This is a colour image, and this model learnt from grey hand X-rays only**: what it picks out "
            "here says little about what it does with X-rays."
        )
    return views.channels, views.pca, views.cam, views.rollout, "\n\n".join(lines)


def render(models: DemoModels) -> None:
    first = models.get(models.names()[0])
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="features-image")
            model_name = gr.Dropdown(model_choices(models), value=models.names()[0], label="Model")
            layers = list(feature_layers(first.model))
            layer = gr.Dropdown(layers, value=layers[-1], label="Layer / stage", allow_custom_value=True)
            target = gr.Dropdown(
                class_choices(first), value=class_choices(first)[0][1], label="Grad-CAM target", allow_custom_value=True
            )
            button = gr.Button("Show feature maps", variant="primary")
        with gr.Column():
            caption = gr.Markdown(elem_id="features-caption")
            # PNG: the views are shown pixel for pixel, and PNG encodes them faster than Gradio's default WebP. The
            # overlays on the photo are JPEG (OVERLAY_FORMAT).
            channels = gr.Image(label="Strongest channels", format="png", interactive=False)
    with gr.Row(equal_height=True):  # the square PCA view and a photo's Grad-CAM overlay in boxes of one height
        pca = gr.Image(label="PCA of the features (first 3 components as RGB)", format="png", interactive=False)
        cam = gr.Image(label="Grad-CAM", format=OVERLAY_FORMAT, interactive=False, elem_id="features-cam")
        rollout = gr.Image(
            label="Attention rollout (ViT)",
            format=OVERLAY_FORMAT,
            interactive=False,
            visible=has_attention_rollout(first.model),
            elem_id="features-rollout",
        )

    @user_errors
    def model_changed(name: str):
        checkpoint = models.get(checked_text(name, "The model"))
        layers = list(feature_layers(checkpoint.model))
        choices = class_choices(checkpoint)
        return (
            gr.Dropdown(choices=layers, value=layers[-1]),
            gr.Dropdown(choices=choices, value=choices[0][1]),
        )

    @user_errors
    def show_rollout_panel(name: str):
        """The rollout panel, emptied, shown only for models that have one."""
        return gr.Image(value=None, visible=has_attention_rollout(models.get(checked_text(name, "The model")).model))

    @user_errors
    def show_feature_maps(payload, name, chosen_layer, chosen_target):
        return explore(models, payload, name, chosen_layer, chosen_target)

    refresh_when_opened(model_name, lambda: model_choices(models), api_name="feature_models")
    model_name.change(model_changed, inputs=model_name, outputs=[layer, target], api_name="feature_layers")
    # A separate event: /feature_layers keeps its outputs.
    model_name.change(show_rollout_panel, inputs=model_name, outputs=rollout, api_visibility="private")
    button.click(
        show_feature_maps,
        inputs=[image, model_name, layer, target],
        outputs=[channels, pca, cam, rollout, caption],
        api_name="feature_maps",
        preprocess=False,
    )
