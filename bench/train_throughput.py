"""Training images/s of our `train` command against the transformers run_image_classification.py recipe, in one run.

    python -m bench.train_throughput                  # on an H100: ViT-B/16, ResNet-50, EfficientNet-Lite0 at 224 px

    OMP_WAIT_POLICY=PASSIVE python -m bench.train_throughput --models lite0 --images 64 --steps 6 \
        --warmup-steps 2 --batch-size 8               # CPU smoke run

    python -m bench.train_throughput --train-args="--dataloader-workers 8 --torch-compile"   # more `train` flags

Both pipelines train the same models (random or default weights, a new 10-class head) on the same synthetic
imagefolder of Food-101-sized JPEGs (512x384) that the script writes to a temporary folder:
- ours: what `python -m train --mode full` runs, built by the same `train.run.build_run` (the checked imagefolder
  splits, the model with its new head on its device, channels_last for CNNs, the training transform) and
  `train.stages` (the datasets, decoded once into memory unless --no-cache-images; `training_arguments`, with bf16
  on a GPU and its data-loader workers; the Trainer with `classification_loss` and the AdamW parameter groups of
  `train.heads`), BatchNorm statistics kept as `train` keeps them by default (for the random-weight ResNet-50 they
  are the initial 0 and 1: `--train-args=--no-freeze-batchnorm` times the batch-statistics path instead);
- baseline: the recipe a user would otherwise run, examples/pytorch/image-classification/run_image_classification.py:
  torchvision `Compose([RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize])` from the image
  processor (timm processors: their own `train_transforms`) applied with `set_transform`, and `TrainingArguments`
  defaults (fp32, no data-loader workers).
Only the steps after `--warmup-steps` are timed (wall clock from the end of the last warm-up step to the end of
the last step, the GPU synchronised), so data loading counts. "busy" is the share of that time spent inside the
steps (forward+backward+optimizer) rather than waiting for the next batch. MFU is given for ViT-B/16 on a GPU:
about 106 GFLOP a trained image (35 GFLOP forward, x3) over `--peak-tflops`. The last line is the headline ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import shlex
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from datasets import load_dataset
from datasets.utils import disable_progress_bars
from torchvision.transforms import Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop, ToTensor
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    ConvNextImageProcessor,
    ResNetConfig,
    ResNetForImageClassification,
    TimmWrapperImageProcessor,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers import logging as transformers_logging
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from bench.demo_latency import synthetic_photos, vit_base_folder
from hub.default_backbone import default_backbone_folder
from train import heads, stages
from train.__main__ import parse as parse_train_arguments
from train.run import build_run

VIT_B16_TRAIN_GFLOP_PER_IMAGE = 106  # 35 GFLOP forward at 224 px; backward costs about twice the forward
H100_BF16_PEAK_TFLOPS = 790  # the peak issue 7 takes for an H100 in bf16 (7,500 ViT-B/16 images/s at 100% MFU)
CLASSES = 10


# ----------------------------------------------------------------------------- the models and the data


def resnet50_folder(folder: Path) -> Path:
    """A ResNet-50 (transformers ResNetConfig defaults) with random weights and the processor of microsoft/resnet-50."""
    ResNetForImageClassification(ResNetConfig()).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(folder)
    return folder


BUILTIN_MODELS = {
    "vit-b16": vit_base_folder,
    "resnet50": resnet50_folder,
    "lite0": lambda folder: default_backbone_folder("efficientnet-lite0"),  # the project's default backbone
}


def model_folder(name: str, tmp: Path) -> Path:
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name](tmp / name)
    if not (Path(name) / "config.json").is_file():
        raise SystemExit(f"--models: '{name}' is neither one of {', '.join(BUILTIN_MODELS)} nor a checkpoint folder.")
    return Path(name)


def write_image_folder(root: Path, images: int) -> Path:
    """An imagefolder: `images` training JPEGs over CLASSES class folders, one validation JPEG a class."""
    for k in range(CLASSES):
        for split, count in (("train", images // CLASSES + (k < images % CLASSES)), ("validation", 1)):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            synthetic_photos(folder, count)
    return root


# ----------------------------------------------------------------------------- timing


def synchronized_time() -> float:
    if torch.cuda.is_available():  # the GPU runs behind the Python loop: wait for it before reading the clock
        torch.cuda.synchronize()
    return time.perf_counter()


class StepTimer(TrainerCallback):
    """Clock readings at the start and end of every optimizer step."""

    def __init__(self):
        self.begins: list[float] = []
        self.ends: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.begins.append(synchronized_time())

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(synchronized_time())

    def steady_state(self, warmup_steps: int, batch_size: int) -> tuple[float, float]:
        """(images/s, busy share) over the steps after the warm-up, data loading between steps included."""
        window = self.ends[-1] - self.ends[warmup_steps - 1]
        busy = sum(end - begin for begin, end in zip(self.begins[warmup_steps:], self.ends[warmup_steps:]))
        return (len(self.ends) - warmup_steps) * batch_size / window, busy / window


def timed_training(
    trainer_: Trainer, context, timer: StepTimer, warmup_steps: int, batch_size: int
) -> tuple[float, ...]:
    for quiet in (ProgressCallback, PrinterCallback):  # the bench prints its own figures, not the loss log
        trainer_.remove_callback(quiet)
    with context:
        trainer_.train()
    return timer.steady_state(warmup_steps, batch_size)


# ----------------------------------------------------------------------------- the two pipelines


def ours(folder: Path, dataset: Path, run_dir: Path, options, timer: StepTimer):
    """(the Trainer `python -m train --mode full` builds for the whole network, stopped after --steps, the
    context its training runs in: BatchNorm statistics kept unless --no-freeze-batchnorm)."""
    args = parse_train_arguments(
        [
            "--dataset",
            str(dataset),
            "--output-dir",
            str(run_dir),
            "--model",
            str(folder),
            "--mode",
            "full",
            "--batch-size",
            str(options.batch_size),
            *shlex.split(options.train_args),
        ]
    )
    run = build_run(args)
    arguments = stages.training_arguments(
        args, run_dir, epochs=args.epochs, learning_rate=args.learning_rate, checkpoints=False
    )
    # A bench stops after --steps, evaluates nothing and writes no logs; every other setting is the train command's.
    arguments = dataclasses.replace(arguments, max_steps=options.steps, eval_strategy="no", report_to=[])
    train_dataset, _ = stages.train_datasets(run)
    built = stages.whole_network_trainer(run, (train_dataset, None), training_args=arguments, callbacks=[timer])
    return built, heads.batchnorm_statistics_kept(run.model, args.freeze_batchnorm)


def recipe_train_transform(image_processor):
    """run_image_classification.py's training transform, built from the image processor as the recipe does."""
    if isinstance(image_processor, TimmWrapperImageProcessor):
        return image_processor.train_transforms
    size = image_processor.size
    size = size["shortest_edge"] if "shortest_edge" in size else (size["height"], size["width"])
    normalize = Normalize(mean=image_processor.image_mean, std=image_processor.image_std)
    return Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(), normalize])


