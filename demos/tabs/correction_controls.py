"""The "Wrong? Correct it" controls of the Food and Bone age tabs, and their endpoints /correct_food and
/correct_bone_age. The saving is demos/serving/corrections.py; a tab calls one function here with its upload component.

Nothing is rendered, and no endpoint exists, when the app collects no corrections (`models.corrections` is None:
`python -m demos --no-corrections`, or a Space that did not ask for them).
"""

from __future__ import annotations

import gradio as gr

from demos.explaining.summary import human_label
from demos.models import DemoModels
from demos.serving.corrections import PER_SESSION, CorrectionStore, checked_months, target_column
from demos.serving.sessions import current_session
from demos.tabs.common import read_upload, upload_path, user_errors

ACCORDION = "Wrong? Correct it"
PRIVACY = (
    "The photo (the file as you uploaded it) and your answer are saved on this server as training data for the next "
    f"model; a visit saves at most {PER_SESSION} corrections."
)


def uploaded_file(payload) -> str:
    """The upload's path, once it has decoded as an image: the store keeps the file itself, not its pixels."""
    read_upload(payload)  # refuses, with its message, anything that is no usable image
    return upload_path(payload)


def saved_text(store: CorrectionStore, path) -> str:
    count = store.count()
    collected = f"{count} correction{'s' if count != 1 else ''} collected here"
    return f"Saved, thank you: `{path.relative_to(store.root)}` ({collected})."


def food_correction(models: DemoModels, photo: gr.Image) -> None:
    """The right label for the Food tab's photo, saved in the class folder of that label."""
    store = models.corrections
    if store is None:
        return
    labels = list(models.get("food").task.labels)
    with gr.Accordion(ACCORDION, open=False, elem_id="food-correct"):
        gr.Markdown(PRIVACY)
        right = gr.Dropdown([(human_label(label), label) for label in labels], value=None, label="The right answer")
        button = gr.Button("Save the correction")
        result = gr.Markdown(elem_id="food-correct-result")

    @user_errors
    def correct_food(payload, label):
        if not label:
            raise gr.Error("Choose the right answer in the list first.")
        return saved_text(store, store.save_label(uploaded_file(payload), label, labels, current_session()))

    button.click(correct_food, inputs=[photo, right], outputs=result, api_name="correct_food", preprocess=False)


def bone_age_correction(models: DemoModels, xray: gr.File, *, sex_column: str, sex_values: dict[str, str]) -> None:
    """The right bone age in months and the sex for the Bone age tab's X-ray, saved with a metadata.csv row.

    `sex_values` maps the choices ("female", "male") to the values of `sex_column` the model was trained with.
    """
    store = models.corrections
    if store is None:
        return
    checkpoint = models.get("boneage")
    column = target_column(checkpoint)
    with gr.Accordion(ACCORDION, open=False, elem_id="boneage-correct"):
        gr.Markdown(PRIVACY)
        with gr.Row():
            months = gr.Number(label="The right bone age (months)", minimum=0, precision=1)
            sex = gr.Radio(list(sex_values), label="Sex")
        button = gr.Button("Save the correction")
        result = gr.Markdown(elem_id="boneage-correct-result")

    @user_errors
    def correct_bone_age(payload, value, chosen_sex):
        if not isinstance(chosen_sex, str) or chosen_sex not in sex_values:  # a raw API payload may be anything
            raise gr.Error(f"Choose the sex ({', '.join(sex_values)}): the model's training data records it.")
        values = {column: checked_months(value), sex_column: sex_values[chosen_sex]}
        return saved_text(store, store.save_values(uploaded_file(payload), values, current_session()))

    button.click(
        correct_bone_age, inputs=[xray, months, sex], outputs=result, api_name="correct_bone_age", preprocess=False
    )
