"""The Train tab through its endpoints (gradio_client): a zip in, a run followed to its end, the downloaded checkpoint
predicting what the demo predicts; two runs compared; Cancel ending the process; the tab off where not allowed."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import gradio as gr
import pytest
import torch
from gradio_client import Client, handle_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

from demos.models import DemoModels, load_model
from demos.serving.images import ImageDecodeError, load_image
from demos.serving.inference import top_k
from demos.tabs import train
from demos.training.choices import TrainOptions
from demos.training.estimate import FIXED_S, MeasuredSteps, estimate, measure, run_seconds
from demos.training.jobs import JobRunner
from demos.training.settings import TrainingSettings, training_access
from hub.contract import TrainingMode
from tests.serving import free_port, raw_call
from tests.test_train_tab_jobs import TINY, draw_images, group_is_gone, tiny_base, wait_for  # noqa: F401

HEAD_ONLY, FULL = "train only a new head (fast)", "fine-tune everything"
CLASSES = ("red", "blue", "green")
OUTPUTS = ("summary", "progress", "loss_plot", "metric_plot", "command", "status", "log", "metrics", "plot",
           "per_class", "card", "download", "comparison")  # fmt: skip


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    """A zip of 3 class folders (5 noisy colour squares each, no validation/), and the image files."""
    folder = tmp_path_factory.mktemp("photos")
    drawn = draw_images(folder / "colours", 5, CLASSES)
    archive = folder / "colours.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, paths in drawn.items():
            for path in paths:
                zipped.write(path, f"colours/train/{name}/{path.name}")
    return archive, drawn


@pytest.fixture(scope="module")
def served(tiny_base, tmp_path_factory):
    settings = TrainingSettings(
        runner=JobRunner(tmp_path_factory.mktemp("jobs")), base_models=(str(tiny_base),), extra_options=TINY
    )
    with gr.Blocks() as demo:
        train.render(DemoModels(checkpoints={}, training=settings))
    demo.queue()
    demo.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo, settings
    finally:
        demo.close()


def train_inputs(archive, base, mode: str, **numbers) -> list:
    """/train's (and /check_training_data's) inputs for a zip of class folders."""
    rows = [""] * train.MAX_CLASSES + [None] * train.MAX_CLASSES  # names, then files, of the per-class rows
    choices = {"epochs": 1, "head_epochs": 2, "learning_rate": 1e-3, "head_learning_rate": 3e-3} | numbers
    return [
        train.SOURCES[1], handle_file(archive), None, None, train.NO_CONDITION, base, mode, choices["epochs"],
        choices["head_epochs"], choices["learning_rate"], choices["head_learning_rate"], train.OWN_SIZE, True, *rows,
    ]  # fmt: skip


def run(client: Client, inputs: list) -> dict:
    """The last update of /train, by output name."""
    return dict(zip(OUTPUTS, client.predict(*inputs, api_name="/train"), strict=True))


def test_a_run_from_a_zip_gives_metrics_a_card_and_a_checkpoint_that_predicts_as_the_demo(served, photos, tmp_path):
    demo, settings = served
    archive, drawn = photos
    client = Client(demo.local_url, verbose=False)
    base = settings.base_models[0]
    summary = client.predict(*train_inputs(archive, base, HEAD_ONLY), api_name="/check_training_data")
    assert "3 classes: 15 images** (train 12, validation 3)" in summary and "20% of each class" in summary
    assert "Estimated time: **about" in summary

    result = run(client, train_inputs(archive, base, HEAD_ONLY))
    assert result["status"].startswith("**Done**"), result
    assert "accuracy" in result["metrics"] and "1.0" in result["progress"]
    assert {row[0] for row in result["per_class"]["data"]} == set(CLASSES)
    assert Path(result["plot"]).stat().st_size > 0 and "## Evaluation" in result["card"]
    assert result["command"].startswith(f"python -m train --model {base} --dataset data --output-dir run")
    assert "--mode feature-extraction --head-epochs 2" in result["command"]
    assert len(result["loss_plot"]["value"]["data"]) > 0 and len(result["metric_plot"]["value"]["data"]) == 2

    with zipfile.ZipFile(result["download"]) as zipped:
        names = zipped.namelist()
        zipped.extractall(tmp_path)
    assert not any("checkpoint-" in name or "/runs/" in name for name in names)
    folder = tmp_path / Path(names[0]).parts[0]
    # Plain transformers, without this project, and the demo's own prediction path (the Food tab's top_k): the same.
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    served_model = load_model(str(folder))
    for path in (drawn["red"][0], drawn["green"][4]):
        with torch.no_grad():
            logits = model(**processor(images=load_image(path), return_tensors="pt")).logits[0]
        plain = dict(zip(model.config.id2label.values(), logits.softmax(-1).tolist(), strict=True))
        demo_scores = top_k(served_model, load_image(path), k=3)
        assert demo_scores == pytest.approx({label: plain[label] for label in demo_scores}, abs=1e-5)
        # "Try it" answers with the run's model, served in this session, as the downloaded one answers.
        tried = client.predict(handle_file(path), api_name="/try_trained")
        assert {c["label"]: c["confidence"] for c in tried["confidences"]} == pytest.approx(demo_scores, abs=1e-5)

    # A second run on the same data joins the first in the plots and the comparison table.
    second = run(client, train_inputs(archive, base, FULL))
    assert second["status"].startswith("**Done**"), second
    assert [row[0] for row in second["comparison"]["data"]] == [f"run 1: {HEAD_ONLY}", f"run 2: {FULL}"]
    plotted = second["loss_plot"]["value"]
    runs = {row[plotted["columns"].index("run")] for row in plotted["data"]}
    assert runs == {f"run 1: {HEAD_ONLY}", f"run 2: {FULL}"}


def test_cancel_ends_the_training_process_and_the_app_keeps_answering(served, photos):
    demo, settings = served
    archive, _ = photos
    client = Client(demo.local_url, verbose=False)
    base = settings.base_models[0]
    running = client.submit(*train_inputs(archive, base, FULL, epochs=100), api_name="/train")
    wait_for(
        lambda: settings.runner.running and any(e["event"] == "log" for e in settings.runner.running.events()),
        what="the run's first step",
    )
    job = settings.runner.running
    assert client.predict(api_name="/cancel_training") == "The run was cancelled."
    assert group_is_gone(job.process.pid) and job.state.value == "cancelled"
    assert settings.runner.running is None
    summary = client.predict(*train_inputs(archive, base, HEAD_ONLY), api_name="/check_training_data")
    assert "15 images" in summary  # the app answers
    end = time.monotonic() + 10
    while not running.done() and time.monotonic() < end:
        time.sleep(0.2)
    assert running.done()


def test_only_uploaded_files_are_read(served, tmp_path):
    """Whatever the payload's shape, a server file is refused: by Gradio's FileData check through the API, and by the
    tab's own check of every path (demos/guards/uploads.py) for payloads that skip it (DESIGN.md)."""
    demo, settings = served
    inputs = [train.SOURCES[1], {"path": "/etc/hostname"}, None, None,
              train.NO_CONDITION, settings.base_models[0], HEAD_ONLY, 1, 1, 1e-3, 3e-3, train.OWN_SIZE, True,
              *[""] * train.MAX_CLASSES, *[None] * train.MAX_CLASSES]  # fmt: skip
    event, _ = raw_call(demo.local_url, "train", inputs)
    assert event == "error"
    for given in (
        train.DataInputs(train.SOURCES[1], class_zip={"path": "/etc/hostname"}),
        train.DataInputs(
            train.SOURCES[0], names=("a", "b"), files=([{"path": "/etc/hostname"}], []), snapshots=([], [])
        ),
        train.DataInputs(train.SOURCES[0], names=("a",), files=([],), snapshots=(["/etc/hostname"],)),  # a state
    ):
        with pytest.raises(ImageDecodeError, match="not a file uploaded to this demo"):
            train.prepare_data(settings, given, tmp_path)


