"""Bone-age tab: a hand X-ray (PNG/JPEG of any bit depth, or DICOM) in; months, years and a Grad-CAM out.

Endpoint /bone_age.
"""

from __future__ import annotations

import gradio as gr

from demos.inference import grad_cam, regress, top_k
from demos.tabs.common import model_header, read_upload, user_errors
from demos.tabs.correction_controls import bone_age_correction

TITLE = "Bone age"
MONTHS_PER_YEAR = 12
UPLOAD_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dcm", ".dicom"]


def describe_prediction(checkpoint, value: float) -> str:
    """The prediction with its unit, in years too when in months, and the card's validation MAE as uncertainty."""
    unit = checkpoint.task.unit or "(unit not stated in the config)"
    mae = checkpoint.metrics.get("mae")
    text = f"**Bone age: {value:.1f} {unit}**"
    if checkpoint.task.unit == "months":
        text += f" ({value / MONTHS_PER_YEAR:.1f} years)"
    if mae is None:
        text += "\n\nUncertainty: not stated (the model card declares no validation MAE)."
    else:
        text += f"\n\nUncertainty: ± {mae:.1f} {unit}, the validation MAE stated in the model card."
    return text


def predict(models, payload):
    """(months or None, explanation markdown, Grad-CAM overlay, the decoded image)."""
    checkpoint = models.get("boneage")
    image = read_upload(payload)
    overlay = grad_cam(checkpoint, image)
    if not checkpoint.task.is_regression:  # the fallback backbone stands in: say so, show what it does predict
        best = ", ".join(f"{label} ({p:.0%})" for label, p in top_k(checkpoint, image, k=3).items())
        text = (
            f"**No bone-age regression model is loaded**: {checkpoint.source} is a classifier, so it gives no age. "
            f"Its top classes: {best}. Pass `--boneage-model` a regression checkpoint."
        )
        return None, text, overlay, image
    value = regress(checkpoint, image)
    return value, describe_prediction(checkpoint, value), overlay, image


def render(models) -> None:
    model_header(models, "boneage")
    with gr.Row():
        with gr.Column():
            xray = gr.File(
                label="Hand X-ray (PNG/JPEG of any bit depth, or DICOM)",
                file_types=UPLOAD_TYPES,
                elem_id="boneage-xray",
            )
            button = gr.Button("Estimate bone age", variant="primary")
        with gr.Column():
            months = gr.Number(label="Bone age (months)", interactive=False)
            text = gr.Markdown(elem_id="boneage-text")
            # "Wrong? Correct it": /correct_bone_age; "male" is the RSNA metadata column, "true"/"false" its values
            bone_age_correction(models, xray, sex_column="male", sex_values={"female": "false", "male": "true"})
    with gr.Row():
        decoded = gr.Image(label="Decoded X-ray", type="pil", interactive=False)
        overlay = gr.Image(label="Grad-CAM: what drove the number", interactive=False, elem_id="boneage-cam")
    button.click(
        user_errors(lambda payload: predict(models, payload)),
        inputs=xray,
        outputs=[months, text, overlay, decoded],
        api_name="bone_age",
        preprocess=False,
    )
