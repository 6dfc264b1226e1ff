"""`python -m train`'s recipe: `build_run(args)` makes what a run trains with, `run_training(args, command)` trains it.

Load and validate the data, build the model with a new head (model.py) and its transforms (`build_run`), train the
stages the mode asks for (stages.py), fold the regression normalisation into the head, save the checkpoint, then
evaluate the *saved* checkpoint and write `eval_results.json`, plots and `training_config.json` next to it
(outputs.py). bench/train_throughput.py times the Trainer that the same `build_run` feeds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from hub.checkpoint import load_checkpoint
from hub.contract import TrainingMode
from hub.preprocessing import ImageSpec, PhotoAugment, ProcessorTransform, build_transform, image_spec
from train import data, heads
from train.arguments import TrainArguments, TrainError
from train.distillation import Teacher, teacher_for
from train.model import build_model, head_config, prepare_for_device, processor_at_size, resolution_processor
from train.outputs import evaluate_saved, save_run, write_training_config
from train.progress import ProgressLog
from train.recipe_trainer import RecipeTrainer
from train.regression import TargetScaler, fold_into_head
from train.stages import fp32_forward, train_stages

logger = logging.getLogger("train")


@dataclass
class Run:
    """What a run trains with, built once from its arguments by `build_run`: the stages, the outputs and the
    training benchmark take it whole rather than piece by piece."""

    args: TrainArguments
    run_dir: Path
    resume_from: str | None  # the checkpoint-* a resumed run continues from, else None
    task: data.TaskData
    train_split: Dataset
    eval_split: Dataset
    scaler: TargetScaler | None  # regression: the target normalisation the head trains on
    model: object  # the model to train (with its new head), on this process's device
    processor: object  # the image processor it is evaluated and saved with (at --eval-image-size when given)
    train_spec: ImageSpec  # the input it trains at
    train_transform: Callable  # PIL image -> augmented model input
    eval_transform: Callable  # PIL image -> model input, through `processor` as the demos serve it
    teacher: Teacher | None  # --teacher, loaded before any training so that a bad one fails at once

    @property
    def splits(self) -> tuple[Dataset, Dataset]:
        return self.train_split, self.eval_split


def run_training(args: TrainArguments, command: str) -> Path:
    """Train as `args` says and return the finished run folder."""
    set_seed(args.seed)
    run = build_run(args)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:  # written now too, so that an interrupted run documents itself
        write_training_config(run, image_spec(run.processor), command)
    trainer = train_stages(run)
    fp32_forward(trainer)
    outcome = {"weights": trainer.keep_better_weights() if isinstance(trainer, RecipeTrainer) else "final"}
    if run.scaler is not None:
        fold_into_head(heads.head_layer(run.model), run.scaler)
    if is_main:
        save_run(run, command, outcome)
    trainer.accelerator.wait_for_everyone()  # the other processes wait for the folder the main one saved
    if is_main:
        evaluate_saved(run, outcome)
        ProgressLog(args.progress_jsonl).write("end", run_dir=str(run.run_dir))
    return run.run_dir


def build_run(args: TrainArguments) -> Run:
    """The checked data, the model with its new head on its device, its processors and transforms."""
    run_dir = Path(args.output_dir)
    resume_from = resume_checkpoint(run_dir, args.resume, args.mode)
    train_split, eval_split, task = checked_splits(args)
    scaler = TargetScaler.fit(train_split[task.target_column]) if task.is_regression else None
    model, processor = model_to_train(args, task, scaler, resume_from)
    train_spec = image_spec(processor)
    if args.eval_image_size:  # evaluated and saved at this size from now on
        processor = processor_at_size(model, processor, args.eval_image_size)
    run = Run(
        args=args,
        run_dir=run_dir,
        resume_from=resume_from,
        task=task,
        train_split=train_split,
        eval_split=eval_split,
        scaler=scaler,
        model=model,
        processor=processor,
        train_spec=train_spec,
        train_transform=build_transform(train_spec, args.augment, photo_augment(args)),
        eval_transform=ProcessorTransform(processor),
        teacher=teacher_for(args, task, train_spec),
    )
    log_inputs(run)
    return run


def checked_splits(args: TrainArguments) -> tuple[Dataset, Dataset, data.TaskData]:
    """(train, eval, task): the splits, the task their target column asks for, both splits checked row by row."""
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
    return train_split, eval_split, task


def model_to_train(args: TrainArguments, task: data.TaskData, scaler: TargetScaler | None, resume_from: str | None):
    """(model, processor): the base with a new head, or the checkpoint a resumed run continues, at --image-size."""
    if resume_from:  # build the model from the checkpoint itself (transformers issue 43701 drops ViT weights otherwise)
        resumed = load_checkpoint(resume_from)
        model, processor = resumed.model, resumed.processor
    else:
        head = head_config(
            task, target_name=args.target_name, target_unit=args.target_unit, condition_labels=args.condition_labels
        )
        model, processor = build_model(args.model, head, allow_pickle=args.allow_pickle, scaler=scaler)
    model = prepare_for_device(model)
    return model, resolution_processor(
        model, processor, image_size=args.image_size, resize=args.resize, crop_pct=args.crop_pct
    )


def log_inputs(run: Run) -> None:
    spec = image_spec(run.processor)
    logger.info(
        "train %dx%d, evaluate %dx%d (%s, crop_pct %.3f), augmentation '%s'",
        run.train_spec.height,
        run.train_spec.width,
        spec.height,
        spec.width,
        spec.resize,
        spec.crop_pct,
        run.args.augment,
    )


def photo_augment(args: TrainArguments) -> PhotoAugment:
    return PhotoAugment(
        crop_scale_min=args.crop_scale_min,
        color_jitter=args.color_jitter or None,
        auto_augment=args.auto_augment,
        random_erasing=args.random_erasing,
    )


def resume_checkpoint(run_dir: Path, resume: bool, mode: TrainingMode) -> str | None:
    """The last Trainer checkpoint to resume from, or None for a fresh run (refusing to overwrite one)."""
    if resume and not mode.trains_backbone:
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
