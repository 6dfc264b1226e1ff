"""Model cards built from a run folder: typed metadata the hub parses, metrics the loader reads, terms stated."""

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import hub.cards
from hub.cards import CardError, build_model_card, earlier_commands, hub_base_model, write_model_card
from hub.checkpoint import card_metrics, load_checkpoint
from tests.tiny_checkpoints import build_tiny_checkpoint

REPO = Path(__file__).resolve().parent.parent

FOOD_TERMS = "Food-101 (Foodspotting photos): scientific fair use only."
RSNA_TERMS = "RSNA Pediatric Bone Age challenge data: non-commercial research only."


def make_run_folder(out: Path, architecture: str, task: str, *, command: str = "python -m train") -> Path:
    """A tiny checkpoint plus the files a training run writes next to it (made-up but well-formed figures)."""
    build_tiny_checkpoint(out, architecture, task)
    if task == "classification":
        metrics = {
            "accuracy": 0.8125,
            "top5_accuracy": 1.0,
            "macro_f1": 0.79,
            "per_class_accuracy": {"apple": 0.9, "banana": 0.7, "cherry": 0.8},
        }
        extra = {
            "dataset": "food10",
            "mode": "two-stage",
            "data_terms": FOOD_TERMS,
            "base_model": "efficientnet-lite0",
            "augment": "random-crop",
            "target_column": "label",
        }
        plot = "confusion_matrix.png"
    else:
        metrics = {"mae": 11.5, "rmse": 15.25, "r2": 0.83}
        extra = {
            "dataset": "boneage",
            "mode": "full",
            "data_terms": RSNA_TERMS,
            "base_model": "google/vit-base-patch16-224",
            "loss": "huber",
            "target_column": "boneage",
            "target_unit": "months",
            "augment": "radiograph",  # the run records that it learnt from X-rays
        }
        plot = "predicted_vs_true.png"
    evaluation = {
        "task": task,
        "dataset": extra["dataset"],
        "split": "validation",
        "num_examples": 64,
        "metrics": metrics,
    }
    training = {
        "task": task,
        "epochs": 2,
        "learning_rate": 0.001,
        "backbone_learning_rate": 0.0001,
        "batch_size": 8,
        "image_size": [32, 32],
        "seed": 0,
        "command": command,
        **extra,
    }
    (out / "eval_results.json").write_text(json.dumps(evaluation))
    (out / "training_config.json").write_text(json.dumps(training))
    (out / plot).write_bytes(b"\x89PNG\r\n\x1a\n")  # the card links the plot; its pixels do not matter here
    return out


def test_classification_card_metadata_parses_and_feeds_the_loader(tmp_path):
    run = make_run_folder(tmp_path / "run", "vit", "classification")
    card = ModelCard.load(write_model_card(run, repo_id="alice/food-vit"))
    data = card.data
    assert data.base_model == "timm/tf_efficientnet_lite0.in1k"
    assert data.pipeline_tag == "image-classification" and data.library_name == "transformers"
    assert data.datasets is None  # a local folder is no hub dataset id: it is named in the text only
    assert {r.dataset_split for r in data.eval_results} == {"validation"}
    assert card_metrics(run) == {"accuracy": 0.8125, "f1": 0.79, "top5_accuracy": 1.0}
    assert load_checkpoint(str(run)).metrics["accuracy"] == 0.8125
    assert FOOD_TERMS in card.text and "](confusion_matrix.png)" in card.text
    assert 'pipeline("image-classification", model="alice/food-vit")' in card.text
    assert "two-stage" in card.text and "| banana | 0.7 |" in card.text


def test_regression_card_says_unit_snippet_and_not_a_medical_device(tmp_path):
    run = make_run_folder(tmp_path / "run", "timm", "regression")
    card = ModelCard.load(write_model_card(run))
    assert card.data.library_name == "timm" and card.data.base_model == "google/vit-base-patch16-224"
    assert card_metrics(run) == {"mae": 11.5, "rmse": 15.25, "r2": 0.83}
    assert {r.metric_name for r in card.data.eval_results} >= {"MAE (months)", "RMSE (months)"}
    assert "model(**inputs).logits[:, 0]" in card.text and "not a medical device" in card.text
    assert RSNA_TERMS in card.text and "](predicted_vs_true.png)" in card.text
    assert card.data.license == "other"  # the data's terms restrict the weights too


def test_card_never_records_a_token(tmp_path, monkeypatch):
    fake = "hf_FakeTokenValue1234567890"
    monkeypatch.setenv("HF_TOKEN", fake)
    run = make_run_folder(tmp_path / "run", "resnet", "classification", command=f"python -m train --token {fake}")
    text = write_model_card(run).read_text()
    assert fake not in text and "python -m train --token" in text


