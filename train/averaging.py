"""Weight averaging of checkpoints of one model (a "model soup"): each ingredient's weights brought back to the scale
its run learnt them on, their uniform average, and the average finished as a training run finishes (calibrated,
saved, evaluated as saved, recorded; train/outputs.py). `python -m train.average` runs `average_checkpoints`.
"""

from __future__ import annotations

import dataclasses
import logging
import reprlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hub.cards import rerunnable_path
from hub.checkpoint import Checkpoint, load_checkpoint, local_folder
from hub.contract import TRAINING_CONFIG, TrainingRecord
from hub.preprocessing import image_spec
from train import calibration, data, evaluation, heads
from train.arguments import TrainArguments
from train.outputs import calibrate, evaluate_folder, save_checkpoint
from train.recipe_trainer import EMA_FILE
from train.regression import TargetScaler, fold_into_head

logger = logging.getLogger("train")
# config.json keys ingredients may differ in: the calibration's threshold (fitted anew on the average), the target
# column (older checkpoints did not write it; their training records, compared instead, do) and save bookkeeping.
UNCOMPARED_CONFIG_KEYS = frozenset({"ood_threshold", "target_column", "_name_or_path", "transformers_version"})
WEIGHTS = "average"  # the record's `weights`, beside "ema" and "final" of a training run


class AverageError(ValueError):
    """The checkpoints cannot be averaged; the message names the checkpoint and what differs."""


@dataclass
class Ingredient:
    ref: str  # as the command line gave it
    checkpoint: Checkpoint  # its model holds the weights to average, on the scale its run learnt them on
    record: TrainingRecord  # the run that made it


def average_checkpoints(
    refs: list[str],
    *,
    dataset: str,
    output_dir: str,
    eval_split: str,
    robustness_check: bool,
    batch_size: int,
    workers: int,
    command: str,
) -> tuple[Path, dict, data.TaskData]:
    """Average the checkpoints `refs` into `output_dir`; returns the folder, its metrics on `eval_split`, the task."""
    out = Path(output_dir)
    if out.is_dir() and any(out.iterdir()):
        raise AverageError(f"{out} is not empty: pick a new --output-dir.")
    ingredients = [load_ingredient(ref, dataset) for ref in refs]
    check_alike(ingredients)
    first = ingredients[0]
    model, processor = first.checkpoint.model, first.checkpoint.processor
    model.load_state_dict(mean_state([ingredient.checkpoint.model.state_dict() for ingredient in ingredients]))
    target_column = first.record.target_column  # every ingredient's (check_alike)
    model.config.target_column = target_column  # as `train` writes it: evaluation and corrections read it

    rows, task = evaluation.checkpoint_task(
        first.checkpoint, data.load_split(dataset, eval_split), target_column=target_column, image_column=None
    )
    data.check_targets(rows, task, eval_split)
    data.check_images(rows, task.image_column, eval_split)
    outcome = {"weights": WEIGHTS}
    if task.is_classification:
        logits, labels = evaluation.split_logits(model, processor, rows, task, batch_size=batch_size, workers=workers)
        outcome["calibration"] = calibrate(model, logits, labels)
    save_checkpoint(model, processor, out)
    soup_record(
        ingredients, command, image_size=image_spec(processor).size, calibration=outcome.get("calibration")
    ).write(out)
    results = evaluate_folder(
        out,
        rows,
        task,
        outcome,
        dataset=dataset,
        split=eval_split,
        unit=first.checkpoint.task.unit,
        robustness_check=robustness_check,
        batch_size=batch_size,
        workers=workers,
    )
    return out, results, task


