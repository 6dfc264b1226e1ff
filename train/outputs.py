"""What a run leaves in its folder: the checkpoint (at its better evaluation size, calibrated), training_config.json
(a hub.contract.TrainingRecord), and the saved checkpoint's eval_results.json and plots."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from hub.cards import base_record, rerunnable_path
from hub.checkpoint import is_timm, load_checkpoint
from hub.contract import Recipe, TrainingRecord
from hub.preprocessing import ImageSpec, image_spec
from train import calibration, data, evaluation, heads, metrics
from train.arguments import TrainArguments
from train.model import processor_at_size
from train.robustness import robustness_split
from train.stages import backbone_learning_rate, uses_bf16

if TYPE_CHECKING:
    from train.run import Run

logger = logging.getLogger("train")


def best_eval_size(model, processor, eval_split, task: data.TaskData, args: TrainArguments, train_spec: ImageSpec):
    """Evaluate at the training size and at --eval-image-size; keep the processor of the better one.

    Returns (processor, {size: score}, (logits, labels) at the kept size).
    """
    sizes = sorted({train_spec.height, args.eval_image_size}) if args.eval_image_size else [None]
    metric = task.kind.headline_metric
    scored = {}
    for size in sizes:
        candidate = processor if size is None else processor_at_size(model, processor, size)
        logits, labels = evaluation.split_logits(
            model, candidate, eval_split, task, batch_size=args.eval_batch_size, workers=args.dataloader_workers
        )
        scored[size] = (evaluation.task_metrics(task, logits, labels)[metric], candidate, (logits, labels))
    best = sizes[0]
    for size in sizes[1:]:
        if task.kind.better(scored[size][0], than=scored[best][0]):
            best = size
    score, kept, outputs = scored[best]
    if best is not None:
        processor_at_size(model, kept, best)  # the config saved with the weights must describe the kept size
        logger.info(
            "serving size %d px (validation %s by size: %s)",
            best,
            metric,
            {k: round(v[0], 4) for k, v in scored.items()},
        )
    return kept, {str(size): value[0] for size, value in scored.items() if size is not None}, outputs


def calibrate(model, logits, labels) -> dict:
    """Fit a temperature on validation, fold it into the head, store the out-of-distribution threshold in the config."""
    temperature = calibration.fit_temperature(logits, labels)
    calibration.fold_temperature(heads.head_layer(model), temperature)
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


def save_run(run: Run, command: str, outcome: dict) -> None:
    """The checkpoint at its better serving size (calibrated when asked), and its training_config.json.

    Adds what it measured to `outcome`: the headline metric by size, the calibration.
    """
    processor, outcome["eval_sizes"], (logits, labels) = best_eval_size(
        run.model, run.processor, run.eval_split, run.task, run.args, run.train_spec
    )
    if run.task.is_classification and run.args.calibrate:
        outcome["calibration"] = calibrate(run.model, logits, labels)
    save_checkpoint(run.model, processor, run.run_dir)
    write_training_config(run, image_spec(processor), command, outcome=outcome)


def save_checkpoint(model, processor, run_dir) -> None:
    """config.json + model.safetensors, and the processor unless timm's config.json already carries it."""
    model.save_pretrained(run_dir, safe_serialization=True)
    if not is_timm(model.config):
        processor.save_pretrained(run_dir)


def write_training_config(run: Run, spec: ImageSpec, command: str, *, outcome: dict | None = None) -> None:
    """training_config.json; a resumed run keeps the command that started it and adds the last resume command."""
    record = training_record(run.args, run.task, spec, command, outcome or {})
    started = TrainingRecord.read(run.run_dir) if run.resume_from else None
    if started is not None:
        record = dataclasses.replace(record, command=started.command, resume_command=command)
    record.write(run.run_dir)


