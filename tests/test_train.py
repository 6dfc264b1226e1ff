"""The training command on tiny random checkpoints and tiny image folders the tests draw themselves."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments

from hub.checkpoint import load_checkpoint, parameter_counts
from hub.preprocessing import image_spec
from train import heads, stages
from train.__main__ import main
from train.data import DataError, TaskData, load_splits, resolve_task
from train.model import build_model, head_config, prepare_for_device
from train.regression import TargetScaler, fold_into_head, unfold_from_head
from train.stages import uses_bf16

COLOURS = {"red": (210, 40, 40), "blue": (40, 40, 210)}
# Small batches, no worker processes and a log line every step: what every tiny run here shares.
TINY_RUN = {"batch_size": 4, "eval_batch_size": 8, "dataloader_workers": 0, "logging_steps": 1}


def train_argv(*, model, dataset, output_dir, **options) -> list[str]:
    """`python -m train`'s arguments for a tiny run of `model` on `dataset` into `output_dir`.

    Each option becomes its flag, after TINY_RUN's (an option of the same name replaces one of those): `epochs=1`
    is `--epochs 1`, `no_calibrate=True` is `--no-calibrate`, and `False` leaves the flag out.
    """
    argv = []
    for name, value in ({"model": model, "dataset": dataset, "output_dir": output_dir} | TINY_RUN | options).items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return argv


def draw_classes(root: Path, per_class: dict[str, int]) -> Path:
    """An imagefolder of noisy colour squares: one class folder per colour, for train and validation."""
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(rng.normal(colour, 30, size=(36, 44, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return root


def draw_ages(root: Path, per_split: dict[str, int]) -> Path:
    """An imagefolder of grey 'X-rays' whose brightness encodes the target, with metadata.csv."""
    rng = np.random.default_rng(1)
    for split, count in per_split.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        rows = ["file_name,boneage,male"]
        for i in range(count):
            months = int(rng.integers(10, 220))
            Image.fromarray(np.full((30, 30), months, np.uint8), mode="L").save(folder / f"{i}.png")
            rows.append(f"{i}.png,{months},{i % 2 == 0}")
        (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def classes_dir(tmp_path_factory):
    return draw_classes(tmp_path_factory.mktemp("classes"), {"train": 6, "validation": 3})


@pytest.fixture(scope="module")
def ages_dir(tmp_path_factory):
    return draw_ages(tmp_path_factory.mktemp("ages"), {"train": 12, "validation": 6})


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- end to end


def test_classification_two_stage_writes_a_loadable_run_folder(tiny_checkpoints, classes_dir, tmp_path, caplog):
    run_dir = tmp_path / "run"
    argv = train_argv(
        model=tiny_checkpoints[("timm", "classification")],
        dataset=classes_dir,
        output_dir=run_dir,
        mode="two-stage",
        head_epochs=2,
        epochs=1,
        image_size=40,
        data_terms="made-up squares",
    )
    assert main(argv) == 0

    results = read_json(run_dir / "eval_results.json")
    assert results["task"] == "classification" and results["split"] == "validation"
    assert results["num_examples"] == 6 and results["dataset"] == classes_dir.name
    assert set(results["metrics"]) == {"accuracy", "top5_accuracy", "macro_f1", "per_class_accuracy"}
    assert set(results["metrics"]["per_class_accuracy"]) == {"blue", "red"}
    config = read_json(run_dir / "training_config.json")
    assert config["mode"] == "two-stage" and config["image_size"] == [40, 40]
    assert config["data_terms"] == "made-up squares" and config["command"].startswith("python -m train --model")
    matrix = read_json(run_dir / "confusion_matrix.json")
    assert matrix["labels"] == ["blue", "red"] and np.sum(matrix["matrix"]) == 6
    assert (run_dir / "confusion_matrix.png").stat().st_size > 0
    assert list(run_dir.glob("runs/*/events.out.tfevents.*")), "TensorBoard logs"
    # The saved checkpoint carries the new labels and the training resolution for anyone who loads it.
    checkpoint = load_checkpoint(str(run_dir))
    assert checkpoint.task.labels == ("blue", "red")
    assert image_spec(AutoImageProcessor.from_pretrained(run_dir)).size == (40, 40)
    assert "head stage (backbone frozen)" in caplog.text and "full stage (backbone unfrozen)" in caplog.text


def last_training_evaluation(run_dir: Path) -> dict:
    """The Trainer's own last evaluation, logged in the run's checkpoint-* (regression: on the normalised head)."""
    (checkpoint,) = run_dir.glob("checkpoint-*")
    return [entry for entry in read_json(checkpoint / "trainer_state.json")["log_history"] if "eval_loss" in entry][-1]


def test_regression_saves_months_and_reports_metrics_of_the_saved_checkpoint(tiny_checkpoints, ages_dir, tmp_path):
    """The saved head (normalisation folded in) predicts what the trained one did: the MAE training measured itself."""
    run_dir = tmp_path / "run"
    argv = train_argv(
        model=tiny_checkpoints[("resnet", "classification")],
        dataset=ages_dir,
        output_dir=run_dir,
        target_column="boneage",
        target_unit="months",
        mode="full",
        epochs=1,
        augment="radiograph",
        loss="huber",
        precision="fp32",  # the Trainer's evaluation below must compute as the saved checkpoint's does
    )
    assert main(argv) == 0

    config = AutoModelForImageClassification.from_pretrained(run_dir).config
    assert config.problem_type == "regression" and config.num_labels == 1
    assert (config.target_name, config.target_unit) == ("boneage", "months")
    results = read_json(run_dir / "eval_results.json")
    assert results["task"] == "regression" and set(results["metrics"]) == {"mae", "rmse", "r2"}
    assert (run_dir / "predicted_vs_true.png").stat().st_size > 0
    assert read_json(run_dir / "training_config.json")["loss"] == "huber"

    # Plain transformers use: logits[:, 0] is already in months, and gives exactly the reported MAE.
    model = AutoModelForImageClassification.from_pretrained(run_dir).eval()
    processor = AutoImageProcessor.from_pretrained(run_dir)
    validation = ages_dir / "validation"
    rows = [line.split(",") for line in (validation / "metadata.csv").read_text().split()[1:]]
    images = [Image.open(validation / name) for name, _, _ in rows]
    with torch.no_grad():
        months = model(**processor(images=[image.convert("RGB") for image in images], return_tensors="pt")).logits[:, 0]
    truth = torch.tensor([float(age) for _, age, _ in rows])
    assert (months - truth).abs().mean().item() == pytest.approx(results["metrics"]["mae"], rel=1e-4)
    # Independently of the fold: the Trainer's last evaluation denormalised the trained head's outputs itself.
    trained = last_training_evaluation(run_dir)
    assert trained["eval_mae"] == pytest.approx(results["metrics"]["mae"], rel=1e-4)
    assert trained["eval_rmse"] == pytest.approx(results["metrics"]["rmse"], rel=1e-4)


def test_folded_head_outputs_equal_denormalised_predictions(tiny_checkpoints, tmp_path):
    """Folding the normalisation into a head with a non-zero bias, saving and loading gives the months predicted."""
    model = AutoModelForImageClassification.from_pretrained(tiny_checkpoints[("vit", "regression")]).eval()
    scaler = TargetScaler.fit([12.0, 60.0, 150.0, 228.0])
    assert scaler.mean == 112.5 and scaler.std > 80
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        heads.head_layer(model).bias.fill_(0.7)  # the tiny ViT's head bias is 0: a fold that drops a term on it shows
        expected = scaler.denormalize(model(pixel_values=pixels).logits[:, 0])
        fold_into_head(heads.head_layer(model), scaler)
    model.save_pretrained(tmp_path)
    saved = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(saved(pixel_values=pixels).logits[:, 0], expected, atol=1e-4)
        # Fine-tuning a saved regressor again starts from its head on the normalised scale.
        unfold_from_head(heads.head_layer(saved), scaler)
        assert torch.allclose(scaler.denormalize(saved(pixel_values=pixels).logits[:, 0]), expected, atol=1e-4)


# ----------------------------------------------------------------------------- new heads and freeze modes


@pytest.mark.parametrize("architecture", ["vit", "resnet", "timm"])
def test_new_head_has_the_right_size_and_freezing_leaves_only_it(tiny_checkpoints, classes_dir, architecture):
    train, _ = load_splits(str(classes_dir), train_split="train", eval_split="validation")
    task = resolve_task(train, target_column=None, image_column=None)
    base = load_checkpoint(str(tiny_checkpoints[(architecture, "classification")]))
    head = head_config(task, target_name=None, target_unit=None, condition_labels=None)
    model, _ = build_model(str(base.folder), head)
    head = heads.head_layer(model)
    assert head.out_features == 2 and model.config.id2label == {0: "blue", 1: "red"}
    # The kept backbone is the pretrained one (not re-initialised).
    shared = next(name for name, _ in base.model.named_parameters() if "classifier" not in name)
    assert torch.equal(model.state_dict()[shared], base.model.state_dict()[shared])

    head_size = sum(p.numel() for p in head.parameters())
    heads.freeze_backbone(model, frozen=True)
    assert parameter_counts(model).trainable == head_size
    heads.freeze_backbone(model, frozen=False)
    trainable, total = parameter_counts(model)
    assert trainable == total > head_size
    groups = heads.parameter_groups(model, learning_rate=1e-3, backbone_learning_rate=1e-4, weight_decay=0.05)
    head_lr = {group["lr"] for group in groups if any(p is head.weight for p in group["params"])}
    assert head_lr == {1e-3} and {group["lr"] for group in groups} == {1e-3, 1e-4}
    assert sum(p.numel() for group in groups for p in group["params"]) == total


def test_a_timm_classifier_given_a_conditioned_regression_head_saves_its_output_names(tiny_checkpoints, tmp_path):
    task = TaskData(
        "regression", "image", "boneage", condition_column="male", condition_outputs={"false": 0, "true": 1}
    )
    head = head_config(task, target_name="bone age", target_unit="months", condition_labels="false=female,true=male")
    base = tiny_checkpoints[("timm", "classification")]
    model, _ = build_model(str(base), head)
    assert heads.head_layer(model).out_features == 2
    model.save_pretrained(tmp_path)
    saved = load_checkpoint(str(tmp_path))
    # timm configs save label_names instead of id2label: the base's class names must not come back.
    assert saved.model.config.id2label == {0: "bone age (female)", 1: "bone age (male)"}
    assert (saved.task.kind, saved.task.target, saved.task.unit) == ("regression", "bone age", "months")
    assert saved.model.config.condition_outputs == {"false": 0, "true": 1}


def test_feature_extraction_trains_only_the_head(tiny_checkpoints, classes_dir, tmp_path, caplog):
    base = tiny_checkpoints[("vit", "classification")]
    run_dir = tmp_path / "run"
    argv = train_argv(model=base, dataset=classes_dir, output_dir=run_dir, mode="feature-extraction", head_epochs=2)
    assert main(argv) == 0
    before, after = load_file(base / "model.safetensors"), load_file(run_dir / "model.safetensors")
    backbone = [name for name in before if "classifier" not in name]
    assert backbone and all(torch.equal(before[name], after[name]) for name in backbone)
    assert after["classifier.weight"].shape == (2, 32)
    assert "head stage (backbone frozen): 66 of" in caplog.text  # 2 x 32 weights + 2 biases
    assert not list(run_dir.glob("checkpoint-*")), "the cached-feature stage keeps no Trainer checkpoints"


def test_a_run_from_an_earlier_run_records_the_command_that_made_its_start_and_keeps_its_data_terms(
    tiny_checkpoints, classes_dir, tmp_path
):
    first, second = tmp_path / "first", tmp_path / "second"
    terms = "Test images, free for any use."
    argv = partial(train_argv, dataset=classes_dir, mode="feature-extraction", head_epochs=1)
    assert main(argv(model=tiny_checkpoints[("vit", "classification")], output_dir=first, data_terms=terms)) == 0
    assert main(argv(model=first, output_dir=second)) == 0  # the same data, its terms not given again
    first_command = read_json(first / "training_config.json")["command"]
    assert read_json(first / "training_config.json")["earlier_commands"] == []
    assert read_json(second / "training_config.json")["earlier_commands"] == [first_command]
    assert read_json(second / "training_config.json")["data_terms"] == terms
    assert first_command in (second / "README.md").read_text() and terms in (second / "README.md").read_text()


@pytest.mark.parametrize("freeze", [True, False])
def test_full_stage_keeps_batchnorm_statistics_unless_asked_to_update_them(
    tiny_checkpoints, classes_dir, tmp_path, freeze
):
    base = tiny_checkpoints[("resnet", "classification")]
    run_dir = tmp_path / "run"
    argv = train_argv(
        model=base, dataset=classes_dir, output_dir=run_dir, mode="full", epochs=1, no_freeze_batchnorm=not freeze
    )
    assert main(argv) == 0
    before, after = load_file(base / "model.safetensors"), load_file(run_dir / "model.safetensors")
    statistics = [name for name in before if name.endswith(("running_mean", "running_var"))]
    convolutions = [name for name in before if name.endswith("convolution.weight")]
    assert statistics and convolutions
    assert not all(torch.equal(before[name], after[name]) for name in convolutions), "the backbone trained"
    assert all(torch.equal(before[name], after[name]) for name in statistics) == freeze
    assert read_json(run_dir / "training_config.json")["freeze_batchnorm"] == freeze
    assert f"| freeze_batchnorm | {freeze} |" in (run_dir / "README.md").read_text(), "the card states it"


# ----------------------------------------------------------------------------- resume


def test_resume_continues_from_the_last_checkpoint_with_weights_intact(tiny_checkpoints, classes_dir, tmp_path):
    run_dir = tmp_path / "run"
    # --no-calibrate: a folded temperature would (rightly) make the saved head differ from the checkpoint's
    argv = partial(
        train_argv,
        model=tiny_checkpoints[("vit", "classification")],
        dataset=classes_dir,
        output_dir=run_dir,
        mode="full",
        no_calibrate=True,
    )
    assert main(argv(epochs=1)) == 0
    (first,) = run_dir.glob("checkpoint-*")
    steps = read_json(first / "trainer_state.json")["global_step"]
    assert main(argv(epochs=1)) == 2, "a second run must not overwrite the first without --resume"

    # Resuming a finished schedule trains nothing: the saved model must be the checkpoint itself
    # (transformers issue 43701 would have re-initialised ViT encoder weights here).
    assert main(argv(epochs=1, resume=True)) == 0
    resumed, saved = load_file(first / "model.safetensors"), load_file(run_dir / "model.safetensors")
    assert resumed.keys() == saved.keys() and all(torch.equal(resumed[k], saved[k]) for k in resumed)

    assert main(argv(epochs=2, resume=True)) == 0
    config = read_json(run_dir / "training_config.json")
    assert "--resume" not in config["command"] and config["resume_command"].endswith("--epochs 2 --resume")
    (last,) = run_dir.glob("checkpoint-*")
    assert read_json(last / "trainer_state.json")["global_step"] == 2 * steps
    assert last.name == f"checkpoint-{2 * steps}"


# ----------------------------------------------------------------------------- error paths


def run_expecting_error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_unknown_column_missing_split_and_wrong_target_are_named(
    tiny_checkpoints, classes_dir, ages_dir, tmp_path, capsys
):
    argv = partial(train_argv, model=tiny_checkpoints[("timm", "classification")], output_dir=tmp_path / "run")
    error = run_expecting_error(capsys, argv(dataset=classes_dir, target_column="calories"))
    assert "no column 'calories'" in error and "label" in error
    error = run_expecting_error(capsys, argv(dataset=classes_dir, eval_split="test"))
    assert "no split 'test'" in error and "train, validation" in error
    error = run_expecting_error(capsys, argv(dataset=ages_dir, target_column="male"))
    assert "'male'" in error and "neither class labels" in error
    error = run_expecting_error(capsys, argv(dataset=tmp_path / "nowhere"))
    assert "nowhere" in error
    assert not (tmp_path / "run").exists(), "nothing is trained or written before the data is valid"


def test_empty_split_is_named(tmp_path):
    root = draw_ages(tmp_path / "ages", {"train": 4, "validation": 2})
    (root / "validation" / "metadata.csv").write_text("file_name,boneage,male\n")
    for image in (root / "validation").glob("*.png"):
        image.unlink()
    with pytest.raises(DataError, match="validation"):
        load_splits(str(root), train_split="train", eval_split="validation")


def test_unreadable_image_is_named_before_training(tiny_checkpoints, tmp_path, capsys):
    root = draw_classes(tmp_path / "classes", {"train": 3, "validation": 2})
    broken = root / "train" / "red" / "1.jpg"
    broken.write_bytes(b"not a jpeg at all")
    argv = train_argv(model=tiny_checkpoints[("timm", "classification")], dataset=root, output_dir=tmp_path / "run")
    error = run_expecting_error(capsys, argv)
    assert "Unreadable image" in error and str(broken) in error
    assert not (tmp_path / "run").exists()


def test_resolution_flags_need_a_timm_checkpoint_and_resume_needs_a_checkpoint(
    tiny_checkpoints, classes_dir, tmp_path, capsys
):
    argv = partial(
        train_argv, model=tiny_checkpoints[("vit", "classification")], dataset=classes_dir, output_dir=tmp_path / "run"
    )
    error = run_expecting_error(capsys, argv(image_size=48))
    assert "timm" in error
    error = run_expecting_error(capsys, argv(resume=True))
    assert "no checkpoint-*" in error
    error = run_expecting_error(capsys, argv(mode="feature-extraction", resume=True))
    assert "feature-extraction run saves no checkpoint-*" in error


def test_json_config_file_is_the_whole_command_line(tiny_checkpoints, ages_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = {
        "model": str(tiny_checkpoints[("timm", "regression")]),
        "dataset": str(ages_dir),
        "target_column": "boneage",
        "target_unit": "months",
        "output_dir": str(run_dir),
        "mode": "feature-extraction",
        "head_epochs": 1,
        "batch_size": 4,
        "dataloader_workers": 0,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert main([str(path)]) == 0
    assert read_json(run_dir / "training_config.json")["mode"] == "feature-extraction"
    assert load_checkpoint(str(run_dir)).task.unit == "months"


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_precision_sets_autocast_and_cnns_train_channels_last(tiny_checkpoints, classes_dir, tmp_path, precision):
    run_dir = tmp_path / "run"
    argv = train_argv(
        model=tiny_checkpoints[("timm", "classification")],
        dataset=classes_dir,
        output_dir=run_dir,
        mode="full",
        epochs=1,
        precision=precision,
    )
    assert main(argv) == 0
    assert read_json(run_dir / "training_config.json")["recipe"]["precision"] == precision
    # Saved from channels_last weights, the checkpoint loads and predicts like any other.
    model = load_checkpoint(str(run_dir)).model
    assert torch.isfinite(model(pixel_values=torch.rand(1, 3, 32, 32)).logits).all()

    prepared = prepare_for_device(load_checkpoint(str(tiny_checkpoints[("timm", "classification")])).model)
    convolutions = [m.weight for m in prepared.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1]
    assert convolutions and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    assert uses_bf16(precision) == (precision == "bf16")


def test_after_bf16_training_the_model_computes_in_fp32_again(tiny_checkpoints, tmp_path):
    """What a run measures after training (serving size, calibration) must be the fp32 model it saves."""
    model = load_checkpoint(str(tiny_checkpoints[("timm", "classification")])).model
    rows = [{"pixel_values": torch.rand(3, 32, 32), "labels": torch.tensor(k % 2)} for k in range(4)]
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "unused"),  # the Trainer makes this folder: not in the checkout
        max_steps=1,
        bf16=True,
        use_cpu=True,
        report_to=[],
        per_device_train_batch_size=2,
        save_strategy="no",
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=rows)
    trainer.train()
    model.eval()
    dtypes = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    model(pixel_values=torch.rand(1, 3, 32, 32))
    stages.fp32_forward(trainer)
    model(pixel_values=torch.rand(1, 3, 32, 32))
    assert dtypes == [torch.bfloat16, torch.float32]
