"""`python -m train`'s recipe: `run_training(args, command)` reads top to bottom as what a run does.

Load and validate the data, build the model with a new head (model.py), train the stages the mode asks for
(stages.py), fold the regression normalisation into the head, save the checkpoint, then evaluate the *saved*
checkpoint and write `eval_results.json`, plots and `training_config.json` next to it (outputs.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from hub.checkpoint import load_checkpoint
from hub.preprocessing import PhotoAugment, build_transform, image_spec
from train import data, modes
from train.arguments import TrainArguments, TrainError
from train.model import build_model, head_config, prepare_for_device, processor_at_size, resolution_processor
from train.outputs import best_eval_size, calibrate, evaluate_saved, save_checkpoint, write_training_config
from train.recipe import RecipeTrainer
from train.regression import TargetScaler, fold_into_head
from train.stages import fp32_forward, train_datasets, train_head_on_features, train_whole_network

logger = logging.getLogger("train")


def run_training(args: TrainArguments, command: str) -> Path:
    """Train as `args` says and return the finished run folder."""
    set_seed(args.seed)
    run_dir = Path(args.output_dir)
    resume_from = resume_checkpoint(run_dir, args.resume, args.mode)

    train_split, eval_split = data.load_splits(args.dataset, train_split=args.train_split, eval_split=args.eval_split)
    task = data.resolve_task(
        train_split,
        target_column=args.target_column,
        image_column=args.image_column,
        condition_column=args.condition_column,
    )
    for name, split in ((args.train_split, train_split), (args.eval_split, eval_split)):
        data.check_targets(split, task, name)
        data.check_images(split, task.image_column, name)
    logger.info(
        "%s on '%s' (%s): %d train, %d eval images",
        task.kind,
        task.target_column,
        args.dataset,
        len(train_split),
        len(eval_split),
    )
    scaler = TargetScaler.fit(train_split[task.target_column]) if task.is_regression else None

    if resume_from:  # build the model from the checkpoint itself (transformers issue 43701 drops ViT weights otherwise)
        resumed = load_checkpoint(resume_from)
        model, processor = resumed.model, resumed.processor
    else:
        head = head_config(
            task, target_name=args.target_name, target_unit=args.target_unit, condition_labels=args.condition_labels
        )
        model, processor = build_model(args.model, head, allow_pickle=args.allow_pickle, scaler=scaler)
    model = prepare_for_device(model)
    processor = resolution_processor(
        model, processor, image_size=args.image_size, resize=args.resize, crop_pct=args.crop_pct
    )
    train_spec = image_spec(processor)
    if args.eval_image_size:  # evaluated and saved at this size from now on
        processor = processor_at_size(model, processor, args.eval_image_size)
    spec = image_spec(processor)
    eval_transform = build_transform(spec)
    train_transform = build_transform(train_spec, args.augment, photo_augment(args))
    logger.info(
        "train %dx%d, evaluate %dx%d (%s, crop_pct %.3f), augmentation '%s'",
        train_spec.height,
        train_spec.width,
        spec.height,
        spec.width,
        spec.resize,
        spec.crop_pct,
        args.augment,
    )
    if int(os.environ.get("RANK", "0")) == 0:  # written now too, so that an interrupted run documents itself
        write_training_config(args, task, spec, command, run_dir, resumed=bool(resume_from))

    if args.mode in ("feature-extraction", "two-stage") and not resume_from:
        trainer = train_head_on_features(model, (train_split, eval_split), task, eval_transform, scaler, args, run_dir)
    if args.mode in ("full", "two-stage"):
        datasets = train_datasets(
            (train_split, eval_split),
            task,
            (train_transform, eval_transform),
            cache_images=args.cache_images,
            max_input_side=max(spec.height, spec.width, args.image_size or 0),
        )
        trainer = train_whole_network(model, processor, datasets, task, scaler, args, run_dir, resume_from)

    fp32_forward(trainer)
    outcome = {"weights": trainer.keep_better_weights() if isinstance(trainer, RecipeTrainer) else "final"}
    if scaler is not None:
        fold_into_head(modes.head_layer(model), scaler)
    is_main = trainer.is_world_process_zero()
    if is_main:
        processor, outcome["eval_sizes"], (logits, labels) = best_eval_size(
            model, processor, eval_split, task, args, train_spec
        )
        if task.is_classification and args.calibrate:
            outcome["calibration"] = calibrate(model, logits, labels)
        save_checkpoint(model, processor, run_dir)
        write_training_config(
            args, task, image_spec(processor), command, run_dir, resumed=bool(resume_from), outcome=outcome
        )
    trainer.accelerator.wait_for_everyone()  # the other processes wait for the folder the main one saved
    if is_main:
        evaluate_saved(run_dir, eval_split, task, args, outcome)
    return run_dir


def photo_augment(args: TrainArguments) -> PhotoAugment:
    return PhotoAugment(
        crop_scale_min=args.crop_scale_min,
        color_jitter=args.color_jitter or None,
        auto_augment=args.auto_augment,
        random_erasing=args.random_erasing,
    )


def resume_checkpoint(run_dir: Path, resume: bool, mode: str) -> str | None:
    """The last Trainer checkpoint to resume from, or None for a fresh run (refusing to overwrite one)."""
    if resume and mode == "feature-extraction":
        raise TrainError(
            "--resume continues the stage that trains the whole network; a feature-extraction run saves no "
            "checkpoint-* (its head trains in minutes on cached features): run it again without --resume."
        )
    last = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    if resume and last is None:
        raise TrainError(f"--resume: {run_dir} holds no checkpoint-* folder to resume from.")
    if not resume and last is not None:
        raise TrainError(
            f"{run_dir} already holds {Path(last).name}: pass --resume to continue it, or pick a new --output-dir."
        )
    return last
