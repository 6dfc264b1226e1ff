"""Measure any checkpoint on any split of a local imagefolder or a hub dataset (as timm's validate.py does).

    python -m train.evaluate checkpoints/food10 --dataset ../shared/data/food10 --split validation
    python -m train.evaluate runs/boneage --dataset your-name/boneage-test --update-card   # its test split
    python -m train.evaluate your-name/food10 --dataset your-name/food-photos --output-dir eval/food10
    python -m train.evaluate food10 --dataset corrections/food --split train   # the demo's corrections

MODEL is a hub id, a checkpoint folder or a builtin alias. --split defaults to test, a held-out split, which
../shared/data does not have (its food10 and boneage have train and validation only). The split is read and
checked as `python -m train` reads its data (same errors for a missing split or column, a bad target, an
unreadable image). Class labels are matched to the checkpoint's own by name, and a conditioned regression picks
each row's output from the checkpoint's `condition_outputs`. Writes eval_results_<split>.json and the split's
confusion matrix or predicted-vs-true plot into --output-dir (default: the checkpoint's folder when it is a local
one, else eval/<name>), and prints the headline metric last: `accuracy=0.xxxx` or `mae=x.xx`. --update-card adds
the split's results to the model card's model-index, next to those of the other splits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

# numpy, torch, datasets and transformers import in the functions that use them: `--help` answers at once.
if TYPE_CHECKING:
    from hub.checkpoint import Checkpoint
    from train import data

HEADLINE = {"classification": ("accuracy", "{:.4f}"), "regression": ("mae", "{:.2f}")}  # by the task's kind
DEFAULT_SPLIT = "test"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="checkpoint: hub id, folder or builtin alias")
    parser.add_argument("--dataset", required=True, help="a local imagefolder or a hub dataset id")
    parser.add_argument(
        "--split", help=f"the split to measure (default: {DEFAULT_SPLIT}; ../shared/data has train and validation)"
    )
    parser.add_argument("--output-dir", help="default: the checkpoint folder if local, else eval/NAME")
    parser.add_argument("--update-card", action="store_true", help="add the split's results to the model card")
    parser.add_argument("--target-column", help="regression: the numeric column (default: the one it trained on)")
    parser.add_argument("--image-column", help="the image column (default: the first one)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="data-loading processes (0: load in this one)")
    return parser.parse_args(argv)


def output_folder(ref: str, checkpoint: Checkpoint, wanted: str | None) -> Path:
    from hub.checkpoint import local_folder

    if wanted:
        return Path(wanted)
    # a folder the user owns is written into; a hub download's cache is not
    return checkpoint.folder if local_folder(ref) else Path("eval") / ref.replace("/", "--")


def trained_target_column(checkpoint: Checkpoint) -> str | None:
    """The target column named in the checkpoint's training_config.json, when it ships one."""
    path = checkpoint.folder / "training_config.json"
    return json.loads(path.read_text()).get("target_column") if path.is_file() else None


def checkpoint_task(checkpoint: Checkpoint, rows, *, target_column: str | None, image_column: str | None):
    """(rows, task): the split's task as the checkpoint sees it (its label ids, its conditioned outputs)."""
    from train import data

    config = checkpoint.model.config
    if checkpoint.task.is_regression:
        target_column = target_column or trained_target_column(checkpoint)
        if target_column is None:
            raise data.DataError("Pass --target-column: the checkpoint does not record which column it regresses.")
    condition_column = getattr(config, "condition_column", None)
    task = data.resolve_task(
        rows, target_column=target_column, image_column=image_column, condition_column=condition_column
    )
    if task.kind != checkpoint.task.kind:
        raise data.DataError(
            f"The checkpoint is a {checkpoint.task.kind} model but column '{task.target_column}' of the dataset "
            f"calls for {task.kind}: pass the column it was trained on with --target-column."
        )
    if task.is_regression:
        if condition_column:  # the checkpoint's own value -> output mapping, not the one this split would give
            task = data.TaskData(**{**task.__dict__, "condition_outputs": dict(config.condition_outputs)})
        return rows, task
    return aligned_labels(rows, task, checkpoint.task.labels)


