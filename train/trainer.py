"""Trainer set-up for both tasks: the new-head model, the stages of each mode, saving a run folder.

`run_training(args, command)` reads top to bottom as the recipe: load and validate the data, build the
model with a new head, train the stages the mode asks for, fold the regression normalisation into the
head, save the checkpoint, then evaluate the *saved* checkpoint and write `eval_results.json`, plots and
`training_config.json` next to it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset as HFDataset
from timm.data import Mixup
from timm.utils import ModelEmaV3
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig, PretrainedConfig, Trainer, TrainingArguments, set_seed
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.trainer_utils import get_last_checkpoint

from hub.checkpoint import is_timm, load_checkpoint, task_from_config
from hub.preprocessing import ImageSpec, PhotoAugment, build_transform, image_spec
from train import calibration, data, evaluation, metrics, modes
from train.recipe import RecipeTrainer, restore_ema
from train.regression import TargetScaler, fold_into_head, own_outputs, regression_loss, unfold_from_head
from train.robustness import robustness_split

logger = logging.getLogger("train")


class TrainError(ValueError):
    """The requested run cannot start; the message says what to change."""


# ----------------------------------------------------------------------------- the model


def build_model(
    base_ref: str, head: dict, *, allow_pickle: bool = False, scaler: TargetScaler | None = None
) -> tuple[nn.Module, object]:
    """The base checkpoint with a new `head` (the config keys of `head_config`), and its image processor.

    A base whose head already predicts these outputs keeps it; a regression head is turned back from the
    target's unit to the normalised scale we train on.
    """
    base = load_checkpoint(base_ref, allow_pickle=allow_pickle, config_overrides=head)
    if not keeps_head(AutoConfig.from_pretrained(base.folder), head):  # same size, other classes: still a new head
        modes.head_layer(base.model).reset_parameters()
    elif scaler is not None:
        unfold_from_head(modes.head_layer(base.model), scaler)
    return base.model, base.processor


def head_config(
    task: data.TaskData, *, target_name: str | None, target_unit: str | None, condition_labels: str | None
) -> dict:
    """The config keys of a new head for `task`: one name per output, the problem type, and the regression facts."""
    if task.is_classification:
        names, facts = list(task.labels), {"problem_type": "single_label_classification"}
    else:
        target_name = target_name or task.target_column.replace("_", " ")
        names = output_names(task, target_name, condition_labels)
        # read by hub.checkpoint.task_from_config
        facts = {"problem_type": "regression", "target_name": target_name, "target_unit": target_unit}
        if task.condition_column:  # any program picks the row's output from these (DESIGN.md, the checkpoint contract)
            facts.update(condition_column=task.condition_column, condition_outputs=dict(task.condition_outputs))
    return {
        "num_labels": len(names),  # with id2label: a timm config otherwise keeps the base's number of classes
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
        **facts,
    }


def keeps_head(base: PretrainedConfig, head: dict) -> bool:
    """Whether the base's head already predicts `head`'s outputs: the same classes, or as many regression outputs."""
    base_task = task_from_config(base)
    if head["problem_type"] == "regression":
        return base_task.is_regression and base.num_labels == head["num_labels"]
    return base_task.labels == tuple(head["id2label"].values())


def output_names(task: data.TaskData, target_name: str, condition_labels: str | None) -> list[str]:
    """One name per output: "bone age", or "bone age (female)", "bone age (male)" for a conditioned head.

    `condition_labels` ("false=female,true=male") names the condition's values; by default "male=true".
    """
    if not task.condition_column:
        return [target_name]
    named = dict(pair.split("=", 1) for pair in condition_labels.split(",")) if condition_labels else {}
    unknown = set(named) - set(task.condition_outputs)
    if unknown:
        raise TrainError(
            f"--condition-labels names {', '.join(sorted(unknown))}, which '{task.condition_column}' never takes "
            f"(its values: {', '.join(task.condition_outputs)})."
        )
    return [
        f"{target_name} ({named.get(value, f'{task.condition_column}={value}')})"
        for value in sorted(task.condition_outputs, key=task.condition_outputs.get)
    ]


def resolution_processor(model, processor, args):
    """Apply --image-size/--resize/--crop-pct to a timm checkpoint's pretrained_cfg, which the saved config carries."""
    wanted = {"image_size": args.image_size, "resize": args.resize, "crop_pct": args.crop_pct}
    if all(value is None for value in wanted.values()):
        return processor
    cfg = _pretrained_cfg(model, "--image-size/--resize/--crop-pct")
    if args.image_size is not None:
        cfg["input_size"] = [3, args.image_size, args.image_size]
        cfg.pop("test_input_size", None)  # timm would prefer it over input_size at eval time
    if args.resize is not None:
        cfg["crop_mode"] = {"squash": "squash", "crop": "center"}[args.resize]
    if args.crop_pct is not None:
        cfg["crop_pct"] = args.crop_pct
    return _with_cfg(model, processor, cfg)


