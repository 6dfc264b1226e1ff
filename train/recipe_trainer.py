"""The small-data fine-tuning recipe on top of the Trainer: timm's Mixup/CutMix, an EMA of the weights, a teacher.

`RecipeTrainer` mixes training batches (never evaluation ones), blends a `train.distillation.Teacher`'s
predictions on them into the training loss when given one, and, when given a `timm.utils.ModelEmaV3`,
updates it after every optimizer step, evaluates it after every evaluation of the live weights (as
`eval_ema_*`) and keeps the best-scoring EMA snapshot, so the run can save whichever weights validate better.
The EMA and its best snapshot travel in every `checkpoint-*` folder, so `--resume` continues them.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from timm.data import Mixup
from timm.utils import ModelEmaV3
from torch import nn
from transformers import Trainer, TrainerCallback

if TYPE_CHECKING:
    from train.distillation import Teacher

logger = logging.getLogger("train")
EMA_FILE = "ema.safetensors"
# The best-scoring EMA snapshot and the scores keep_better_weights compares: without them a resumed run that
# trains no further step would keep the final weights even when an earlier EMA snapshot validated better.
BEST_EMA_FILE = "best_ema.safetensors"


@contextmanager
def weights_of(model: nn.Module, source: nn.Module):
    """Inside, `model` runs with `source`'s weights (same architecture); its own come back after."""
    own = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    model.load_state_dict(source.state_dict())
    try:
        yield model
    finally:
        model.load_state_dict(own)


class EmaUpdate(TrainerCallback):
    """Update the EMA after each optimizer step; save it, and the best snapshot, beside each checkpoint's weights."""

    def __init__(self, trainer: RecipeTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.trainer.ema.update(model, step=state.global_step)

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir() and state.is_world_process_zero:
            self.trainer.save_ema(folder)


class RecipeTrainer(Trainer):
    """Trainer + Mixup/CutMix and a teacher on training batches + an EMA evaluated beside the live weights."""

    def __init__(
        self,
        *args,
        mixup: Mixup | None = None,
        ema: ModelEmaV3 | None = None,
        teacher: Teacher | None = None,
        metric: str,
        greater_is_better: bool,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.mixup, self.ema, self.teacher = mixup, ema, teacher
        self.metric, self.greater_is_better = metric, greater_is_better
        self.live_score: float | None = None  # the live weights' score at the last evaluation
        self.best_ema: tuple[float, dict[str, torch.Tensor]] | None = None  # (score, EMA state) of the best epoch
        if ema is not None:
            self.add_callback(EmaUpdate(self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # timm's Mixup pairs each image with its mirror in the batch: an odd last batch trains unmixed.
        if self.mixup is not None and model.training and len(inputs["pixel_values"]) % 2 == 0:
            inputs = dict(inputs)
            inputs["pixel_values"], inputs["labels"] = self.mixup(inputs["pixel_values"], inputs["labels"])
        if self.teacher is None or not model.training:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        teacher_logits = self.teacher.logits(inputs["pixel_values"])  # the batch as mixed for the student
        label_loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        loss = self.teacher.loss(label_loss, outputs.logits, teacher_logits)
        return (loss, outputs) if return_outputs else loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        results = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if metric_key_prefix != "eval":
            return results
        self.live_score = results[f"eval_{self.metric}"]
        if self.ema is None:
            return results
        with weights_of(self.model, self.ema.module):
            ema_results = super().evaluate(eval_dataset, ignore_keys, "eval_ema")
        score = ema_results[f"eval_ema_{self.metric}"]
        if self.best_ema is None or self._better(score, self.best_ema[0]):
            self.best_ema = (score, {k: v.detach().clone() for k, v in self.ema.module.state_dict().items()})
        return {**results, **ema_results}

    def save_ema(self, folder: Path) -> None:
        """The EMA, and the best snapshot with its score and the live weights' score, into a checkpoint folder."""
        save_file(_contiguous(self.ema.module.state_dict()), str(folder / EMA_FILE))
        if self.best_ema is not None:
            score, state = self.best_ema
            scores = {"score": repr(score), "live_score": repr(self.live_score)}
            save_file(_contiguous(state), str(folder / BEST_EMA_FILE), metadata=scores)

    def restore_ema(self, checkpoint: str | None) -> None:
        """Continue the EMA saved in the checkpoint a run resumes from (a run without one starts it afresh)."""
        folder = Path(checkpoint or "")
        if not checkpoint or not (folder / EMA_FILE).is_file():
            return
        self.ema.module.load_state_dict(load_file(str(folder / EMA_FILE)))
        logger.info("resumed the weight EMA from %s", folder / EMA_FILE)
        if (folder / BEST_EMA_FILE).is_file():
            with safe_open(str(folder / BEST_EMA_FILE), "pt") as best:
                scores = best.metadata()
            self.best_ema = (float(scores["score"]), load_file(str(folder / BEST_EMA_FILE)))
            self.live_score = float(scores["live_score"])

    def _better(self, score: float, than: float) -> bool:
        return score > than if self.greater_is_better else score < than

    def keep_better_weights(self) -> str:
        """Load the best EMA snapshot into the model if it validated better than the final live weights.

        Returns which weights the model now holds, for the training config and the card.
        """
        if self.best_ema is None or self.live_score is None or not self._better(self.best_ema[0], self.live_score):
            return "final"
        score, state = self.best_ema
        self.model.load_state_dict(state)
        logger.info(
            "keeping the EMA weights: validation %s %.4f against %.4f for the final weights",
            self.metric,
            score,
            self.live_score,
        )
        return "ema"


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.contiguous() for name, tensor in state.items()}  # safetensors refuses strided views
