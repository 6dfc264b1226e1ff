"""python -m train.evaluate: its figures against a hand computation with plain transformers, on tiny fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

from hub.cards import write_model_card
from hub.checkpoint import card_metrics
from tests.test_cards import make_run_folder
from tests.test_train import draw_ages
from tests.tiny_checkpoints import LABELS, build_tiny_checkpoint
from train.evaluate import main

FAST = ["--batch-size", "4", "--workers", "0"]


def draw_fruit(root: Path, split: str, counts: dict[str, int]) -> Path:
    """An imagefolder split with class folders named after (some of) the tiny checkpoint's labels."""
    rng = np.random.default_rng(2)
    for name, count in counts.items():
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def plain_logits(checkpoint: Path, files: list[Path]) -> torch.Tensor:
    """Logits as anyone computes them without this project: AutoModel + the checkpoint's processor."""
    model = AutoModelForImageClassification.from_pretrained(checkpoint).eval()
    processor = AutoImageProcessor.from_pretrained(checkpoint)
    with torch.no_grad():
        inputs = processor(images=[Image.open(f).convert("RGB") for f in files], return_tensors="pt")
        return model(**inputs).logits


def conditioned_regressor(out: Path) -> Path:
    """A tiny ResNet with one output per sex, recording the column and value -> output mapping as training does."""
    build_tiny_checkpoint(out, "resnet", "regression")
    config = json.loads((out / "config.json").read_text())
    names = ["bone age (female)", "bone age (male)"]
    config.update(id2label=dict(enumerate(names)), label2id={name: i for i, name in enumerate(names)},
                  condition_column="male", condition_outputs={"false": 0, "true": 1})  # fmt: skip
    (out / "config.json").write_text(json.dumps(config))
    model = AutoModelForImageClassification.from_pretrained(out, ignore_mismatched_sizes=True)
    model.save_pretrained(out)
    return out


def test_classification_accuracy_equals_hand_count_with_labels_matched_by_name(tiny_checkpoints, tmp_path, capsys):
    # Two of the model's three classes: the split numbers them 0 and 1, the model apple=0 and cherry=2.
    data = draw_fruit(tmp_path / "fruit", "test", {"apple": 3, "cherry": 4})
    checkpoint = tiny_checkpoints[("vit", "classification")]
    out = tmp_path / "eval"
    assert main([str(checkpoint), "--dataset", str(data), "--output-dir", str(out), *FAST]) == 0

    files = sorted((data / "test").rglob("*.png"))
    truth = torch.tensor([LABELS.index(f.parent.name) for f in files])
    expected = (plain_logits(checkpoint, files).argmax(-1) == truth).float().mean().item()
    results = json.loads((out / "eval_results_test.json").read_text())
    assert results["split"] == "test" and results["num_examples"] == 7
    assert results["metrics"]["accuracy"] == pytest.approx(expected)
    assert capsys.readouterr().out.splitlines()[-1] == f"accuracy={expected:.4f}"
    matrix = json.loads((out / "confusion_matrix_test.json").read_text())
    assert matrix["labels"] == list(LABELS) and np.sum(matrix["matrix"]) == 7
    assert (out / "confusion_matrix_test.png").stat().st_size > 0


def test_conditioned_regression_mae_uses_each_rows_own_output(tmp_path, capsys):
    checkpoint = conditioned_regressor(tmp_path / "by-sex")
    data = draw_ages(tmp_path / "ages", {"test": 6})
    out = tmp_path / "eval"
    argv = [str(checkpoint), "--dataset", str(data), "--target-column", "boneage", "--output-dir", str(out), *FAST]
    assert main(argv) == 0

    rows = [line.split(",") for line in (data / "test" / "metadata.csv").read_text().split()[1:]]
    logits = plain_logits(checkpoint, [data / "test" / name for name, _, _ in rows])
    own = torch.stack([logits[i, int(male == "True")] for i, (_, _, male) in enumerate(rows)])
    expected = (own - torch.tensor([float(age) for _, age, _ in rows])).abs().mean().item()
    results = json.loads((out / "eval_results_test.json").read_text())
    assert results["metrics"]["mae"] == pytest.approx(expected, rel=1e-5)
    assert capsys.readouterr().out.splitlines()[-1] == f"mae={expected:.2f}"
    assert (out / "predicted_vs_true_test.png").stat().st_size > 0


def test_update_card_puts_test_next_to_validation_and_keeps_validation_for_the_demo(tmp_path, capsys):
    run = make_run_folder(tmp_path / "run", "resnet", "regression")
    write_model_card(run)
    (run / "predicted_vs_true.png").write_bytes(b"validation plot")
    data = draw_ages(tmp_path / "ages", {"test": 4})
    assert main([str(run), "--dataset", str(data), "--update-card", *FAST]) == 0
    assert main([str(run), "--dataset", str(data), "--update-card", *FAST]) == 0  # again: replaced, not doubled

    mae = json.loads((run / "eval_results_test.json").read_text())["metrics"]["mae"]
    card = ModelCard.load(run / "README.md")
    by_split = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert by_split[("validation", "mae")] == 11.5 and by_split[("test", "mae")] == pytest.approx(mae, abs=1e-4)
    assert len(card.data.eval_results) == 6  # MAE, RMSE, R² for each split
    assert card.text.count("## Evaluation on the `test` split of `ages`") == 1
    assert card.text.index("`test` split") < card.text.index("## How to use")
    assert card_metrics(run)["mae"] == 11.5, "the demo's uncertainty stays the validation MAE"
    assert (run / "predicted_vs_true.png").read_bytes() == b"validation plot"
    assert (run / "predicted_vs_true_test.png").stat().st_size > 0


def test_bad_data_and_a_hub_card_get_clear_errors(tiny_checkpoints, tmp_path, capsys):
    checkpoint = str(tiny_checkpoints[("vit", "classification")])
    data = draw_fruit(tmp_path / "fruit", "test", {"apple": 2, "durian": 2})
    assert main([checkpoint, "--dataset", str(data), *FAST]) == 2
    assert "classes the checkpoint does not know: durian" in capsys.readouterr().err
    assert main([checkpoint, "--dataset", str(data), "--split", "validation", *FAST]) == 2
    assert "no split 'validation'" in capsys.readouterr().err
    broken = draw_fruit(tmp_path / "broken", "test", {"apple": 2, "banana": 1})
    (broken / "test" / "apple" / "0.png").write_bytes(b"not a png")
    assert main([checkpoint, "--dataset", str(broken), *FAST]) == 2
    assert "Unreadable image" in capsys.readouterr().err
    assert main(["alice/food10", "--dataset", str(data), "--update-card", *FAST]) == 2
    assert "python -m hub pull alice/food10" in capsys.readouterr().err


def test_a_missing_default_split_says_it_is_the_default(tiny_checkpoints, tmp_path, capsys):
    """../shared/data has train and validation only: `--split` left out asks for test, and the error says so."""
    checkpoint = str(tiny_checkpoints[("vit", "classification")])
    data = draw_fruit(draw_fruit(tmp_path / "fruit", "train", {"apple": 1}), "validation", {"apple": 2})
    assert main([checkpoint, "--dataset", str(data), *FAST]) == 2
    error = capsys.readouterr().err
    assert "no split 'test'; its splits are: train, validation." in error
    assert "--split defaults to test: name the split to measure." in error
    assert main([checkpoint, "--dataset", str(data), "--split", "test", *FAST]) == 2  # named: no word of a default
    assert "defaults" not in capsys.readouterr().err
