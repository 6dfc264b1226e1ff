"""python -m train.average: the averaged weights against a hand computation on tiny checkpoints, each ingredient on
the scale its run learnt (a folded temperature taken out, a checkpoint-*'s EMA, a regressor's normalisation folded
in), mismatches refused, and the output a checkpoint anyone loads whose record and card say how it was made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

from hub.cards import rerunnable_path
from hub.contract import TrainingRecord
from tests.test_evaluate import draw_fruit
from tests.test_train import draw_ages
from tests.tiny_checkpoints import LABELS, build_tiny_checkpoint
from train import calibration, data, heads
from train.average import main
from train.regression import TargetScaler, unfold_from_head

FAST = ["--batch-size", "4", "--workers", "0"]
TERMS = "Made-up test images, free for any use."


@pytest.fixture(scope="module")
def fruit(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fruit")
    for split, count in (("train", 2), ("validation", 4)):
        draw_fruit(root, split, dict.fromkeys(LABELS, count))
    return root


@pytest.fixture(scope="module")
def ages(tmp_path_factory) -> Path:
    return draw_ages(tmp_path_factory.mktemp("ages"), {"train": 10, "validation": 4})


def drawn_weights(out: Path, seed: int, *, architecture: str = "timm", task: str = "classification"):
    """A tiny checkpoint in `out` whose parameters are moved by noise drawn from `seed`; returns its model."""
    build_tiny_checkpoint(out, architecture, task)
    model = AutoModelForImageClassification.from_pretrained(out)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(out)
    return model


def record_run(folder: Path, dataset: Path, seed: int, *, task: str = "classification", temperature=None) -> None:
    """The training_config.json a run writes, its calibration recording `temperature`."""
    TrainingRecord(
        base_model="efficientnet-lite0",
        dataset=data.dataset_name(str(dataset)),
        task=task,
        mode="full",
        command=f"python -m train --seed {seed}",
        target_column="label" if task == "classification" else "boneage",
        data_terms=TERMS,
        calibration={"temperature": temperature} if temperature else None,
    ).write(folder)


def saved_run(out: Path, dataset: Path, seed: int, *, temperature=None) -> dict[str, torch.Tensor]:
    """A classifier as a run saves it, `temperature` folded into its head; returns the weights it learnt (unfolded)."""
    model = drawn_weights(out, seed)
    learnt = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    if temperature:
        calibration.fold_temperature(heads.head_layer(model), temperature)
        model.save_pretrained(out)
    record_run(out, dataset, seed, temperature=temperature)
    return learnt


def trainer_checkpoint(run: Path, ema, *, task: str = "classification") -> Path:
    """A Trainer checkpoint-* of `run`: its own (live) weights drawn apart, and `ema`'s weights as ema.safetensors."""
    folder = run / "checkpoint-6"
    drawn_weights(folder, seed=99, task=task)
    save_file({name: tensor.contiguous() for name, tensor in ema.state_dict().items()}, str(folder / "ema.safetensors"))
    return folder


def assert_average_of(out: Path, states: list[dict[str, torch.Tensor]]) -> None:
    """The checkpoint in `out` holds the mean of `states`' floating-point tensors (its head divided by the temperature
    of its own calibration) and the first's integer buffers."""
    model = AutoModelForImageClassification.from_pretrained(out)
    temperature = read_json(out / "training_config.json")["calibration"]["temperature"]
    head = heads.head_layer(model)
    head_names = {name for name, tensor in model.named_parameters() if tensor is head.weight or tensor is head.bias}
    assert len(head_names) == 2, "the head's weights are among those compared"
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():  # BatchNorm's step counts
            assert torch.equal(tensor, states[0][name]), name
            continue
        mean = sum(state[name] for state in states) / len(states)
        assert torch.allclose(tensor, mean / (temperature if name in head_names else 1.0), atol=1e-6), name


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def soup(fruit, tmp_path_factory):
    """Three classifiers, two with a folded temperature (0.5 and 2), averaged: (folder, their learnt weights, refs)."""
    root = tmp_path_factory.mktemp("soup")
    refs = [root / "a", root / "b", root / "c"]
    learnt = [saved_run(refs[0], fruit, 1, temperature=0.5), saved_run(refs[1], fruit, 2, temperature=2.0)]
    learnt.append(saved_run(refs[2], fruit, 3))
    out = root / "soup"
    assert main([*map(str, refs), "--dataset", str(fruit), "--output-dir", str(out), *FAST]) == 0
    return out, learnt, refs


def test_the_average_is_the_mean_of_the_learnt_weights_with_each_temperature_taken_out(soup):
    out, learnt, _ = soup
    assert_average_of(out, learnt)


