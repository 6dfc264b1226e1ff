"""Per-image latency of the demo against transformers' pipeline, on the same checkpoints and images, in one run.

    OMP_WAIT_POLICY=PASSIVE python -m bench.demo_latency [--food-model food10] [--boneage-model boneage] [--images 20]

For each checkpoint (the shipped food10 and boneage, and a ViT-B/16-sized classifier with random weights)
it times, image by image and interleaved so that load on the machine hits both alike:
- ours: `demos.inference.top_k` (what /classify runs) or `regress` (what /bone_age's number is);
- baseline: `transformers.pipeline("image-classification")` on the same folder (regression checkpoints
  are skipped there: the pipeline gives no number for them).
It then starts `python -m demos` in its own process, as users run it (the time from start to its first answer
is the cold start), and times /classify, /bone_age and /feature_maps through gradio_client from this process,
output images downloaded as a client gets them. The last line is the headline ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from PIL import Image

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


def compare_with_pipeline(name: str, ref: str, photos: list[Path]) -> float | None:
    """Print ours vs pipeline per image for one checkpoint; return pipeline/ours for classifiers."""
    from transformers import pipeline

    from demos.inference import regress, top_k
    from hub import load_checkpoint

    checkpoint = load_checkpoint(ref)
    images = [Image.open(p).convert("RGB") for p in photos]
    ours_fn = regress if checkpoint.task.is_regression else top_k
    baseline = None if checkpoint.task.is_regression else pipeline("image-classification", model=str(checkpoint.folder))
    ours_fn(checkpoint, images[0])  # warm-up both
    if baseline:
        baseline(images[0])
    ours, theirs = [], []
    for image in images:
        ours.append(time_call(ours_fn, checkpoint, image))
        if baseline:
            theirs.append(time_call(baseline, image))
    line = f"{name:12s} ours {median_ms(ours):7.1f} ms"
    if not baseline:
        print(line + "   (regression: the pipeline has no number to compare)")
        return None
    ratio = statistics.median(theirs) / statistics.median(ours)
    print(line + f"   pipeline {median_ms(theirs):7.1f} ms   pipeline/ours {ratio:.2f}x")
    return ratio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_endpoints(url: str, photos: list[Path]) -> dict[str, float]:
    """Median latency of each endpoint through gradio_client (output images downloaded, as a client gets them)."""
    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory() as downloads:
        client = Client(url, verbose=False, download_files=downloads)
        calls = {
            "/classify": lambda p: client.predict(handle_file(p), api_name="/classify"),
            "/bone_age": lambda p: client.predict(handle_file(p), api_name="/bone_age"),
            "/feature_maps": lambda p: client.predict(
                handle_file(p), "food", "", "top prediction", api_name="/feature_maps"
            ),
        }
        results = {}
        for endpoint, call in calls.items():
            call(photos[0])
            results[endpoint] = median_ms([time_call(call, p) for p in photos])
    return results


@contextlib.contextmanager
def demo_server(photo: Path, *demo_args: str, start_timeout_s: float = 120):
    """`python -m demos` in its own process, as users run it: yields (its URL, seconds from start to first answer)."""
    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "demos", "--port", str(port), *demo_args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                Client(url, verbose=False).predict(handle_file(photo), api_name="/classify")
                break
            except Exception:  # not listening yet: poll until it answers (bounded below)
                if time.perf_counter() - start > start_timeout_s or server.poll() is not None:
                    raise RuntimeError(f"python -m demos did not answer within {start_timeout_s:g} s")
                time.sleep(0.25)
        yield url, time.perf_counter() - start
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--food-model", default="food10")
    parser.add_argument("--boneage-model", default="boneage")
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    import torch

    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={wait_policy}, cores {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        photos = synthetic_photos(Path(tmp), args.images)
        ratios = {
            "food": compare_with_pipeline("food", args.food_model, photos),
            "vit-b16": compare_with_pipeline("vit-b16", str(vit_base_folder(Path(tmp) / "vit-b16")), photos),
        }
        compare_with_pipeline("boneage", args.boneage_model, photos)
        models = ("--food-model", args.food_model, "--boneage-model", args.boneage_model)
        with demo_server(photos[0], *models) as (url, cold):
            endpoints = time_endpoints(url, photos)
        for endpoint, ms in endpoints.items():
            print(f"endpoint {endpoint:14s} {ms:7.1f} ms (through gradio_client, median of {len(photos)})")
        print(f"feature maps / classification: {endpoints['/feature_maps'] / endpoints['/classify']:.2f}x (goal <= 3x)")
        print(f"cold start, python -m demos to first answer: {cold:.1f} s (goal <= 15 s)")
    print(
        f"classification speed-up over pipeline: food {ratios['food']:.2f}x, vit-b16 {ratios['vit-b16']:.2f}x",
        "(goal >= 1.5x)",
    )


if __name__ == "__main__":
    main()