def test_the_tab_is_off_on_a_shared_or_exposed_server_unless_allowed():
    assert not training_access(share=True, host="127.0.0.1", allow_training=False).allowed
    exposed = training_access(share=False, host="0.0.0.0", allow_training=False)
    assert not exposed.allowed and "--allow-training" in exposed.reason and "0.0.0.0" in exposed.reason
    assert training_access(share=True, host="0.0.0.0", allow_training=True).allowed
    assert training_access(share=False, host="127.0.0.1", allow_training=False).allowed
    assert training_access(share=False, host="localhost", allow_training=False).allowed

    settings = TrainingSettings(access=training_access(share=True, host="127.0.0.1", allow_training=False))
    with gr.Blocks() as demo:
        train.render(DemoModels(checkpoints={}, training=settings))
    assert not [fn for fn in demo.fns.values() if fn.api_name in ("train", "check_training_data")]
    texts = [block.value for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    assert any("public link" in text and "--allow-training" in text for text in texts)


@pytest.mark.parametrize(
    ("flags", "allowed"), [([], True), (["--share"], False), (["--share", "--allow-training"], True)]
)
def test_python_m_demos_turns_training_on_only_where_its_flags_allow(monkeypatch, flags, allowed):
    import demos.__main__
    import demos.app

    built = {}
    monkeypatch.setattr(demos.app, "build_app", lambda **kwargs: built.update(kwargs) or "the app")
    monkeypatch.setattr(demos.app, "launch", lambda demo, **kwargs: built.update(launched=kwargs))
    monkeypatch.setattr(demos.app, "share_cores_between_requests", lambda: None)  # keep this process's threads
    demos.__main__.main([*flags, "--max-training-images", "50", "--no-corrections"])
    assert built["training"].access.allowed is allowed and built["training"].limits.max_images == 50
    assert built["launched"]["training"] is allowed  # the larger upload cap for training zips only where it trains


def test_the_tab_is_off_saying_what_to_install_where_training_cannot_run(monkeypatch):
    import demos.training.settings

    real = demos.training.settings.importlib.util.find_spec
    monkeypatch.setattr(
        demos.training.settings.importlib.util, "find_spec", lambda name: None if name == "datasets" else real(name)
    )
    access = training_access(share=False, host="127.0.0.1", allow_training=True)
    assert not access.allowed and "datasets" in access.reason and "pip install '.[train]'" in access.reason


def test_the_estimate_counts_measured_steps_and_grows_with_the_images_and_epochs(tiny_base):  # noqa: F811
    head_only = TrainOptions(base_model=str(tiny_base), mode=TrainingMode.FEATURE_EXTRACTION)
    measured = measure(head_only)
    assert measured.forward_s > 0 and measured.backward_s is None, "head only: no backward pass to measure"
    steps = MeasuredSteps(forward_s=0.8, backward_s=2.4)  # 0.1 s an image forward, 0.3 s forward and backward
    # features of 100 + 20 images once, and the 20 evaluated twice more at the end
    assert run_seconds(head_only, steps, 100, 20) == pytest.approx(FIXED_S + 120 * 0.1 + 2 * 20 * 0.1)
    full = TrainOptions(base_model=str(tiny_base), mode=TrainingMode.FULL, epochs=3)
    assert run_seconds(full, steps, 100, 20) == pytest.approx(FIXED_S + 3 * (100 * 0.3 + 20 * 0.1) + 2 * 20 * 0.1)
    assert "Estimated time: **about" in estimate(full, 100, 20).describe()
