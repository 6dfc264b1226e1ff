"""Per-image latency of the demo against transformers' pipeline, on the same checkpoints and images, in one run.

    OMP_WAIT_POLICY=PASSIVE python -m bench.demo_latency [--food-model food10] [--boneage-model boneage] \
        [--vit-model FOLDER] [--images 20] [--runs 5] [--skip-endpoints] [--prediction-precision fp32]

For each checkpoint (the shipped food10 and boneage, and a ViT-B/16-sized classifier with random weights),
loaded as the app loads it (`demos.models.load_model`, predicting in --prediction-precision), it times image by
image, interleaved so that load on the machine hits both alike:
- ours: `demos.serving.inference.top_k` (what /classify runs) or `regress` (what /bone_age's number is);
- baseline: `transformers.pipeline("image-classification")` on the same folder (for a regression checkpoint
  it returns the raw outputs as scores, the same work).
This is repeated --runs times on the same loaded models; each run prints its ratios (pipeline / ours, medians
of --images), then the median and the minimum over the runs. It then starts `python -m demos` in its own
process, as users run it (the time from start to its first answer is the cold start; its resident memory is
read then), and times /classify, /bone_age and /feature_maps through gradio_client from this process,
output images downloaded as a client gets them. The last line is the headline: every model's precision and
ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import psutil
from PIL import Image

from bench.options import timing_options

REPO = Path(__file__).resolve().parent.parent


def synthetic_photos(folder: Path, count: int) -> list[Path]:
    """Food-photo-sized JPEGs (512 px long side) of smooth random colour fields."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((512, 384), Image.Resampling.BICUBIC)
        paths.append(folder / f"photo{i}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def vit_base_folder(folder: Path) -> Path:
    """A ViT-B/16 (224 px) classifier with random weights and 10 labels: the size of google/vit-base-patch16-224."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    labels = {i: f"class {i}" for i in range(10)}
    ViTForImageClassification(ViTConfig(num_labels=10, id2label=labels)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def time_call(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


@dataclass
class Contender:
    """One checkpoint as the app serves it (ours) and as `pipeline` serves it (theirs), both warmed up."""

    ours: Callable[[Image.Image], object]
    theirs: Callable[[Image.Image], object]
    gflop: float  # the model's multiply-adds on one image, x 2 (torch's FLOP counter: matmuls and convolutions)


def contender(ref: str, image: Image.Image, precision: str) -> Contender:
    from transformers import pipeline

    from demos.models import load_model
    from demos.serving.inference import regress, top_k

    checkpoint = load_model(ref, precision=precision, compile=True)  # as the app loads its start-up models
    checkpoint.wait_until_compiled()  # what it says when a model stays uncompiled is printed
    predict = regress if checkpoint.task.is_regression else top_k
    pair = Contender(
        ours=lambda photo: predict(checkpoint, photo),
        theirs=pipeline("image-classification", model=str(checkpoint.folder)),
        gflop=gflop_per_image(checkpoint, image),
    )
    pair.ours(image)
    pair.theirs(image)
    return pair


def time_pair(pair: Contender, images: list[Image.Image]) -> tuple[float, float]:
    """(ours, theirs) median ms per image, timed image by image, interleaved."""
    ours, theirs = [], []
    for image in images:
        ours.append(time_call(pair.ours, image))
        theirs.append(time_call(pair.theirs, image))
    return median_ms(ours), median_ms(theirs)


def time_runs(
    pairs: dict[str, Contender], images: list[Image.Image], runs: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """({model: pipeline/ours of each run}, {model: the pipeline's fastest run in ms}), each run printed as it ends."""
    ratios: dict[str, list[float]] = {name: [] for name in pairs}
    fastest_pipeline = dict.fromkeys(pairs, float("inf"))
    for run in range(1, runs + 1):
        parts = []
        for name, pair in pairs.items():
            ours, theirs = time_pair(pair, images)
            ratios[name].append(theirs / ours)
            fastest_pipeline[name] = min(fastest_pipeline[name], theirs)
            parts.append(f"{name} {theirs / ours:.2f}x ({ours:.1f} vs {theirs:.1f} ms)")
        print(f"run {run}: pipeline/ours " + ", ".join(parts), flush=True)
    return ratios, fastest_pipeline


def gflop_per_image(checkpoint, image: Image.Image) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from demos.serving.inference import model_inputs

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        checkpoint.model(pixel_values=model_inputs(checkpoint, image))
    return counter.get_total_flops() / 1e9


def matmul_gflops(size: int = 1536, repeats: int = 20) -> float:
    """This machine's fp32 throughput now, on a large square matmul (MKL at its best): no fp32 model computes faster."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    seconds = time_call(lambda: [a @ b for _ in range(repeats)])
    return 2 * size**3 * repeats / seconds / 1e9


def report_fp32_bound(pairs: dict[str, Contender], pipeline_ms: dict[str, float]) -> None:
    """Per model, the fastest any fp32 server could answer (its FLOPs at the matmul peak), against the pipeline."""
    peak = matmul_gflops()
    print(f"fp32 matmul peak of this machine, measured now: {peak:.3g} GFLOP/s")
    for name, pair in pairs.items():
        floor_ms, theirs = 1000 * pair.gflop / peak, pipeline_ms[name]
        print(
            f"fp32 bound {name}: {pair.gflop:.3g} GFLOP an image at that peak >= {floor_ms:.3g} ms, against the "
            f"pipeline's {theirs:.3f} ms: no fp32 server beats it by more than {theirs / floor_ms:.2f}x"
        )


def summary(ratios: dict[str, list[float]], precision: str) -> str:
    """'food int8 1.62x (min 1.55x), ...': each model's precision, the median and the minimum over the runs."""
    return ", ".join(
        f"{name} {precision} {statistics.median(r):.2f}x (min {min(r):.2f}x)" for name, r in ratios.items()
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ENDPOINTS = ("/classify", "/bone_age", "/feature_maps")


FEATURE_MAPS_INPUTS = ("food", "", "top prediction")  # /feature_maps' inputs after the image: last layer, top class


def endpoint_times(url: str, photos: list[Path], endpoints: tuple[str, ...] = ENDPOINTS) -> dict[str, float]:
    """Median ms through gradio_client of `endpoints` (output images downloaded, as a client gets them): /classify,
    /bone_age's first update (its number) and whole answer, /feature_maps."""
    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory() as downloads:
        client = Client(url, verbose=False, download_files=downloads)

        def bone_age(photo: Path) -> tuple[float, float]:
            start = time.perf_counter()
            job = client.submit(handle_file(photo), api_name="/bone_age")
            next(iter(job))
            number = time.perf_counter() - start
            job.result()
            return number, time.perf_counter() - start

        def classify(photo: Path) -> None:
            client.predict(handle_file(photo), api_name="/classify")

        def feature_maps(photo: Path) -> None:
            client.predict(handle_file(photo), *FEATURE_MAPS_INPUTS, api_name="/feature_maps")

        results = {}
        if "/classify" in endpoints:
            classify(photos[0])  # each endpoint's first call sets it up
            results["/classify"] = median_ms([time_call(classify, p) for p in photos])
        if "/bone_age" in endpoints:
            bone_age(photos[0])
            bone_ages = [bone_age(p) for p in photos]
            results["/bone_age number"] = median_ms([number for number, _ in bone_ages])
            results["/bone_age whole"] = median_ms([whole for _, whole in bone_ages])
        if "/feature_maps" in endpoints:
            feature_maps(photos[0])
            results["/feature_maps"] = median_ms([time_call(feature_maps, p) for p in photos])
    return results


COMPILE_ENDED = re.compile(r"^\* .*: predictions (compiled in|run uncompiled)", re.M)  # serving.inference.compiled_copy


@dataclass
class StartedApp:
    url: str
    first_answer_s: float  # from start to its first answer
    first_answer_mib: float  # its resident memory then
    compiled_s: float  # from start until the compiles of its start-up models ended
    compiled_mib: float  # its resident memory then


@contextlib.contextmanager
def demo_server(
    photo: Path,
    *demo_args: str,
    module: str = "demos",
    start_timeout_s: float = 120,
    models: int = 0,
    space: Path | None = None,
):
    """`python -m demos` (or another app `module`) in its own process, as users run it, asked to /classify `photo`;
    with `space`, that Space folder's app.py, run as Spaces run it (the port in GRADIO_SERVER_PORT).

    Yields a StartedApp once it has answered and the compiles of its `models` start-up models have ended (as it
    prints them). A start-up model compiles after its first answer: with two, /bone_age is asked once too.
    """
    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    if space is None:
        command, folder, env = [sys.executable, "-m", module, "--port", str(port), *demo_args], REPO, None
    else:
        command, folder, env = [sys.executable, "app.py"], space, {**os.environ, "GRADIO_SERVER_PORT": str(port)}
    start = time.perf_counter()

    def waited_too_long(server: subprocess.Popen) -> bool:
        return time.perf_counter() - start > start_timeout_s or server.poll() is not None

    with tempfile.NamedTemporaryFile("w+") as log:
        server = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.DEVNULL)

        def memory_mib() -> float:
            return psutil.Process(server.pid).memory_info().rss / 2**20

        try:
            while True:
                try:
                    Client(url, verbose=False).predict(handle_file(photo), api_name="/classify")
                    break
                except Exception:  # not listening yet: poll until it answers (bounded below)
                    if waited_too_long(server):
                        raise RuntimeError(f"{shlex.join(command)} did not answer within {start_timeout_s:g} s")
                    time.sleep(0.25)
            first_answer = (time.perf_counter() - start, memory_mib())
            if models > 1:
                Client(url, verbose=False).predict(handle_file(photo), api_name="/bone_age")
            while len(COMPILE_ENDED.findall(Path(log.name).read_text())) < models:
                if waited_too_long(server):
                    raise RuntimeError(f"{shlex.join(command)} did not compile its models within {start_timeout_s:g} s")
                time.sleep(0.25)
            yield StartedApp(url, *first_answer, time.perf_counter() - start, memory_mib())
        finally:
            server.terminate()
            server.wait()


def report_endpoints(photos: list[Path], args: argparse.Namespace) -> None:
    demo_args = (
        *("--food-model", args.food_model, "--boneage-model", args.boneage_model),
        *("--prediction-precision", args.prediction_precision),
    )
    models = len({args.food_model, args.boneage_model})
    with demo_server(photos[0], *demo_args, start_timeout_s=args.start_timeout, models=models) as app:
        endpoints = endpoint_times(app.url, photos)
    for endpoint, ms in endpoints.items():
        print(f"endpoint {endpoint:14s} {ms:7.1f} ms (through gradio_client, median of {len(photos)})")
    print(f"feature maps / classification: {endpoints['/feature_maps'] / endpoints['/classify']:.2f}x (goal <= 3x)")
    print(f"cold start, python -m demos to first answer: {app.first_answer_s:.1f} s (goal <= 15 s)")
    print(f"start-up models compiled {app.compiled_s:.1f} s after start (the endpoints above were timed after that)")
    print(
        f"resident memory of python -m demos after its first answer: {app.first_answer_mib:.0f} MiB, "
        f"once compiled: {app.compiled_mib:.0f} MiB"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[timing_options()])
    parser.add_argument("--food-model", default="food10")
    parser.add_argument("--boneage-model", default="boneage")
    parser.add_argument("--vit-model", help="a ViT checkpoint (default: ViT-B/16 with random weights, from its config)")
    parser.add_argument("--skip-endpoints", action="store_true", help="no python -m demos: the ratios only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={wait_policy}, cores {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        photos = synthetic_photos(Path(tmp), args.images)
        images = [Image.open(p).convert("RGB") for p in photos]
        refs = {
            "food": args.food_model,
            "vit-b16": args.vit_model or str(vit_base_folder(Path(tmp) / "vit-b16")),
            "boneage": args.boneage_model,
        }
        pairs = {name: contender(ref, images[0], args.prediction_precision) for name, ref in refs.items()}
        ratios, pipeline_ms = time_runs(pairs, images, args.runs)
        report_fp32_bound(pairs, pipeline_ms)
        if not args.skip_endpoints:
            report_endpoints(photos, args)
    headline = summary(ratios, args.prediction_precision)
    print(f"speed-up over pipeline, median of {args.runs} runs: {headline} (goal >= 1.5x in every run)")


if __name__ == "__main__":
    main()