def recipe_collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["label"] for example in examples]),
    }


def baseline(folder: Path, dataset: Path, run_dir: Path, options, timer: StepTimer):
    """run_image_classification.py --train_dir DATASET/train --remove_unused_columns False, stopped after --steps."""
    splits = load_dataset("imagefolder", data_files={"train": os.path.join(dataset, "train", "**")})
    labels = splits["train"].features["label"].names
    config = AutoConfig.from_pretrained(
        folder,
        num_labels=len(labels),
        label2id={label: str(i) for i, label in enumerate(labels)},
        id2label={str(i): label for i, label in enumerate(labels)},
        finetuning_task="image-classification",
    )
    model = AutoModelForImageClassification.from_pretrained(folder, config=config, ignore_mismatched_sizes=True)
    image_processor = AutoImageProcessor.from_pretrained(folder)
    transform = recipe_train_transform(image_processor)

    def train_transforms(batch):
        batch["pixel_values"] = [transform(image.convert("RGB")) for image in batch["image"]]
        return batch

    splits["train"].set_transform(train_transforms)
    arguments = TrainingArguments(
        output_dir=str(run_dir),
        per_device_train_batch_size=options.batch_size,
        max_steps=options.steps,
        remove_unused_columns=False,
        report_to=[],
    )
    built = Trainer(
        model=model,
        args=arguments,
        train_dataset=splits["train"],
        processing_class=image_processor,
        data_collator=recipe_collate,
        callbacks=[timer],
    )
    return built, contextlib.nullcontext()


