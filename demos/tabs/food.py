"""Food tab: a photo in, the top-5 labels with confidences out (endpoint /classify).

The tab says which classes the model knows and, when the checkpoint stores a calibrated `ood_threshold`,
that a photo fits none of them. Uploading classifies at once; a file that is no image is refused as it
arrives. Examples: the operator's `--examples` folder, and pictures the app makes itself (demos/examples.py).
"""

from __future__ import annotations

import re

import gradio as gr

from demos.examples import made_up_pictures
from demos.explaining.summary import human_label, known_classes
from demos.guards.uploads import upload_path
from demos.models import DemoModels
from demos.serving.images import ImageDecodeError, image_size
from demos.serving.inference import TOP_K, ServedModel, top_k
from demos.tabs.common import model_header, read_upload, too_small, user_errors
from demos.tabs.correction_controls import food_correction
from hub.constants import IMAGE_SUFFIXES

TITLE = "Food"
EXAMPLE_SUFFIXES = IMAGE_SUFFIXES
SCORES_TITLE = "Top-5"
PHOTO_HEIGHT_PX = 360  # the upload box keeps this height, whatever the picture's size (a 1x1 one would flatten it)
NO_FIT_TITLE = "Top-5 guesses (the photo fits none of the classes)"


def knowledge(checkpoint: ServedModel) -> str:
    """What the model can answer, and whether it can tell a photo that fits none of its classes."""
    classes = len(checkpoint.task.labels)
    threshold = checkpoint.task.ood_threshold
    if threshold is None:
        limit = (
            "It always answers with one of these, whatever the photo shows: its checkpoint stores no threshold "
            "for telling that a photo fits none of them."
        )
    else:
        limit = (
            f"When its best score is below **{threshold:.0%}** (the threshold stored with the checkpoint: about 95% "
            "of validation photos reach it), the app says the photo fits none of them."
        )
    return f"**The model knows {classes} classes:** {known_classes(checkpoint)}.\n\n{limit}"


def verdict(checkpoint: ServedModel, scores: dict[str, float]) -> tuple[str, str]:
    """(title of the score panel, notice markdown) for the model's scores of one photo."""
    best, probability = next(iter(scores.items()))
    threshold = checkpoint.task.ood_threshold
    if threshold is None or probability >= threshold:
        return SCORES_TITLE, ""
    notice = (
        f"**This photo fits none of the {len(checkpoint.task.labels)} classes the model knows.** Its best match, "
        f"{human_label(best)}, scores {probability:.0%}, below the {threshold:.0%} that about 95% of validation photos "
        "reach. The scores are its guesses among the classes it knows."
    )
    return NO_FIT_TITLE, notice


def photo_refusal(message: str) -> str:
    """The decoder's reason a file is no image, with the formats of a photo: DICOM is for the Bone age tab's X-rays."""
    return re.sub(r"upload a [^:]*?DICOM[^:]*?file\.", "upload a photo (PNG, JPEG, WebP, BMP or TIFF).", message)


def label_scores(payload) -> dict[str, float]:
    """{class: probability}, best first, of an unprocessed gr.Label value ({} when empty)."""
    if not isinstance(payload, dict):
        return {}
    return {item["label"]: item["confidence"] for item in payload.get("confidences") or []}


def example_files(models: DemoModels) -> list[str]:
    """The `--examples` folder's images, then the pictures the app makes (not food: they show the notice)."""
    folder = models.examples_dir
    supplied = [] if folder is None else sorted(p for p in folder.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)
    return [str(path) for path in [*supplied, *made_up_pictures()]]


def scores_panel(checkpoint: ServedModel, raw_scores, payload) -> tuple[gr.Label, str]:
    """The scores with human labels, titled (and noticed) as fitting the known classes or none of them; a picture
    too small to mean anything is said to be so."""
    scores = label_scores(raw_scores)
    if not scores:
        return gr.Label(value=None, label=SCORES_TITLE), gr.skip()
    title, text = verdict(checkpoint, scores)
    warning = too_small(image_size(upload_path(payload))) if payload else ""  # classify decoded it already
    notice = "\n\n".join(part for part in (warning, text) if part)
    return gr.Label(value={human_label(k): v for k, v in scores.items()}, label=title), notice


def render(models: DemoModels) -> None:
    model_header(models, "food")
    gr.Markdown(knowledge(models.get("food")), elem_id="food-knowledge")
    # /classify's answer with the checkpoint's own class names, so API callers get id2label; the panel shows it
    # with human labels.
    scores = gr.Label(visible=False)
    with gr.Row():
        with gr.Column():
            photo = gr.Image(
                label="Food photo (upload or paste: it is classified at once)",
                type="filepath",
                elem_id="food-photo",
                sources=["upload", "clipboard"],
                height=PHOTO_HEIGHT_PX,
            )
            button = gr.Button("Classify", variant="primary")
        with gr.Column():
            notice = gr.Markdown(elem_id="food-notice")
            shown = gr.Label(num_top_classes=TOP_K, label=SCORES_TITLE, elem_id="food-labels")
            food_correction(models, photo)  # "Wrong? Correct it": /correct_food

    @user_errors
    def classify(payload):
        return top_k(models.get("food"), read_upload(payload))

    @user_errors
    def classify_upload(payload):
        """On upload: refuse a file that is no image at once (clearing it), else classify it."""
        try:
            image = read_upload(payload)
        except ImageDecodeError as err:
            gr.Warning(photo_refusal(str(err)))
            return None, None, "**That file is not a usable image**: upload a photo (PNG, JPEG, WebP, BMP, TIFF)."
        return gr.skip(), top_k(models.get("food"), image), ""

    @user_errors
    def clear_scores():
        return None, ""

    @user_errors
    def present(raw_scores, payload):  # unprocessed: its file is read by demos/serving/images.py, not by gr.Image
        return scores_panel(models.get("food"), raw_scores, payload)

    button.click(classify, inputs=photo, outputs=scores, api_name="classify", preprocess=False, show_progress_on=shown)
    photo.upload(
        classify_upload, inputs=photo, outputs=[photo, scores, notice], preprocess=False, api_visibility="private",
        show_progress_on=shown,
    )  # fmt: skip
    photo.clear(clear_scores, outputs=[scores, notice], api_visibility="private")
    scores.change(present, inputs=[scores, photo], outputs=[shown, notice], api_visibility="private", preprocess=False)
    # After the events: the examples' own event would otherwise take the name /classify.
    gr.Examples(
        example_files(models), inputs=photo, outputs=scores, fn=classify, run_on_click=True,
        label="Examples (the made-up pictures are not food: they fit none of the classes)",
        api_name="food_example", api_visibility="private",
    )  # fmt: skip
