"""Train tab: your own images in, a fine-tuned checkpoint out, by the same `python -m train` the command line runs.

The visitor gives images (per class, with uploads or the webcam; a zip of class folders; for regression, a zip
with metadata.csv and the target column picked from it; or a public hub dataset's id, where the server reaches the
hub) and checks them (/check_training_data: counts per class and split, what was skipped, warnings, and the time
the run would take, from a step measured then). They choose the base, the mode in the lessons' words, epochs,
learning rates, image size and augmentation, and press Train (/train).
The run is a process of its own (demos/training/jobs.py): the tab follows its progress stream, plots the training
loss and the validation metric per epoch, shows an ETA, and Cancel (/cancel_training) ends the process. At the end:
the validation metrics, the confusion matrix or predicted-vs-true plot, per-class accuracy, the model card, the
command to run it again and a zip of the checkpoint; "Push to hub" and "Publish as a Space" put the model on the hub
and a Space serving it (demos/tabs/train_publish.py). Runs on the same data share the plots and a table, so two
modes compare side by side.

The tab is off where the operator has not allowed training (demos/training/settings.py says when).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from demos.guards.refusals import checked_text, refusal, visitor_text
from demos.guards.uploads import upload_path
from demos.models import DemoModels
from demos.serving.images import ImageDecodeError
from demos.serving.inference import regress, top_k
from demos.serving.sessions import current_session
from demos.tabs.common import read_upload, user_errors
from demos.tabs.train_publish import render_publish, wire_publish
from demos.training import datasets
from demos.training.choices import DEFAULT_BASE, MODE_NAMES, MODES, TrainOptions
from demos.training.estimate import estimate
from demos.training.jobs import JobRefused, JobState
from demos.training.progress import Curves, ProgressReader
from demos.training.publish import zip_name
from demos.training.results import RunResult, checkpoint_zip
from demos.training.settings import TrainingSettings
from hub.contract import TrainingMode

TITLE = "Train"
MAX_CLASSES = 6  # class rows on the page; "Add a class" shows the next
FIRST_CLASSES = 2
POLL_S = 1.0  # how often a running job's progress is read and the page updated
OWN_SIZE = "the model's own"
IMAGE_SIZES = [OWN_SIZE, "128", "160", "192", "224", "256"]
SOURCES = ("images per class", "a zip of class folders", "a zip with metadata.csv (regression)", "a hub dataset id")
NO_CONDITION = "(none)"
# The webcam is mirrored as people expect to see themselves, and Gradio mirrors the captured picture too: the
# prediction tabs' webcam must use these same options, or a model trained here sees the other hand there.
WEBCAM = gr.WebcamOptions(mirror=True)
TRAINING_GROUP = "training"  # /train's concurrency group: following a run never holds a prediction's slot
ENDED = {
    JobState.CANCELLED: "The run was cancelled.",
    JobState.TIMED_OUT: "The run took longer than this server allows and was stopped.",
    JobState.FAILED: "The run failed. The last lines it printed are below.",
}


@dataclass(frozen=True)
class DataInputs:
    """What the visitor gave, as the events receive it (raw payloads: `preprocess=False`)."""

    source: str
    names: tuple = ()  # per class row: the class name
    files: tuple = ()  # per class row: the uploaded files
    snapshots: tuple = ()  # per class row: the webcam pictures added (upload paths)
    class_zip: object = None
    regression_zip: object = None
    target: str | None = None
    condition: str | None = None
    hub_id: str | None = None
    hub_target: str | None = None  # empty: the dataset's `label` column
    hub_condition: str | None = None


def session_name() -> str:
    """The visitor's Gradio session, which owns their job folders and jobs ("local" outside a request)."""
    return current_session() or "local"


