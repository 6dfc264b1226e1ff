"""What serving offers on the command line (the demos', a Space's, the benches'), without importing torch or gradio
(so that `--help` answers at once): the prediction precisions and the defaults of what web visitors may load.

It lives in hub/ because publishing a Space (hub work) writes these options into the Space's app."""

from __future__ import annotations

import argparse
from enum import StrEnum

MAX_LOADED_MODELS = 2  # visitor models in memory, all sessions together
MAX_MODEL_MB = 1000  # the largest hub model a visitor may load, in MB of checkpoint files


class Precision(StrEnum):
    """What predictions compute in. Explanations (Grad-CAM, feature maps, rollout) stay fp32."""

    FP32 = "fp32"
    BF16 = "bf16"  # under bf16 autocast: matmuls and convolutions in bf16, normalisation and softmax in fp32
    INT8 = "int8"  # dynamic quantisation: Linear weights int8, their inputs quantised at each call


def add_precision_option(parser: argparse.ArgumentParser, whose: str) -> None:
    """--prediction-precision, the same on every command line that predicts; `whose` names the predictions it sets."""
    parser.add_argument(
        "--prediction-precision",
        choices=list(Precision),
        default=Precision.FP32,
        help=f"what {whose} compute in: bf16 (CPUs with AVX512-BF16 or AMX) and int8 (dynamic quantisation of Linear "
        "layers) make ViTs faster and agree with fp32 less, which is yours to check with python -m "
        "bench.serving_variants (default %(default)s)",
    )
