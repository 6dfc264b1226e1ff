"""Serving predictions, free of Gradio: top-k classes, a regression value, the logits behind them.

Every function takes a `hub.Checkpoint` and a PIL image, preprocessed by the checkpoint's own image processor.
Predictions run the model in fp32 or, opted into, bf16 or int8 (`Precision`, `serve`), through a compiled copy
for the start-up models (`predictor`). Explaining them (feature maps, Grad-CAM, attention rollout) is
demos/explaining/explain.py, in fp32.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import os
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field

import torch
from PIL import Image

from demos.serving.fx_tracing import confine_fx_patches_to_their_thread
from hub import Checkpoint
from hub.checkpoint import computes_bf16_natively
from hub.preprocessing import image_spec
from hub.serving_options import Precision

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


# Predictions alone (/classify, /bone_age's number) run a compiled copy of each start-up model: torch.compile
# (inductor) with freezing, which folds BatchNorm into the convolutions and turns the weights into constants laid out
# for oneDNN (1.3-2x faster than a frozen TorchScript trace on the shipped EfficientNets; bench/RESULTS.md). Compiling
# takes 5-15 s a model, so it runs in a background thread and predictions run the model itself until the copy is
# ready (and checked). Visitors' models are never compiled: dynamo keeps every compiled copy, with its frozen weights,
# for the life of the process, and strangers must not be able to make the server spend CPU and memory on that.
_SERVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> _Served
_SERVED_LOCK = threading.Lock()
_COMPILE_LOCK = threading.Lock()  # one compile at a time: each uses every core


# How far the compiled copy may be from the module it was compiled from. Under bf16 autocast, freezing folds
# BatchNorm into bf16 weights, which moves logits by a few bf16 steps.
_COMPILE_TOLERANCE = {Precision.FP32: 1e-3, Precision.BF16: 2e-2, Precision.INT8: 1e-3}


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


@dataclass
class _Served:
    precision: Precision
    int8: torch.nn.Module | None  # the int8 copy; fp32 and bf16 wrap the model, rebuilt per call (kept, a wrapper
    # would keep its key alive, and a visitor's evicted model in memory)
    compiled: torch.nn.Module | None = None  # set by the background compile once it is checked
    settled: threading.Event = field(default_factory=threading.Event)  # set when no compile is (or will be) running


def serve(checkpoint: Checkpoint, precision: Precision | str = Precision.FP32, *, compile: bool = False) -> None:
    """Make the model's predictions compute in `precision` from now on; with `compile`, start compiling them.

    Once per model (another precision later is an error); it assumes the model's weights do not change afterwards
    (nothing in the demo changes them). `compile` returns at once: `wait_until_compiled` waits for the copy.
    """
    precision = checked_precision(precision)
    model = checkpoint.model
    with _SERVED_LOCK:
        served = _SERVED.get(model)
        if served is None:
            int8 = _int8_copy(model) if precision is Precision.INT8 else None
            served = _SERVED[model] = _Served(precision, int8)
            if compile:
                _compile_in_background(checkpoint, served)
            else:
                served.settled.set()
    if served.precision is not precision:
        raise ValueError(f"{checkpoint.source} already predicts in {served.precision}, not {precision}.")


def predictor(checkpoint: Checkpoint) -> torch.nn.Module:
    """pixel_values (1, 3, H, W) -> fp32 logits for predictions: the compiled copy once it is ready, until then (and
    for models not compiled) the model computing in its precision (fp32 if `serve` was not called)."""
    served = _served(checkpoint)
    return served.compiled if served.compiled is not None else uncompiled_predictor(checkpoint)


def uncompiled_predictor(checkpoint: Checkpoint) -> torch.nn.Module:
    """pixel_values (any batch size) -> fp32 logits, computing in the model's precision (fp32 if `serve` was not
    called): what predictions run until the compiled copy is ready, for models not compiled, and for batches."""
    served = _served(checkpoint)
    return served.int8 if served.int8 is not None else uncompiled(checkpoint.model, served.precision)


def _served(checkpoint: Checkpoint) -> _Served:
    if checkpoint.model not in _SERVED:
        serve(checkpoint)
    return _SERVED[checkpoint.model]


def wait_until_compiled(checkpoint: Checkpoint, timeout: float | None = None) -> bool:
    """Wait until the model's compile ends (at most `timeout` s); whether its predictions now run a compiled copy."""
    served = _SERVED[checkpoint.model]
    served.settled.wait(timeout)
    return served.compiled is not None


