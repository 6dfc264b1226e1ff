"""The one loader: folders, aliases, the offline default backbone, and its failure paths."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data as skimage_data
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

from hub import CheckpointError, Task, TaskKind, is_timm, load_checkpoint
from hub.__main__ import main as hub_cli
from tests.tiny_checkpoints import LABELS

REPO = Path(__file__).resolve().parent.parent
# A hub id that cannot be fetched must fail without huggingface_hub's retries (~20 s). The bound is generous so that a
# loaded machine does not fail the test; the figure is a requirement, not a benchmark.
FAIL_FAST_S = 15
IMAGENET_CATS = {"tabby, tabby cat", "tiger cat", "Persian cat", "Siamese cat, Siamese", "Egyptian cat"}


@pytest.mark.parametrize("architecture", ["vit", "resnet", "timm"])
def test_folder_load_gives_model_processor_and_task(tiny_checkpoints, architecture, photo):
    classifier = load_checkpoint(str(tiny_checkpoints[(architecture, "classification")]))
    assert classifier.task.kind == "classification"
    assert classifier.task.labels == LABELS
    assert not classifier.model.training
    regressor = load_checkpoint(str(tiny_checkpoints[(architecture, "regression")]))
    assert regressor.task.is_regression
    assert (regressor.task.target, regressor.task.unit) == ("bone age", "months")
    inputs = regressor.processor(photo, return_tensors="pt")
    assert regressor.model(**inputs).logits.shape == (1, 1)


@pytest.mark.parametrize("architecture", ["vit", "resnet", "timm"])
def test_is_timm_answers_for_a_loaded_checkpoint_and_for_a_raw_config(tiny_checkpoints, architecture):
    folder = tiny_checkpoints[(architecture, "classification")]
    raw = json.loads((folder / "config.json").read_text())
    raw.pop("model_type", None)  # as in timm/* hub repos, which timm's save_for_hf writes without one
    expected = architecture == "timm"
    assert (load_checkpoint(str(folder)).is_timm, is_timm(raw)) == (expected, expected)


def test_a_task_kind_is_one_of_the_vocabulary_and_reads_as_its_plain_word():
    task = Task("regression", target="bone age")
    assert task.kind is TaskKind.REGRESSION and task.is_regression and not task.is_classification
    assert json.dumps({"task": task.kind}) == '{"task": "regression"}'  # eval_results.json, training_config.json
    with pytest.raises(ValueError, match="ranking"):
        Task("ranking")


def test_config_overrides_give_the_loaded_model_a_head_of_another_size():
    base = load_checkpoint("food10")  # the shipped classifier: ten classes, and a card with metrics
    head = {"num_labels": 2, "id2label": {0: "red", 1: "blue"}, "label2id": {"red": 0, "blue": 1}}
    retargeted = load_checkpoint("food10", config_overrides={**head, "target_note": "a key no config class knows"})
    assert retargeted.task.labels == ("red", "blue")
    assert retargeted.model(torch.zeros(1, 3, 64, 64)).logits.shape == (1, 2)
    assert retargeted.model.config.target_note == "a key no config class knows"
    backbone = "timm_model.conv_stem.weight"
    assert torch.equal(retargeted.model.state_dict()[backbone], base.model.state_dict()[backbone])
    assert base.metrics and retargeted.metrics == {}  # the card's figures describe the old head


def test_default_alias_recognises_a_cat():
    checkpoint = load_checkpoint("efficientnet-lite0")
    assert len(checkpoint.task.labels) == 1000
    cat = Image.fromarray(skimage_data.chelsea())
    with torch.no_grad():
        logits = checkpoint.model(**checkpoint.processor(cat, return_tensors="pt")).logits[0]
    top5 = {checkpoint.task.labels[i] for i in logits.topk(5).indices.tolist()}
    assert top5 & IMAGENET_CATS, top5


def test_hub_default_command_writes_a_folder_plain_transformers_loads(tmp_path, capsys):
    out = tmp_path / "lite0"
    hub_cli(["default", "--out", str(out)])  # `python -m hub default`'s main, in this process (its imports are here)
    assert capsys.readouterr().out == f"Wrote efficientnet-lite0 (timm tf_efficientnet layout) to {out}\n"
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    model = AutoModelForImageClassification.from_pretrained(out)
    assert type(model).__name__ == "TimmWrapperForImageClassification"
    assert AutoImageProcessor.from_pretrained(out) is not None
    predictions = pipeline("image-classification", model=str(out))(Image.fromarray(skimage_data.chelsea()))
    assert predictions[0]["label"] in IMAGENET_CATS


def test_offline_hub_id_fails_fast_with_a_way_out():
    start = time.monotonic()
    with pytest.raises(CheckpointError) as error:
        load_checkpoint("someone/not-cached-model")
    assert time.monotonic() - start < FAIL_FAST_S
    message = str(error.value)
    assert "someone/not-cached-model" in message and "folder" in message


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_hub_fails_fast_without_offline_flag(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
        "HF_HOME": str(tmp_path),
    }
    code = (
        "import time\nfrom hub import CheckpointError, load_checkpoint\nstart = time.monotonic()\n"
        "try:\n    load_checkpoint('someone/not-cached-model')\n"
        "except CheckpointError:\n    print(time.monotonic() - start)\n    raise\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert float(result.stdout) < FAIL_FAST_S  # timed inside the process: Python start-up and imports are not the hub's
    assert "Could not reach the Hugging Face hub" in result.stderr
    assert "someone/not-cached-model" in result.stderr


def test_pickled_weights_are_refused_unless_allowed(tiny_checkpoints, tmp_path):
    model = AutoModelForImageClassification.from_pretrained(tiny_checkpoints[("vit", "classification")])
    model.save_pretrained(tmp_path, safe_serialization=False)
    AutoImageProcessor.from_pretrained(tiny_checkpoints[("vit", "classification")]).save_pretrained(tmp_path)
    if (tmp_path / "model.safetensors").exists():  # transformers may ignore safe_serialization=False
        (tmp_path / "model.safetensors").unlink()
        torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled weights"):
        load_checkpoint(str(tmp_path))
    assert load_checkpoint(str(tmp_path), allow_pickle=True).task.labels == LABELS


@pytest.mark.parametrize("ref", ["./no/such/folder", "/tmp"])
def test_a_path_that_is_not_a_checkpoint_is_named(ref):
    with pytest.raises(CheckpointError, match="not a checkpoint folder|no config.json"):
        load_checkpoint(ref)