def aligned_labels(rows, task: data.TaskData, model_labels: tuple[str, ...]):
    """The split's class ids renumbered to the checkpoint's (matched by name); a class it lacks is an error."""
    from hub.contract import TaskKind
    from train import data

    unknown = sorted({name.lower() for name in task.labels} - {name.lower() for name in model_labels})
    if unknown:
        raise data.DataError(
            f"The dataset has classes the checkpoint does not know: {', '.join(unknown)} "
            f"(it knows: {', '.join(model_labels)})."
        )
    rows = rows.align_labels_with_mapping({name: i for i, name in enumerate(model_labels)}, task.target_column)
    return rows, data.TaskData(TaskKind.CLASSIFICATION, task.image_column, task.target_column, tuple(model_labels))


def write_results(out: Path, payload: dict, task: data.TaskData, logits, labels, unit: str | None) -> Path:
    """eval_results_<split>.json and the split's plot, named after the split so that splits sit side by side."""
    import numpy as np

    from train import metrics
    from train.regression import own_outputs

    out.mkdir(parents=True, exist_ok=True)
    split = payload["split"]
    path = out / f"eval_results_{split}.json"
    path.write_text(json.dumps(payload, indent=2))
    # The plot functions write fixed names (those of training's validation plots, which may be in `out`):
    # draw them aside and move them in under the split's name.
    with tempfile.TemporaryDirectory(dir=out) as staging:
        staged = Path(staging)
        if task.is_classification:
            matrix = metrics.confusion_matrix(labels.astype(np.int64), logits.argmax(axis=-1), len(task.labels))
            metrics.save_confusion_matrix(matrix, list(task.labels), staged)
        else:
            metrics.save_predicted_vs_true(*own_outputs(logits, labels), unit, staged)
        for drawn in staged.iterdir():
            drawn.replace(out / f"{drawn.stem}_{split}{drawn.suffix}")
    return path


def load_split(dataset: str, split: str, *, defaulted: bool):
    """The split; when it is missing and the user did not name it, the error says it was --split's default."""
    from train import data

    try:
        return data.load_split(dataset, split)
    except data.DataError as err:
        if not defaulted or "has no split" not in str(err):
            raise
        raise data.DataError(f"{err} --split defaults to {split}: name the split to measure.") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from hub.cards import rerunnable_command, rerunnable_path
    from hub.checkpoint import CheckpointError, load_checkpoint, local_folder
    from train import data, evaluation

    split = args.split or DEFAULT_SPLIT
    try:
        if args.update_card and local_folder(args.model) is None:
            raise CheckpointError(
                f"--update-card edits the card of a local checkpoint folder: pull '{args.model}' first "
                f"(python -m hub pull {args.model} --out DIR) and evaluate DIR."
            )
        checkpoint = load_checkpoint(args.model)
        rows = load_split(args.dataset, split, defaulted=args.split is None)
        rows, task = checkpoint_task(checkpoint, rows, target_column=args.target_column, image_column=args.image_column)
        data.check_targets(rows, task, split)
        data.check_images(rows, task.image_column, split)
    except (data.DataError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logits, labels = evaluation.split_logits(
        checkpoint.model,
        checkpoint.processor,
        rows,
        task,
        batch_size=args.batch_size,
        workers=args.workers,
        desc=f"evaluating on {split}",
    )
    results = evaluation.task_metrics(task, logits, labels)
    payload = {
        "task": task.kind,
        "model": rerunnable_path(args.model),
        "dataset": data.dataset_name(args.dataset),
        "split": split,
        "num_examples": int(len(labels)),
        "metrics": results,
        "command": rerunnable_command("python -m train.evaluate", argv),
    }
    out = output_folder(args.model, checkpoint, args.output_dir)
    print(f"wrote {write_results(out, payload, task, logits, labels, checkpoint.task.unit)}")
    if args.update_card:
        from hub.cards import CardError, add_split_results

        try:
            print(f"updated {add_split_results(checkpoint.folder, payload, unit=checkpoint.task.unit)}")
        except CardError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    metric, form = HEADLINE[task.kind]
    print(f"{metric}={form.format(results[metric])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
