"""What a visitor feels, in one command: each endpoint through gradio_client, the start, the memory, a Space's start,
and /classify's throughput with many clients at once (issue 30's table, every row in one run).

    OMP_WAIT_POLICY=PASSIVE python -m bench.visitor [--food-model food10] [--boneage-model boneage] [--images 10] \
        [--runs 5] [--clients 8] [--requests 32]

Each run, on synthetic 512x384 JPEG photos:
1. the floors under /classify, measured in the same run: the models' own time, in this process (what /classify runs,
   `top_k`, and what /bone_age's number runs, `regress`, on the models compiled as the app compiles them, with its
   torch threads per request), and what Gradio and gradio_client alone cost an image endpoint (/classify of
   `python -m bench.pipeline_app --floor`: a `gr.Interface` that decodes the photo and answers a fixed label), whose
   start to its first answer and memory then are the floor under the cold start and the memory (the same imports:
   torch, torchvision, transformers and gradio);
2. `python -m demos` started as users start it: the time to its first /classify answer (the cold start) and its
   resident memory then, and again once its start-up models have compiled (each compiles after its first answer);
3. the median latency through gradio_client of /classify, of /bone_age's first update (its number) and of its whole
   answer (with the Grad-CAM), and of /feature_maps (last layer, top class), output images downloaded; and
   /feature_maps against /classify and /bone_age's number as the page calls them (`PageClient`, its images
   fetched): gradio_client reads answers in 50 ms polls and downloads each image itself, which a browser does not;
4. /classify's requests per second and median latency from 1 client sending --requests photos one after another,
   then from --clients clients at once sending as many in all (threads here, each calling over plain HTTP as the
   page does, from an address of its own: `throughput` says why not gradio_client);
5. a Space of the same checkpoints (hub.space's folder, its models on local disk, as a Space's build preloads them),
   `python app.py` started as Spaces start it, to its first answer.
The clients run on the server's own cores, as a one-machine bench must. The last lines give each row's median and
range over the runs, beside its goal.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx
from PIL import Image

from bench.demo_latency import FEATURE_MAPS_INPUTS, demo_server, endpoint_times, median_ms, synthetic_photos, time_call
from bench.options import at_least_one
from hub.checkpoint import resolve_folder


@dataclass(frozen=True)
class Row:
    name: str
    unit: str
    goal: float
    lower_is_better: bool = True

    def met(self, value: float) -> bool:
        return value <= self.goal if self.lower_is_better else value >= self.goal


ROWS = {
    row.name: row
    for row in (
        Row("/classify through gradio_client", "ms", 100),
        Row("/classify as the page calls it (1 client)", "ms", 100),
        Row("/bone_age's number (first update)", "ms", 100),
        Row("/bone_age's number as the page gets it", "ms", 100),
        Row("/feature_maps / /classify", "x", 3),
        Row("/feature_maps / /classify as the page calls them", "x", 3),
        Row("cold start, python -m demos to first answer", "s", 8),
        Row("resident memory after the first answer", "MiB", 1024),
        Row("resident memory once compiled", "MiB", 1.2 * 1024),
        Row("a Space, models on disk, to first answer", "s", 20),
        Row("/classify requests/s, many clients / 1 client", "x", 1.5, lower_is_better=False),
    )
}


def compiled_models(food_ref: str, boneage_ref: str) -> tuple:
    """(food, boneage) loaded and compiled as the app does it, with its torch threads per request."""
    from demos.app import share_cores_between_requests
    from demos.models import load_model

    share_cores_between_requests()
    food, boneage = load_model(food_ref, compile=True), load_model(boneage_ref, compile=True)
    for model in (food, boneage):
        model.wait_until_compiled()
    return food, boneage


def model_times(food, boneage, photos: list[Image.Image]) -> dict[str, float]:
    """Median ms of the models' own work behind /classify and /bone_age's number."""
    from demos.serving.inference import regress, top_k

    return {
        "top_k": median_ms([time_call(top_k, food, photo) for photo in photos]),
        "regress": median_ms([time_call(regress, boneage, photo) for photo in photos]),
    }


class PageClient:
    """An endpoint called as the page calls it (upload, /gradio_api/queue/join, the session's event stream, then each
    output image fetched), over plain HTTP, with one session for all its calls as a visitor's page has: no
    gradio_client.

    Each session costs Gradio a copy of the whole app's component config when it is first seen (a third of the
    server's time when every call was a session of its own, as `/gradio_api/call` makes it), so a session a call
    would measure that, not visitors.
    """

    def __init__(self, url: str, address: str):
        self.http = httpx.Client(base_url=url, headers={"X-Forwarded-For": address}, timeout=120)
        config = self.http.get("config").raise_for_status().json()
        self.fn_index = {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}
        self.session = uuid.uuid4().hex

    def call(self, api_name: str, photo: Path, *rest) -> float:
        """Send `photo` and the other inputs `rest` to `api_name`; return once its answer and images have arrived,
        with the ms from the upload to its first update (a generator's first yield, as the page shows it)."""
        start = time.perf_counter()
        with photo.open("rb") as file:
            uploaded = self.http.post("gradio_api/upload", files={"files": (photo.name, file, "image/jpeg")})
        data = [{"path": uploaded.raise_for_status().json()[0], "meta": {"_type": "gradio.FileData"}}, *rest]
        body = {"data": data, "fn_index": self.fn_index[api_name], "session_hash": self.session, "trigger_id": None}
        event = self.http.post("gradio_api/queue/join", json=body).raise_for_status().json()["event_id"]
        first_update_ms = None
        with self.http.stream("GET", "gradio_api/queue/data", params={"session_hash": self.session}) as stream:
            for line in stream.raise_for_status().iter_lines():
                message = json.loads(line.removeprefix("data: ")) if line.startswith("data: ") else {}
                if message.get("event_id") != event:
                    continue
                if first_update_ms is None and message.get("msg") in ("process_generating", "process_completed"):
                    first_update_ms = (time.perf_counter() - start) * 1000
                if message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(f"/{api_name} failed: {message}")
                    for output in message["output"]["data"]:
                        if isinstance(output, dict) and output.get("url"):  # an image: the page fetches it
                            self.http.get(output["url"]).raise_for_status()
                    return first_update_ms
        raise RuntimeError(f"/{api_name}'s event stream ended without an answer")

    def classify(self, photo: Path) -> None:
        self.call("classify", photo)

    def close(self) -> None:
        self.http.close()


def page_times(url: str, photos: list[Path]) -> dict[str, float]:
    """Median ms over `photos` from one `PageClient`, as the page calls them: /classify and /feature_maps (last
    layer, top class) whole, images fetched, and /bone_age's first update (its number; sex unknown)."""
    from demos.tabs.bone_age import UNKNOWN_SEX

    page = PageClient(url, "10.3.0.100")
    try:
        medians = {}
        for api_name, rest in (("classify", ()), ("feature_maps", FEATURE_MAPS_INPUTS)):
            page.call(api_name, photos[0], *rest)  # each endpoint's first call sets it up
            medians[api_name] = median_ms([time_call(page.call, api_name, photo, *rest) for photo in photos])
        page.call("bone_age", photos[0], UNKNOWN_SEX)
        medians["bone_age number"] = statistics.median(page.call("bone_age", p, UNKNOWN_SEX) for p in photos)
    finally:
        page.close()
    return medians


def throughput(url: str, photos: list[Path], clients: int, requests: int) -> tuple[float, float]:
    """(requests/s, median ms) of /classify with `clients` clients at once sending `requests` photos in all; any
    request that fails is an error, not a faster figure.

    The clients call as the page does (`PageClient`), not through gradio_client: it spends ~100 ms of CPU a request
    (measured) and waits for answers in 50 ms polls, so on a machine shared with the server it would measure itself.
    Each client comes from an address of its own (X-Forwarded-For, which the app trusts from the loopback), as a
    share link's visitors do: from one address, the app's per-visitor queue limit would refuse them.
    """
    connected = [PageClient(url, f"10.3.0.{i + 1}") for i in range(clients)]
    latencies: list[float] = []
    failures: list[Exception] = []
    start = threading.Barrier(clients + 1)

    def send(client: PageClient, count: int) -> None:
        start.wait()
        for i in range(count):
            try:
                latencies.append(time_call(client.classify, photos[i % len(photos)]))
            except Exception as err:  # noqa: BLE001 - counted, then raised below for the whole run
                failures.append(err)

    shares = [requests // clients + (i < requests % clients) for i in range(clients)]
    threads = [threading.Thread(target=send, args=pair) for pair in zip(connected, shares, strict=True)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    for client in connected:
        client.close()
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {requests} /classify requests from {clients} clients failed: {failures[0]}"
        )
    return requests / elapsed, median_ms(latencies)


def space_folder(out: Path, food_ref: str, boneage_ref: str) -> Path:
    """hub.space's Space folder for the two checkpoints, named by their local folders (a preloaded Space has them)."""
    from huggingface_hub import SpaceCard

    from hub.space import build_space_folder

    roles = {"food": str(resolve_folder(food_ref).resolve()), "boneage": str(resolve_folder(boneage_ref).resolve())}
    card = SpaceCard("---\ntitle: bench\n---\n")
    return build_space_folder(out, roles=roles, precision="fp32", card=card, requirements=[], command="bench.visitor")


def one_run(args: argparse.Namespace, models: tuple, photos: list[Path], tmp: Path) -> dict[str, float]:
    """Every figure of one run, printed as it is measured; `models`: compiled_models, timed here."""
    own = model_times(*models, [Image.open(p).convert("RGB") for p in photos])
    with demo_server(photos[0], "--floor", module="bench.pipeline_app", start_timeout_s=args.start_timeout) as app:
        own["gradio"] = endpoint_times(app.url, photos, ("/classify",))["/classify"]
    print(
        f"  floors: the models' own time top_k {own['top_k']:.1f} ms, regress {own['regress']:.1f} ms; Gradio's own "
        f"image endpoint (no model) {own['gradio']:.0f} ms, its app's first answer {app.first_answer_s:.1f} s "
        f"({app.first_answer_mib:.0f} MiB)",
        flush=True,
    )
    demo_args = ("--food-model", args.food_model, "--boneage-model", args.boneage_model)
    models = len({args.food_model, args.boneage_model})
    with demo_server(photos[0], *demo_args, start_timeout_s=args.start_timeout, models=models) as app:
        print(
            f"  python -m demos: first answer {app.first_answer_s:.1f} s ({app.first_answer_mib:.0f} MiB), compiled "
            f"{app.compiled_s:.1f} s ({app.compiled_mib:.0f} MiB)",
            flush=True,
        )
        ms = endpoint_times(app.url, photos)
        print("  " + ", ".join(f"{name} {value:.0f} ms" for name, value in ms.items()), flush=True)
        page = page_times(app.url, photos)
        page_ratio = page["feature_maps"] / page["classify"]
        print(
            f"  as the page calls them: /feature_maps / /classify {page_ratio:.2f}x, /bone_age's number "
            f"{page['bone_age number']:.0f} ms",
            flush=True,
        )
        alone, alone_p50 = throughput(app.url, photos, 1, args.requests)
        crowd, crowd_p50 = throughput(app.url, photos, args.clients, args.requests)
        print(
            f"  /classify: 1 client {alone:.1f} requests/s (median {alone_p50:.0f} ms), {args.clients} clients "
            f"{crowd:.1f} requests/s (median {crowd_p50:.0f} ms)",
            flush=True,
        )
    space_app = space_folder(tmp / "space", args.food_model, args.boneage_model)
    with demo_server(photos[0], start_timeout_s=args.start_timeout, space=space_app) as space:
        print(
            f"  Space app.py: first answer {space.first_answer_s:.1f} s ({space.first_answer_mib:.0f} MiB)", flush=True
        )
    for name, endpoint, model in (
        ("/classify", "/classify", "top_k"),
        ("/bone_age's number", "/bone_age number", "regress"),
    ):
        rest = ms[endpoint] - own["gradio"] - own[model]
        print(
            f"  {name} {ms[endpoint]:.0f} ms = Gradio's own {own['gradio']:.0f} + the model's {own[model]:.0f} + the "
            f"rest {rest:.0f} (decoding, checks, answer)",
            flush=True,
        )
    return {
        "/classify through gradio_client": ms["/classify"],
        "/classify as the page calls it (1 client)": alone_p50,
        "/bone_age's number (first update)": ms["/bone_age number"],
        "/bone_age's number as the page gets it": page["bone_age number"],
        "/feature_maps / /classify": ms["/feature_maps"] / ms["/classify"],
        "/feature_maps / /classify as the page calls them": page_ratio,
        "cold start, python -m demos to first answer": app.first_answer_s,
        "resident memory after the first answer": app.first_answer_mib,
        "resident memory once compiled": app.compiled_mib,
        "a Space, models on disk, to first answer": space.first_answer_s,
        "/classify requests/s, many clients / 1 client": crowd / alone,
    }


def summary(runs: list[dict[str, float]]) -> list[str]:
    """A line per row: its median and range over the runs, its goal, and whether the median meets it."""
    lines = []
    for name, row in ROWS.items():
        values = [run[name] for run in runs]
        median = statistics.median(values)
        sign = "<=" if row.lower_is_better else ">="
        lines.append(
            f"{name:48s} median {median:7.2f} {row.unit:3s} (range {min(values):.2f}-{max(values):.2f}, "
            f"{len(values)} runs), goal {sign} {row.goal:g}: {'met' if row.met(median) else 'NOT met'}"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--food-model", default="food10")
    parser.add_argument("--boneage-model", default="boneage")
    parser.add_argument("--images", type=at_least_one, default=10, help="synthetic photos timed per endpoint")
    parser.add_argument("--runs", type=at_least_one, default=5, help="runs, each with fresh servers")
    parser.add_argument("--clients", type=at_least_one, default=8, help="clients at once for the throughput")
    parser.add_argument("--requests", type=at_least_one, default=32, help="/classify requests for each throughput")
    parser.add_argument("--start-timeout", type=float, default=300, help="seconds a server may take to answer")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"cores {os.cpu_count()}, load average {load}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        photos = synthetic_photos(tmp, args.images)
        models = compiled_models(args.food_model, args.boneage_model)
        for run in range(1, args.runs + 1):
            print(f"run {run}:", flush=True)
            runs.append(one_run(args, models, photos, tmp))
    for line in summary(runs):
        print(line)


if __name__ == "__main__":
    main()