def processor_at_size(model, processor, size: int):
    """The processor (and the saved pretrained_cfg) at another square input size: train low, serve high (FixRes)."""
    cfg = _pretrained_cfg(model, "--eval-image-size")
    cfg["input_size"] = [3, size, size]
    cfg.pop("test_input_size", None)
    return _with_cfg(model, processor, cfg)


def _pretrained_cfg(model, flags: str) -> dict:
    if not is_timm(model.config):
        raise TrainError(
            f"{flags} change a timm checkpoint's pretrained_cfg; "
            f"for {model.config.model_type} checkpoints train at the processor's own size."
        )
    return dict(model.config.pretrained_cfg)


def _with_cfg(model, processor, cfg: dict):
    model.config.pretrained_cfg = cfg
    return type(processor)(pretrained_cfg=cfg, architecture=model.config.architecture)


def prepare_for_device(model: nn.Module) -> nn.Module:
    """This process's GPU if there is one, and channels_last for CNNs (a ViT has one patch-embedding convolution).

    channels_last trains EfficientNet-Lite 1.6x faster in fp32 on a 2-core AVX-512 CPU too (bench/RESULTS.md).
    """
    if torch.cuda.is_available():
        model = model.to(torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))))
    if sum(isinstance(module, nn.Conv2d) for module in model.modules()) > 1:
        model = model.to(memory_format=torch.channels_last)
    return model


def uses_bf16(precision: str) -> bool:
    """Whether to train under bf16 autocast: asked for, or `auto` on hardware that computes bf16 natively."""
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def log_trainable(model: nn.Module, stage: str) -> None:
    trainable, total = modes.count_trainable(model)
    logger.info(
        "%s: %s of %s parameters train (%.1f%%)", stage, f"{trainable:,}", f"{total:,}", 100 * trainable / total
    )


# ----------------------------------------------------------------------------- losses and metrics


def classification_loss(label_smoothing: float = 0.0):
    """Cross-entropy against class ids (smoothed) or against Mixup's soft targets (smoothed by Mixup)."""

    def compute_loss(outputs, labels, num_items_in_batch=None):
        smoothing = label_smoothing if labels.ndim == 1 else 0.0
        return nn.functional.cross_entropy(outputs["logits"].float(), labels, label_smoothing=smoothing)

    return compute_loss


def loss_and_metrics(task: data.TaskData, scaler: TargetScaler | None, args):
    """(compute_loss_func, compute_metrics) for the Trainer; regression metrics are in the target's unit."""
    if task.is_classification:
        return classification_loss(args.label_smoothing), lambda prediction: metrics.classification_scalars(
            prediction.predictions, prediction.label_ids
        )

    def regression_eval(prediction):
        predicted, targets = own_outputs(prediction.predictions, prediction.label_ids)
        return metrics.regression_metrics(scaler.denormalize(predicted), targets)

    return regression_loss(args.loss, scaler), regression_eval


def training_arguments(
    args, run_dir: Path, *, epochs: float, learning_rate: float, checkpoints: bool
) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(run_dir),
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,  # a float below 1 is a fraction of the steps
        lr_scheduler_type="cosine",
        eval_strategy="epoch",
        save_strategy="epoch" if checkpoints else "no",
        save_total_limit=1 if checkpoints else None,
        logging_steps=args.logging_steps,
        report_to=["tensorboard"],
        bf16=uses_bf16(args.precision),
        use_cpu=not torch.cuda.is_available(),  # without it, torchrun on CPUs runs N unconnected copies
        torch_compile=args.torch_compile,
        dataloader_num_workers=args.dataloader_workers,
        remove_unused_columns=False,  # the transform reads the image column
        label_names=["labels"],
        seed=args.seed,
        disable_tqdm=False,
    )


