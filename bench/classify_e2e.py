"""/classify end to end through gradio_client: our demo against a plain `gr.Interface` around `pipeline`, one run.

    OMP_WAIT_POLICY=PASSIVE python -m bench.classify_e2e [--model food10] [--images 20] [--runs 5] \
        [--prediction-precision fp32]

Both apps run in their own process, as users run them, on the same checkpoint: ours is `python -m demos
--food-model MODEL --prediction-precision P`, theirs `python -m bench.pipeline_app --model FOLDER` (what a user
would build instead).
Each is started in turn (time to first answer and resident memory then are printed), then both stay up while
the same synthetic photos go to their /classify through gradio_client, interleaved photo by photo so that load
on the machine hits both alike. Each run prints the median latencies and their ratio; the last line gives the
ratio's median and minimum over the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.demo_latency import demo_server, median_ms, synthetic_photos, time_call
from bench.options import timing_options
from hub.checkpoint import resolve_folder


def classify_call(url: str):
    """photo path -> /classify's answer, through a gradio_client of its own."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    return lambda photo: client.predict(handle_file(photo), api_name="/classify")


def time_runs(ours, theirs, photos: list[Path], runs: int) -> list[float]:
    """theirs/ours of each run's medians, each run printed as it ends."""
    ratios = []
    for run in range(1, runs + 1):
        ours_s, theirs_s = [], []
        for photo in photos:
            ours_s.append(time_call(ours, photo))
            theirs_s.append(time_call(theirs, photo))
        ours_ms, theirs_ms = median_ms(ours_s), median_ms(theirs_s)
        ratios.append(theirs_ms / ours_ms)
        print(f"run {run}: /classify ours {ours_ms:6.1f} ms, pipeline app {theirs_ms:6.1f} ms, {ratios[-1]:.2f}x")
    return ratios


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[timing_options()])
    parser.add_argument("--model", default="food10", help="a classification checkpoint: hub id, folder or alias")
    parser.add_argument("--boneage-model", default="boneage", help="our demo's other model (not timed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    folder = str(resolve_folder(args.model))
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as servers:
        photos = synthetic_photos(Path(tmp), args.images)
        ours_compiles = len({args.model, args.boneage_model})  # its start-up models, timed once compiled
        apps = {
            "ours (python -m demos)": (
                ours_compiles,
                "demos",
                "--food-model",
                args.model,
                "--boneage-model",
                args.boneage_model,
                "--prediction-precision",
                args.prediction_precision,
            ),
            "pipeline app (gr.Interface)": (0, "bench.pipeline_app", "--model", folder),
        }
        urls = []
        for name, (compiles, module, *app_args) in apps.items():
            app = servers.enter_context(
                demo_server(photos[0], *app_args, module=module, start_timeout_s=args.start_timeout, models=compiles)
            )
            print(
                f"{name:28s} first answer after {app.first_answer_s:5.1f} s, resident memory then "
                f"{app.first_answer_mib:5.0f} MiB"
            )
            urls.append(app.url)
        ours, theirs = (classify_call(url) for url in urls)
        for client in (ours, theirs):  # each client's first call sets it up
            client(photos[0])
        ratios = time_runs(ours, theirs, photos, args.runs)
    print(
        f"/classify end to end, pipeline app / ours, median of {args.runs} runs: {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}x) on {args.model}, ours predicting in {args.prediction_precision}"
    )


if __name__ == "__main__":
    main()