def load_ingredient(ref: str, dataset: str) -> Ingredient:
    """The checkpoint `ref` with the weights to average, on the scale its run learnt them on, and its run's record.

    A saved checkpoint has its temperature taken back out of its head. A Trainer checkpoint-* gives its weight EMA
    when the run kept one; a regressor's is on the run's normalised targets, which are folded into its head as the
    run's save folds them (refitted on the train split of `dataset`, as the run fitted them).
    """
    folder = local_folder(ref)
    if folder is None:
        raise AverageError(f"'{ref}' is not a folder: every checkpoint to average is a local checkpoint folder.")
    in_run = folder.name.startswith(f"{PREFIX_CHECKPOINT_DIR}-")
    run_folder = folder.parent if in_run else folder
    try:
        record = TrainingRecord.read(run_folder)
    except (TypeError, ValueError) as err:
        raise AverageError(
            f"{run_folder / TRAINING_CONFIG} is not a training record this version reads: {err}"
        ) from err
    if record is None:
        raise AverageError(
            f"{run_folder} has no {TRAINING_CONFIG}: a checkpoint to average is a folder a TransferLab run saved, or "
            "a checkpoint-* folder inside one (its calibration, data and commands are read from the run's record)."
        )
    if record.dataset != data.dataset_name(dataset):
        raise AverageError(
            f"{ref} was trained on '{record.dataset}', not on '{data.dataset_name(dataset)}' (--dataset): the average "
            "is calibrated and measured on the data its checkpoints learnt."
        )
    checkpoint = load_checkpoint(ref)
    head = heads.head_layer(checkpoint.model)
    ema = folder / EMA_FILE if in_run and (folder / EMA_FILE).is_file() else None
    logger.info("averaging %s: %s", ref, f"its weight EMA ({EMA_FILE})" if ema else "its weights")
    if in_run:
        if ema:
            checkpoint.model.load_state_dict(load_file(ema))
        if checkpoint.task.is_regression:
            train_split = data.load_split(dataset, TrainArguments.train_split)
            fold_into_head(head, TargetScaler.fit(train_split[record.target_column]))
    elif record.calibration:
        calibration.fold_temperature(head, 1 / record.calibration["temperature"])  # logits x T: the head it learnt
    return Ingredient(ref, checkpoint, record)


def check_alike(ingredients: list[Ingredient]) -> None:
    """Refuse checkpoints that differ from the first in architecture, config, labels, preprocessing or target."""
    first = ingredients[0]
    config = _compared_config(first.checkpoint)
    for other in ingredients[1:]:
        theirs = _compared_config(other.checkpoint)
        differing = sorted(key for key in config.keys() | theirs.keys() if config.get(key) != theirs.get(key))
        if differing:
            named = "; ".join(
                f"{k}: {reprlib.repr(config.get(k))} against {reprlib.repr(theirs.get(k))}" for k in differing
            )
            raise AverageError(
                f"{other.ref} cannot be averaged with {first.ref}: their config.json differ in {named}. Averaged "
                "checkpoints share one architecture, labels and input size."
            )
        ours, spec = image_spec(first.checkpoint.processor), image_spec(other.checkpoint.processor)
        if ours != spec:
            raise AverageError(
                f"{other.ref} cannot be averaged with {first.ref}: their image processors differ "
                f"({ours} against {spec})."
            )
        if other.record.target_column != first.record.target_column:
            raise AverageError(
                f"{other.ref} cannot be averaged with {first.ref}: they learnt other columns "
                f"('{other.record.target_column}' against '{first.record.target_column}')."
            )


def _compared_config(checkpoint: Checkpoint) -> dict:
    return {k: v for k, v in checkpoint.model.config.to_dict().items() if k not in UNCOMPARED_CONFIG_KEYS}


def mean_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of every floating-point tensor; the others (BatchNorm's step counts) are the first's."""
    return {
        name: torch.stack([state[name] for state in states]).mean(0) if tensor.is_floating_point() else tensor
        for name, tensor in states[0].items()
    }


def soup_record(
    ingredients: list[Ingredient], command: str, *, image_size: tuple[int, int], calibration: dict | None
) -> TrainingRecord:
    """The average's training record: the latest run's (the one with the most commands, whose runs the others' are
    part of, or the first), with this command, every ingredient's training commands before it, and its sources."""
    latest = max(ingredients, key=lambda ingredient: len(ingredient.record.all_commands))
    commands = [earlier for ingredient in ingredients for earlier in ingredient.record.all_commands]
    terms = [ingredient.record.data_terms for ingredient in ingredients if ingredient.record.data_terms]
    return dataclasses.replace(
        latest.record,
        command=command,
        earlier_commands=tuple(dict.fromkeys(commands)),  # each once, in the order the ingredients give them
        resume_command=None,
        weights=WEIGHTS,
        averaged_from=tuple(rerunnable_path(ingredient.ref) for ingredient in ingredients),
        data_terms=" ".join(dict.fromkeys(terms)) or None,  # every dataset's terms bind the average
        image_size=image_size,
        eval_sizes=None,  # the served size is the ingredients': not chosen here
        calibration=calibration,
    )
