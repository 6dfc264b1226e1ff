"""What a run leaves in its folder: the checkpoint (at its better evaluation size, calibrated), training_config.json,
and the saved checkpoint's eval_results.json and plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from hub.cards import earlier_commands, rerunnable_path
from hub.checkpoint import is_timm, load_checkpoint
from hub.preprocessing import ImageSpec
from train import calibration, data, evaluation, metrics, modes
from train.arguments import TrainArguments
from train.model import processor_at_size
from train.regression import own_outputs
from train.robustness import robustness_split
from train.stages import backbone_learning_rate, uses_bf16

logger = logging.getLogger("train")


def best_eval_size(model, processor, eval_split, task: data.TaskData, args: TrainArguments, train_spec: ImageSpec):
    """Evaluate at the training size and at --eval-image-size; keep the processor of the better one.

    Returns (processor, {size: score}, (logits, labels) at the kept size).
    """
    sizes = sorted({train_spec.height, args.eval_image_size}) if args.eval_image_size else [None]
    scored = {}
    for size in sizes:
        candidate = processor if size is None else processor_at_size(model, processor, size)
        logits, labels = evaluation.split_logits(
            model, candidate, eval_split, task, batch_size=args.eval_batch_size, workers=args.dataloader_workers
        )
        score = evaluation.task_metrics(task, logits, labels)["accuracy" if task.is_classification else "mae"]
        scored[size] = (score, candidate, (logits, labels))
    pick = max if task.is_classification else min
    best = pick(scored, key=lambda size: scored[size][0])
    score, kept, outputs = scored[best]
    if best is not None:
        processor_at_size(model, kept, best)  # the config saved with the weights must describe the kept size
        logger.info(
            "serving size %d px (validation %s by size: %s)",
            best,
            "accuracy" if pick is max else "MAE",
            {k: round(v[0], 4) for k, v in scored.items()},
        )
    return kept, {str(size): value[0] for size, value in scored.items() if size is not None}, outputs


def calibrate(model, logits, labels) -> dict:
    """Fit a temperature on validation, fold it into the head, store the out-of-distribution threshold in the config."""
    temperature = calibration.fit_temperature(logits, labels)
    calibration.fold_temperature(modes.head_layer(model), temperature)
    threshold = calibration.ood_threshold(logits / temperature)
    model.config.ood_threshold = threshold  # read by the demo: a photo below it fits none of the known classes
    ece_before = metrics.expected_calibration_error(logits, labels)
    # the ECE after is measured on the saved checkpoint by evaluate_saved; logged here as the fit saw it
    logger.info(
        "calibration: temperature %.3f, ECE %.4f -> %.4f",
        temperature,
        ece_before,
        metrics.expected_calibration_error(logits / temperature, labels),
    )
    return {
        "temperature": temperature,
        "ece_before": ece_before,
        "ood_threshold": threshold,
        "ood_pass_rate": calibration.OOD_PASS_RATE,
    }


def save_checkpoint(model, processor, run_dir: Path) -> None:
    """config.json + model.safetensors, and the processor unless timm's config.json already carries it."""
    model.save_pretrained(run_dir, safe_serialization=True)
    if not is_timm(model.config):
        processor.save_pretrained(run_dir)


