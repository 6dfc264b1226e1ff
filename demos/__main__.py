"""Open the TransferLab demo on http://127.0.0.1:7860.

    python -m demos
    python -m demos --port 7861 --share --food-model food10 --boneage-model ./runs/boneage --examples ./photos
    python -m demos --share --allow-local-dir ./runs --max-loaded-models 4 --max-model-mb 2000
    python -m demos --prediction-precision int8

--food-model / --boneage-model take a hub id, a checkpoint folder or an alias (efficientnet-lite0,
food10, boneage); the defaults are the shipped checkpoints/food10 and checkpoints/boneage, or the
offline default backbone efficientnet-lite0 (ImageNet labels) while those do not exist, which is printed.
Their predictions are compiled (torch.compile) in the background, printed when ready; until then, and where
compiling fails or TORCH_COMPILE_DISABLE=1 is set, the models themselves answer.
Visitors (Model tab, /load_model) load only hub ids and aliases unless --allow-local-dir names folders.
--prediction-precision bf16 or int8 makes predictions faster where matmuls dominate (ViTs), at some cost in
agreement with fp32, which is the operator's to check (python -m bench.serving_variants); explanations stay fp32.
Users' corrections ("Wrong? Correct it") are saved under --corrections-dir (default corrections/), except in a
Hugging Face Space (SPACE_ID set), where they are collected only when --corrections-dir is given.
"""

from __future__ import annotations

import argparse
import os

from demos.training.datasets import MAX_IMAGES, MAX_MEGAPIXELS
from demos.training.jobs import MAX_RUN_S
from hub.constants import ALLOW_PICKLE_HELP
from hub.serving_options import MAX_LOADED_MODELS, MAX_MODEL_MB, add_precision_option

DEFAULT_PORT = 7860
LOCAL_HOST = "127.0.0.1"  # where `launch` serves


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="local port (default %(default)s)")
    parser.add_argument(
        "--share", action="store_true", help="also make a temporary public link through Gradio's share server"
    )
    parser.add_argument("--food-model", default=None, help="hub id, folder or alias (default: checkpoints/food10)")
    parser.add_argument("--boneage-model", default=None, help="hub id, folder or alias (default: checkpoints/boneage)")
    parser.add_argument(
        "--examples", default=None, metavar="DIR", help="folder of example photos shown under the Food tab"
    )
    parser.add_argument(
        "--allow-pickle", action="store_true", help=f"--food-model/--boneage-model: {ALLOW_PICKLE_HELP}"
    )
    add_precision_option(parser, "every model's predictions (explanations stay fp32)")
    visitors = parser.add_argument_group("what web visitors may load (Model tab and /load_model)")
    visitors.add_argument(
        "--allow-local-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also load checkpoint folders under DIR (repeatable; default: hub ids and aliases only)",
    )
    visitors.add_argument(
        "--max-loaded-models",
        type=int,
        default=MAX_LOADED_MODELS,
        metavar="N",
        help="visitor models in memory, all sessions together; least recently used goes first (default %(default)s)",
    )
    visitors.add_argument(
        "--max-model-mb",
        type=float,
        default=MAX_MODEL_MB,
        metavar="MB",
        help="refuse hub models whose checkpoint files exceed this many MB, before downloading (default %(default)g)",
    )
    training = parser.add_argument_group("the Train tab (training from the browser)")
    training.add_argument(
        "--allow-training",
        action="store_true",
        help="turn the Train tab on with --share too (default: on for a demo only this machine reaches, off on a "
        "public link: a run takes the server's cores for minutes and stores visitors' images on its disk)",
    )
    training.add_argument(
        "--max-training-images",
        type=int,
        default=MAX_IMAGES,
        metavar="N",
        help="images a run may train on (default %(default)s)",
    )
    training.add_argument(
        "--max-training-megapixels",
        type=float,
        default=MAX_MEGAPIXELS,
        metavar="MP",
        help="megapixels of all a run's images together (default %(default)g)",
    )
    training.add_argument(
        "--max-training-minutes",
        type=float,
        default=MAX_RUN_S / 60,
        metavar="MIN",
        help="a run is stopped after this long (default %(default)g)",
    )
    corrections = parser.add_mutually_exclusive_group()
    corrections.add_argument(
        "--corrections-dir",
        default=None if os.environ.get("SPACE_ID") else "corrections",  # a Space's disk is public: ask for it
        metavar="DIR",
        help="save users' corrections here as training data (default: corrections, none in a Space)",
    )
    corrections.add_argument(
        "--no-corrections", dest="corrections_dir", action="store_const", const=None, help="collect no corrections"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # torch and gradio import after the arguments are parsed: `--help` answers at once.
    from demos.app import build_app, launch, share_cores_between_requests
    from demos.training.settings import TrainingSettings
    from hub import CheckpointError

    share_cores_between_requests()
    training = TrainingSettings.from_flags(
        share=args.share,
        host=LOCAL_HOST,
        allow_training=args.allow_training,
        max_images=args.max_training_images,
        max_megapixels=args.max_training_megapixels,
        max_run_s=60 * args.max_training_minutes,
    )
    try:
        demo = build_app(
            food_model=args.food_model,
            boneage_model=args.boneage_model,
            examples_dir=args.examples,
            allow_pickle=args.allow_pickle,
            allow_local_dirs=args.allow_local_dir,
            max_loaded_models=args.max_loaded_models,
            max_model_mb=args.max_model_mb,
            corrections_dir=args.corrections_dir,
            prediction_precision=args.prediction_precision,
            training=training,
        )
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        raise SystemExit(f"python -m demos: {err}") from err
    launch(demo, port=args.port, share=args.share, training=training.access.allowed)


if __name__ == "__main__":
    main()
