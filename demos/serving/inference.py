"""The served model, free of Gradio: a checkpoint with the two copies serving makes of it, and its predictions.

A `ServedModel` is a `hub.Checkpoint` (model, processor, task, ...) that also holds
- its prediction copy: the model computing in the operator's precision (`Precision`), compiled in the background for
  the start-up models (demos/serving/compiling.py) once they have given their first answer; `predictor` is what
  /classify and /bone_age's number run;
- its explanation copy: new modules around the same weights, with eager attention, on which Grad-CAM, feature maps and
  the layer table put their hooks (`hookable`). Nothing else ever runs through it.

Predictions (`top_k`, `regress`) take a served model; given a plain Checkpoint they serve it in fp32 for the call.
Explaining them is demos/explaining/.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from PIL import Image

from demos.explaining.layers import has_attention_rollout
from demos.serving.compiling import compile_in_background
from demos.serving.precision import checked_precision, int8_copy, uncompiled
from hub import Checkpoint
from hub.preprocessing import image_spec
from hub.serving_options import Precision

TOP_K = 5

# Explanations' hooks on an explanation copy would catch each other's activations: one explanation at a time.
_HOOK_LOCK = threading.Lock()


@dataclass(eq=False)
class ServedModel(Checkpoint):
    """A checkpoint as the app serves it: predictions through its prediction copy, explanations on its own copy.

    Made by `serve`; the app's model set (demos/models.py) owns one per start-up model and per visitor's model, and
    dropping it frees both copies. The model's weights must not change once it is served (nothing in the demo
    changes them).
    """

    precision: Precision = Precision.FP32
    # The int8 copy, made once; fp32 and bf16 wrap the model, rebuilt per call.
    _int8: torch.nn.Module | None = field(default=None, init=False, repr=False)
    _compiled: torch.nn.Module | None = field(default=None, init=False, repr=False)  # set once compiled and checked
    _settled: threading.Event = field(default_factory=threading.Event, init=False, repr=False)  # no compile running
    # What will be compiled, until its compile starts (`_compile_when_first_used`, `start_compiling`).
    _to_compile: torch.nn.Module | None = field(default=None, init=False, repr=False)
    _to_compile_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _explanation_copy: torch.nn.Module | None = field(default=None, init=False, repr=False)
    _explanation_copy_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def predictor(self) -> torch.nn.Module:
        """pixel_values (1, 3, H, W) -> fp32 logits for predictions: the compiled copy once it is ready, until then
        (and for models not compiled) the model computing in its precision."""
        return self._compiled if self._compiled is not None else self.uncompiled_predictor()

    def uncompiled_predictor(self) -> torch.nn.Module:
        """pixel_values (any batch size) -> fp32 logits, computing in the model's precision: what predictions run
        until the compiled copy is ready, for models not compiled, and for batches."""
        return self._int8 if self._int8 is not None else uncompiled(self.model, self.precision)

    def wait_until_compiled(self, timeout: float | None = None) -> bool:
        """Start the compile if it waits for a first answer, and wait until it ends (at most `timeout` s); whether
        predictions now run a compiled copy."""
        self.start_compiling()
        self._settled.wait(timeout)
        return self._compiled is not None

    def start_compiling(self) -> None:
        """Start the compile set up by `serve(compile=True)`, unless it has started (or there is none)."""
        with self._to_compile_lock:
            reference, self._to_compile = self._to_compile, None
        if reference is not None:
            compile_in_background(
                reference, image_spec(self.processor), self.precision, name=str(self.source), publish=self._publish
            )

    def explanation_model(self) -> torch.nn.Module:
        """The explanation copy, built once: its own modules and config around the model's tensors.

        Hooks see every forward pass through their module, whoever runs it: on the model they would catch every other
        visitor's request (predictions, batches, class visualisations, attacks) and show its activations to this
        visitor. A copy rather than `model.set_attn_implementation("eager")`: that setting lives in the shared config,
        so it would switch the attention of every request running on the model at the same time (predictions keep
        SDPA, faster; the rollout needs eager attention's weights).
        """
        with self._explanation_copy_lock:
            if self._explanation_copy is None:
                explanation_copy = copy_sharing_weights(self.model)
                if has_attention_rollout(self.model):
                    explanation_copy.set_attn_implementation("eager")
                self._explanation_copy = explanation_copy
            return self._explanation_copy

    @contextmanager
    def hookable(self) -> Iterator[torch.nn.Module]:
        """The explanation copy, for as long as hooks are on it (no other explanation runs meanwhile)."""
        with _HOOK_LOCK:
            yield self.explanation_model()

    def _compile_when_first_used(self) -> None:
        # From a copy, made now, before any request (the int8 model is one already): a hook present on the model
        # while dynamo traces would be compiled into every prediction (it does not guard on hooks). Its modules are
        # new, its weights the model's: the compiled copy keeps it, and a third copy of the weights would stay too.
        copied = self._int8 if self._int8 is not None else uncompiled(copy_sharing_weights(self.model), self.precision)
        self._to_compile = copied

    def _publish(self, compiled: torch.nn.Module | None) -> None:
        self._compiled = compiled
        self._settled.set()


def copy_sharing_weights(model: torch.nn.Module) -> torch.nn.Module:
    """New modules (and config) around the model's own parameters and buffers: hooks and settings on the copy stay
    off the model, and no tensor is duplicated."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return copy.deepcopy(model, memo={id(tensor): tensor for tensor in tensors})


def serve(checkpoint: Checkpoint, precision: Precision | str = Precision.FP32, *, compile: bool = False) -> ServedModel:
    """The checkpoint served with its predictions computing in `precision`; with `compile`, compiled once it has
    answered (or when `ServedModel.wait_until_compiled` is called).

    Compiling takes the cores for 5-15 s: started with the app, it would delay the app's start and its first answer,
    which the model answers as fast without it. A model predicts in one precision: a served model asked for another is
    an error. Visitors' models are never compiled: dynamo keeps every compiled copy, with its frozen weights, for the
    life of the process, and strangers must not be able to make the server spend CPU and memory on that.
    """
    precision = checked_precision(precision)
    if isinstance(checkpoint, ServedModel):
        if checkpoint.precision is not precision:
            raise ValueError(f"{checkpoint.source} already predicts in {checkpoint.precision}, not {precision}.")
        return checkpoint
    # oneDNN's convolutions run faster on channels-last weights: the eager passes (Grad-CAM and feature maps, the
    # models visitors load, predictions until compiled) take 15-20% less on the shipped food10 (feature maps 109 ->
    # 94 ms on one thread). A layout only: the values, and a ViT's Linear layers, are untouched.
    checkpoint.model.to(memory_format=torch.channels_last)
    facts = {fact.name: getattr(checkpoint, fact.name) for fact in dataclasses.fields(Checkpoint)}
    served = ServedModel(**facts, precision=precision)
    if precision is Precision.INT8:
        served._int8 = int8_copy(served.model)
    if compile:
        served._compile_when_first_used()
    else:
        served._settled.set()
    return served


def served(checkpoint: Checkpoint) -> ServedModel:
    """The checkpoint as served: itself when it is a served model, else served in fp32 for this call."""
    return checkpoint if isinstance(checkpoint, ServedModel) else serve(checkpoint)


def model_inputs(checkpoint: Checkpoint, image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W): the checkpoint's own processor applied to the image."""
    return checkpoint.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]


