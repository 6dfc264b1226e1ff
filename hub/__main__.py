"""Checkpoint command line.

python -m hub default --out DIR [--variant efficientnet-lite0]   # write the offline default backbone
python -m hub show REF [--allow-pickle]                          # what a checkpoint is (alias, folder or hub id)
python -m hub push RUN_DIR REPO_ID [--private] [--revision BRANCH]  # publish a checkpoint folder (one commit)
python -m hub pull REPO_ID [--revision R] --out DIR              # download a hub checkpoint into a folder
python -m hub push-dataset DIR DATASET_ID [--public]             # publish an imagefolder (e.g. corrections/food)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hub.constants import ALLOW_PICKLE_HELP, BACKBONES

# Each command imports what it runs (torch, transformers, huggingface_hub) after the arguments are parsed, so that
# `--help` and a usage error answer at once.


def _default(args: argparse.Namespace) -> None:
    from hub.default_backbone import write_backbone

    folder = write_backbone(Path(args.out), args.variant)
    print(f"Wrote {args.variant} (timm tf_efficientnet layout) to {folder}")


def _show(args: argparse.Namespace) -> None:
    from hub.checkpoint import load_checkpoint
    from hub.preprocessing import image_spec

    checkpoint = load_checkpoint(args.ref, revision=args.revision, allow_pickle=args.allow_pickle)
    task = checkpoint.task
    print(f"source: {checkpoint.source}\nfolder: {checkpoint.folder}\narchitecture: {type(checkpoint.model).__name__}")
    print(f"input: {image_spec(checkpoint.processor)}")
    if task.is_regression:
        print(f"task: regression of {task.target or 'a number'} in {task.unit or 'unstated units'}")
    else:
        more = " ..." if len(task.labels) > 10 else ""
        print(f"task: classification into {len(task.labels)} classes: {', '.join(task.labels[:10])}{more}")
    for metric, value in checkpoint.metrics.items():
        print(f"{metric}: {value:.4g}")


def _push(args: argparse.Namespace) -> None:
    from hub.push import push_checkpoint

    info = push_checkpoint(Path(args.run_dir), args.repo_id, private=args.private, revision=args.revision)
    print(f"Pushed {args.run_dir} to {args.repo_id} ({'private' if args.private else 'public'}): {info.commit_url}")


def _pull(args: argparse.Namespace) -> None:
    from hub.push import pull_checkpoint

    folder = pull_checkpoint(args.repo_id, revision=args.revision, out=Path(args.out))
    print(f"Pulled {args.repo_id} into {folder}")


def _push_dataset(args: argparse.Namespace) -> None:
    from hub.push import push_dataset

    info = push_dataset(Path(args.folder), args.dataset_id, private=not args.public)
    visibility = "public" if args.public else "private"
    print(f"Pushed {args.folder} to the dataset {args.dataset_id} ({visibility}): {info.commit_url}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hub", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    default = commands.add_parser("default", help="write the offline default backbone as a checkpoint folder")
    default.add_argument("--out", required=True, help="folder to write")
    default.add_argument("--variant", default="efficientnet-lite0", choices=sorted(BACKBONES))
    default.set_defaults(run=_default)
    show = commands.add_parser("show", help="load a checkpoint and print what it is")
    show.add_argument("ref", help="hub id, folder or builtin alias")
    show.add_argument("--revision")
    show.add_argument("--allow-pickle", action="store_true", help=ALLOW_PICKLE_HELP)
    show.set_defaults(run=_show)
    push = commands.add_parser("push", help="upload a checkpoint folder to the hub as one commit")
    push.add_argument("run_dir", help="checkpoint folder written by training (config.json, model.safetensors, card)")
    push.add_argument("repo_id", help="hub repo to create or update, e.g. your-name/food10-vit")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--revision", help="branch to commit to (created if missing); default main")
    push.set_defaults(run=_push)
    pull = commands.add_parser("pull", help="download a hub checkpoint (safetensors only) into a folder")
    pull.add_argument("repo_id")
    pull.add_argument("--revision")
    pull.add_argument("--out", required=True, help="folder to write")
    pull.set_defaults(run=_pull)
    dataset = commands.add_parser("push-dataset", help="upload an imagefolder as a hub dataset (one commit)")
    dataset.add_argument("folder", help="class folders, or images with metadata.csv (e.g. the demo's corrections/food)")
    dataset.add_argument("dataset_id", help="hub dataset repo to create or update, e.g. your-name/food-corrections")
    dataset.add_argument("--public", action="store_true", help="make a new repo public (default: private, as the "
                         "images are uploads by the demo's users)")  # fmt: skip
    dataset.set_defaults(run=_push_dataset)
    args = parser.parse_args(argv)
    from hub.checkpoint import CheckpointError
    from hub.push import PushError

    try:
        args.run(args)
    except (CheckpointError, PushError, ImportError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