def training_record(
    args: TrainArguments, task: data.TaskData, spec: ImageSpec, command: str, outcome: dict
) -> TrainingRecord:
    """How the run was trained; the fields of a stage the mode does not run are None (head_epochs 0 in full)."""
    mode = args.mode
    dataset = data.dataset_name(args.dataset)
    base = base_record(args.model)
    # A run that continues a checkpoint trained on the same data keeps the terms that checkpoint recorded.
    inherited_terms = base.data_terms if base and base.dataset == dataset else None
    regression = {"loss": args.loss, "target_unit": args.target_unit, "condition_column": task.condition_column}
    return TrainingRecord(
        base_model=rerunnable_path(args.model),
        dataset=dataset,
        task=task.kind,
        mode=mode,
        epochs=args.epochs if mode.trains_backbone else args.head_epochs,
        head_epochs=args.head_epochs if mode.trains_head_first else 0,
        learning_rate=args.learning_rate,
        head_learning_rate=args.head_learning_rate,
        backbone_learning_rate=backbone_learning_rate(args) if mode.trains_backbone else None,
        freeze_batchnorm=args.freeze_batchnorm if mode.trains_backbone else None,
        batch_size=args.batch_size,
        image_size=(spec.height, spec.width),
        train_image_size=args.image_size,
        eval_image_size=args.eval_image_size,
        augment=args.augment,
        recipe=recipe(args) if mode.trains_backbone else None,
        target_column=task.target_column,
        data_terms=args.data_terms or inherited_terms,
        seed=args.seed,
        command=command,
        earlier_commands=tuple(base.all_commands) if base else (),
        **(regression if task.is_regression else {}),
        **outcome,
    )


def recipe(args: TrainArguments) -> Recipe:
    """The training-recipe options of the run, as the card states them."""
    return Recipe(
        auto_augment=args.auto_augment,
        crop_scale_min=args.crop_scale_min,
        color_jitter=args.color_jitter,
        random_erasing=args.random_erasing,
        label_smoothing=args.label_smoothing,
        reverse_ce_weight=args.reverse_ce_weight,
        mixup=args.mixup,
        cutmix=args.cutmix,
        ema_decay=args.ema_decay,
        teacher=rerunnable_path(args.teacher) if args.teacher else None,
        distill_weight=args.distill_weight if args.teacher else None,
        distill_temperature=args.distill_temperature if args.teacher else None,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        precision="bf16" if uses_bf16(args.precision) else "fp32",
    )


def evaluate_saved(run: Run, outcome: dict) -> dict:
    """Evaluate the run's checkpoint as saved (regression logits already in the target's unit), write the results."""
    args = run.args
    return evaluate_folder(
        run.run_dir,
        run.eval_split,
        run.task,
        outcome,
        dataset=args.dataset,
        split=args.eval_split,
        unit=args.target_unit,
        robustness_check=args.robustness_check,
        batch_size=args.eval_batch_size,
        workers=args.dataloader_workers,
    )


def evaluate_folder(
    folder: Path,
    rows,
    task: data.TaskData,
    outcome: dict,
    *,
    dataset: str,
    split: str,
    unit: str | None,
    robustness_check: bool,
    batch_size: int,
    workers: int,
) -> dict:
    """Evaluate the checkpoint saved in `folder` on `rows` (the `split` of `dataset`), and write eval_results.json
    and its plot there with what `outcome` holds of the run's choices (weights, sizes, calibration)."""
    saved = load_checkpoint(str(folder))
    logits, labels = evaluation.split_logits(
        saved.model, saved.processor, rows, task, batch_size=batch_size, workers=workers
    )
    results = evaluation.task_metrics(task, logits, labels)
    extra = {key: outcome[key] for key in ("weights", "eval_sizes") if key in outcome}
    if "calibration" in outcome:
        extra["calibration"] = {
            **outcome["calibration"],
            "ece_after": metrics.expected_calibration_error(logits, labels),
        }
    if robustness_check:
        robust = evaluation.split_logits(
            saved.model,
            saved.processor,
            robustness_split(rows, task.image_column),
            task,
            batch_size=batch_size,
            workers=0,
        )
        mae = evaluation.task_metrics(task, *robust)["mae"]
        extra["robustness"] = {"mae": mae, "ratio_to_validation": mae / results["mae"]}
    payload = evaluation.results_payload(task, dataset, split, results, len(labels), **extra)
    evaluation.write_eval_results(Path(folder), payload, task, logits, labels, unit=unit)
    logger.info(
        "%s metrics of the saved checkpoint: %s %s",
        split,
        {k: v for k, v in results.items() if k != "per_class_accuracy"},
        extra,
    )
    return results
