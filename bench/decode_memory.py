"""Memory of the served demo while /batch_predict decodes huge images that are small on disk (issue 25, finding 3).

    OMP_WAIT_POLICY=PASSIVE python -m bench.decode_memory [--images 8] [--side 7000] [--food-model food10]

Starts `python -m demos` in its own process, as users run it (bench.demo_latency.demo_server, once its start-up
models are compiled), warms /batch_predict up with one photo, then sends --images uniform PNGs of --side x --side
pixels (49 megapixels by default, under the decoder's 50-megapixel cap, a few KB each) in one /batch_predict call.
Prints the server's resident memory before, its peak during the call (VmHWM, reset before it) and after.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import reads it

import psutil
from PIL import Image

from bench.demo_latency import demo_server, synthetic_photos
from bench.options import at_least_one

MIB = 2**20


def memory_mib(pid: int, field: str) -> float:
    """VmRSS (resident now) or VmHWM (resident at its peak since `reset_peak`) of process `pid`, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: VmHWM starts again from VmRSS


def huge_pngs(folder: Path, count: int, side: int) -> list[Path]:
    """`count` uniform PNGs of side x side pixels, each of its own colour (so each a distinct upload)."""
    paths = []
    for i in range(count):
        paths.append(folder / f"huge{i}.png")
        Image.new("RGB", (side, side), (30 * i % 256, 120, 200)).save(paths[-1])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=at_least_one, default=8, help="huge PNGs sent in one /batch_predict call")
    parser.add_argument("--side", type=at_least_one, default=7000, help="their width and height in pixels")
    parser.add_argument("--food-model", default="food10")
    parser.add_argument("--boneage-model", default="boneage")
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory() as tmp:
        photo = synthetic_photos(Path(tmp), 1)[0]
        pngs = huge_pngs(Path(tmp), args.images, args.side)
        kib = sum(p.stat().st_size for p in pngs) / len(pngs) / 1024
        models = ("--food-model", args.food_model, "--boneage-model", args.boneage_model)
        with demo_server(photo, *models, start_timeout_s=600, models=len(set(models[1::2]))) as app:
            (server,) = psutil.Process().children()  # demo_server's python -m demos, this process's only child
            client = Client(app.url, verbose=False)
            client.predict([handle_file(photo)], "food", 3, api_name="/batch_predict")
            before = memory_mib(server.pid, "VmRSS")
            reset_peak(server.pid)
            client.predict([handle_file(p) for p in pngs], "food", 3, api_name="/batch_predict")
            peak, after = memory_mib(server.pid, "VmHWM"), memory_mib(server.pid, "VmRSS")
    megapixels = args.side**2 / 1e6
    print(f"/batch_predict, {args.images} PNGs of {megapixels:.0f} megapixels ({kib:.0f} KB each), python -m demos:")
    print(f"resident before {before:.0f} MiB, peak {peak:.0f} MiB ({peak - before:+.0f}), after {after:.0f} MiB "
          f"({after - before:+.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
