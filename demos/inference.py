"""Serving predictions, free of Gradio: top-k classes, a regression value, the logits behind them.

Every function takes a `hub.Checkpoint` and a PIL image, preprocessed by the checkpoint's own image processor.
Predictions run a frozen copy of the model (`predictor`). Explaining them (feature maps, Grad-CAM, attention
rollout) is demos/explain.py.
"""

from __future__ import annotations

import threading
import warnings
import weakref

import torch
from PIL import Image

from hub import Checkpoint
from hub.preprocessing import image_spec

TOP_K = 5


def model_inputs(checkpoint: Checkpoint, image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W): the checkpoint's own processor applied to the image."""
    return checkpoint.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]


class LogitsOnly(torch.nn.Module):
    """model(pixel_values) -> logits tensor, as tracing and pytorch-grad-cam expect (transformers returns an object)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


# Predictions alone (/classify, /bone_age's number) run a frozen TorchScript copy of the model, built once per
# model: BatchNorm folded into the convolutions, oneDNN kernels (speed against the pipeline: bench/RESULTS.md).
# TorchScript is deprecated (torch 2.14 warns); it is used because it needs no compile step at start-up. How
# torch.compile or torch.export compare on this CPU has not been measured.
_FROZEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> frozen copy, or None: serve the model
_FROZEN_LOCK = threading.Lock()


def predictor(checkpoint: Checkpoint) -> torch.nn.Module:
    """pixel_values -> logits for predictions: the frozen copy, or the model itself if it cannot be traced exactly.

    The copy is built on first use and assumes the model's weights do not change afterwards (nothing in the
    demo changes them).
    """
    model = checkpoint.model
    if model not in _FROZEN:  # built outside the lock: tracing a large model takes seconds other requests need not wait
        frozen = _frozen_copy(model, image_spec(checkpoint.processor))
        with _FROZEN_LOCK:
            _FROZEN.setdefault(model, frozen)
    frozen = _FROZEN[model]
    return frozen if frozen is not None else LogitsOnly(model)  # the wrapper is not cached: it would keep its key alive


def _frozen_copy(model: torch.nn.Module, spec) -> torch.jit.ScriptModule | None:
    reference = LogitsOnly(model).eval()
    example = torch.randn(1, 3, spec.height, spec.width, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings about Python values fixed at this input size, and TorchScript's deprecation notices.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)
            frozen = torch.jit.optimize_for_inference(torch.jit.trace(reference, example))
            # Checked on another input: one that flips every sign takes any branch the trace baked in the other way.
            matches = torch.allclose(frozen(-example), reference(-example), rtol=1e-3, atol=1e-3)
    except Exception as err:  # noqa: BLE001 - tracing runs the model's own Python, which may refuse in any way
        print(
            f"* {type(model).__name__} runs untraced: it could not be traced ({type(err).__name__}: {err})", flush=True
        )
        return None
    if not matches:  # a trace bakes in control flow; a model whose output then differs must not be served
        print(f"* {type(model).__name__} runs untraced: its traced copy gave other logits", flush=True)
        return None
    return frozen


def predicted_logits(checkpoint: Checkpoint, image: Image.Image) -> torch.Tensor:
    with torch.inference_mode():
        return predictor(checkpoint)(model_inputs(checkpoint, image))[0]


def top_k(checkpoint: Checkpoint, image: Image.Image, k: int = TOP_K) -> dict[str, float]:
    """{label: probability} for the k most probable classes of a classification checkpoint."""
    if checkpoint.task.is_regression:
        raise ValueError(f"{checkpoint.source} is a regression checkpoint: it predicts a number, not classes.")
    probabilities = predicted_logits(checkpoint, image).softmax(-1)
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    return {checkpoint.task.labels[i]: float(p) for p, i in zip(values.tolist(), indices.tolist(), strict=True)}


def ood_threshold(checkpoint: Checkpoint) -> float | None:
    """The calibrated top probability below which a photo fits none of the classes (config `ood_threshold`), if stored.

    Training picks it on validation so that about 95% of validation images reach it; without it, nothing is claimed.
    """
    value = getattr(checkpoint.model.config, "ood_threshold", None)
    return None if value is None else float(value)


def condition_outputs(checkpoint: Checkpoint) -> dict[str, int]:
    """{side-column value as written in the training metadata: output index} of a conditioned regression, else {}.

    E.g. {"false": 0, "true": 1} for bone age conditioned on the column "male" (config `condition_outputs`).
    """
    config = checkpoint.model.config
    if not getattr(config, "condition_column", None):
        return {}
    return {str(value): int(index) for value, index in config.condition_outputs.items()}


def output_indices(checkpoint: Checkpoint, condition: str | None) -> list[int]:
    """The regression outputs that answer for `condition`: its own output, or all of them when it is unknown (None).

    An unconditioned checkpoint has one output, logits[:, 0], whatever the condition.
    """
    outputs = condition_outputs(checkpoint)
    if not outputs:
        return [0]
    if condition is None:
        return sorted(outputs.values())
    if condition not in outputs:
        column = checkpoint.model.config.condition_column
        raise ValueError(f"{checkpoint.source} knows {column} = {', '.join(outputs)}, not '{condition}'.")
    return [outputs[condition]]


def regress(checkpoint: Checkpoint, image: Image.Image, condition: str | None = None) -> float:
    """The regression checkpoint's output for `condition` (the mean of its outputs when unknown), in its unit."""
    if not checkpoint.task.is_regression:
        raise ValueError(f"{checkpoint.source} is a classification checkpoint: it predicts classes, not a number.")
    return float(predicted_logits(checkpoint, image)[output_indices(checkpoint, condition)].mean())
