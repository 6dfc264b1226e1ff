"""The stages of a run: the new head on cached backbone features (backbone frozen), then the whole network.

`--mode feature-extraction` runs the first, `full` the second, `two-stage` both (`train_stages`). Each takes the
`Run` that train/run.py's `build_run` made.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from datasets import Dataset as HFDataset
from timm.data import Mixup
from timm.utils import ModelEmaV3
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.modeling_outputs import ImageClassifierOutput

from hub.checkpoint import computes_bf16_natively, parameter_counts
from hub.contract import TrainingMode, TrainingPrecision
from hub.preprocessing import image_spec
from train import data, evaluation, heads, metrics
from train.arguments import TrainArguments, TrainError
from train.progress import stage_callbacks
from train.recipe_trainer import RecipeTrainer
from train.regression import TargetScaler, own_outputs, regression_loss

if TYPE_CHECKING:
    from train.run import Run

logger = logging.getLogger("train")


def uses_bf16(precision: TrainingPrecision) -> bool:
    """Whether to train under bf16 autocast: asked for, or `auto` on hardware that computes bf16 natively."""
    if precision != TrainingPrecision.AUTO:
        return precision == TrainingPrecision.BF16
    return computes_bf16_natively("cuda" if torch.cuda.is_available() else "cpu")


def log_trainable(model: nn.Module, stage: str) -> None:
    trainable, total = parameter_counts(model)
    logger.info(
        "%s: %s of %s parameters train (%.1f%%)", stage, f"{trainable:,}", f"{total:,}", 100 * trainable / total
    )


# ----------------------------------------------------------------------------- losses and metrics


# Symmetric cross-entropy (Wang et al., ICCV 2019) is written here: neither timm nor torch ships it.
REVERSE_LOG_ZERO = -4.0  # the paper's value for log 0 in the reverse term: what a wrong label costs at most


def classification_loss(label_smoothing: float = 0.0, reverse_weight: float = 0.0):
    """Cross-entropy against class ids (smoothed) or against Mixup's soft targets (smoothed by Mixup), plus
    `reverse_weight` times the reverse cross-entropy (symmetric cross-entropy, for noisy labels)."""

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"].float()
        smoothing = label_smoothing if labels.ndim == 1 else 0.0
        loss = nn.functional.cross_entropy(logits, labels, label_smoothing=smoothing)
        if reverse_weight:
            loss = loss + reverse_weight * reverse_cross_entropy(logits, labels, smoothing)
        return loss

    return compute_loss


def reverse_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """-sum(p * log q): the model's probabilities p against the targets q, with log 0 taken as REVERSE_LOG_ZERO.

    Bounded by -REVERSE_LOG_ZERO, so a photo whose label is wrong cannot pull the model as hard as under
    cross-entropy alone; for a hard label it is -REVERSE_LOG_ZERO * (1 - p_label), a mean absolute error."""
    if labels.ndim == 1:
        targets = nn.functional.one_hot(labels, logits.shape[-1]).float()
        targets = targets * (1 - label_smoothing) + label_smoothing / logits.shape[-1]
    else:
        targets = labels.float()
    log_targets = targets.log().clamp(min=REVERSE_LOG_ZERO)
    return -(logits.softmax(-1) * log_targets).sum(-1).mean()


def loss_and_metrics(task: data.TaskData, scaler: TargetScaler | None, args: TrainArguments):
    """(compute_loss_func, compute_metrics) for the Trainer; regression metrics are in the target's unit."""
    if args.reverse_ce_weight < 0:
        raise TrainError(f"--reverse-ce-weight must be 0 (off) or above, not {args.reverse_ce_weight}.")
    if task.is_classification:
        loss = classification_loss(args.label_smoothing, args.reverse_ce_weight)
        return loss, lambda prediction: metrics.classification_scalars(prediction.predictions, prediction.label_ids)
    if args.reverse_ce_weight:
        raise TrainError("--reverse-ce-weight is a term of the class labels' loss: it applies to classification only.")

    def regression_eval(prediction):
        predicted, targets = own_outputs(prediction.predictions, prediction.label_ids)
        return metrics.regression_metrics(scaler.denormalize(predicted), targets)

    return regression_loss(args.loss, scaler), regression_eval


def training_arguments(
    args: TrainArguments, run_dir: Path, *, epochs: float, learning_rate: float, checkpoints: bool
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


def cached_features(
    model: nn.Module, split: HFDataset, task: data.TaskData, transform, *, batch_size: int, workers: int, bf16: bool
) -> HFDataset:
    """The frozen backbone's pooled features (the head's input) for every image, computed once.

    Why hand-written: no library caches a frozen backbone's outputs; this makes the frozen stage cost one
    forward pass over the data instead of one per epoch. The pass is evaluation's, with a hook on the head.
    """
    captured: list[torch.Tensor] = []
    hook = heads.head_layer(model).register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0].float().cpu())
    )
    was_training = model.training
    try:
        with torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16, enabled=bf16):
            _, labels = evaluation.predict(
                model,
                data.with_image_transform(split, task, transform),
                batch_size=batch_size,
                workers=workers,
                desc="caching features",
            )
    finally:
        hook.remove()
        model.train(was_training)
    return HFDataset.from_dict({"features": torch.cat(captured).numpy(), "labels": labels}).with_format("torch")


def train_stages(run: Run) -> Trainer:
    """The stages the mode asks for (a resumed run continues the whole-network one); returns the last's Trainer."""
    mode = run.args.mode
    if mode.trains_head_first and not run.resume_from:
        trainer = train_head_on_features(run)
    if mode.trains_backbone:
        trainer = train_whole_network(run)
    return trainer


