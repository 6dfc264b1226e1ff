"""Fine-tune an image checkpoint for classification or regression with the transformers Trainer.

    python -m train --model efficientnet-lite0 --dataset ../shared/data/food10 --output-dir runs/food10 \
        --mode full --epochs 16 --image-size 160 --eval-image-size 224 --augment random-crop \
        --auto-augment rand-m9-mstd0.5 --random-erasing 0.25 --crop-scale-min 0.25 --label-smoothing 0.1 \
        --learning-rate 2e-3 --backbone-learning-rate 5e-4 --ema-decay 0.998

    python -m train --model efficientnet-lite0 --dataset ../shared/data/boneage --target-column boneage \
        --target-name "bone age" --target-unit months --condition-column male \
        --condition-labels false=female,true=male --output-dir runs/boneage --mode full --epochs 7 --image-size 128 \
        --resize squash --crop-pct 1.0 --augment radiograph --loss mae --learning-rate 2e-3 \
        --backbone-learning-rate 1e-3 --no-freeze-batchnorm --ema-decay 0.998 --robustness-check

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
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoConfig, HfArgumentParser

from hub import task_from_config
from hub.checkpoint import ALLOW_PICKLE_HELP
from hub.preprocessing import AUGMENTATIONS
from train.modes import MODES
from train.regression import LOSSES

PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class TrainArguments:
    dataset: str = field(metadata={"help": "A hub dataset id or a local imagefolder (with train/ and validation/)."})
    output_dir: str = field(metadata={"help": "The run folder: the checkpoint, its metrics, plots and logs."})
    model: str = field(
        default="efficientnet-lite0", metadata={"help": "Base checkpoint: hub id, folder or builtin alias."}
    )
    target_column: str | None = field(
        default=None, metadata={"help": "Class-label or numeric column (default: label)."}
    )
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: the first image column)."})
    train_split: str = "train"
    eval_split: str = "validation"
    mode: str = field(default="two-stage", metadata={"choices": MODES, "help": "Which parameters train, and when."})
    epochs: float = field(default=3.0, metadata={"help": "Epochs of the stage that trains the whole network."})
    head_epochs: float = field(
        default=10.0, metadata={"help": "Epochs of the frozen-backbone head stage (cached features)."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Head learning rate while the whole network trains."})
    backbone_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Backbone learning rate (default: 0.2x learning rate in two-stage, 1x in full)."},
    )
    head_learning_rate: float = field(
        default=3e-3, metadata={"help": "Learning rate of the frozen-backbone head stage."}
    )
    freeze_batchnorm: bool = field(
        default=True,
        metadata={"help": "Keep BatchNorm layers on the base checkpoint's statistics while the backbone trains."},
    )
    weight_decay: float = 0.05
    warmup_ratio: float = 0.1
    batch_size: int = 32
    eval_batch_size: int = 64
    image_size: int | None = field(default=None, metadata={"help": "Train at this square size (timm checkpoints)."})
    resize: str | None = field(
        default=None,
        metadata={"choices": ("crop", "squash"), "help": "squash: the whole image to the input size (X-rays)."},
    )
    crop_pct: float | None = field(
        default=None, metadata={"help": "Fraction of the resized image the centre crop keeps."}
    )
    eval_image_size: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate at this size (train low, serve high: FixRes); the better of it and --image-size is saved."
        },
    )
    augment: str = field(
        default="random-crop",
        metadata={
            "choices": AUGMENTATIONS,
            "help": "random-crop: timm's photo transform; radiograph (or keep-whole) for X-rays.",
        },
    )
    auto_augment: str | None = field(
        default=None,
        metadata={"help": "random-crop: timm policy, e.g. rand-m9-mstd0.5 (RandAugment) or trivialaugment."},
    )
    crop_scale_min: float = field(
        default=0.25, metadata={"help": "random-crop: smallest crop area kept, as a fraction."}
    )
    color_jitter: float = field(
        default=0.3, metadata={"help": "random-crop: colour jitter (0 turns it off; off under --auto-augment)."}
    )
    random_erasing: float = field(default=0.0, metadata={"help": "random-crop: probability of timm's random erasing."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Classification: label smoothing of the targets."})
    mixup: float = field(default=0.0, metadata={"help": "Classification: timm Mixup alpha (0 = off)."})
    cutmix: float = field(default=0.0, metadata={"help": "Classification: timm CutMix alpha (0 = off)."})
    ema_decay: float | None = field(
        default=None, metadata={"help": "Keep an EMA of the weights (e.g. 0.998); saved when it validates better."}
    )
    cache_images: bool = field(
        default=True, metadata={"help": "Decode every image once into memory instead of each epoch."}
    )
    calibrate: bool = field(
        default=True, metadata={"help": "Classification: fold a temperature fitted on validation into the head."}
    )
    condition_column: str | None = field(
        default=None,
        metadata={"help": "Regression: one output per value of this column (e.g. male); each row uses its own."},
    )
    condition_labels: str | None = field(
        default=None, metadata={"help": "Names of the condition's values for id2label, e.g. false=female,true=male."}
    )
    robustness_check: bool = field(
        default=False,
        metadata={"help": "Regression on X-rays: also report MAE on validation given other sources' look."},
    )
    loss: str = field(default="mae", metadata={"choices": LOSSES, "help": "Regression loss."})
    target_name: str | None = field(default=None, metadata={"help": "Regression: what is predicted, e.g. 'bone age'."})
    target_unit: str | None = field(default=None, metadata={"help": "Regression: the unit of the target, e.g. months."})
    data_terms: str | None = field(default=None, metadata={"help": "The data's terms of use, for the model card."})
    seed: int = 42
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint-* in the output dir."})
    torch_compile: bool = field(default=False, metadata={"help": "torch.compile the model (GPU)."})
    precision: str = field(
        default="auto",
        metadata={
            "choices": PRECISIONS,
            "help": "bf16 autocast, or fp32. auto: bf16 where the GPU or CPU computes it natively (AVX512-BF16, AMX).",
        },
    )
    dataloader_workers: int = 2
    logging_steps: int = 20
    allow_pickle: bool = field(default=False, metadata={"help": f"--model: {ALLOW_PICKLE_HELP}."})
    push_to_hub: bool = field(
        default=False, metadata={"help": "After training, publish the run folder as --hub-model-id."}
    )
    hub_model_id: str | None = field(default=None, metadata={"help": "The hub repo to push to: your-name/model-name."})
    private: bool = field(default=False, metadata={"help": "Create the hub repo private."})
    demo_space: str | None = field(
        default=None, metadata={"help": "After the push, publish the demo app running the model as this Space."}
    )


def parse(argv: list[str]) -> TrainArguments:
    parser = HfArgumentParser(TrainArguments)
    if len(argv) == 1 and argv[0].endswith(".json"):
        (args,) = parser.parse_json_file(argv[0])
    else:
        (args,) = parser.parse_args_into_dataclasses(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("train").setLevel(logging.INFO)  # our progress notes; other libraries stay at warnings
    args = parse(argv)
    from hub.cards import write_model_card
    from hub.checkpoint import CheckpointError
    from hub.push import PushError, check_repo_id, push_checkpoint
    from train.data import DataError
    from train.trainer import TrainError, run_training

    try:
        if args.push_to_hub:  # a bad repo id is reported now, not after hours of training
            if not args.hub_model_id:
                raise PushError("--push-to-hub needs --hub-model-id your-name/model-name.")
            check_repo_id(args.hub_model_id)
        if args.demo_space and not args.push_to_hub:
            raise PushError("--demo-space needs --push-to-hub --hub-model-id: the Space loads the model from the hub.")
        if args.demo_space:
            check_repo_id(args.demo_space)
        run_dir = run_training(args, command="python -m train " + shlex.join(argv))
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
    """Run `python -m demos.space` for the pushed model: a program of its own, as train never imports demos."""
    tab = "--boneage-model" if task_from_config(AutoConfig.from_pretrained(run_dir)).is_regression else "--food-model"
    # The Space folder goes next to the run folder: inside it, it would be uploaded with the model.
    command = [sys.executable, "-m", "demos.space", space_id, tab, model_id, "--out", f"{run_dir}-space"]
    return 0 if subprocess.run(command + (["--private"] if private else [])).returncode == 0 else 4


if __name__ == "__main__":
    sys.exit(main())