def predicted_logits(checkpoint: Checkpoint, image: Image.Image) -> torch.Tensor:
    model = served(checkpoint)
    with torch.inference_mode():
        logits = model.predictor()(model_inputs(checkpoint, image))[0]
    model.start_compiling()  # after the first answer, not before it (`serve`)
    return logits


def top_k(checkpoint: Checkpoint, image: Image.Image, k: int = TOP_K) -> dict[str, float]:
    """{label: probability} for the k most probable classes of a classification checkpoint."""
    if checkpoint.task.is_regression:
        raise ValueError(f"{checkpoint.name} is a regression checkpoint: it predicts a number, not classes.")
    probabilities = predicted_logits(checkpoint, image).softmax(-1)
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    return {checkpoint.task.labels[i]: float(p) for p, i in zip(values.tolist(), indices.tolist(), strict=True)}


def regress(checkpoint: Checkpoint, image: Image.Image, condition: str | None = None) -> float:
    """The regression checkpoint's output for `condition` (the mean of its outputs when unknown), in its unit."""
    return output_for(checkpoint, regression_outputs(checkpoint, image), condition)


def regression_outputs(checkpoint: Checkpoint, image: Image.Image) -> torch.Tensor:
    """Every output of a regression checkpoint for the image (one per condition value, or one), from one pass."""
    if not checkpoint.task.is_regression:
        raise ValueError(f"{checkpoint.name} is a classification checkpoint: it predicts classes, not a number.")
    return predicted_logits(checkpoint, image)


def output_for(checkpoint: Checkpoint, outputs: torch.Tensor, condition: str | None = None) -> float:
    """From `regression_outputs`: the output for `condition`, or the mean of the outputs when it is unknown."""
    return float(outputs[checkpoint.task.output_indices(condition)].mean())
