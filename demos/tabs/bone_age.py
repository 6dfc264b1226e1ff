"""Bone-age tab: a hand X-ray (PNG/JPEG of any bit depth, or DICOM) in; months, years and a Grad-CAM out.

Endpoint /bone_age: (X-ray file, sex) -> (months, explanation, Grad-CAM overlay, decoded X-ray). The sex is
"female", "male" or "unknown" (the default); a checkpoint conditioned on it (config `condition_column` "male")
answers with that output, or with the mean of both when unknown. Other checkpoints ignore it.

The answer comes in two updates: the number and its explanation as soon as the model has run, then the decoded
X-ray and the Grad-CAM, whose backward pass takes several times longer. An API client's `predict` gets the last.
"""

from __future__ import annotations

import gradio as gr

from demos.explaining.explain import grad_cam
from demos.explaining.summary import human_label
from demos.guards.refusals import one_of
from demos.models import DemoModels
from demos.serving.images import DECODED_SUFFIXES, is_colour
from demos.serving.inference import ServedModel, output_for, regression_outputs, top_k
from demos.tabs.common import (
    OVERLAY_FORMAT,
    decoded_upload,
    model_header,
    read_upload,
    too_small,
    user_errors,
)
from demos.tabs.correction_controls import bone_age_correction

TITLE = "Bone age"
MONTHS_PER_YEAR = 12
UPLOAD_TYPES = sorted(DECODED_SUFFIXES)  # photos' suffixes and DICOM's
UNKNOWN_SEX = "unknown"
SEX_COLUMN = "male"  # the metadata column a sex-conditioned checkpoint names; its values are "true"/"false"
SEX_VALUES = {"female": "false", "male": "true"}  # selector choice -> value of that column
IMAGE_HEIGHT_PX = 360  # both images are shown at this height, whatever their pixel sizes


def is_sex_conditioned(checkpoint: ServedModel) -> bool:
    task = checkpoint.task
    return bool(task.condition_outputs) and task.condition_column == SEX_COLUMN


def condition_for(checkpoint: ServedModel, sex: str | None) -> str | None:
    """The checkpoint's condition value for the selector's choice: None (mean of the outputs) when unknown."""
    if sex in (None, "") or one_of(sex, [*SEX_VALUES, UNKNOWN_SEX], "The sex") == UNKNOWN_SEX:
        return None
    return SEX_VALUES[sex] if is_sex_conditioned(checkpoint) else None


def years(value: float, unit: str | None) -> str:
    return f" ({value / MONTHS_PER_YEAR:.1f} years)" if unit == "months" else ""


def describe_prediction(checkpoint: ServedModel, outputs, sex: str | None = None, image=None) -> str:
    """The prediction (from `regression_outputs`) with its unit, in years too when in months, the card's validation
    MAE as uncertainty, which output of a sex-conditioned model answered, and a warning when the upload is a colour
    image or a tiny one."""
    unit = checkpoint.task.unit or "(unit not stated in the config)"
    mae = checkpoint.metrics.get("mae")
    value = output_for(checkpoint, outputs, condition_for(checkpoint, sex))
    text = f"**Bone age: {value:.1f} {unit}**{years(value, checkpoint.task.unit)}"
    if is_sex_conditioned(checkpoint):
        text += "\n\n" + _which_output(checkpoint, outputs, sex)
    if mae is None:
        text += "\n\nUncertainty: not stated (the model card declares no validation MAE)."
    else:
        text += f"\n\nUncertainty: ± {mae:.1f} {unit}, the validation MAE stated in the model card."
    if image is not None and is_colour(image):
        text += (
            "\n\n**This is a colour image, not an X-ray.** The model learnt from grey hand radiographs only; "
            "its number for anything else means nothing."
        )
    if image is not None and too_small(image.size):
        text += "\n\n" + too_small(image.size)
    return text


def _which_output(checkpoint: ServedModel, outputs, sex: str | None) -> str:
    if condition_for(checkpoint, sex) is not None:
        return f"For a {'boy' if sex == 'male' else 'girl'}: the model's {sex} output."
    each = ", ".join(f"{name} {output_for(checkpoint, outputs, value):.1f}" for name, value in SEX_VALUES.items())
    return f"Sex unknown: the mean of the model's female and male outputs ({each} {checkpoint.task.unit or ''})."


