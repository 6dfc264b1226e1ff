r"""Fine-tune an image checkpoint for classification or regression with the transformers Trainer.

    python -m train --model efficientnet-lite2 --dataset ../shared/data/food10 --output-dir runs/food10-192 \
        --mode full --epochs 20 --image-size 192 --eval-image-size 260 --augment random-crop \
        --auto-augment rand-m9-mstd0.5 --random-erasing 0.25 --crop-scale-min 0.25 --label-smoothing 0.1 \
        --learning-rate 2e-3 --backbone-learning-rate 5e-4 --ema-decay 0.998
    python -m train --model runs/food10-192 --dataset ../shared/data/food10 --output-dir runs/food10 \
        --mode full --epochs 16 --image-size 256 --eval-image-size 320 --augment random-crop \
        --auto-augment rand-m9-mstd0.5 --random-erasing 0.25 --crop-scale-min 0.25 --label-smoothing 0.1 \
        --learning-rate 1e-3 --backbone-learning-rate 3e-4 --ema-decay 0.998     # continue at a higher resolution

    python -m train --model efficientnet-lite0 --dataset ../shared/data/boneage --target-column boneage \
        --target-name "bone age" --target-unit months --condition-column male \
        --condition-labels false=female,true=male --output-dir runs/boneage --mode full --epochs 10 --image-size 128 \
        --resize squash --crop-pct 1.0 --augment radiograph --loss mae --learning-rate 2e-3 \
        --backbone-learning-rate 1e-3 --no-freeze-batchnorm --ema-decay 0.998 --robustness-check
    python -m train --model runs/boneage --dataset ../shared/data/boneage --target-column boneage \
        --target-name "bone age" --target-unit months --condition-column male \
        --condition-labels false=female,true=male --output-dir runs/boneage-160 --mode full --epochs 10 \
        --image-size 160 --resize squash --crop-pct 1.0 --augment radiograph --loss mae --learning-rate 1e-3 \
        --backbone-learning-rate 5e-4 --no-freeze-batchnorm --ema-decay 0.998 --robustness-check   # at 160 px

    python -m train ... --push-to-hub --hub-model-id your-name/food10 [--private]   # then publish it
    python -m train ... --push-to-hub --hub-model-id your-name/food10 --demo-space your-name/food10-demo  # and a Space

    python -m train config.json                       # the same arguments as one JSON file
    torchrun --standalone --nproc_per_node 2 -m train ...   # data parallel, unchanged

The task follows the target column: class labels (ClassLabel, e.g. an imagefolder's class folders)
mean classification, a numeric column (e.g. `boneage` in an imagefolder's metadata.csv) regression.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from train.arguments import TrainArguments, arguments_from_json, build_parser

# torch and transformers import after the arguments are parsed, so that `--help` and a usage error answer at once.


def parse(argv: list[str]) -> TrainArguments:
    summary, _, examples = __doc__.partition("\n\n")
    parser = build_parser("python -m train", description=summary, epilog=f"examples:\n{examples}")
    if len(argv) == 1 and argv[0].endswith(".json"):
        return arguments_from_json(parser, argv[0])
    return TrainArguments(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("train").setLevel(logging.INFO)  # our progress notes; other libraries stay at warnings
    args = parse(argv)
    from hub.cards import rerunnable_command, write_model_card
    from hub.checkpoint import CheckpointError
    from hub.push import PushError, check_repo_id, push_checkpoint
    from train.arguments import TrainError
    from train.data import DataError
    from train.run import run_training

    try:
        if args.push_to_hub:  # a bad repo id is reported now, not after hours of training
            if not args.hub_model_id:
                raise PushError("--push-to-hub needs --hub-model-id your-name/model-name.")
            check_repo_id(args.hub_model_id)
        if args.demo_space and not args.push_to_hub:
            raise PushError("--demo-space needs --push-to-hub --hub-model-id: the Space loads the model from the hub.")
        if args.demo_space:
            check_repo_id(args.demo_space)
        run_dir = run_training(args, command=rerunnable_command("python -m train", argv))
    except (DataError, TrainError, CheckpointError, PushError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only the main process writes and pushes
        return 0
    write_model_card(run_dir, repo_id=args.hub_model_id, demo_space=args.demo_space)
    if args.push_to_hub:
        try:
            commit = push_checkpoint(run_dir, args.hub_model_id, private=args.private)
        except PushError as err:
            print(f"error: {err}", file=sys.stderr)
            return 3
        print(f"Pushed {run_dir} to {commit.commit_url}")
    if args.demo_space:
        return publish_demo_space(args.demo_space, args.hub_model_id, Path(run_dir), private=args.private)
    return 0


def publish_demo_space(space_id: str, model_id: str, run_dir: Path, *, private: bool) -> int:
    """Publish a Space that serves the pushed model: hub.space, the code behind `python -m hub.space`."""
    from transformers import AutoConfig

    from hub.contract import Task
    from hub.push import PushError
    from hub.space import SpaceError, publish_space, published_message

    regression = Task.from_config(AutoConfig.from_pretrained(run_dir)).is_regression
    served = {"boneage_model" if regression else "food_model": model_id}
    try:
        # The Space folder goes next to the run folder: inside it, it would be uploaded with the model.
        commit = publish_space(space_id, **served, private=private, out=Path(f"{run_dir}-space"))
    except (SpaceError, PushError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 4
    print(published_message(space_id, private=private, commit=commit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