def write_training_config(
    args: TrainArguments,
    task: data.TaskData,
    spec: ImageSpec,
    command: str,
    run_dir: Path,
    *,
    resumed: bool,
    outcome: dict | None = None,
) -> None:
    """training_config.json; a resumed run keeps the command that started it and adds the last resume command."""
    path = run_dir / "training_config.json"
    config = {
        "base_model": rerunnable_path(args.model),
        "dataset": data.dataset_name(args.dataset),
        "task": task.kind,
        "mode": args.mode,
        "epochs": args.head_epochs if args.mode == "feature-extraction" else args.epochs,
        "head_epochs": args.head_epochs if args.mode != "full" else 0,
        "learning_rate": args.learning_rate,
        "head_learning_rate": args.head_learning_rate,
        "backbone_learning_rate": backbone_learning_rate(args) if args.mode != "feature-extraction" else None,
        "freeze_batchnorm": args.freeze_batchnorm if args.mode != "feature-extraction" else None,
        "batch_size": args.batch_size,
        "image_size": [spec.height, spec.width],
        "train_image_size": args.image_size,
        "eval_image_size": args.eval_image_size,
        "augment": args.augment,
        "recipe": recipe(args) if args.mode != "feature-extraction" else None,
        "target_column": task.target_column,
        "data_terms": args.data_terms,
        "seed": args.seed,
        "command": command,
        "earlier_commands": earlier_commands(args.model),
    }
    if task.is_regression:
        config.update(loss=args.loss, target_unit=args.target_unit, condition_column=task.condition_column)
    if outcome:
        config.update(outcome)
    if resumed and path.is_file():
        config.update(command=json.loads(path.read_text())["command"], resume_command=command)
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))


def recipe(args: TrainArguments) -> dict:
    """The training-recipe options of the run, as the card states them."""
    return {
        "auto_augment": args.auto_augment,
        "crop_scale_min": args.crop_scale_min,
        "color_jitter": args.color_jitter,
        "random_erasing": args.random_erasing,
        "label_smoothing": args.label_smoothing,
        "mixup": args.mixup,
        "cutmix": args.cutmix,
        "ema_decay": args.ema_decay,
        "warmup_ratio": args.warmup_ratio,
        "weight_decay": args.weight_decay,
        "precision": "bf16" if uses_bf16(args.precision) else "fp32",
    }


def evaluate_saved(run_dir: Path, eval_split, task: data.TaskData, args: TrainArguments, outcome: dict) -> dict:
    """Evaluate the checkpoint as saved (regression logits already in the target's unit) and write the results."""
    saved = load_checkpoint(str(run_dir))
    logits, labels = evaluation.split_logits(
        saved.model, saved.processor, eval_split, task, batch_size=args.eval_batch_size, workers=args.dataloader_workers
    )
    results = evaluation.task_metrics(task, logits, labels)
    extra = {key: outcome[key] for key in ("weights", "eval_sizes") if key in outcome}
    if "calibration" in outcome:
        extra["calibration"] = {
            **outcome["calibration"],
            "ece_after": metrics.expected_calibration_error(logits, labels),
        }
    if args.robustness_check:
        robust = evaluation.split_logits(
            saved.model,
            saved.processor,
            robustness_split(eval_split, task.image_column),
            task,
            batch_size=args.eval_batch_size,
            workers=0,
        )
        mae = evaluation.task_metrics(task, *robust)["mae"]
        extra["robustness"] = {"mae": mae, "ratio_to_validation": mae / results["mae"]}
    write_eval_results(run_dir, task, args, results, logits, labels, extra)
    logger.info(
        "validation metrics of the saved checkpoint: %s %s",
        {k: v for k, v in results.items() if k != "per_class_accuracy"},
        extra,
    )
    return results


def write_eval_results(
    run_dir: Path,
    task: data.TaskData,
    args: TrainArguments,
    results: dict,
    logits: np.ndarray,
    labels: np.ndarray,
    extra: dict,
) -> None:
    payload = {
        "task": task.kind,
        "dataset": data.dataset_name(args.dataset),
        "split": args.eval_split,
        "num_examples": len(labels),
        "metrics": results,
        **extra,
    }
    (run_dir / "eval_results.json").write_text(json.dumps(payload, indent=2))
    if task.is_classification:
        matrix = metrics.confusion_matrix(labels.astype(np.int64), logits.argmax(axis=-1), len(task.labels))
        metrics.save_confusion_matrix(matrix, list(task.labels), run_dir)
    else:
        metrics.save_predicted_vs_true(*own_outputs(logits, labels), args.target_unit, run_dir)
