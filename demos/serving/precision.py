"""What predictions compute in: the operator's choice checked, the start-up line that states it, and a model wrapped
to compute in it (fp32, bf16 autocast, or an int8 copy). The command-line option itself is hub/serving_options.py.
"""

from __future__ import annotations

import copy
import warnings

import torch

from hub.checkpoint import computes_bf16_natively
from hub.serving_options import Precision


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


class LogitsOnly(torch.nn.Module):
    """model(pixel_values) -> logits tensor, as tracing and pytorch-grad-cam expect (transformers returns an object)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def uncompiled(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """pixel_values -> fp32 logits of the model computing in `precision` (int8: a quantised copy of it)."""
    if precision is Precision.INT8:
        return int8_copy(model)
    logits = LogitsOnly(model).eval()
    return _Bf16Autocast(logits) if precision is Precision.BF16 else logits


class _Bf16Autocast(torch.nn.Module):
    """logits computed under bf16 autocast, returned in fp32."""

    def __init__(self, logits: torch.nn.Module):
        super().__init__()
        self.logits = logits

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.logits(pixel_values).float()


def int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    """pixel_values -> fp32 logits of a copy of the model whose Linear layers compute in int8 (dynamic quantisation)."""
    # torch.ao's quantize_dynamic is the dynamic int8 Linear that torch itself has (torchao, which replaces it, is
    # another package); its move to torchao is announced at every call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # quantized tensor creation's deprecation notice
        return torch.ao.quantization.quantize_dynamic(
            LogitsOnly(copy.deepcopy(model)).eval(), {torch.nn.Linear}, dtype=torch.qint8
        )
