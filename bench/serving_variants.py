"""Prediction latency of ways to serve one checkpoint on the CPU, against `pipeline`, and their agreement with it.

    OMP_WAIT_POLICY=PASSIVE python -m bench.serving_variants --model vit-b16 --images 15 \
        --variants fp32,compiled-fp32,compiled-bf16,compiled-int8
    OMP_WAIT_POLICY=PASSIVE python -m bench.serving_variants --model food10 --images 0 --variants bf16,int8 \
        --agreement-photos ../shared/data/food10/validation        # agreement only, no timing
    OMP_WAIT_POLICY=PASSIVE python -m bench.serving_variants --model boneage --images 0 --variants bf16,int8 \
        --agreement-photos ../shared/data/boneage/validation

`--model` takes a hub id, folder or alias, or `vit-b16` (a ViT-B/16-sized classifier with random weights, built
from its config). Each variant is a pixel_values -> logits callable built from the checkpoint (--variants picks):
- eager-attention: the transformers model with eager attention (what the demo needs for attention rollout);
- fp32: the model as `from_pretrained` loads it (SDPA attention where the architecture has it);
- bf16, int8: that model under bf16 autocast, or with its Linear layers quantised to int8 dynamically
  (`demos.serving.precision.uncompiled`: what `python -m demos --prediction-precision bf16/int8` computes);
- compiled-fp32, compiled-bf16, compiled-int8: those compiled by `torch.compile` with inductor's freezing, checked
  against them (`demos.serving.compiling.compiled_copy`): what the demo's start-up models predict with once compiled;
- export: `torch.export` of the fp32 model, run as the exported module;
- onnxruntime: `torch.onnx.export` of it, run by ONNX Runtime on the same number of threads as torch
  (`pip install onnxruntime onnx onnxscript` first: they are not dependencies of the project).
Timing (--images synthetic photos, all variants and the pipeline interleaved image by image so that load hits
them alike) covers what /classify pays: the checkpoint's processor, the variant, softmax and top-5. Agreement
(--agreement-photos, a folder searched for images, decoded as the demo decodes uploads) compares each variant
with the fp32 model as loaded: for a classifier, the share of photos whose top-1 class is the same; for a
regressor, the mean and largest absolute difference of its outputs (every output of a conditioned head), in its
unit. It means something only for trained weights. Each variant's build time (compiling, exporting) is printed.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from PIL import Image

from bench.demo_latency import synthetic_photos, time_call, vit_base_folder
from demos.serving.compiling import compiled_copy
from demos.serving.images import load_image
from demos.serving.inference import model_inputs
from demos.serving.precision import LogitsOnly, uncompiled
from hub import Checkpoint, load_checkpoint
from hub.constants import IMAGE_SUFFIXES
from hub.preprocessing import image_spec
from hub.serving_options import Precision

Predict = Callable[[torch.Tensor], torch.Tensor]  # pixel_values (1, 3, H, W) -> logits (1, labels)


def logits_of(model: torch.nn.Module) -> torch.nn.Module:
    """model(pixel_values) -> logits, in eval mode: a new Module starts in training mode, and exporters record it."""
    return LogitsOnly(model).eval()


def eager_attention(checkpoint: Checkpoint, example: torch.Tensor) -> Predict:
    model = copy.deepcopy(checkpoint.model)
    model.set_attn_implementation("eager")
    return logits_of(model)


def served_in(precision: Precision) -> Callable[[Checkpoint, torch.Tensor], Predict]:
    """The model computing in `precision`, uncompiled (demos.serving.precision's one implementation)."""

    def build(checkpoint: Checkpoint, example: torch.Tensor) -> Predict:
        return uncompiled(checkpoint.model, precision)

    return build


def compiled_in(precision: Precision) -> Callable[[Checkpoint, torch.Tensor], Predict]:
    """What the demo's start-up models predict with in `precision` once compiled (demos.serving.compiling's one way)."""

    def build(checkpoint: Checkpoint, example: torch.Tensor) -> Predict | None:
        spec = image_spec(checkpoint.processor)
        return compiled_copy(uncompiled(checkpoint.model, precision), spec, precision, name=str(checkpoint.source))

    return build


def exported(checkpoint: Checkpoint, example: torch.Tensor) -> Predict:
    return torch.export.export(logits_of(checkpoint.model), (example,)).module()


def onnxruntime(checkpoint: Checkpoint, example: torch.Tensor) -> Predict:
    try:
        import onnxruntime as ort
    except ImportError as err:  # not a dependency of the project: it did not pay (bench/RESULTS.md)
        raise SystemExit("The onnxruntime variant needs: pip install onnxruntime onnx onnxscript") from err

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    torch.onnx.export(logits_of(checkpoint.model), (example,), path, input_names=["pixel_values"], dynamo=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda pixel_values: torch.from_numpy(session.run(None, {"pixel_values": pixel_values.numpy()})[0])


VARIANTS: dict[str, Callable[[Checkpoint, torch.Tensor], Predict | None]] = {
    "eager-attention": eager_attention,
    **{str(precision): served_in(precision) for precision in Precision},
    **{f"compiled-{precision}": compiled_in(precision) for precision in Precision},
    "export": exported,
    "onnxruntime": onnxruntime,
}


def build_variants(checkpoint: Checkpoint, names: list[str]) -> dict[str, Predict]:
    """{name: predict}, each built (and warmed up once) in turn, with its build time printed; a compiled variant
    that cannot be had (compiling fails, is turned off, or changes the output) is left out, saying so."""
    spec = image_spec(checkpoint.processor)
    built = {}
    for name in names:
        start = time.perf_counter()
        # Exporters refuse inference tensors; the others get one, as the demo's predictions do (compiled copies are
        # compiled for one kind of tensor).
        with torch.inference_mode(name not in {"export", "onnxruntime"}):
            example = torch.randn(1, 3, spec.height, spec.width, generator=torch.Generator().manual_seed(0))
            predict = VARIANTS[name](checkpoint, example)
            if predict is None:  # a copy that could not be compiled: why is printed
                print(f"{name:16s} left out", flush=True)
                continue
            built[name] = predict
            predict(example)
        print(f"{name:16s} built and run once in {time.perf_counter() - start:6.1f} s", flush=True)
    return built


def logits(checkpoint: Checkpoint, predict: Predict, image: Image.Image) -> torch.Tensor:
    """The checkpoint's processor, then the variant: one image's logits."""
    with torch.inference_mode():
        return predict(model_inputs(checkpoint, image))[0]


def top_classes(checkpoint: Checkpoint, predict: Predict, image: Image.Image, k: int = 5) -> list[int]:
    """What /classify computes: the checkpoint's processor, logits, softmax, the k most probable classes."""
    probabilities = logits(checkpoint, predict, image).softmax(-1)
    return probabilities.topk(min(k, probabilities.numel())).indices.tolist()


def time_variants(checkpoint: Checkpoint, variants: dict[str, Predict], photos: list[Path]) -> None:
    """Median latency of each variant and of `pipeline`, interleaved image by image, and pipeline / variant."""
    from transformers import pipeline

    baseline = pipeline("image-classification", model=str(checkpoint.folder))
    images = [Image.open(p).convert("RGB") for p in photos]
    baseline(images[0])  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in ["pipeline", *variants]}
    for image in images:
        samples["pipeline"].append(time_call(baseline, image))
        for name, predict in variants.items():
            samples[name].append(time_call(top_classes, checkpoint, predict, image))
    pipeline_ms = 1000 * statistics.median(samples.pop("pipeline"))
    print(f"{'pipeline':16s} {pipeline_ms:7.1f} ms (median of {len(images)})")
    for name, values in samples.items():
        ms = 1000 * statistics.median(values)
        print(f"{name:16s} {ms:7.1f} ms   pipeline/{name} {pipeline_ms / ms:.2f}x")


def agreement(checkpoint: Checkpoint, variants: dict[str, Predict], folder: Path) -> None:
    """How close each variant comes to the fp32 model on the folder's images: top-1 agreement, or output difference."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}.")
    reference = logits_of(checkpoint.model)
    expected, outputs = [], {name: [] for name in variants}  # each image's logits: the fp32 model's, each variant's
    for path in paths:
        image = load_image(path)
        expected.append(logits(checkpoint, reference, image).float())
        for name, predict in variants.items():
            outputs[name].append(logits(checkpoint, predict, image).float())
    expected = torch.stack(expected)
    for name, values in outputs.items():
        print(f"{name:16s} {closeness(checkpoint, torch.stack(values), expected)}")


def closeness(checkpoint: Checkpoint, served: torch.Tensor, expected: torch.Tensor) -> str:
    """One line: how often the top-1 class is the fp32 model's, or how far a regressor's outputs are from its."""
    images = len(expected)
    if checkpoint.task.is_regression:
        difference = (served - expected).abs()
        unit = checkpoint.task.unit or "the target's unit"
        return (
            f"|difference| from the fp32 model over {images} images x {expected.shape[1]} outputs, in {unit}: "
            f"mean {float(difference.mean()):.3f}, max {float(difference.max()):.3f}"
        )
    agree = int((served.argmax(-1) == expected.argmax(-1)).sum())
    return f"top-1 agreement with the fp32 model {agree}/{images} ({100 * agree / images:.1f}%)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-b16", help="hub id, folder, alias, or vit-b16 (random weights)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--images", type=int, default=15, help="synthetic photos timed (0: no timing)")
    parser.add_argument("--agreement-photos", type=Path, help="a folder of real photos for top-1 agreement")
    args = parser.parse_args(argv)
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    with tempfile.TemporaryDirectory() as tmp:
        ref = str(vit_base_folder(Path(tmp) / "vit-b16")) if args.model == "vit-b16" else args.model
        checkpoint = load_checkpoint(ref)
        if checkpoint.is_timm:  # timm models have no attention implementation to switch
            args.variants = [name for name in args.variants if name != "eager-attention"]
        variants = build_variants(checkpoint, args.variants)
        if args.images:
            time_variants(checkpoint, variants, synthetic_photos(Path(tmp), args.images))
        if args.agreement_photos:
            agreement(checkpoint, variants, args.agreement_photos)


if __name__ == "__main__":
    main()
