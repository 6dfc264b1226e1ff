r"""Average the weights of checkpoints of one model (a "model soup") and finish the average as a training run
finishes: calibrated on the eval split, evaluated through its own processor, saved with its record and model card.

    python -m train.average runs/food10 runs/food10-288 runs/food10-288/checkpoint-840 \
        --dataset ../shared/data/food10 --output-dir runs/food10-soup
    python -m train.average runs/boneage-160 runs/boneage-160/checkpoint-3100 --dataset ../shared/data/boneage \
        --output-dir runs/boneage-soup --robustness-check

An INGREDIENT is a checkpoint folder a TransferLab run saved (its classifier's temperature, which its
training_config.json records, is taken back out of its head first), or a Trainer checkpoint-* folder inside a run
folder (its weight EMA, ema.safetensors, when the run kept one, else its weights; uncalibrated, and a regressor's
head brought from the run's normalised targets to their unit). All must share architecture, config, labels and
preprocessing, and come from runs on --dataset. Floating-point tensors are averaged uniformly; integer buffers
(BatchNorm's step counts) are the first ingredient's. OUTPUT_DIR gets what `python -m train` writes into a run
folder: the checkpoint (the first ingredient's config and processor, a classifier calibrated anew on --eval-split),
eval_results.json and its plot, training_config.json (this command, the ingredients' training commands as earlier
commands, and `averaged_from`) and the model card. It prints the headline metric last.

Why hand-written: timm's avg_checkpoints.py is a script of timm's repository, not part of the installed timm package.
"""

from __future__ import annotations

import argparse
import logging
import sys

# The library (train/averaging.py: torch, datasets, transformers) imports once the arguments are parsed, so that
# `--help` and a usage error answer at once.


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.average", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ingredients", nargs="+", metavar="INGREDIENT", help="a checkpoint folder, or a checkpoint-*")
    parser.add_argument("--dataset", required=True, help="the local imagefolder or hub dataset they were trained on")
    parser.add_argument("--output-dir", required=True, help="the folder of the averaged checkpoint")
    parser.add_argument("--eval-split", default="validation", help="calibrated and measured on (default: validation)")
    parser.add_argument(
        "--robustness-check",
        action="store_true",
        help="regression on X-rays: also report MAE on the eval split given other sources' look",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="data-loading processes (0: load in this one)")
    args = parser.parse_args(argv)
    if len(args.ingredients) < 2:
        parser.error("give two checkpoints or more: the average of one is itself")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("train").setLevel(logging.INFO)  # our progress notes; other libraries stay at warnings
    args = parse_args(argv)
    from hub.cards import rerunnable_command, write_model_card
    from hub.checkpoint import CheckpointError
    from train import evaluation
    from train.averaging import AverageError, average_checkpoints
    from train.data import DataError

    try:
        out, results, task = average_checkpoints(
            args.ingredients,
            dataset=args.dataset,
            output_dir=args.output_dir,
            eval_split=args.eval_split,
            robustness_check=args.robustness_check,
            batch_size=args.batch_size,
            workers=args.workers,
            command=rerunnable_command("python -m train.average", argv),
        )
    except (AverageError, CheckpointError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {write_model_card(out)}")
    print(evaluation.headline(task, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
