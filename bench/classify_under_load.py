"""/classify latency while other clients hammer each expensive endpoint, and under a flood of dreams nobody reads.

    OMP_WAIT_POLICY=PASSIVE python -m bench.classify_under_load [--food-model food10] [--calls 30] [--hammerers 2]
        [--dream-steps 60] [--batch-images 50] [--large-image FILE] [--flood 40]

Starts `python -m demos` in its own process, as users run it (bench.demo_latency.demo_server), and times --calls
/classify requests one after another through gradio_client: first on the idle server, then while --hammerers
clients (each from an address of its own, as a share link's visitors are) call one expensive endpoint without
pause, for /dream, /adversarial (PGD), /batch_predict (--batch-images photos) and /feature_maps (on --large-image,
by default a 7000x7000 PNG made here), and last right after --flood raw `/gradio_api/call/dream` POSTs from as
many addresses, whose results nobody reads. Each phase prints the median and p95, its p95 over the idle p95
(goal: under 3x), and what the load did (calls finished, refused by the queue's bounds, failed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import reads it

import httpx
import numpy as np
from PIL import Image

from bench.demo_latency import demo_server, synthetic_photos, time_call
from bench.options import at_least_one
from demos.tabs.network_sees import ANY_OTHER_CLASS, DEFAULT_DREAM_STEPS

LARGE_SIDE = 7000  # 49 megapixels
HAMMER_PAUSE_S = 1  # a hammering client refused (or failed) waits this long before it asks again
MAX_PHASE_S = 900  # every loop here stops by then, whatever the server does


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def large_png(path: Path) -> Path:
    """A LARGE_SIDE-square PNG of flat colour blocks: 49 megapixels to decode, a few MB to upload."""
    blocks = np.random.default_rng(0).integers(0, 256, size=(70, 70, 3), dtype=np.uint8)
    Image.fromarray(blocks).resize((LARGE_SIDE, LARGE_SIDE), Image.Resampling.NEAREST).save(path)
    return path


def visitor(url: str, address: str | None = None):
    """A gradio_client Client; from `address` (X-Forwarded-For, which the app trusts from the loopback) if given."""
    from gradio_client import Client

    return Client(url, verbose=False, headers={"X-Forwarded-For": address} if address else None)


def time_classify(url: str, photos: list[Path], calls: int) -> list[float]:
    from gradio_client import handle_file

    client = visitor(url)
    classify = lambda photo: client.predict(handle_file(photo), api_name="/classify")  # noqa: E731
    return [time_call(classify, photos[i % len(photos)]) for i in range(calls)]


def expensive_calls(photos: list[Path], large_image: Path, label: str, args) -> dict[str, tuple[str, Callable]]:
    """{phase: (api_name, arguments())}: one expensive endpoint each, as the tab calls it by default."""
    from gradio_client import handle_file

    batch = [photos[i % len(photos)] for i in range(args.batch_images)]
    return {
        f"/dream ({args.dream_steps} steps)": ("/dream", lambda: ("food", label, None, args.dream_steps, 0)),
        "/adversarial (PGD)": ("/adversarial", lambda: ("food", handle_file(photos[0]), 8, ANY_OTHER_CLASS, "pgd")),
        f"/batch_predict ({args.batch_images} photos)": (
            "/batch_predict",
            lambda: ([handle_file(p) for p in batch], "food", 3),
        ),
        "/feature_maps (49 MP)": ("/feature_maps", lambda: (handle_file(large_image), "food", "", "top prediction")),
    }


def hammer(url: str, address: str, api_name: str, arguments: Callable, stop: threading.Event, outcome: Counter):
    """Call `api_name` again as soon as each answer comes back, until `stop`; count what became of each call."""
    client, deadline = visitor(url, address), time.monotonic() + MAX_PHASE_S
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            client.predict(*arguments(), api_name=api_name)
            outcome["finished"] += 1
        except httpx.HTTPStatusError as err:
            outcome["refused" if err.response.status_code == 429 else "failed"] += 1
            stop.wait(HAMMER_PAUSE_S)
        except Exception:  # noqa: BLE001  (an answer the bench counts, whatever its type)
            outcome["failed"] += 1
            stop.wait(HAMMER_PAUSE_S)


def classify_while_hammered(url, photos, calls, hammerers, api_name, arguments) -> tuple[list[float], Counter]:
    stop, outcome = threading.Event(), Counter()
    threads = [
        threading.Thread(target=hammer, args=(url, f"10.1.0.{i}", api_name, arguments, stop, outcome))
        for i in range(hammerers)
    ]
    for thread in threads:
        thread.start()
    time.sleep(3)  # every hammering client has sent its first request: one runs, the others wait in its queue
    try:
        return time_classify(url, photos, calls), outcome
    finally:
        stop.set()
        for thread in threads:
            thread.join(MAX_PHASE_S)  # each ends once its call in flight has been answered


def classify_after_flood(url, photos, calls, flood: int, label: str, dream_steps: int) -> tuple[list[float], Counter]:
    """/classify times right after `flood` raw /dream POSTs, each from an address of its own, nobody reading them."""
    outcome = Counter()
    for i in range(flood):
        response = httpx.post(
            f"{url}gradio_api/call/dream",
            json={"data": ["food", label, None, dream_steps, 0]},
            headers={"X-Forwarded-For": f"10.2.{i // 250}.{i % 250}"},
            timeout=30,
        )
        outcome[{200: "queued", 429: "refused"}.get(response.status_code, f"HTTP {response.status_code}")] += 1
    return time_classify(url, photos, calls), outcome


def report(phase: str, samples: list[float], idle_p95: float, outcome: Counter | None = None) -> None:
    ratio = p95(samples) / idle_p95
    load = ", ".join(f"{count} {what}" for what, count in sorted(outcome.items())) if outcome is not None else ""
    print(
        f"{phase:34s} median {1000 * statistics.median(samples):7.1f} ms   p95 {1000 * p95(samples):7.1f} ms   "
        f"{ratio:5.2f}x idle{' (goal < 3x)' if outcome is not None else ''}   {load}",
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--food-model", default="food10")
    parser.add_argument("--boneage-model", default="boneage")
    parser.add_argument("--calls", type=at_least_one, default=30, help="/classify calls timed in each phase")
    parser.add_argument("--hammerers", type=at_least_one, default=2, help="clients calling each expensive endpoint")
    parser.add_argument("--dream-steps", type=at_least_one, default=DEFAULT_DREAM_STEPS, help="steps of each dream")
    parser.add_argument("--batch-images", type=at_least_one, default=50, help="photos in each /batch_predict call")
    parser.add_argument("--large-image", type=Path, help="the image /feature_maps is called on (default: 49 MP PNG)")
    parser.add_argument("--flood", type=at_least_one, default=40, help="raw /dream POSTs of the last phase")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"cores {os.cpu_count()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        photos = synthetic_photos(Path(tmp), 10)
        large_image = args.large_image or large_png(Path(tmp) / "large.png")
        server = demo_server(
            photos[0],
            *("--food-model", args.food_model, "--boneage-model", args.boneage_model),
            start_timeout_s=600,  # a machine busy enough to matter here also starts the app slowly (115 s seen)
            models=len({args.food_model, args.boneage_model}),  # timed once its start-up models are compiled
        )
        with server as app:
            idle = time_classify(app.url, photos, args.calls)
            report("/classify, idle server", idle, p95(idle))
            label = top_label(app.url, photos[0])
            for phase, (api_name, arguments) in expensive_calls(photos, large_image, label, args).items():
                loaded, outcome = classify_while_hammered(
                    app.url, photos, args.calls, args.hammerers, api_name, arguments
                )
                report(f"/classify, {args.hammerers} on {phase}", loaded, p95(idle), outcome)
            flooded, outcome = classify_after_flood(app.url, photos, args.calls, args.flood, label, args.dream_steps)
            report(f"/classify, {args.flood} raw /dream POSTs", flooded, p95(idle), outcome)


def top_label(url: str, photo: Path) -> str:
    from gradio_client import handle_file

    return visitor(url).predict(handle_file(photo), api_name="/classify")["label"]


if __name__ == "__main__":
    main()
