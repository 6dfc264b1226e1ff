"""The Train tab from pressing Train to a usable model, through gradio_client, against the same run from the CLI.

    OMP_WAIT_POLICY=PASSIVE python -m bench.train_tab --dataset ../shared/data/food10 [--per-class 30] \
        [--mode "train only a new head (fast)"] [--epochs 3] [--seed 0] [--tab-only]

A zip of `--per-class` training photos of each class of an imagefolder (drawn with `--seed`), with the folder's
whole validation/ split, goes to the tab of an app served in this process (efficientnet-lite0, the default base);
/train is timed from its submission to its last update (the run done, the checkpoint zipped). The baseline is the
command line the tab shows, run in the same job folder on the same prepared data: the tab's overhead is the ratio of
the two. Prints both times, the ratio, and the validation accuracy each reached; with --tab-only, the tab's alone
(what a mode reaches in a given time, without the baseline's second run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hub.constants import IMAGE_SUFFIXES

HEAD_ONLY = "train only a new head (fast)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.train_tab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="an imagefolder with train/<class>/ and validation/<class>/")
    parser.add_argument("--per-class", type=int, default=30, help="training photos of each class (default 30)")
    parser.add_argument("--mode", default=HEAD_ONLY, help=f"the tab's mode, in its words (default '{HEAD_ONLY}')")
    parser.add_argument("--epochs", type=float, default=None, help="epochs of the mode's stage (default: the tab's)")
    parser.add_argument("--seed", type=int, default=0, help="which photos are drawn (default 0)")
    parser.add_argument("--tab-only", action="store_true", help="time the tab only, not the command line after it")
    return parser.parse_args(argv)


def photo_zip(dataset: Path, per_class: int, seed: int, out: Path) -> Path:
    """train/<class>/ with `per_class` photos of each class (drawn with `seed`), and the whole validation/."""
    rng = random.Random(seed)
    with zipfile.ZipFile(out, "w") as zipped:
        for class_dir in sorted((dataset / "train").iterdir()):
            photos = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            for photo in rng.sample(photos, per_class):
                zipped.write(photo, f"train/{class_dir.name}/{photo.name}")
        for photo in sorted((dataset / "validation").rglob("*")):
            if photo.suffix.lower() in IMAGE_SUFFIXES:
                zipped.write(photo, f"validation/{photo.parent.name}/{photo.name}")
    return out


def tab_run(url: str, archive: Path, mode: str, epochs: float | None) -> tuple[float, dict]:
    """(seconds from pressing Train to its last update, that update by output name) through gradio_client."""
    from gradio_client import Client, handle_file

    from demos.tabs import train
    from demos.training.choices import TrainOptions

    defaults = TrainOptions()
    head_epochs = epochs if epochs and mode == HEAD_ONLY else defaults.head_epochs
    rows = [""] * train.MAX_CLASSES + [None] * train.MAX_CLASSES
    inputs = [
        train.SOURCES[1], handle_file(archive), None, None, train.NO_CONDITION, "efficientnet-lite0", mode,
        epochs or defaults.epochs, head_epochs, defaults.learning_rate, defaults.head_learning_rate, train.OWN_SIZE,
        True, *rows,
    ]  # fmt: skip
    client = Client(url, verbose=False)
    started = time.perf_counter()
    result = client.predict(*inputs, api_name="/train")
    seconds = time.perf_counter() - started
    names = ("summary", "progress", "loss_plot", "metric_plot", "command", "status", "log", "metrics")
    return seconds, dict(zip(names, result, strict=False))


def cli_run(job_folder: Path, command: str) -> float:
    """Seconds of the tab's own command line, run in its job folder into a new output folder, at the CPU priority
    the tab runs its jobs at (so that only the tab's own work differs)."""
    from demos.guards.priority import SLOW_WORK_NICENESS

    argv = shlex.split(command)[3:]  # after "python -m train"
    argv[argv.index("--output-dir") + 1] = "run-cli"
    started = time.perf_counter()
    project = Path(__file__).resolve().parent.parent  # `train` imports from the checkout's root, as the tab's does
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])))
    subprocess.run(
        ["nice", "-n", str(SLOW_WORK_NICENESS), sys.executable, "-m", "train", *argv],
        cwd=job_folder,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from demos.app import build_app, launch
    from demos.models import load_models
    from demos.training.jobs import JobRunner
    from demos.training.settings import TrainingSettings

    work = Path(tempfile.mkdtemp(prefix="bench-train-tab-"))
    archive = photo_zip(Path(args.dataset), args.per_class, args.seed, work / "photos.zip")
    training = TrainingSettings(runner=JobRunner(work / "jobs"))
    models = load_models()
    for model in models.checkpoints.values():  # their compiling must not share the cores with the timed run
        model.wait_until_compiled()
    demo = build_app(models=models, training=training)
    url, _ = launch(demo, prevent_thread_lock=True, training=True)
    try:
        seconds, result = tab_run(url, archive, args.mode, args.epochs)
    finally:
        demo.close()
    if not result["status"].startswith("**Done**"):
        raise SystemExit(f"the tab's run did not finish: {result['status']}")
    print(f"command: {result['command']}")
    print(f"tab, pressing Train to a usable model: {seconds:.1f} s", flush=True)
    job_folder = next((work / "jobs").glob("*/*/run")).parent

    def accuracy(run: str) -> float:
        return json.loads((job_folder / run / "eval_results.json").read_text())["metrics"]["accuracy"]

    if args.tab_only:
        print(f"validation accuracy: tab {accuracy('run'):.3f}")
        return
    cli_seconds = cli_run(job_folder, result["command"])
    print(f"cli, the same command: {cli_seconds:.1f} s")
    print(f"validation accuracy: tab {accuracy('run'):.3f}, cli {accuracy('run-cli'):.3f}")
    print(f"tab / cli: {seconds / cli_seconds:.3f}")


if __name__ == "__main__":
    main()