# ----------------------------------------------------------------------------- stage 1: head on cached features


class HeadOnly(nn.Module):
    """The model's own head Linear, fed with cached backbone features (trains the real head in place)."""

    def __init__(self, head: nn.Linear):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> ImageClassifierOutput:
        return ImageClassifierOutput(logits=self.head(features))


@torch.no_grad()
def cached_features(model: nn.Module, split: HFDataset, task: data.TaskData, transform, args) -> HFDataset:
    """The frozen backbone's pooled features (the head's input) for every image, computed once.

    Why hand-written: no library caches a frozen backbone's outputs; this makes the frozen stage cost one
    forward pass over the data instead of one per epoch.
    """
    captured: list[torch.Tensor] = []
    hook = modes.head_layer(model).register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0].float())
    )
    loader = torch.utils.data.DataLoader(
        data.with_image_transform(split, task, transform),
        batch_size=args.eval_batch_size,
        collate_fn=data.collate,
        num_workers=args.dataloader_workers,
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels = []
    try:
        for batch in tqdm(loader, desc="caching features"):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(args.precision)):
                model(pixel_values=batch["pixel_values"].to(device))
            labels.append(batch["labels"])
    finally:
        hook.remove()
        model.train(was_training)
    features = torch.cat(captured).cpu().numpy()
    return HFDataset.from_dict({"features": features, "labels": torch.cat(labels).numpy()}).with_format("torch")


def train_head_on_features(
    model, train_split, eval_split, task, eval_transform, scaler, args, run_dir: Path
) -> Trainer:
    """Stage 1 / feature extraction: backbone frozen, only the new head trains (on cached features)."""
    modes.freeze_backbone(model, frozen=True)
    log_trainable(model, "head stage (backbone frozen)")
    logger.info("head stage: caching backbone features of %d + %d images", len(train_split), len(eval_split))
    train_features = cached_features(model, train_split, task, eval_transform, args)
    eval_features = cached_features(model, eval_split, task, eval_transform, args)
    loss_func, compute_metrics = loss_and_metrics(task, scaler, args)
    trainer = Trainer(
        model=HeadOnly(modes.head_layer(model)),
        args=training_arguments(
            args, run_dir, epochs=args.head_epochs, learning_rate=args.head_learning_rate, checkpoints=False
        ),
        train_dataset=train_features,
        eval_dataset=eval_features,
        compute_loss_func=loss_func,
        compute_metrics=compute_metrics,
    )
    trainer.train()
    return trainer


# ----------------------------------------------------------------------------- stage 2: the whole network


def whole_network_trainer(
    model, processor, datasets, task, scaler, args, *, training_args: TrainingArguments, callbacks=()
) -> RecipeTrainer:
    """The Trainer for full fine-tuning / stage 2: everything trains, the backbone at its own (lower) learning rate."""
    train_dataset, eval_dataset = datasets
    modes.freeze_backbone(model, frozen=False)
    optimizer = torch.optim.AdamW(
        modes.parameter_groups(
            model,
            learning_rate=args.learning_rate,
            backbone_learning_rate=backbone_learning_rate(args),
            weight_decay=args.weight_decay,
        ),
        fused=torch.cuda.is_available(),  # what the Trainer's own default optimizer uses on a GPU (not timed here)
    )
    loss_func, compute_metrics = loss_and_metrics(task, scaler, args)
    return RecipeTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data.collate,
        processing_class=processor,  # saved into every checkpoint-*, so a resumed run finds it
        compute_loss_func=loss_func,
        compute_metrics=compute_metrics,
        optimizers=(optimizer, None),  # the scheduler Trainer builds scales both groups alike
        callbacks=list(callbacks),
        mixup=mixup_for(task, args),
        ema=ModelEmaV3(model, decay=args.ema_decay, use_warmup=True) if args.ema_decay else None,
        metric="accuracy" if task.is_classification else "mae",
        greater_is_better=task.is_classification,
    )


