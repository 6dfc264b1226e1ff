"""Food tab: a photo in, the top-5 labels with confidences out (endpoint /classify)."""

from __future__ import annotations

import gradio as gr

from demos.inference import TOP_K, top_k
from demos.tabs.common import model_header, read_upload, user_errors
from demos.tabs.correction_controls import food_correction

TITLE = "Food"
EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def render(models) -> None:
    model_header(models, "food")
    with gr.Row():
        photo = gr.Image(
            label="Food photo (upload or paste)", type="filepath", elem_id="food-photo", sources=["upload", "clipboard"]
        )
        labels = gr.Label(num_top_classes=TOP_K, label="Top-5", elem_id="food-labels")
    food_correction(models, photo)  # "Wrong? Correct it": /correct_food
    button = gr.Button("Classify", variant="primary")

    @user_errors
    def classify(payload):
        return top_k(models.get("food"), read_upload(payload))

    button.click(classify, inputs=photo, outputs=labels, api_name="classify", preprocess=False)
    if models.examples_dir is not None:
        examples = sorted(p for p in models.examples_dir.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)
        if examples:
            gr.Examples([[str(p)] for p in examples], inputs=photo)