def prepare_data(settings: TrainingSettings, given: DataInputs, folder) -> datasets.Prepared:
    """The visitor's images as an imagefolder in `folder`; every file must be one they uploaded."""
    out = folder / "data"
    if given.source == SOURCES[0]:
        rows = [
            (name, [*(upload_path(p) for p in (files or [])), *(upload_path(p) for p in (snaps or []))])
            for name, files, snaps in zip(given.names, given.files, given.snapshots, strict=True)
            if (name or "").strip() or files or snaps
        ]
        return datasets.from_class_uploads(rows, out, settings.limits)
    if given.source == SOURCES[1]:
        return datasets.from_imagefolder_zip(_zip_path(given.class_zip), out, settings.limits)
    if given.source == SOURCES[2]:
        if not given.target:
            raise datasets.IntakeError("Pick the column to predict (the target) first.")
        condition = None if given.condition in (None, "", NO_CONDITION) else given.condition
        return datasets.from_regression_zip(
            _zip_path(given.regression_zip), out, target_column=given.target, condition_column=condition,
            limits=settings.limits,
        )  # fmt: skip
    if given.source == SOURCES[3]:
        # Imported here: it needs training's `datasets`, which a serving-only install lacks (the tab is off there).
        from demos.training.hub_dataset import from_hub_dataset

        return from_hub_dataset(
            given.hub_id, out, target_column=_text(given.hub_target, "The column to predict") or None,
            condition_column=_text(given.hub_condition, "The condition column") or None, limits=settings.limits,
        )  # fmt: skip
    raise datasets.IntakeError(f"Choose where the images come from: {', '.join(SOURCES)}.")


def _text(value, field: str) -> str:
    """A column name typed in the page (any API caller may send anything), stripped."""
    return checked_text(value or "", field).strip()


def _zip_path(payload) -> str:
    path = upload_path(payload)
    if path is None:
        raise datasets.IntakeError("No zip yet: upload one first.")
    return path


def run_options(settings: TrainingSettings, choices: dict, prepared: datasets.Prepared) -> TrainOptions:
    """The run's options from the page's choices (checked: any API caller may send anything)."""
    mode = MODES.get(choices["mode"])
    if mode is None:
        raise ValueError(f"The mode must be one of: {', '.join(MODES)}.")
    if choices["base"] not in settings.base_models:
        raise ValueError(f"The base model must be one of: {', '.join(settings.base_models)}.")
    size = choices["image_size"]
    if size not in IMAGE_SIZES:
        raise ValueError(f"The image size must be one of: {', '.join(IMAGE_SIZES)}.")
    numbers = {}
    for name, low, high in (("epochs", 0.1, 100), ("head_epochs", 0.1, 200), ("learning_rate", 1e-6, 1.0),
                            ("head_learning_rate", 1e-6, 1.0)):  # fmt: skip
        value = choices[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"{name.replace('_', ' ').capitalize()} must be a number from {low:g} to {high:g}.")
        numbers[name] = float(value)
    return TrainOptions(
        base_model=choices["base"], mode=mode, **numbers, image_size=None if size == OWN_SIZE else int(size),
        augment=bool(choices["augment"]), target_column=prepared.target_column,
        condition_column=prepared.condition_column, extra=settings.extra_options,
    )  # fmt: skip


def start(settings: TrainingSettings, given: DataInputs, choices: dict):
    """Prepare the data and queue the run: (job, prepared data)."""
    session = session_name()
    folder = settings.runner.new_folder(session)
    prepared = prepare_data(settings, given, folder)
    options = run_options(settings, choices, prepared)
    stages = 2 if options.mode is TrainingMode.TWO_STAGE else 1
    argv = options.argv(dataset=prepared.dataset, output_dir="run")
    return settings.runner.submit(session, folder, argv, stages=stages), prepared


def progress_html(fraction: float, text: str) -> str:
    """A progress bar with its line of text: Gradio's own overlay would hide the live plots beneath it."""
    return f'<progress value="{fraction:.3f}" max="1" style="width:100%"></progress><div>{html.escape(text)}</div>'


