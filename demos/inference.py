"""Serving predictions, free of Gradio: top-k classes, a regression value, the logits behind them.

Every function takes a `hub.Checkpoint` and a PIL image, preprocessed by the checkpoint's own image processor.
Predictions run a frozen copy of the model (`predictor`), in fp32 or, opted into, bf16 or int8 (`Precision`,
`build_predictor`). Explaining them (feature maps, Grad-CAM, attention rollout) is demos/explain.py, in fp32.
"""

from __future__ import annotations

import copy
import threading
import warnings
import weakref
from dataclasses import dataclass
from enum import StrEnum

import torch
from PIL import Image

from hub import Checkpoint
from hub.checkpoint import computes_bf16_natively
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
# TorchScript is deprecated (torch 2.14 warns); it is used because it needs no compile step at start-up
# (torch.compile, torch.export and ONNX Runtime were measured: bench/serving_variants.py, none faster here).
_FROZEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> _Served
_FROZEN_LOCK = threading.Lock()


class Precision(StrEnum):
    """What the frozen prediction copy computes in. Explanations (Grad-CAM, feature maps, rollout) stay fp32."""

    FP32 = "fp32"
    BF16 = "bf16"  # under bf16 autocast: matmuls and convolutions in bf16, normalisation and softmax in fp32
    INT8 = "int8"  # dynamic quantisation: Linear weights int8, their inputs quantised at each call


# How far the trace may be from the module it was traced from (a trace that bakes in control flow is far off).
# Under autocast the trace folds BatchNorm into bf16 weights, which moves logits by a few bf16 steps.
_TRACE_TOLERANCE = {Precision.FP32: 1e-3, Precision.BF16: 2e-2, Precision.INT8: 1e-3}


def checked_precision(value: Precision | str) -> Precision:
    """`value` as a Precision, or a ValueError saying which exist and, for bf16 on a CPU without it, what to use."""
    try:
        precision = Precision(value)
    except ValueError:
        raise ValueError(f"Unknown prediction precision '{value}': choose one of {', '.join(Precision)}.") from None
    if precision is Precision.BF16 and not computes_bf16_natively("cpu"):  # the demo predicts on the CPU
        raise ValueError(
            "bf16 predictions need a CPU that computes bf16 natively (AVX512-BF16 or AMX); this one would emulate "
            "it, slower than fp32. Use fp32, or int8 (dynamic quantisation of the Linear layers)."
        )
    return precision


def precision_notice(precision: Precision) -> str:
    """The start-up line saying what predictions compute in and, when reduced, that agreement is the user's to check."""
    if precision is Precision.FP32:
        return "Predictions run in fp32, like the models themselves."
    return (
        f"Predictions run in {precision} (explanations in fp32). How often their answer is the fp32 model's depends "
        "on the model and is yours to check on your own photos: python -m bench.serving_variants --model MODEL "
        f"--images 0 --variants {precision} --agreement-photos FOLDER"
    )


@dataclass(frozen=True)
class _Served:
    precision: Precision
    module: torch.nn.Module | None  # None: a wrapper of the model itself, untraced (kept, it would keep its key alive)


def build_predictor(checkpoint: Checkpoint, precision: Precision | str = Precision.FP32) -> torch.nn.Module:
    """Build the frozen copy that the model's predictions run from now on, in `precision`; return `predictor`'s.

    Built once per model (a second call with another precision is an error); it assumes the model's weights do not
    change afterwards (nothing in the demo changes them).
    """
    precision = checked_precision(precision)
    model = checkpoint.model
    served = _FROZEN.get(model)
    if served is None:  # built outside the lock: tracing a large model takes seconds other requests need not wait
        module = prediction_module(model, image_spec(checkpoint.processor), precision)
        kept = None if any(m is model for m in module.modules()) else module  # see _Served
        with _FROZEN_LOCK:
            served = _FROZEN.setdefault(model, _Served(precision, kept))
    if served.precision is not precision:
        raise ValueError(f"{checkpoint.source} already predicts in {served.precision}, not {precision}.")
    return predictor(checkpoint)


def predictor(checkpoint: Checkpoint) -> torch.nn.Module:
    """pixel_values -> fp32 logits for predictions: the frozen copy (built in fp32 if `build_predictor` was not
    called), or the model itself, in that precision, if it cannot be traced exactly."""
    if checkpoint.model not in _FROZEN:
        return build_predictor(checkpoint)
    served = _FROZEN[checkpoint.model]
    return served.module if served.module is not None else _reference(checkpoint.model, served.precision)


def prediction_module(model: torch.nn.Module, spec, precision: Precision) -> torch.nn.Module:
    """pixel_values (1, 3, spec.height, spec.width) -> fp32 logits, computed in `precision`: the frozen copy, or the
    untraced module it is traced from when tracing fails or changes the output (printed)."""
    reference = _reference(model, precision)
    frozen = _frozen_copy(reference, spec, _TRACE_TOLERANCE[precision], name=type(model).__name__)
    return reference if frozen is None else frozen


def _reference(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """The model computing in `precision`, untraced: what the frozen copy is traced from and checked against."""
    if precision is Precision.INT8:
        return _int8_copy(model)
    logits = LogitsOnly(model).eval()
    return _Bf16Autocast(logits) if precision is Precision.BF16 else logits


class _Bf16Autocast(torch.nn.Module):
    """logits computed under bf16 autocast, returned in fp32; traced, the casts autocast inserts are recorded."""

    def __init__(self, logits: torch.nn.Module):
        super().__init__()
        self.logits = logits

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.logits(pixel_values).float()


def _int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    # torch.ao's quantize_dynamic is the dynamic int8 Linear that torch itself has (torchao, which replaces it, is
    # another package and fast on CPUs under torch.compile only); its move to torchao is announced at every call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # quantized tensor creation's deprecation notice
        return torch.ao.quantization.quantize_dynamic(
            LogitsOnly(copy.deepcopy(model)).eval(), {torch.nn.Linear}, dtype=torch.qint8
        )


def _frozen_copy(reference: torch.nn.Module, spec, tolerance: float, *, name: str) -> torch.jit.ScriptModule | None:
    example = torch.randn(1, 3, spec.height, spec.width, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings about Python values fixed at this input size, and TorchScript's deprecation notices.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)
            # The check below compares outputs; the tracer's own check re-traces, and fails under autocast.
            traced = torch.jit.trace(reference, example, check_trace=False)
            frozen = torch.jit.optimize_for_inference(traced)
            # Checked on another input: one that flips every sign takes any branch the trace baked in the other way.
            matches = torch.allclose(frozen(-example), reference(-example), rtol=tolerance, atol=tolerance)
    except Exception as err:  # noqa: BLE001 - tracing runs the model's own Python, which may refuse in any way
        print(f"* {name} runs untraced: it could not be traced ({type(err).__name__}: {err})", flush=True)
        return None
    if not matches:  # a trace bakes in control flow; a model whose output then differs must not be served
        print(f"* {name} runs untraced: its traced copy gave other logits", flush=True)
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
