"""/classify latency while other clients keep /dream busy: expensive endpoints must not starve predictions.

    OMP_WAIT_POLICY=PASSIVE python -m bench.classify_under_load [--food-model food10] [--calls 40] [--dreamers 4]

Starts `python -m demos` in its own process, as users run it (bench.demo_latency.demo_server), and times
--calls /classify requests one after another through gradio_client: first on the idle server, then while
--dreamers clients each call /dream without pause (the tab's default steps, from grey noise). Prints the
median and p95 of both phases, how many dreams ran meanwhile, and last the p95 ratio (goal: under 3x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import reads it

from bench.demo_latency import demo_server, synthetic_photos, time_call
from demos.tabs.network_sees import DEFAULT_DREAM_STEPS


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def time_classify(url: str, photos: list[Path], calls: int) -> list[float]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    classify = lambda photo: client.predict(handle_file(photo), api_name="/classify")  # noqa: E731
    return [time_call(classify, photos[i % len(photos)]) for i in range(calls)]


def dream_without_pause(url: str, label: str, stop: threading.Event, finished: list[float]) -> None:
    """One client calling /dream again as soon as each answer comes back, until `stop`; appends each dream's time."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    dream = lambda: client.predict("food", label, None, DEFAULT_DREAM_STEPS, 0, api_name="/dream")  # noqa: E731
    while not stop.is_set():
        finished.append(time_call(dream))


def report(phase: str, samples: list[float]) -> None:
    print(f"{phase:28s} median {1000 * statistics.median(samples):7.1f} ms   p95 {1000 * p95(samples):7.1f} ms")


def classify_under_dreams(url: str, photos: list[Path], calls: int, dreamers: int) -> tuple[list[float], list[float]]:
    """(/classify times while `dreamers` clients call /dream without pause, the times of the dreams that finished)."""
    from gradio_client import Client, handle_file

    label = Client(url, verbose=False).predict(handle_file(photos[0]), api_name="/classify")["label"]
    stop, dreams = threading.Event(), []
    threads = [threading.Thread(target=dream_without_pause, args=(url, label, stop, dreams)) for _ in range(dreamers)]
    for thread in threads:
        thread.start()
    time.sleep(2)  # every dreamer has sent its first request: one dream runs, the others wait in its queue
    loaded = time_classify(url, photos, calls)
    finished = list(dreams)
    stop.set()
    for thread in threads:
        thread.join()
    return loaded, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--food-model", default="food10")
    parser.add_argument("--boneage-model", default="boneage")
    parser.add_argument("--calls", type=int, default=40, help="/classify calls timed in each phase")
    parser.add_argument("--dreamers", type=int, default=4, help="clients calling /dream without pause")
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    with tempfile.TemporaryDirectory() as tmp:
        photos = synthetic_photos(Path(tmp), 10)
        server = demo_server(
            photos[0],
            *("--food-model", args.food_model, "--boneage-model", args.boneage_model),
            start_timeout_s=600,  # a machine busy enough to matter here also starts the app slowly (115 s seen)
            models=len({args.food_model, args.boneage_model}),  # timed once its start-up models are compiled
        )
        with server as app:
            idle = time_classify(app.url, photos, args.calls)
            loaded, dreams = classify_under_dreams(app.url, photos, args.calls, args.dreamers)
    report("/classify, idle server", idle)
    report(f"/classify, {args.dreamers} clients on /dream", loaded)
    median_dream = statistics.median(dreams) if dreams else float("nan")
    print(f"dreams of {DEFAULT_DREAM_STEPS} steps finished meanwhile: {len(dreams)} (median {median_dream:.1f} s each)")
    print(f"/classify p95 under /dream load / idle p95: {p95(loaded) / p95(idle):.2f}x (goal < 3x)")


if __name__ == "__main__":
    main()