def train_head_on_features(run: Run) -> Trainer:
    """Stage 1 / feature extraction: backbone frozen, only the new head trains (on cached features)."""
    args = run.args
    heads.freeze_backbone(run.model, frozen=True)
    log_trainable(run.model, "head stage (backbone frozen)")
    logger.info("head stage: caching backbone features of %d + %d images", *map(len, run.splits))
    train_features, eval_features = (
        cached_features(
            run.model,
            split,
            run.task,
            run.eval_transform,
            batch_size=args.eval_batch_size,
            workers=args.dataloader_workers,
            bf16=uses_bf16(args.precision),
        )
        for split in run.splits
    )
    loss_func, compute_metrics = loss_and_metrics(run.task, run.scaler, args)
    trainer = Trainer(
        model=HeadOnly(heads.head_layer(run.model)),
        args=training_arguments(
            args, run.run_dir, epochs=args.head_epochs, learning_rate=args.head_learning_rate, checkpoints=False
        ),
        train_dataset=train_features,
        eval_dataset=eval_features,
        compute_loss_func=loss_func,
        compute_metrics=compute_metrics,
        callbacks=stage_callbacks(args.progress_jsonl, run.task.kind, stage="head"),
    )
    trainer.train()
    return trainer


# ----------------------------------------------------------------------------- stage 2: the whole network


def whole_network_trainer(
    run: Run, datasets: tuple, *, training_args: TrainingArguments, callbacks=()
) -> RecipeTrainer:
    """The Trainer for full fine-tuning / stage 2: everything trains, the backbone at its own (lower) learning rate."""
    args, task, model = run.args, run.task, run.model
    train_dataset, eval_dataset = datasets
    heads.freeze_backbone(model, frozen=False)
    optimizer = torch.optim.AdamW(
        heads.parameter_groups(
            model,
            learning_rate=args.learning_rate,
            backbone_learning_rate=backbone_learning_rate(args),
            weight_decay=args.weight_decay,
        ),
        fused=torch.cuda.is_available(),  # what the Trainer's own default optimizer uses on a GPU (not timed here)
    )
    loss_func, compute_metrics = loss_and_metrics(task, run.scaler, args)
    return RecipeTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data.collate,
        processing_class=run.processor,  # saved into every checkpoint-*, so a resumed run finds it
        compute_loss_func=loss_func,
        compute_metrics=compute_metrics,
        optimizers=(optimizer, None),  # the scheduler Trainer builds scales both groups alike
        callbacks=list(callbacks),
        mixup=mixup_for(task, mixup=args.mixup, cutmix=args.cutmix, label_smoothing=args.label_smoothing),
        ema=ModelEmaV3(model, decay=args.ema_decay, use_warmup=True) if args.ema_decay else None,
        teacher=run.teacher,
        metric=task.kind.headline_metric,
        greater_is_better=task.is_classification,
    )


def mixup_for(task: data.TaskData, *, mixup: float, cutmix: float, label_smoothing: float) -> Mixup | None:
    """timm's Mixup/CutMix (with the label smoothing folded into its soft targets), or None when both are off."""
    if not (mixup or cutmix):
        return None
    if not task.is_classification:
        raise TrainError("--mixup/--cutmix mix class labels: they apply to classification only.")
    return Mixup(
        mixup_alpha=mixup,
        cutmix_alpha=cutmix,
        label_smoothing=label_smoothing,
        num_classes=len(task.labels),
    )


def train_datasets(run: Run) -> tuple:
    """(train, eval) datasets of model inputs: decoded once into memory (--cache-images) or from files each epoch."""
    (train_split, eval_split), task = run.splits, run.task
    if not run.args.cache_images:
        return (
            data.with_image_transform(train_split, task, run.train_transform),
            data.with_image_transform(eval_split, task, run.eval_transform),
        )
    # Twice the largest input edge: random-resized crops of a quarter of the area still see full detail.
    spec = image_spec(run.processor)
    max_side = 2 * max(spec.height, spec.width, run.args.image_size or 0)
    return (
        data.DecodedImages(train_split, task, run.train_transform, max_side=max_side),
        data.DecodedImages(eval_split, task, run.eval_transform, max_side=max_side),
    )


def train_whole_network(run: Run) -> RecipeTrainer:
    """Full fine-tuning / stage 2, with BatchNorm statistics kept unless --no-freeze-batchnorm."""
    args = run.args
    arguments = training_arguments(
        args, run.run_dir, epochs=args.epochs, learning_rate=args.learning_rate, checkpoints=True
    )
    callbacks = stage_callbacks(args.progress_jsonl, run.task.kind, stage="whole network")
    trainer = whole_network_trainer(run, train_datasets(run), training_args=arguments, callbacks=callbacks)
    if trainer.ema is not None:
        trainer.restore_ema(run.resume_from)
    log_trainable(run.model, "full stage (backbone unfrozen)")
    with heads.batchnorm_statistics_kept(run.model, args.freeze_batchnorm) as kept:
        if kept:
            logger.info("full stage: %d BatchNorm layers keep their running statistics", kept)
        trainer.train(resume_from_checkpoint=run.resume_from)
    return trainer


def fp32_forward(trainer: Trainer) -> None:
    """Take off the bf16 autocast that accelerate wraps around the model's forward for training, so that what is
    measured after training (the serving size, the calibration) is the fp32 model that is saved and served."""
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)


def backbone_learning_rate(args: TrainArguments) -> float:
    if args.backbone_learning_rate is not None:
        return args.backbone_learning_rate
    return args.learning_rate * (0.2 if args.mode is TrainingMode.TWO_STAGE else 1.0)
