"""Batch tab: many images, or one zip of them, through any loaded model; a table and a CSV to download.

Endpoint /batch_predict: (files, model name, top-k) -> (table, CSV file). The rows are those of
`python -m demos.predict` (demos/predict.py runs both): a file that cannot be decoded gets its error in its
row. At most MAX_IMAGES images a run; a zip's members are read with their declared sizes checked first.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio import processing_utils
from gradio.utils import get_upload_folder

from demos.explaining.summary import human_label, model_choices
from demos.guards.refusals import whole_number
from demos.guards.uploads import upload_path
from demos.models import DemoModels
from demos.predict import DEFAULT_TOP_K, columns, predict_images, write_csv
from demos.serving.images import DECODED_SUFFIXES
from demos.tabs.common import refresh_when_opened, user_errors

TITLE = "Batch"
MAX_TOP_K = 10
MAX_IMAGES = 200  # about a minute of predictions on the 2-core CPU this demo targets
MAX_MEMBER_MB = 20  # as demos.app.MAX_FILE_SIZE caps one upload
MAX_ZIP_MB = 500  # the sum of a zip's declared (uncompressed) sizes
BYTES_PER_MB = 1_000_000


def too_many(count: int) -> gr.Error:
    return gr.Error(f"{count} images is more than the {MAX_IMAGES} this demo predicts at once: send fewer (or run "
                    "`python -m demos.predict` on your own machine, which has no cap).")  # fmt: skip


def zip_members(archive: Path, into: Path) -> list[tuple[str, Path]]:
    """(name in the zip, extracted file) of each image in `archive`, written under fresh names in `into`.

    Member names never become paths (no `../` escapes), and sizes are checked before anything is extracted.
    """
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = checked_members(zipped, Path(archive).name)
            extracted = []
            for index, member in enumerate(members):
                path = into / f"{index}{Path(member.filename).suffix.lower()}"
                path.write_bytes(zipped.read(member))
                extracted.append((member.filename, path))
            return extracted
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as err:
        raise gr.Error(f"{Path(archive).name} is not a readable zip file ({err}).") from err


def checked_members(zipped: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    """The zip's image members, refused when too many or too large by the sizes its directory declares."""
    members = [m for m in zipped.infolist() if not m.is_dir() and Path(m.filename).suffix.lower() in DECODED_SUFFIXES]
    if not members:
        raise gr.Error(f"{name} holds no images ({', '.join(sorted(DECODED_SUFFIXES))}).")
    if len(members) > MAX_IMAGES:
        raise too_many(len(members))
    largest, total = max(m.file_size for m in members), sum(m.file_size for m in members)
    if largest > MAX_MEMBER_MB * BYTES_PER_MB or total > MAX_ZIP_MB * BYTES_PER_MB:
        raise gr.Error(f"{name} unpacks to too much: at most {MAX_MEMBER_MB} MB an image and {MAX_ZIP_MB} MB in all.")
    return members


def named_uploads(payloads, into: Path) -> list[tuple[str, Path]]:
    """(shown name, file) for each uploaded image, or for each image of one uploaded zip."""
    paths = [Path(path) for path in map(upload_path, payloads or []) if path]
    if not paths:
        raise gr.Error("No files yet: upload images, or one zip of images.")
    zips = [path for path in paths if path.suffix.lower() == ".zip"]
    if zips and len(paths) > 1:
        raise gr.Error("Upload either images or one zip file, not both.")
    if zips:
        return zip_members(zips[0], into)
    if len(paths) > MAX_IMAGES:
        raise too_many(len(paths))
    return [(path.name, path) for path in paths]


def predict_batch(models: DemoModels, payloads, model_name: str, top_k) -> tuple[pd.DataFrame, str]:
    """(table of rows, path of the CSV) for the uploads through the chosen model."""
    checkpoint = models.get(model_name)
    k = DEFAULT_TOP_K if top_k is None else whole_number(top_k, "The number of labels per image", 1, MAX_TOP_K)
    header = columns(checkpoint, k)
    # A zip's images, gone once predicted; in Gradio's cache, which is swept, should the app die before that.
    with tempfile.TemporaryDirectory(prefix="batch-", dir=get_upload_folder()) as unpacked:
        rows = list(predict_images(checkpoint, named_uploads(payloads, Path(unpacked)), top_k=k))
    text = io.StringIO()
    write_csv(text, header, rows)
    # In the app's cache, which Gradio empties of day-old files (demos.app.DELETE_CACHE).
    csv_path = processing_utils.save_bytes_to_cache(text.getvalue().encode(), "predictions.csv", get_upload_folder())
    return shown_table(checkpoint, header, rows), csv_path


def shown_table(checkpoint, header: list[str], rows: list[dict]) -> pd.DataFrame:
    """The rows as the page shows them: the file, its answers as the Food and Bone age tabs write them, the error last
    (a long message there would otherwise push the answers off-screen).

    The CSV keeps the checkpoint's own labels and every decimal, for programs.
    """
    return pd.DataFrame(
        [{"file": row["file"], **shown_answers(checkpoint, header, row), "error": row["error"]} for row in rows]
    )


def shown_answers(checkpoint, header: list[str], row: dict) -> dict[str, str]:
    """{column: text} of one row's answers: "Apple pie 77%" a rank for a classifier; each output of a regressor in
    its unit, to one decimal. Empty texts for a file that could not be read."""
    if checkpoint.task.is_regression:
        unit = checkpoint.task.unit
        outputs = header[1:-2]  # between the file and the unit
        return {
            f"{name} ({unit})" if unit else name: "" if row.get(name) is None else f"{row[name]:.1f}"
            for name in outputs
        }
    answers = {}
    for rank in range(1, (len(header) - 2) // 2 + 1):  # label and confidence columns between the file and the error
        label = row.get(f"label_{rank}")
        answers[f"top {rank}"] = "" if label is None else f"{human_label(label)} {row[f'confidence_{rank}']:.0%}"
    return answers


def render(models: DemoModels) -> None:
    gr.Markdown(
        f"Predict many images at once: upload up to {MAX_IMAGES} images, or one zip of them, and download the "
        "answers as a CSV (one row per image; a file that is not an image gets its error in its row). The table "
        "shows labels and confidences as the Food tab does (Apple pie 77%); the CSV keeps the model's own "
        "labels (`apple_pie`) and full-precision confidences (0.771234), for programs to read."
    )
    with gr.Row():
        with gr.Column():
            uploads = gr.File(
                label="Images, or one zip of images", file_count="multiple",
                file_types=[*sorted(DECODED_SUFFIXES), ".zip"], elem_id="batch-files",
            )  # fmt: skip
            model_name = gr.Dropdown(
                model_choices(models), value=models.names()[0], label="Model", elem_id="batch-model"
            )
            top_k = gr.Slider(1, MAX_TOP_K, value=DEFAULT_TOP_K, step=1, label="Labels per image (classifiers)")
            button = gr.Button("Predict all", variant="primary")
        with gr.Column():
            csv_file = gr.File(label="predictions.csv", interactive=False, elem_id="batch-csv")
    table = gr.Dataframe(label="Predictions", interactive=False, wrap=True, elem_id="batch-table")

    @user_errors
    def batch_predict(payloads, name, k, progress=gr.Progress(track_tqdm=True)):  # the bar follows tqdm's
        return predict_batch(models, payloads, name, k)

    refresh_when_opened(model_name, lambda: model_choices(models))
    button.click(
        batch_predict,
        inputs=[uploads, model_name, top_k],
        outputs=[table, csv_file],
        api_name="batch_predict",
        preprocess=False,
    )