def uncompiled(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """pixel_values -> fp32 logits of the model computing in `precision` (int8: a quantised copy of it)."""
    if precision is Precision.INT8:
        return _int8_copy(model)
    logits = LogitsOnly(model).eval()
    return _Bf16Autocast(logits) if precision is Precision.BF16 else logits


def _compile_in_background(checkpoint: Checkpoint, served: _Served) -> None:
    # From a copy, made now, before any request (the int8 model is one already): Grad-CAM and feature maps hook into
    # the model itself, and a hook present while dynamo traces would be compiled into every prediction (it does not
    # guard on hooks).
    if served.int8 is not None:
        reference = served.int8
    else:
        reference = uncompiled(copy.deepcopy(checkpoint.model), served.precision)
    spec = image_spec(checkpoint.processor)
    confine_fx_patches_to_their_thread()  # requests go on running models while the compile traces its copy

    def compile_and_publish() -> None:
        with _COMPILE_LOCK:
            served.compiled = compiled_copy(reference, spec, served.precision, name=str(checkpoint.source))
        served.settled.set()

    # Run in a copy of the caller's context: torch's compiler settings are context variables, so that the caller's
    # (torch._dynamo.config.disable, say) hold in the thread as they would have held in the caller.
    in_callers_context = functools.partial(contextvars.copy_context().run, compile_and_publish)
    threading.Thread(target=in_callers_context, name=f"compile {checkpoint.source}", daemon=True).start()


def compiled_copy(reference: torch.nn.Module, spec, precision: Precision, *, name: str) -> torch.nn.Module | None:
    """`reference` compiled for one (3, spec.height, spec.width) image, or None (printed) when compiling is off,
    fails, or changes the output."""
    import torch._dynamo  # imported here: dynamo and inductor add seconds to an import of this module
    import torch._inductor.config

    if torch._dynamo.config.disable or os.environ.get("TORCHDYNAMO_DISABLE") == "1":  # torch's two off switches
        print(f"* {name}: predictions run uncompiled (TORCH_COMPILE_DISABLE or TORCHDYNAMO_DISABLE is set)", flush=True)
        return None
    start = time.perf_counter()
    compiled = torch.compile(reference, dynamic=False)
    try:
        # Freezing is read when the first call compiles; torch.compile's `options` do not pass it on (measured: no
        # folding, 14 ms against 8 ms on the shipped bone-age model). The example is an inference tensor, as
        # predictions' inputs are: dynamo compiles again for a tensor of another kind.
        with torch.inference_mode(), torch._inductor.config.patch(freezing=True):
            example = torch.randn(1, 3, spec.height, spec.width, generator=torch.Generator().manual_seed(0))
            compiled(example)
            tolerance = _COMPILE_TOLERANCE[precision]
            matches = torch.allclose(compiled(-example), reference(-example), rtol=tolerance, atol=tolerance)
    except Exception as err:  # noqa: BLE001 - compiling runs the model's own Python and a C++ compiler: any failure
        print(f"* {name}: predictions run uncompiled: compiling failed ({type(err).__name__}: {err})", flush=True)
        return None
    if not matches:
        print(f"* {name}: predictions run uncompiled: the compiled copy gave other logits", flush=True)
        return None
    print(f"* {name}: predictions compiled in {time.perf_counter() - start:.1f} s", flush=True)
    return compiled


class _Bf16Autocast(torch.nn.Module):
    """logits computed under bf16 autocast, returned in fp32."""

    def __init__(self, logits: torch.nn.Module):
        super().__init__()
        self.logits = logits

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.logits(pixel_values).float()


def _int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    # torch.ao's quantize_dynamic is the dynamic int8 Linear that torch itself has (torchao, which replaces it, is
    # another package); its move to torchao is announced at every call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # quantized tensor creation's deprecation notice
        return torch.ao.quantization.quantize_dynamic(
            LogitsOnly(copy.deepcopy(model)).eval(), {torch.nn.Linear}, dtype=torch.qint8
        )


def predicted_logits(checkpoint: Checkpoint, image: Image.Image) -> torch.Tensor:
    with torch.inference_mode():
        return predictor(checkpoint)(model_inputs(checkpoint, image))[0]


def top_k(checkpoint: Checkpoint, image: Image.Image, k: int = TOP_K) -> dict[str, float]:
    """{label: probability} for the k most probable classes of a classification checkpoint."""
    if checkpoint.task.is_regression:
        raise ValueError(f"{checkpoint.name} is a regression checkpoint: it predicts a number, not classes.")
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
        raise ValueError(f"{checkpoint.name} knows {column} = {', '.join(outputs)}, not '{condition}'.")
    return [outputs[condition]]


def regress(checkpoint: Checkpoint, image: Image.Image, condition: str | None = None) -> float:
    """The regression checkpoint's output for `condition` (the mean of its outputs when unknown), in its unit."""
    if not checkpoint.task.is_regression:
        raise ValueError(f"{checkpoint.name} is a classification checkpoint: it predicts classes, not a number.")
    return float(predicted_logits(checkpoint, image)[output_indices(checkpoint, condition)].mean())
