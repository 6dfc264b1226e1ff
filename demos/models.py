"""The app's model set: a served model for each role ("food", "boneage") and for each model a visitor loaded.

Every tab's `render(models: DemoModels)` is given this one object. Its models are `ServedModel`s
(demos/serving/inference.py): each holds its prediction copy and its explanation copy, so dropping a model (a visitor's
evicted one) frees both. What web visitors may load, and for how long it stays, is demos/serving/sessions.py.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from demos.guards.refusals import checked_text
from demos.serving.corrections import CorrectionStore
from demos.serving.inference import ServedModel, serve
from demos.serving.precision import checked_precision
from demos.serving.sessions import SessionModels, current_session
from demos.training.settings import TrainingSettings
from hub import load_checkpoint
from hub.checkpoint import SHIPPED_CHECKPOINTS
from hub.serving_options import Precision

FALLBACK_MODEL = "efficientnet-lite0"  # the offline default backbone, ImageNet labels
SHIPPED = {"food": "food10", "boneage": "boneage"}  # role -> alias of the checkpoint shipped in checkpoints/


@dataclass
class DemoModels:
    """The served models the tabs use: "food" and "boneage" for everyone, plus those the current session loaded.

    `names`, `get` and `load` answer for the session of the Gradio request being served.
    """

    checkpoints: dict[str, ServedModel]  # role -> model, chosen by the operator, seen by every visitor
    notes: dict[str, str] = field(default_factory=dict)  # role -> why a fallback model stands in
    examples_dir: Path | None = None
    visitors: SessionModels = field(default_factory=SessionModels)
    corrections: CorrectionStore | None = None  # where users' corrections are saved; None: not collected
    precision: Precision = Precision.FP32  # what predictions compute in, visitors' models included
    training: TrainingSettings = field(default_factory=TrainingSettings.off)  # the Train tab: off unless the app says

    def names(self) -> list[str]:
        return [*self.checkpoints, *self.visitors.names(current_session())]

    def get(self, name: str) -> ServedModel:
        checked_text(name, "The model")  # a name from any API caller: a list or a number must not reach the dicts
        model = self.checkpoints.get(name) or self.visitors.get(current_session(), name)
        if model is None:
            raise ValueError(
                f"No model '{name}' is loaded in this session; choose one of: {', '.join(self.names())}. "
                f"(The server keeps at most {self.visitors.limits.max_loaded_models} models loaded by visitors, the "
                "least recently used goes first: load it again in the Model tab.)"
            )
        return model

    def load(self, ref: str) -> ServedModel:
        """Load a checkpoint (hub id, alias, or folder under an allowed root) for the current session, as `ref`."""
        if ref in self.checkpoints:
            raise ValueError(f"'{ref}' is already loaded: choose it in the list.")
        return self.visitors.load(current_session(), ref, functools.partial(load_model, precision=self.precision))

    def adopt(self, session: str | None, name: str, folder: Path) -> ServedModel:
        """A checkpoint this server trained for `session` (the Train tab), kept among that session's models as `name`
        so that every tab with a model list offers it. The folder is the server's own, never a path a visitor gave."""
        if self.visitors.limits.max_loaded_models == 0:
            raise ValueError("This demo keeps no other models (--max-loaded-models 0): download the model instead.")
        return self.visitors.keep(session, name, load_model(str(folder), precision=self.precision))


def load_model(
    ref: str,
    *,
    allow_pickle: bool = False,
    local_roots: Sequence[str | Path] | None = None,
    max_download_mb: float | None = None,
    precision: Precision | str = Precision.FP32,
    compile: bool = False,
) -> ServedModel:
    """`hub.load_checkpoint`, served: its predictions computing in `precision`, compiled in the background with
    `compile`.

    The model keeps transformers' default attention (SDPA for ViTs): predictions are compiled from it; the attention
    rollout and Grad-CAM run its explanation copy, with eager attention (`ServedModel.explanation_model`).
    """
    checkpoint = load_checkpoint(
        ref, allow_pickle=allow_pickle, local_roots=local_roots, max_download_mb=max_download_mb
    )
    return serve(checkpoint, precision, compile=compile)


def default_ref(role: str) -> tuple[str, str | None]:
    """(ref, note): the shipped checkpoint for `role`, or the offline default backbone with a note saying why."""
    alias = SHIPPED[role]
    if (SHIPPED_CHECKPOINTS[alias] / "config.json").is_file():
        return alias, None
    note = (
        f"{SHIPPED_CHECKPOINTS[alias]} does not exist yet (train it with `python -m train`), so the {role} model is "
        f"the offline default backbone {FALLBACK_MODEL}: a real ImageNet classifier, with ImageNet labels."
    )
    return FALLBACK_MODEL, note


def load_models(
    food_model: str | None = None,
    boneage_model: str | None = None,
    examples_dir: str | Path | None = None,
    *,
    allow_pickle: bool = False,
    precision: Precision | str = Precision.FP32,
) -> DemoModels:
    """Load both models (each ref: hub id, folder or alias; None = the shipped default), printing any fallback.

    `allow_pickle` lets these two (chosen by whoever starts the app) be pickled; the Model tab never unpickles.
    `precision`: what their predictions, and those of the models visitors load, compute in.
    Their predictions are compiled in the background (visitors' models are not: `demos.serving.inference.serve`
    says why).
    """
    precision = checked_precision(precision)  # before loading: a bad value fails at once
    examples = Path(examples_dir) if examples_dir else None
    if examples is not None and not examples.is_dir():
        raise FileNotFoundError(f"--examples {examples}: no such folder.")
    refs, notes = {}, {}
    for role, ref in (("food", food_model), ("boneage", boneage_model)):
        if ref is None:
            ref, note = default_ref(role)
            if note:
                notes[role] = note
                print(f"* {note}", flush=True)
        refs[role] = ref
    loaded = {
        ref: load_model(ref, allow_pickle=allow_pickle, precision=precision, compile=True) for ref in set(refs.values())
    }
    checkpoints = {role: loaded[ref] for role, ref in refs.items()}
    return DemoModels(checkpoints=checkpoints, notes=notes, examples_dir=examples, precision=precision)