# ----------------------------------------------------------------------------- the run


def model_flop_utilisation(name: str, images_per_second: float, peak_tflops: float) -> float | None:
    if name != "vit-b16" or not torch.cuda.is_available():
        return None
    return images_per_second * VIT_B16_TRAIN_GFLOP_PER_IMAGE * 1e9 / (peak_tflops * 1e12)


def compare(name: str, folder: Path, dataset: Path, tmp: Path, options) -> float:
    """Train `folder` with both pipelines, print one line, return ours/baseline."""
    figures = {}
    for pipeline, build in (("ours", ours), ("baseline", baseline)):
        timer = StepTimer()
        built, context = build(folder, dataset, tmp / f"run-{pipeline}-{Path(name).name}", options, timer)
        figures[pipeline] = timed_training(built, context, timer, options.warmup_steps, options.batch_size)
        del built, context
        gc.collect()  # the Trainer holds the model in reference cycles: free its GPU memory before the next run
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    ratio = figures["ours"][0] / figures["baseline"][0]
    line = "   ".join(
        f"{pipeline} {speed:8.1f} img/s (busy {busy:4.0%})" for pipeline, (speed, busy) in figures.items()
    )
    line = f"{Path(name).name:10s} {line}   ours/baseline {ratio:5.2f}x"
    if name == "vit-b16":
        utilisation = [model_flop_utilisation(name, speed, options.peak_tflops) for speed, _ in figures.values()]
        if utilisation[0] is None:
            line += "   MFU n/a (CPU)"
        else:
            peak = f"{options.peak_tflops:g} TFLOP/s"
            line += f"   MFU ours {utilisation[0]:.1%}, baseline {utilisation[1]:.1%} (of {peak})"
    print(line, flush=True)
    return ratio


def device_line() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    return f"CPU, {torch.get_num_threads()} torch threads, OMP_WAIT_POLICY={wait_policy} (torch {torch.__version__})"


def parse_options(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=list(BUILTIN_MODELS), help=f"{', '.join(BUILTIN_MODELS)} or checkpoint folders"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps a pipeline trains")
    parser.add_argument("--warmup-steps", type=int, default=10, help="the first steps, not timed")
    parser.add_argument("--images", type=int, default=None, help="training JPEGs to write (default: steps x batch)")
    parser.add_argument("--train-args", default="", help="more `python -m train` flags for ours (--train-args='--x y')")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK_TFLOPS, help="GPU peak for MFU (H100 bf16)")
    options = parser.parse_args(argv)
    options.images = options.images or options.steps * options.batch_size
    if not 1 <= options.warmup_steps < options.steps:
        parser.error("--warmup-steps must be at least 1 and below --steps (the clock starts when the warm-up ends).")
    if options.images < options.steps * options.batch_size:  # a new epoch would restart the data loader mid-timing
        parser.error(f"--images must be at least --steps x --batch-size ({options.steps * options.batch_size}).")
    return options


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    steps = f"{options.steps} steps of which {options.warmup_steps} warm-up"
    print(
        f"{device_line()}; batch {options.batch_size}, {steps}, {options.images} JPEGs of 512x384; "
        f"ours' extra train flags: '{options.train_args}'",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset = write_image_folder(tmp / "images", options.images)
        ratios = {
            Path(name).name: compare(name, model_folder(name, tmp), dataset, tmp, options) for name in options.models
        }
    listed = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
    goal = " (goal >= 4x for vit-b16)" if "vit-b16" in ratios else ""
    print(f"training speed-up over run_image_classification.py, ours/baseline images/s: {listed}{goal}")


def quiet_libraries() -> None:
    """Process-wide, hence only when run as a script: the new heads' 'newly initialized' notes are expected here."""
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    disable_progress_bars()


if __name__ == "__main__":
    quiet_libraries()
    main()