def test_base_model_is_mapped_to_hub_ids(tmp_path):
    assert hub_base_model("efficientnet-lite1") == "timm/tf_efficientnet_lite1.in1k"
    assert hub_base_model("microsoft/resnet-50") == "microsoft/resnet-50"
    assert hub_base_model(str(tmp_path / "no" / "such" / "folder")) is None
    parent = make_run_folder(tmp_path / "parent", "vit", "classification")
    write_model_card(parent)
    assert hub_base_model(str(parent)) == "timm/tf_efficientnet_lite0.in1k"  # a local folder inherits its card's


def test_missing_run_files_are_named(tmp_path):
    folder = build_tiny_checkpoint(tmp_path / "bare", "vit", "classification")
    with pytest.raises(CardError, match="eval_results.json"):
        write_model_card(folder)


def test_no_plot_no_image_link(tmp_path):
    run = make_run_folder(tmp_path / "run", "vit", "classification")
    (run / "confusion_matrix.png").unlink()
    assert "confusion_matrix.png" not in write_model_card(run).read_text()


@pytest.mark.parametrize("architecture, task", [("vit", "classification"), ("timm", "regression")])
def test_the_cards_usage_snippet_runs(tmp_path, monkeypatch, capsys, photo, architecture, task):
    run = make_run_folder(tmp_path / "run", architecture, task)
    text = write_model_card(run).read_text()
    snippet = re.search(r"## How to use\n\n```python\n(.+?)\n```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    photo.save(tmp_path / ("photo.jpg" if task == "classification" else "image.png"))
    exec(snippet, {})
    printed = capsys.readouterr().out
    if task == "classification":
        assert "'label': 'apple'" in printed
        return
    # the processor snippet, then the pipeline, which gives the same number as the score (no sigmoid, no softmax)
    value, pipeline_score = re.fullmatch(
        r"bone age: (-?[\d.]+) months\n\[\{'label': '[^']+', 'score': (-?[\d.e-]+)\}\]\n", printed
    ).groups()
    assert float(pipeline_score) == pytest.approx(float(value), abs=0.05)


def test_a_run_that_continues_a_local_checkpoint_lists_every_command_that_made_it(tmp_path):
    first = make_run_folder(tmp_path / "first", "vit", "classification", command="python -m train --epochs 20")
    second = make_run_folder(tmp_path / "second", "vit", "classification", command=f"python -m train --model {first}")
    training = json.loads((second / "training_config.json").read_text())
    training["earlier_commands"] = earlier_commands(str(first))
    (second / "training_config.json").write_text(json.dumps(training))
    assert earlier_commands(str(second)) == ["python -m train --epochs 20", f"python -m train --model {first}"]
    assert earlier_commands("efficientnet-lite0") == [] and earlier_commands("org/model") == []

    text = write_model_card(second).read_text()
    assert text.index("python -m train --epochs 20") < text.index(f"python -m train --model {first}")
    assert "commands, oldest first" in text
    assert "commands, oldest first" not in write_model_card(first).read_text()


def record(run: Path, **changes) -> Path:
    """Change fields of the run's training_config.json (a field set to None is left out)."""
    training = json.loads((run / "training_config.json").read_text()) | changes
    (run / "training_config.json").write_text(json.dumps({k: v for k, v in training.items() if v is not None}))
    return run


def test_the_medical_note_follows_the_recorded_x_ray_augmentation_not_the_datasets_name(tmp_path):
    boneage_photos = record(make_run_folder(tmp_path / "photos", "timm", "regression"), augment="none")
    assert "not a medical device" not in write_model_card(boneage_photos).read_text()
    x_ray_classes = record(make_run_folder(tmp_path / "x-rays", "vit", "classification"), augment="radiograph")
    assert "not a medical device" in write_model_card(x_ray_classes).read_text()


def test_the_data_terms_are_the_recorded_ones_and_unrecorded_ones_are_said_to_be(tmp_path):
    run = record(make_run_folder(tmp_path / "run", "vit", "classification"), data_terms=None)  # dataset "food10"
    card = ModelCard.load(write_model_card(run))
    assert "Food-101" not in card.text and "terms were not recorded" in card.text
    assert card.data.license == "apache-2.0"


def test_a_training_config_that_is_no_record_is_named(tmp_path):
    run = record(make_run_folder(tmp_path / "run", "vit", "classification"), augment="sideways")
    with pytest.raises(CardError, match="training_config.json is not a training record"):
        write_model_card(run)


@pytest.mark.parametrize("name", ["food10", "boneage"])
def test_a_shipped_card_is_rebuilt_word_for_word_from_its_run_files(name, monkeypatch):
    """The shipped cards come from their own training records (data terms included), nothing known by name. The
    base model is the card's own: the local run it continued (runs/...) is not in the checkout."""
    card = REPO / "checkpoints" / name / "README.md"
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(hub.cards, "hub_base_model", lambda base: ModelCard.load(card).data.base_model)
    assert str(build_model_card(Path("checkpoints") / name)) == card.read_text()
