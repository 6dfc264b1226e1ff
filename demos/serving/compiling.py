"""Compiling a model's predictions in the background: torch.compile (inductor) with freezing, checked against the
model before it is used.

Freezing folds BatchNorm into the convolutions and turns the weights into constants laid out for oneDNN (1.3-2x faster
than a frozen TorchScript trace on the shipped EfficientNets; bench/RESULTS.md). Compiling takes 5-15 s a model, so it
runs in a thread of its own and the served model (demos/serving/inference.py) answers uncompiled until the copy is
ready.
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
import time
from collections.abc import Callable

import torch

from demos.serving.fx_tracing import confine_fx_patches_to_their_thread
from demos.serving.memory import release_freed_memory
from hub.serving_options import Precision

_COMPILE_LOCK = threading.Lock()  # one compile at a time: each uses every core

# How far the compiled copy may be from the module it was compiled from. Under bf16 autocast, freezing folds
# BatchNorm into bf16 weights, which moves logits by a few bf16 steps.
_COMPILE_TOLERANCE = {Precision.FP32: 1e-3, Precision.BF16: 2e-2, Precision.INT8: 1e-3}


def compile_in_background(
    reference: torch.nn.Module,
    spec,
    precision: Precision,
    *,
    name: str,
    publish: Callable[[torch.nn.Module | None], None],
) -> None:
    """Compile `reference` (`compiled_copy`) in a thread of its own and hand the result, or None, to `publish`."""
    confine_fx_patches_to_their_thread()  # requests go on running models while the compile traces its copy

    def compile_and_publish() -> None:
        # At the requests' own priority: most of a compile is Python holding the GIL, and a low-priority thread that
        # holds it while the kernel runs others stalls every request (a visitor's waited 10 s on a busy machine).
        with _COMPILE_LOCK:
            compiled = compiled_copy(reference, spec, precision, name=name)
            release_freed_memory()  # tracing and code generation free a hundred MB or more
        publish(compiled)

    # Run in a copy of the caller's context: torch's compiler settings are context variables, so that the caller's
    # (torch._dynamo.config.disable, say) hold in the thread as they would have held in the caller.
    in_callers_context = functools.partial(contextvars.copy_context().run, compile_and_publish)
    threading.Thread(target=in_callers_context, name=f"compile {name}", daemon=True).start()


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
        # folding, 14 ms against 8 ms on the shipped bone-age model). The C++ wrapper calls the kernels without the
        # GIL, where inductor's Python wrapper holds it between them: two requests' models then run on two cores at
        # once (shipped food10, one torch thread each: 2 callers 1.9-2.2x one, against 1.5-1.6x). The example is an
        # inference tensor, as predictions' inputs are: dynamo compiles again for a tensor of another kind.
        with torch.inference_mode(), torch._inductor.config.patch(freezing=True, cpp_wrapper=True):
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
