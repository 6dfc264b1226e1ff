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
import sys
from pathlib import Path

# The library (train/evaluation.py: torch, datasets, transformers) imports once the arguments are parsed, so that
# `--help` and a usage error answer at once.

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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from hub.cards import CardError, add_split_results, rerunnable_command, rerunnable_path
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
        rows = evaluation.load_split(args.dataset, split, defaulted=args.split is None)
        rows, task = evaluation.checkpoint_task(
            checkpoint, rows, target_column=args.target_column, image_column=args.image_column
        )
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
    payload = evaluation.results_payload(
        task,
        args.dataset,
        split,
        results,
        len(labels),
        model=rerunnable_path(args.model),
        command=rerunnable_command("python -m train.evaluate", argv),
    )
    # a folder the user owns is written into; a hub download's cache is not
    out = Path(args.output_dir or (checkpoint.folder if local_folder(args.model) else eval_folder(args.model)))
    written = evaluation.write_eval_results(
        out, payload, task, logits, labels, unit=checkpoint.task.unit, suffix=f"_{split}"
    )
    print(f"wrote {written}")
    if args.update_card:
        try:
            print(f"updated {add_split_results(checkpoint.folder, payload, unit=checkpoint.task.unit)}")
        except CardError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(evaluation.headline(task, results))
    return 0


def eval_folder(ref: str) -> Path:
    """Where the results of a hub checkpoint go: eval/<owner>--<name>."""
    return Path("eval") / ref.replace("/", "--")


if __name__ == "__main__":
    sys.exit(main())
