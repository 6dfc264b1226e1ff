"""Does Gradio's dynamic batching serve more visitors at once on this machine? The same plain app twice.

    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python -m bench.batching --runs 3

`bench.pipeline_app` around one checkpoint's `pipeline`, started once without batching and once with `--batch 8`
(Gradio's `batch=True, max_batch_size=8`: waiting requests go through the model as one tensor). Each is sent
/classify from 1 client, then from 8 at once, as the page calls it (`bench.visitor.PageClient`). Printed per run:
requests/s and the median latency of each; the last lines give the gain of 8 clients over 1 for each app (issue 30's
goal for the demo: at least 1.5x) and the batched app's 1-client median against the unbatched one's (at most +10%).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.demo_latency import demo_server, synthetic_photos
from bench.options import at_least_one
from bench.visitor import throughput
from hub.checkpoint import resolve_folder

BATCH = 8


def one_run(model: str, photos: list[Path], clients: int, requests: int, start_timeout_s: float) -> dict[str, float]:
    """{figure: value} of the unbatched and the batched app, each in a fresh server."""
    figures = {}
    for name, extra in (("plain", ()), ("batched", ("--batch", str(BATCH)))):
        app_args = ("--model", model, *extra)
        with demo_server(photos[0], *app_args, module="bench.pipeline_app", start_timeout_s=start_timeout_s) as app:
            alone, alone_p50 = throughput(app.url, photos, 1, requests)
            crowd, crowd_p50 = throughput(app.url, photos, clients, requests)
        print(
            f"  {name}: 1 client {alone:.1f} requests/s (median {alone_p50:.0f} ms), {clients} clients {crowd:.1f} "
            f"requests/s (median {crowd_p50:.0f} ms)",
            flush=True,
        )
        figures |= {f"{name} gain": crowd / alone, f"{name} 1-client ms": alone_p50}
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="food10", help="checkpoint: folder, hub id or alias (default: food10)")
    parser.add_argument("--images", type=at_least_one, default=10, help="synthetic photos sent in turn")
    parser.add_argument("--runs", type=at_least_one, default=3, help="runs, each with fresh servers")
    parser.add_argument("--clients", type=at_least_one, default=8, help="clients at once")
    parser.add_argument("--requests", type=at_least_one, default=48, help="/classify requests for each figure")
    parser.add_argument("--start-timeout", type=float, default=300, help="seconds a server may take to answer")
    args = parser.parse_args(argv)
    model = str(resolve_folder(args.model))
    print(f"cores {os.cpu_count()}, load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}, model {model}")
    with tempfile.TemporaryDirectory() as folder:
        photos = synthetic_photos(Path(folder), args.images)
        runs = []
        for run in range(1, args.runs + 1):
            print(f"run {run}:", flush=True)
            runs.append(one_run(model, photos, args.clients, args.requests, args.start_timeout))
    for key in runs[0]:
        values = [run[key] for run in runs]
        print(f"{key}: median {statistics.median(values):.2f} (range {min(values):.2f}-{max(values):.2f})")
    ratio = [run["batched 1-client ms"] / run["plain 1-client ms"] for run in runs]
    print(f"batched / plain, 1 client's median latency: {statistics.median(ratio):.2f}x")


if __name__ == "__main__":
    main()