def mixup_for(task: data.TaskData, args) -> Mixup | None:
    """timm's Mixup/CutMix (with the label smoothing folded into its soft targets), or None when both are off."""
    if not (args.mixup or args.cutmix):
        return None
    if not task.is_classification:
        raise TrainError("--mixup/--cutmix mix class labels: they apply to classification only.")
    return Mixup(
        mixup_alpha=args.mixup,
        cutmix_alpha=args.cutmix,
        label_smoothing=args.label_smoothing,
        num_classes=len(task.labels),
    )


def train_datasets(splits, task, transforms, args, spec: ImageSpec):
    """(train, eval) datasets of model inputs: decoded once into memory (--cache-images) or from files each epoch."""
    (train_split, eval_split), (train_transform, eval_transform) = splits, transforms
    if not args.cache_images:
        return data.with_image_transform(train_split, task, train_transform), data.with_image_transform(
            eval_split, task, eval_transform
        )
    # Twice the largest input edge: random-resized crops of a quarter of the area still see full detail.
    max_side = 2 * max(spec.height, spec.width, args.image_size or 0)
    return (
        data.DecodedImages(train_split, task, train_transform, max_side=max_side),
        data.DecodedImages(eval_split, task, eval_transform, max_side=max_side),
    )


def train_whole_network(model, processor, datasets, task, scaler, args, run_dir: Path, resume_from: str | None):
    """Full fine-tuning / stage 2, with BatchNorm statistics kept unless --no-freeze-batchnorm."""
    arguments = training_arguments(
        args, run_dir, epochs=args.epochs, learning_rate=args.learning_rate, checkpoints=True
    )
    trainer = whole_network_trainer(model, processor, datasets, task, scaler, args, training_args=arguments)
    if trainer.ema is not None:
        restore_ema(trainer.ema, resume_from)
    log_trainable(model, "full stage (backbone unfrozen)")
    with modes.batchnorm_statistics_kept(model, args.freeze_batchnorm) as kept:
        if kept:
            logger.info("full stage: %d BatchNorm layers keep their running statistics", kept)
        trainer.train(resume_from_checkpoint=resume_from)
    return trainer


def backbone_learning_rate(args) -> float:
    if args.backbone_learning_rate is not None:
        return args.backbone_learning_rate
    return args.learning_rate * (0.2 if args.mode == "two-stage" else 1.0)


# ----------------------------------------------------------------------------- the run


def run_training(args, command: str) -> Path:
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
    processor = resolution_processor(model, processor, args)
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
        trainer = train_head_on_features(model, train_split, eval_split, task, eval_transform, scaler, args, run_dir)
    if args.mode in ("full", "two-stage"):
        datasets = train_datasets((train_split, eval_split), task, (train_transform, eval_transform), args, spec)
        trainer = train_whole_network(model, processor, datasets, task, scaler, args, run_dir, resume_from)

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


def photo_augment(args) -> PhotoAugment:
    return PhotoAugment(
        crop_scale_min=args.crop_scale_min,
        color_jitter=args.color_jitter or None,
        auto_augment=args.auto_augment,
        random_erasing=args.random_erasing,
    )


def best_eval_size(model, processor, eval_split, task, args, train_spec: ImageSpec):
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


def save_checkpoint(model, processor, run_dir: Path) -> None:
    """config.json + model.safetensors, and the processor unless timm's config.json already carries it."""
    model.save_pretrained(run_dir, safe_serialization=True)
    if not is_timm(model.config):
        processor.save_pretrained(run_dir)


def write_training_config(
    args, task: data.TaskData, spec, command: str, run_dir: Path, *, resumed: bool, outcome: dict | None = None
) -> None:
    """training_config.json; a resumed run keeps the command that started it and adds the last resume command."""
    path = run_dir / "training_config.json"
    config = {
        "base_model": args.model,
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
    }
    if task.is_regression:
        config.update(loss=args.loss, target_unit=args.target_unit, condition_column=task.condition_column)
    if outcome:
        config.update(outcome)
    if resumed and path.is_file():
        config.update(command=json.loads(path.read_text())["command"], resume_command=command)
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))


def recipe(args) -> dict:
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


def evaluate_saved(run_dir: Path, eval_split, task: data.TaskData, args, outcome: dict) -> dict:
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
    run_dir: Path, task, args, results: dict, logits: np.ndarray, labels: np.ndarray, extra: dict
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