def curve_frames(runs: list[dict], current: Curves | None, label: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(loss, metric) points of the earlier runs `runs` and the current one, by run; the metric's name."""
    loss, metric, name = [], [], current.metric_name if current else None
    for run in runs:
        loss += [(x, y, run["label"]) for x, y in run["loss"]]
        metric += [(x, y, run["label"]) for x, y in run["metric"]]
        name = name or run["metric_name"]
    if current is not None:
        loss += [(x, y, label) for x, y in current.loss]
        metric += [(x, y, label) for x, y in current.metric]
    return _points(loss), _points(metric), name or "validation metric"


def _points(rows: list[tuple]) -> pd.DataFrame:
    """A plot's points, typed: an empty frame's columns would be text, and the plot would keep text axes."""
    return pd.DataFrame(rows, columns=["epoch", "value", "run"]).astype({"epoch": float, "value": float, "run": str})


def comparison_rows(runs: list[dict]) -> list[list]:
    """One table row per finished run: what it was, its command, its headline metric and how long it took."""
    return [[run["label"], run["command"], run["headline"], round(run["minutes"], 2)] for run in runs]


def render(models: DemoModels) -> None:
    """The tab, within the app's training settings (`models.training`)."""
    settings = models.training
    if not settings.access.allowed:
        gr.Markdown(f"**{settings.access.reason}**", elem_id="train-off")
        return
    gr.Markdown(
        "Teach a network your own images. Choose **train only a new head** to keep what the network already "
        "sees and learn only how to name it (fast), or **fine-tune everything** to let it see anew (slower, "
        "better with more images); run both on the same data and compare their curves below."
    )
    page = _inputs(settings)
    outputs = _outputs()
    _wire(models, page, outputs)
    wire_publish(settings, render_publish(), outputs.job)
    _wire_try_it(models, _try_it(), outputs.trained)


@dataclass
class ClassRow:
    box: gr.Group
    name: gr.Textbox
    files: gr.File
    webcam: gr.Image
    add: gr.Button
    count: gr.Markdown
    snapshots: gr.State


@dataclass
class Page:
    """The tab's input components."""

    source: gr.Radio
    rows: list[ClassRow]
    shown_rows: gr.State
    add_class: gr.Button
    per_class: gr.Group
    class_zip: gr.File
    zip_box: gr.Group
    regression_zip: gr.File
    target: gr.Dropdown
    condition: gr.Dropdown
    regression_box: gr.Group
    hub_id: gr.Textbox
    hub_target: gr.Textbox
    hub_condition: gr.Textbox
    hub_box: gr.Group
    base: gr.Dropdown
    mode: gr.Radio
    epochs: gr.Number
    head_epochs: gr.Number
    learning_rate: gr.Number
    head_learning_rate: gr.Number
    image_size: gr.Dropdown
    augment: gr.Checkbox
    check: gr.Button
    train: gr.Button
    cancel: gr.Button

    def train_inputs(self) -> list:
        """/train's inputs, in `_read_inputs`' order: the hub dataset's last, so that API callers of the other
        sources keep their arguments' places."""
        rows = self.rows
        return [
            self.source, self.class_zip, self.regression_zip, self.target, self.condition, self.base, self.mode,
            self.epochs, self.head_epochs, self.learning_rate, self.head_learning_rate, self.image_size,
            self.augment, *(r.name for r in rows), *(r.files for r in rows), *(r.snapshots for r in rows),
            self.hub_id, self.hub_target, self.hub_condition,
        ]  # fmt: skip


def _read_inputs(values) -> tuple[DataInputs, dict]:
    """(data, choices) from /train's (or /check_training_data's) values, in `Page.train_inputs`' order."""
    source, class_zip, regression_zip, target, condition, *rest, hub_id, hub_target, hub_condition = values
    keys = ("base", "mode", "epochs", "head_epochs", "learning_rate", "head_learning_rate", "image_size", "augment")
    choices, rows = dict(zip(keys, rest[: len(keys)], strict=True)), rest[len(keys) :]
    names, files, snapshots = (tuple(rows[i * MAX_CLASSES : (i + 1) * MAX_CLASSES]) for i in range(3))
    given = DataInputs(
        source, names, files, snapshots, class_zip, regression_zip, target, condition, hub_id, hub_target,
        hub_condition,
    )  # fmt: skip
    return given, choices


def _data_inputs() -> dict:
    """The four ways to give images, one shown at a time."""
    source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Your images", elem_id="train-source")
    with gr.Group(visible=True) as per_class:
        rows = [_class_row(i) for i in range(MAX_CLASSES)]
        shown_rows = gr.State(FIRST_CLASSES)
        add_class = gr.Button("Add a class", size="sm")
    with gr.Group(visible=False) as zip_box:
        class_zip = gr.File(
            label="Zip: train/<class>/… (validation/<class>/… optional)", file_types=[".zip"], elem_id="train-class-zip"
        )
    with gr.Group(visible=False) as regression_box:
        regression_zip = gr.File(
            label="Zip: images and metadata.csv (file_name, a number to predict)", file_types=[".zip"]
        )
        with gr.Row():
            target = gr.Dropdown([], label="Column to predict (numbers)", allow_custom_value=False)
            condition = gr.Dropdown([NO_CONDITION], value=NO_CONDITION, label="One output per value of (optional)")
    with gr.Group(visible=False) as hub_box:
        # Each starts as "": a value the API states as a default, so that callers of the other sources leave it out.
        hub_id = gr.Textbox(
            "", label="Hub dataset id (a public dataset: its train split, and its validation split if it has one)",
            placeholder="owner/name, as the dataset's page on the hub shows it", elem_id="train-hub-id",
        )  # fmt: skip
        with gr.Row():
            hub_target = gr.Textbox("", label="Column to predict (empty: label, the classes)", placeholder="label")
            hub_condition = gr.Textbox("", label="One output per value of (optional, for a number)")
        _offline_note()
    return dict(
        source=source, rows=rows, shown_rows=shown_rows, add_class=add_class, per_class=per_class,
        class_zip=class_zip, zip_box=zip_box, regression_zip=regression_zip, target=target, condition=condition,
        regression_box=regression_box, hub_id=hub_id, hub_target=hub_target, hub_condition=hub_condition,
        hub_box=hub_box,
    )  # fmt: skip


def _offline_note() -> None:
    """Say at once, where this server works offline, that a hub dataset cannot be read here (Check and Train refuse
    it too, saying the same)."""
    reason = datasets.offline_reason()
    if reason:
        gr.Markdown(f"⚠️ {reason}", elem_id="train-hub-offline")


def _class_row(index: int) -> ClassRow:
    with gr.Group(visible=index < FIRST_CLASSES) as box:
        with gr.Row():
            name = gr.Textbox(label=f"Class {index + 1}", placeholder="its name, e.g. mug", scale=1)
            files = gr.File(label="Images", file_count="multiple", file_types=["image"], scale=2)
            with gr.Column(scale=2):
                webcam = gr.Image(label="Webcam", sources=["webcam"], type="filepath", webcam_options=WEBCAM)
                add = gr.Button("Add this picture to the class", size="sm")
                count = gr.Markdown("")
        snapshots = gr.State([])
    return ClassRow(box, name, files, webcam, add, count, snapshots)


def _choice_inputs(settings: TrainingSettings) -> dict:
    bases = list(settings.base_models)
    with gr.Row():
        base = gr.Dropdown(bases, value=DEFAULT_BASE if DEFAULT_BASE in bases else bases[0], label="Base model")
        mode = gr.Radio(list(MODES), value=MODE_NAMES[TrainOptions().mode], label="What trains")
    defaults = TrainOptions()
    with gr.Row():
        head_epochs = gr.Number(defaults.head_epochs, label="Epochs of the new head", minimum=0.1)
        head_learning_rate = gr.Number(defaults.head_learning_rate, label="Learning rate of the new head")
        epochs = gr.Number(defaults.epochs, label="Epochs of the whole network", minimum=0.1, visible=False)
        learning_rate = gr.Number(defaults.learning_rate, label="Learning rate of the whole network", visible=False)
        image_size = gr.Dropdown(IMAGE_SIZES, value=OWN_SIZE, label="Image size (px)")
        augment = gr.Checkbox(True, label="Augment (random crops, flips, colour changes)")
    with gr.Row():
        check = gr.Button("Check the data")
        train = gr.Button("Train", variant="primary", elem_id="train-button")
        cancel = gr.Button("Cancel", variant="stop", elem_id="train-cancel")
    return dict(
        base=base, mode=mode, epochs=epochs, head_epochs=head_epochs, learning_rate=learning_rate,
        head_learning_rate=head_learning_rate, image_size=image_size, augment=augment, check=check, train=train,
        cancel=cancel,
    )  # fmt: skip


def _inputs(settings: TrainingSettings) -> Page:
    return Page(**_data_inputs(), **_choice_inputs(settings))


@dataclass
class Outputs:
    """The tab's output components and the session's state."""

    summary: gr.Markdown
    progress: gr.HTML
    loss_plot: gr.LinePlot
    metric_plot: gr.LinePlot
    command: gr.Code
    status: gr.Markdown
    log: gr.Textbox
    metrics: gr.Markdown
    plot: gr.Image
    per_class: gr.Dataframe
    card: gr.Markdown
    download: gr.File
    comparison: gr.Dataframe
    job: gr.State  # the id of the session's latest job
    runs: gr.State  # the session's finished runs: their curves and metrics, for comparison
    trained: gr.State  # the name of the session's newest trained model among its models (`DemoModels.adopt`)

    def all(self) -> list:
        return list(vars(self).values())


def _outputs() -> Outputs:
    summary = gr.Markdown(elem_id="train-data-summary")
    progress = gr.HTML(progress_html(0, "Not started."), elem_id="train-progress")
    with gr.Row():
        plot_options = dict(x="epoch", y="value", color="run", height=260)
        loss_plot = gr.LinePlot(title="Training loss", **plot_options, elem_id="train-loss-plot")
        metric_plot = gr.LinePlot(title="Validation metric", **plot_options, elem_id="train-metric-plot")
    status = gr.Markdown(elem_id="train-status")
    log = gr.Textbox(label="The run's last lines", lines=8, visible=False, elem_id="train-log")
    command = gr.Code(label="The same run from the command line (in the job's folder)", language="shell")
    metrics = gr.Markdown(elem_id="train-metrics")
    with gr.Row():
        plot = gr.Image(label="Confusion matrix / predicted vs true", type="filepath", interactive=False)
        per_class = gr.Dataframe(headers=["class", "validation accuracy"], label="Per class", interactive=False)
    download = gr.File(label="Download the checkpoint (loads with from_pretrained)", elem_id="train-download")
    with gr.Accordion("Model card", open=False):
        card = gr.Markdown()
    comparison = gr.Dataframe(
        headers=["run", "command", "headline metric", "minutes"], label="Runs on this data", interactive=False
    )
    return Outputs(
        summary, progress, loss_plot, metric_plot, command, status, log, metrics, plot, per_class, card, download,
        comparison, gr.State(None), gr.State([]), gr.State(None),
    )  # fmt: skip


@dataclass
class TryIt:
    """The newest trained model on a picture of the visitor's."""

    photo: gr.Image
    button: gr.Button
    answer: gr.Label


def _try_it() -> TryIt:
    gr.Markdown(
        "### Try it\nYour newest model answers here, and the Batch, Feature maps, What the network sees and Model "
        "tabs list it among their models (for this browser tab's session)."
    )
    with gr.Row():
        # The webcam mirrors as the class rows' webcam does, so that the model sees pictures as it was taught.
        photo = gr.Image(
            label="A picture", type="filepath", sources=["upload", "webcam", "clipboard"], webcam_options=WEBCAM,
            elem_id="train-try-photo",
        )  # fmt: skip
        with gr.Column():
            button = gr.Button("Try it", elem_id="train-try")
            answer = gr.Label(num_top_classes=3, label="Your model says", elem_id="train-try-answer")
    return TryIt(photo, button, answer)


def _wire_try_it(models: DemoModels, try_it: TryIt, trained: gr.State) -> None:
    @user_errors
    def try_trained(payload, name):
        """The session's newest trained model on one picture: its three likeliest classes, or its number."""
        if not name:
            raise gr.Error("Train a model first: it answers here once its run is done.")
        model, image = models.get(name), read_upload(payload)
        if model.task.is_regression:
            return f"{regress(model, image):.1f} {model.task.unit or ''}".strip()
        return top_k(model, image, k=3)

    try_it.button.click(try_trained, [try_it.photo, trained], try_it.answer, api_name="try_trained", preprocess=False)


def _wire(models: DemoModels, page: Page, out: Outputs) -> None:
    settings = models.training
    private = dict(api_visibility="private")
    boxes = [page.per_class, page.zip_box, page.regression_box, page.hub_box]
    page.source.change(_show_source, page.source, boxes, **private)
    page.add_class.click(_add_class, page.shown_rows, [page.shown_rows, *(r.box for r in page.rows)], **private)
    for row in page.rows:
        row.add.click(
            _add_snapshot, [row.webcam, row.snapshots], [row.snapshots, row.webcam, row.count], preprocess=False,
            **private,
        )  # fmt: skip
    page.regression_zip.upload(
        _columns, page.regression_zip, [page.target, page.condition], preprocess=False, **private
    )
    numbers = [page.head_epochs, page.head_learning_rate, page.epochs, page.learning_rate]
    page.mode.change(_show_numbers, page.mode, numbers, **private)

    @user_errors
    def check_training_data(*values):
        """The data as a run would get it (counts per class and split, what was skipped, the warnings) and the time
        the run would take, estimated from a step measured now."""
        given, choices = _read_inputs(values)
        folder = settings.runner.new_folder(session_name())
        prepared = prepare_data(settings, given, folder)
        options = run_options(settings, choices, prepared)
        needed = estimate(options, prepared.split_size("train"), prepared.split_size("validation"))
        return f"{prepared.summary()}\n\n{needed.describe()}"

    def train(*values):
        """Prepare the data, run python -m train, and follow it to its result (see `run_in_tab`)."""
        given, choices = _read_inputs(values[:-1])
        yield from run_in_tab(models, out, given, choices, list(values[-1] or []))

    @user_errors
    def cancel_training(job_id):
        """Stop the session's run: out of the line, or its process ended."""
        job = settings.runner.get(session_name(), job_id)
        if job is None or job.state.ended:
            return "No run of yours is running or waiting."
        settings.runner.cancel(job)
        return ENDED[JobState.CANCELLED]

    page.check.click(check_training_data, page.train_inputs(), out.summary, api_name="check_training_data",
                     preprocess=False)  # fmt: skip
    event = page.train.click(
        train, [*page.train_inputs(), out.runs], out.all(), api_name="train", preprocess=False,
        show_progress="hidden", concurrency_id=TRAINING_GROUP, concurrency_limit=settings.runner.max_waiting + 1,
    )  # fmt: skip
    page.cancel.click(cancel_training, out.job, out.status, api_name="cancel_training", cancels=[event])


def run_in_tab(models: DemoModels, out: Outputs, given: DataInputs, choices: dict, runs: list[dict]):
    """/train: prepare the data, queue the run, and update the page until it ends (then show its result).

    A run this generator started is cancelled when the generator is closed early (the visitor left, or Cancel):
    nobody would see its result.
    """
    settings, session = models.training, session_name()
    try:
        job, prepared = start(settings, given, choices)
    except (datasets.IntakeError, JobRefused, ImageDecodeError, ValueError) as err:
        raise refusal("train", str(err)) from err
    label = f"run {len(runs) + 1}: {choices['mode']}"
    earlier = [run for run in runs if run["data"] == prepared.fingerprint]
    yield {
        out.summary: prepared.summary(), out.job: job.id, out.command: job.command, out.log: gr.Textbox(visible=False),
        out.status: "", out.metrics: "", out.plot: None, out.per_class: None, out.card: "", out.download: None,
    }  # fmt: skip
    reader = ProgressReader(job)
    try:
        while not job.state.ended:
            yield _live_update(settings, out, job, reader, earlier, label)
            time.sleep(POLL_S)
    finally:
        if not job.state.ended:
            settings.runner.cancel(job)
    final = _final_update(out, job, reader, prepared, runs, label)
    if job.state is JobState.DONE:
        final[out.trained] = _adopt(models, session, label, job.run_dir)
    yield final


def _live_update(settings, out: Outputs, job, reader: ProgressReader, earlier: list[dict], label: str) -> dict:
    position = settings.runner.position(job)
    if job.state is JobState.WAITING and position:
        ahead = f"{position} run{'s' if position > 1 else ''} ahead of yours"
        return {out.progress: progress_html(0, f"Waiting for the server's training slot: {ahead}.")}
    progress = reader.read()
    loss, metric, name = curve_frames(earlier, progress.curves, label)
    update = {out.progress: progress_html(progress.fraction, progress.describe())}
    # A plot is left alone until it has points: Gradio 6.31 draws no line in a plot whose data was sent empty first.
    if not loss.empty:
        update[out.loss_plot] = gr.LinePlot(value=loss)
    if not metric.empty:
        update[out.metric_plot] = gr.LinePlot(value=metric, title=f"Validation {name}")
    return update


def _final_update(out: Outputs, job, reader: ProgressReader, prepared, runs: list[dict], label: str) -> dict:
    progress = reader.read()
    command = {out.command: job.command}  # again: the page keeps it, an API caller reads it in the last update
    if job.state is not JobState.DONE:
        lines = "\n".join(visitor_text(line) for line in job.last_lines())
        return command | {
            out.progress: progress_html(progress.fraction, ENDED[job.state]),
            out.status: f"**{ENDED[job.state]}**",
            out.log: gr.Textbox(value=lines, visible=job.state is JobState.FAILED),
        }
    result = RunResult.read(job.run_dir)
    metric, value = result.headline
    runs = [*runs, {
        "label": label, "data": prepared.fingerprint, "loss": progress.curves.loss, "metric": progress.curves.metric,
        "metric_name": progress.curves.metric_name, "headline": f"{metric} {value:.4g}", "command": job.command,
        "minutes": (job.ended - job.started) / 60,
    }]  # fmt: skip
    same = [run for run in runs if run["data"] == prepared.fingerprint]
    loss, metric_frame, name = curve_frames(same, None, label)
    archive = checkpoint_zip(job.run_dir, job.folder / zip_name(job.id))
    return command | {
        out.progress: progress_html(1, "Done: the model is saved."),
        out.loss_plot: gr.LinePlot(value=loss),
        out.metric_plot: gr.LinePlot(value=metric_frame, title=f"Validation {name}"),
        out.status: f"**Done** in {runs[-1]['minutes']:.1f} min.", out.metrics: result.metrics_markdown(),
        out.plot: str(result.plot) if result.plot else None, out.per_class: result.per_class_rows() or None,
        out.card: result.card(), out.download: str(archive), out.comparison: comparison_rows(same), out.runs: runs,
    }  # fmt: skip


def _adopt(models: DemoModels, session: str, label: str, run_dir) -> str:
    """The trained model among the session's models, by a name that says it is theirs; its name."""
    name = f"your {label}"
    models.adopt(session, name, run_dir)
    return name


@user_errors
def _show_source(source):
    return tuple(gr.Group(visible=source == name) for name in SOURCES)


@user_errors
def _add_class(shown):
    shown = min(MAX_CLASSES, int(shown or FIRST_CLASSES) + 1)
    return shown, *(gr.Group(visible=i < shown) for i in range(MAX_CLASSES))


@user_errors
def _add_snapshot(payload, snapshots):
    """The webcam picture joins its class's pictures (checked as an upload), and the webcam is cleared."""
    path = upload_path(payload)
    if path is None:
        raise gr.Error("Take a picture with the webcam first.")
    snapshots = [*(snapshots or []), path]
    return snapshots, None, f"{len(snapshots)} webcam picture{'s' if len(snapshots) > 1 else ''} added"


@user_errors
def _columns(payload):
    """The metadata.csv columns for the pickers: the target first among those that are not file_name."""
    path = upload_path(payload)
    if path is None:
        return gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[NO_CONDITION], value=NO_CONDITION)
    columns = [c for c in datasets.metadata_columns(path) if c != datasets.FILE_NAME]
    return (
        gr.Dropdown(choices=columns, value=columns[0] if columns else None),
        gr.Dropdown(choices=[NO_CONDITION, *columns], value=NO_CONDITION),
    )


@user_errors
def _show_numbers(mode_name):
    mode = MODES.get(mode_name, TrainingMode.FEATURE_EXTRACTION)
    head, backbone = mode.trains_head_first, mode.trains_backbone
    return gr.Number(visible=head), gr.Number(visible=head), gr.Number(visible=backbone), gr.Number(visible=backbone)
