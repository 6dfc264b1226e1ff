"""Training images/s on this machine: images decoded from their files every epoch (the old data path) against
decoded once into memory (`python -m train`'s default, `--cache-images`), in one run, on a real image folder.

    python -m bench.train_data_path --dataset ../shared/data/food10 --batch-size 32 --steps 14 --warmup-steps 4 \
        --train-args="--image-size 160 --auto-augment rand-m9-mstd0.5 --random-erasing 0.25 --dataloader-workers 2"

Both runs are `bench.train_throughput`'s "ours": the Trainer `python -m train --mode full` builds (--model, by
default efficientnet-lite0, with a new head), stopped after --steps, with only the data path changed
(`--no-cache-images` for the old one). Only the steps after the warm-up are timed, so the one-off decoding of
the cache is not; it is printed on its own.
The last line is the headline ratio.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

from bench.train_throughput import StepTimer, device_line, model_folder, ours, quiet_libraries, timed_training
from train import data

PATHS = {"files each epoch": "--no-cache-images", "decoded once": "--cache-images"}


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="an imagefolder with train/ (e.g. ../shared/data/food10)")
    parser.add_argument("--model", default="lite0", help="lite0 (the default backbone) or a checkpoint folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=14, help="optimizer steps each run trains")
    parser.add_argument("--warmup-steps", type=int, default=4, help="the first steps, not timed")
    parser.add_argument("--train-args", default="", help="more `python -m train` flags for both runs")
    return parser.parse_args(argv)


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
    speeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(options.model, Path(tmp))
        for name, flag in PATHS.items():
            timer = StepTimer()
            run = argparse.Namespace(batch_size=options.batch_size, steps=options.steps,
                                     train_args=f"{options.train_args} {flag}")
            built, context = ours(folder, Path(options.dataset), Path(tmp) / name.replace(" ", "-"), run, timer)
            speeds[name], busy = timed_training(built, context, timer, options.warmup_steps, options.batch_size)
            print(f"{name:17s} {speeds[name]:6.1f} img/s (busy {busy:4.0%})", flush=True)
            del built, context
            gc.collect()
    print(f"decoding the train split once took {decode_seconds(options.dataset):.1f} s", flush=True)
    ratio = speeds["decoded once"] / speeds["files each epoch"]
    print(f"decoded once / files each epoch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
