"""What-the-network-sees tab: class visualisation (endpoint /dream) and adversarial examples (/adversarial).

Both work on any loaded classification checkpoint, in pixel space at its input size (demos/explaining/dream.py,
demos/explaining/adversarial.py). The adversarial PNG offered for download classifies as the attack did when
uploaded to the Food tab (/classify) with the same model.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio import processing_utils
from gradio.utils import get_upload_folder

from demos.explaining.adversarial import METHODS, attack
from demos.explaining.annotate import FONT_PX, label
from demos.explaining.dream import dream
from demos.explaining.pixel_space import MAX_STEPS
from demos.explaining.summary import human_label, model_choices
from demos.guards.refusals import checked_text, one_of, whole_number
from demos.guards.uploads import upload_path
from demos.models import DemoModels
from demos.serving.images import image_size
from demos.tabs.common import read_upload, refresh_when_opened, user_errors
from hub.preprocessing import image_spec

TITLE = "What the network sees"
ANY_OTHER_CLASS = "any other class (untargeted)"
METHOD_CHOICES = [("Many small steps (PGD)", "pgd"), ("One step (FGSM)", "fgsm")]
DEFAULT_DREAM_STEPS = 60
SLIDER_MAX_BUDGET = 64  # the API accepts up to 255; beyond 64 levels the "perturbation" is a new picture
STEP_FONT_FRACTION = 8  # step numbers an eighth of a frame's width tall
MAX_SEED = 2**32 - 1  # torch takes larger seeds, but not every number: a bound a visitor can be told


def _classifier_names(models: DemoModels) -> list[str]:
    return [name for name in models.names() if not models.get(name).task.is_regression] or models.names()


def _labels(models: DemoModels, name: str) -> list[tuple[str, str]]:
    """(human label, class name) choices of a classifier; none for a regression model."""
    checkpoint = models.get(checked_text(name, "The model"))
    return [] if checkpoint.task.is_regression else [(human_label(label), label) for label in checkpoint.task.labels]


def numbered_strip(strip, steps: tuple[int, ...], frame_width: int):
    """The strip of steps (frames `frame_width` wide, evenly spaced) with each frame's step number written on it.

    The page shows the strip shrunk to its width (to about half, for 10 frames of 224 px), so the numbers are
    written in proportion to a frame: an eighth of its width, never smaller than the other labels.
    """
    strip = strip.copy()
    spacing = (strip.width - frame_width) / max(len(steps) - 1, 1)
    font_px = max(FONT_PX, frame_width // STEP_FONT_FRACTION)
    for position, step in enumerate(steps):
        # Bottom-left: the top-left corner lies under the title Gradio lays over the image.
        text = "start" if step == 0 else f"step {step}"
        label(strip, (round(position * spacing), strip.height), text, from_bottom=True, font_px=font_px)
    return strip


def run_dream(models: DemoModels, name: str, target: str, payload, steps: float, seed: float, progress=None):
    """(final image, strip of steps, probability of the class, caption); `progress` is a gr.Progress."""
    checkpoint = models.get(checked_text(name, "The model"))
    if not target:
        raise ValueError("Choose a class to visualise.")
    target = checked_text(target, "The class")
    steps = whole_number(steps, "The number of steps", 1, MAX_STEPS)
    seed = whole_number(seed, "The seed", 0, MAX_SEED)
    start = None if upload_path(payload) is None else read_upload(payload)
    began = time.perf_counter()
    on_step = (
        None
        if progress is None
        else (lambda step, total: progress((step, total), desc="Gradient ascent", unit="steps"))
    )
    result = dream(checkpoint, target, start=start, steps=steps, seed=seed, on_step=on_step)
    caption = (
        f"**{human_label(result.label)}**: probability {result.probability:.1%} for the final image; its logit (the "
        f"score before softmax) went from {result.start_logit:.2f} to {result.final_logit:.2f} in {steps} steps "
        f"({time.perf_counter() - began:.1f} s), starting from {'your image' if start else 'grey noise'}."
    )
    strip = numbered_strip(result.strip, result.strip_steps, frame_width=result.image.width)
    return result.image, strip, result.probability, caption


def run_attack(models: DemoModels, name: str, payload, budget: float, target: str | None, method: str):
    """(original, amplified perturbation, adversarial image, path of the adversarial PNG, caption)."""
    checkpoint = models.get(checked_text(name, "The model"))
    goal = None if target in (None, "", ANY_OTHER_CLASS) else checked_text(target, "The class to make the model answer")
    method = one_of(method, METHODS, "The attack")  # the budget is checked by `attack`, as a Python caller's is
    result = attack(
        checkpoint, read_upload(payload) if upload_path(payload) else None, budget=budget, target=goal, method=method
    )
    # In the app's cache, which Gradio empties of day-old files (demos.app.DELETE_CACHE); the link names only that.
    data = processing_utils.encode_pil_to_bytes(result.upload, "png")
    png = processing_utils.save_bytes_to_cache(data, "adversarial.png", get_upload_folder())
    before, after = human_label(result.original_label), human_label(result.adversarial_label)
    caption = f"**{before}** ({result.original_probability:.1%}) -> **{after}** " + (
        f"({result.adversarial_probability:.1%}). {_attack_story(result)} Download the adversarial PNG and upload it "
        "to the Food tab with the same model to check."
    )
    return result.original, result.perturbation, result.adversarial, png, caption


def download_link(path: str, checkpoint) -> str:
    """HTML: the adversarial PNG as a link that carries the file itself (a data URL), so that it names no folder of
    the server, and one line on why the file is larger than the model's input."""
    width, height = image_size(path)
    spec = image_spec(checkpoint.processor)
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (
        f'<a download="adversarial.png" href="data:image/png;base64,{data}">Download adversarial.png</a> '
        f"({width}x{height} px: the size this model scales a photo to before cutting out its "
        f"{spec.width}x{spec.height} input, so that the change reaches it unresampled)"
    )