def test_the_average_loads_with_plain_transformers_and_its_record_and_card_say_how_it_was_made(soup, fruit):
    out, _, refs = soup
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    inputs = AutoImageProcessor.from_pretrained(out)(torch.zeros(3, 40, 48), return_tensors="pt")
    with torch.no_grad():
        assert model(**inputs).logits.shape == (1, len(LABELS))
    assert model.config.target_column == "label" and model.config.ood_threshold > 0

    record = TrainingRecord.read(out)
    assert record.averaged_from == tuple(rerunnable_path(str(ref)) for ref in refs)
    assert record.weights == "average" and record.data_terms == TERMS
    assert record.command.startswith("python -m train.average ") and "--output-dir" in record.command
    assert record.earlier_commands == (
        "python -m train --seed 1",
        "python -m train --seed 2",
        "python -m train --seed 3",
    )
    results = read_json(out / "eval_results.json")
    assert results["num_examples"] == 4 * len(LABELS) and results["weights"] == "average"
    assert "ece_after" in results["calibration"] and (out / "confusion_matrix.png").is_file()

    card = (out / "README.md").read_text()
    assert "Weights averaged from " + ", ".join(f"`{path}`" for path in record.averaged_from) in card
    assert card.index("python -m train --seed 1") < card.index("python -m train --seed 3") < card.index(record.command)
    assert "commands of the runs that trained them, oldest first" in card and TERMS in card


def test_a_trainer_checkpoint_gives_its_ema_uncalibrated(fruit, tmp_path):
    run = tmp_path / "run"
    saved_run(run, fruit, 1, temperature=0.5)  # the run's calibration is its saved head's, not its checkpoint's
    ema = drawn_weights(tmp_path / "ema", 4)
    other = saved_run(tmp_path / "other", fruit, 5)
    out = tmp_path / "soup"
    argv = [str(trainer_checkpoint(run, ema)), str(tmp_path / "other"), "--dataset", str(fruit), "--output-dir"]
    assert main([*argv, str(out), *FAST]) == 0

    assert_average_of(out, [ema.state_dict(), other])
    assert read_json(out / "training_config.json")["earlier_commands"] == [
        "python -m train --seed 1",
        "python -m train --seed 5",
    ]


def test_a_regressors_trainer_checkpoint_is_brought_from_normalised_targets_to_months(ages, tmp_path):
    run = tmp_path / "run"
    saved = drawn_weights(run, 1, task="regression")
    record_run(run, ages, 1, task="regression")
    # The run's EMA equal to its saved weights, but on the scale it trained on: the average must be those weights.
    ema = drawn_weights(tmp_path / "ema", 1, task="regression")
    train = data.load_split(str(ages), "train")
    unfold_from_head(heads.head_layer(ema), TargetScaler.fit(train["boneage"]))
    out = tmp_path / "soup"
    argv = [
        str(run),
        str(trainer_checkpoint(run, ema, task="regression")),
        "--dataset",
        str(ages),
        "--output-dir",
        str(out),
        *FAST,
    ]
    assert main(argv) == 0

    averaged_model = AutoModelForImageClassification.from_pretrained(out)
    for name, tensor in averaged_model.state_dict().items():
        assert torch.allclose(tensor, saved.state_dict()[name], atol=1e-4), name
    results = read_json(out / "eval_results.json")
    assert results["task"] == "regression" and "calibration" not in results and results["metrics"]["mae"] >= 0


def test_checkpoints_of_other_labels_or_architectures_are_refused_naming_what_differs(fruit, tmp_path, capsys):
    saved_run(tmp_path / "a", fruit, 1)
    saved_run(tmp_path / "other-labels", fruit, 2)
    config = read_json(tmp_path / "other-labels" / "config.json")
    config["label_names"] = ["apple", "banana", "date"]
    (tmp_path / "other-labels" / "config.json").write_text(json.dumps(config))
    build_tiny_checkpoint(tmp_path / "vit", "vit", "classification")
    record_run(tmp_path / "vit", fruit, 3)

    def refusal(other: str) -> str:
        argv = [str(tmp_path / "a"), str(tmp_path / other), "--dataset", str(fruit)]
        assert main([*argv, "--output-dir", str(tmp_path / "out"), *FAST]) == 2
        return capsys.readouterr().err

    labels = refusal("other-labels")
    assert "cannot be averaged" in labels and "label_names" in labels and "'date'" in labels
    architecture = refusal("vit")
    assert "cannot be averaged" in architecture and "architecture" in architecture and "model_type" in architecture
    assert not (tmp_path / "out").exists(), "nothing is written for a refused average"


def test_a_folder_without_a_training_record_or_from_other_data_is_refused(fruit, ages, tmp_path, capsys):
    saved_run(tmp_path / "a", fruit, 1)
    shutil.copytree(tmp_path / "a", tmp_path / "unrecorded")
    (tmp_path / "unrecorded" / "training_config.json").unlink()
    argv = [str(tmp_path / "a"), str(tmp_path / "unrecorded"), "--output-dir", str(tmp_path / "out"), *FAST]
    assert main([*argv, "--dataset", str(fruit)]) == 2
    assert "has no training_config.json" in capsys.readouterr().err
    assert main([*argv, "--dataset", str(ages)]) == 2
    assert f"trained on '{fruit.name}', not on '{ages.name}'" in capsys.readouterr().err