def predict(models: DemoModels, payload, sex: str | None = UNKNOWN_SEX):
    """Two updates of (months or None, explanation markdown, Grad-CAM overlay, the decoded image): first the number
    and its explanation with both images cleared (a previous X-ray's must not stay beside the new number), then all
    four."""
    checkpoint = models.get("boneage")
    image = read_upload(payload)
    if not checkpoint.task.is_regression:  # the fallback backbone stands in: say so, show what it does predict
        best = ", ".join(f"{human_label(label)} ({p:.0%})" for label, p in top_k(checkpoint, image, k=3).items())
        text = (
            f"**No bone-age regression model is loaded**: {checkpoint.name} is a classifier, so it gives no age. "
            f"Its top classes: {best}. Pass `--boneage-model` a regression checkpoint."
        )
        yield None, text, None, None
        yield None, text, grad_cam(checkpoint, image), image
        return
    condition = condition_for(checkpoint, sex)
    outputs = regression_outputs(checkpoint, image)  # one pass gives the answer and, when sex is unknown, both outputs
    value, text = output_for(checkpoint, outputs, condition), describe_prediction(checkpoint, outputs, sex, image)
    yield value, text, None, None
    yield value, text, grad_cam(checkpoint, image, condition=condition), image


def render(models: DemoModels) -> None:
    model_header(models, "boneage")
    checkpoint = models.get("boneage")
    gr.Markdown(
        "No example X-rays are offered: the RSNA bone-age images the model learnt from may not be redistributed. "
        "Upload a hand radiograph of your own; it is estimated as soon as it arrives."
    )
    with gr.Row():
        with gr.Column():
            xray = gr.File(
                label="Hand X-ray (PNG/JPEG of any bit depth, or DICOM)",
                file_types=UPLOAD_TYPES,
                elem_id="boneage-xray",
            )
            sex = gr.Radio(
                ["female", "male", UNKNOWN_SEX],
                value=UNKNOWN_SEX,
                label="Sex (the model has one output for each)",
                visible=is_sex_conditioned(checkpoint),
                elem_id="boneage-sex",
            )
            button = gr.Button("Estimate bone age", variant="primary")
        with gr.Column():
            # The API's exact number; the page shows it rounded, with years, in the text below.
            months = gr.Number(label="Bone age (months)", visible=False)
            text = gr.Markdown(elem_id="boneage-text")
            # "Wrong? Correct it": /correct_bone_age
            bone_age_correction(models, xray, sex_column=SEX_COLUMN, sex_values=SEX_VALUES)
    with gr.Row():
        decoded = gr.Image(
            label="Decoded X-ray", type="pil", interactive=False, elem_id="boneage-decoded", height=IMAGE_HEIGHT_PX
        )
        overlay = gr.Image(
            label="Grad-CAM: what drove the number (the last layer; others in the Feature maps tab)",
            interactive=False,
            format=OVERLAY_FORMAT,
            elem_id="boneage-cam",
            height=IMAGE_HEIGHT_PX,
        )

    @user_errors
    def estimate(payload, chosen_sex):
        yield from predict(models, payload, chosen_sex)

    @user_errors
    def estimate_upload(payload, chosen_sex):
        """On upload (or a new sex): estimate at once; a file that is no image is refused as it arrives."""
        if payload is None:
            yield gr.skip()
        elif decoded_upload(payload) is None:
            yield None, "**That file is not a usable image**: upload a hand X-ray (PNG, JPEG, DICOM).", None, None
        else:
            yield from predict(models, payload, chosen_sex)

    outputs = [months, text, overlay, decoded]
    button.click(estimate, inputs=[xray, sex], outputs=outputs, api_name="bone_age", preprocess=False)
    gr.on(
        [xray.upload, sex.input],
        estimate_upload,
        inputs=[xray, sex],
        outputs=outputs,
        preprocess=False,
        api_visibility="private",
    )