def _attack_story(result) -> str:
    """The attack in plain words: what it aimed for, whether it got there, and how small the change is."""
    aim = (
        f"to make the model answer **{human_label(result.target)}**"
        if result.target
        else "to make the model change its answer"
    )
    outcome = "It worked" if result.success else "It did **not** work within the allowed change: allow a larger one"
    how = (
        "one step along the sign of the gradient (FGSM)"
        if result.method == "fgsm"
        else f"{result.steps} small gradient step{'s' if result.steps != 1 else ''} (PGD)"
    )
    return (
        f"The photo was nudged {aim}. {outcome}, by changing each colour value of each pixel by at most "
        f"**{result.achieved} of 255 levels** (you allowed {result.budget}), in {how}: too little for a person to "
        "notice, enough for the model."
    )


def render(models: DemoModels) -> None:
    names = _classifier_names(models)
    labels = _labels(models, names[0])
    model_name = gr.Dropdown(
        model_choices(models, names), value=names[0], label="Classification model", allow_custom_value=True
    )
    # Headings, not nested tabs: the app's tab bar stays one row of top-level tabs.
    dream_view = _dream_section(labels)
    attack_view = _attack_section(labels)

    @user_errors
    def model_changed(name: str):
        choices = _labels(models, name)
        return (
            gr.Dropdown(choices=choices, value=choices[0][1] if choices else None),
            gr.Dropdown(choices=[(ANY_OTHER_CLASS, ANY_OTHER_CLASS), *choices], value=ANY_OTHER_CLASS),
        )

    # Regression models are left out of the list: both views explain class scores.
    refresh_when_opened(
        model_name, lambda: model_choices(models, _classifier_names(models)), api_name="network_sees_models"
    )
    model_name.change(
        model_changed,
        inputs=model_name,
        outputs=[dream_view.target, attack_view.target],
        api_name="network_sees_classes",
    )
    _wire_dream(models, model_name, dream_view)
    _wire_attack(models, model_name, attack_view)


@dataclass
class _DreamView:
    """The class visualisation's components."""

    target: gr.Dropdown
    start: gr.Image
    steps: gr.Slider
    seed: gr.Number
    button: gr.Button
    caption: gr.Markdown
    image: gr.Image
    probability: gr.Number
    strip: gr.Image


def _dream_section(labels: list[tuple[str, str]]) -> _DreamView:
    gr.Markdown("### Class visualisation\nGradient ascent on the class's logit, with jitter and a smoothness penalty.")
    with gr.Row():
        with gr.Column():
            target = gr.Dropdown(labels, value=labels[0][1] if labels else None, label="Class", allow_custom_value=True)
            start = gr.Image(
                label="Start from this image (optional; empty: grey noise)",
                type="filepath",
                sources=["upload", "clipboard"],
                elem_id="dream-start",
            )
            steps = gr.Slider(1, MAX_STEPS, value=DEFAULT_DREAM_STEPS, step=1, label="Gradient-ascent steps")
            seed = gr.Number(0, precision=0, label="Seed (jitter and noise)")
            button = gr.Button("Visualise the class", variant="primary")
        with gr.Column():
            caption = gr.Markdown(elem_id="dream-caption")
            image = gr.Image(label="Final image (model input size)", format="png", interactive=False)
            # The API's exact probability; the page shows it as a percentage in the caption.
            probability = gr.Number(label="Probability of the class", visible=False)
    strip = gr.Image(
        label="Steps, left to right (numbered on each frame)", format="png", interactive=False, elem_id="dream-strip"
    )
    return _DreamView(target, start, steps, seed, button, caption, image, probability, strip)


def _wire_dream(models: DemoModels, model_name: gr.Dropdown, view: _DreamView) -> None:
    @user_errors
    def visualise(name, target_class, payload, step_count, seed_value, progress=gr.Progress()):
        return run_dream(models, name, target_class, payload, step_count, seed_value, progress)

    view.button.click(
        visualise,
        inputs=[model_name, view.target, view.start, view.steps, view.seed],
        outputs=[view.image, view.strip, view.probability, view.caption],
        api_name="dream",
        preprocess=False,
    )


@dataclass
class _AttackView:
    """The adversarial example's components."""

    photo: gr.Image
    budget: gr.Slider
    target: gr.Dropdown
    method: gr.Radio
    button: gr.Button
    caption: gr.Markdown
    png: gr.File
    png_link: gr.HTML
    original: gr.Image
    perturbation: gr.Image
    adversarial: gr.Image


def _attack_section(labels: list[tuple[str, str]]) -> _AttackView:
    gr.Markdown("### Adversarial example\nThe smallest-looking change that makes the model change its mind.")
    with gr.Row():
        with gr.Column():
            photo = gr.Image(
                label="Photo to attack", type="filepath", sources=["upload", "clipboard"], elem_id="adversarial-photo"
            )
            budget = gr.Slider(
                1, SLIDER_MAX_BUDGET, value=8, step=1,
                label="Largest allowed change of any pixel value (in levels of 0-255)", elem_id="adversarial-budget",
            )  # fmt: skip
            target = gr.Dropdown(
                [(ANY_OTHER_CLASS, ANY_OTHER_CLASS), *labels], value=ANY_OTHER_CLASS, label="Make the model answer",
                allow_custom_value=True,
            )  # fmt: skip
            method = gr.Radio(METHOD_CHOICES, value="pgd", label="Attack")
            button = gr.Button("Attack", variant="primary")
        with gr.Column():
            caption = gr.Markdown(elem_id="adversarial-caption")
            # The API's file; the page offers it as a link that names no server folder (Gradio's would).
            png = gr.File(label="Adversarial PNG", visible=False)
            png_link = gr.HTML(elem_id="adversarial-png")
    with gr.Row():
        original = gr.Image(label="What the model sees", format="png", interactive=False)
        perturbation = gr.Image(label="Perturbation (amplified)", format="png", interactive=False)
        adversarial = gr.Image(label="Adversarial image", format="png", interactive=False)
    return _AttackView(
        photo, budget, target, method, button, caption, png, png_link, original, perturbation, adversarial
    )


def _wire_attack(models: DemoModels, model_name: gr.Dropdown, view: _AttackView) -> None:
    @user_errors
    def make_adversarial(name, payload, budget_value, target_class, method_name):
        return run_attack(models, name, payload, budget_value, target_class, method_name)

    @user_errors
    def offer_png(payload, name):
        path = upload_path(payload)
        return "" if path is None else download_link(path, models.get(name))

    view.button.click(
        make_adversarial,
        inputs=[model_name, view.photo, view.budget, view.target, view.method],
        outputs=[view.original, view.perturbation, view.adversarial, view.png, view.caption],
        api_name="adversarial",
        preprocess=False,
    )
    view.png.change(
        offer_png, inputs=[view.png, model_name], outputs=view.png_link, preprocess=False, api_visibility="private"
    )
