"""Knowledge distillation: a frozen teacher's soft predictions on each training batch, blended into the loss.

`--teacher` names any classification checkpoint with the dataset's classes (a bigger model, an earlier run, an
average); the student is what trains and what is saved. The teacher sees the batch the student sees, augmented and
mixed alike (consistent teaching), resized to the teacher's own input size and normalised with its own mean and
std, so that a teacher trained or served at another size than the student's is asked at the size it is good at.

The loss is timm's `LogitDistillationTask`'s (timm.task.distillation): (1 - w) * label loss + w * T^2 *
KL(teacher || student) at temperature T. timm's task runs its own training loop around a bare timm model, so its
loss is restated here for the Trainer, which calls models by keyword and gets their logits in an output object.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the name PyTorch's own docs use

from hub.checkpoint import CheckpointError, load_checkpoint
from hub.preprocessing import ImageSpec, image_spec
from train import data
from train.arguments import TrainArguments, TrainError
from train.model import prepare_for_device

logger = logging.getLogger("train")


class Teacher(nn.Module):
    """A frozen classifier that gives its logits for the student's input batches."""

    def __init__(
        self, model: nn.Module, spec: ImageSpec, student_spec: ImageSpec, *, weight: float, temperature: float
    ):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.size = spec.size
        self.weight, self.temperature = weight, temperature
        # The student's normalisation to the teacher's, one affine map: (x * std_s + mean_s - mean_t) / std_t
        scale = torch.tensor(student_spec.std) / torch.tensor(spec.std)
        shift = (torch.tensor(student_spec.mean) - torch.tensor(spec.mean)) / torch.tensor(spec.std)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for a batch the student was given (normalised for the student, at its size)."""
        inputs = pixel_values * self.scale.to(pixel_values) + self.shift.to(pixel_values)
        if tuple(inputs.shape[-2:]) != self.size:
            inputs = F.interpolate(inputs, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return self.model(pixel_values=inputs).logits.float()

    def loss(self, label_loss: torch.Tensor, student_logits: torch.Tensor, teacher_logits: torch.Tensor):
        """The label loss blended with the KL divergence from the teacher's to the student's softened predictions."""
        t = self.temperature
        student = F.log_softmax(student_logits.float() / t, dim=-1)
        teacher = F.log_softmax(teacher_logits / t, dim=-1)
        kd_loss = F.kl_div(student, teacher, reduction="batchmean", log_target=True) * t**2
        return (1 - self.weight) * label_loss + self.weight * kd_loss


def teacher_for(args: TrainArguments, task: data.TaskData, student_spec: ImageSpec) -> Teacher | None:
    """The run's teacher, or None without --teacher; refused unless it predicts exactly the dataset's classes."""
    if not args.teacher:
        return None
    if not task.is_classification:
        raise TrainError("--teacher distils class predictions: it applies to classification only.")
    if not args.mode.trains_backbone:
        raise TrainError(
            "--teacher teaches the stage that trains the whole network on augmented images; --mode "
            "feature-extraction trains the head on cached features: use --mode full or two-stage."
        )
    if not 0 < args.distill_weight <= 1:
        raise TrainError(
            f"--distill-weight is the teacher's share of the loss: give a value in (0, 1], not {args.distill_weight}."
        )
    if args.distill_temperature <= 0:
        raise TrainError(f"--distill-temperature must be above 0, not {args.distill_temperature}.")
    try:
        checkpoint = load_checkpoint(args.teacher, allow_pickle=args.allow_pickle)
    except CheckpointError as err:
        raise TrainError(f"--teacher: {err}") from err
    if tuple(checkpoint.task.labels) != tuple(task.labels):
        raise TrainError(
            f"--teacher {args.teacher} predicts {list(checkpoint.task.labels) or 'no classes'}, but the dataset's "
            f"classes are {list(task.labels)}: a teacher must predict the same classes, in the same order."
        )
    spec = image_spec(checkpoint.processor)
    logger.info(
        "distilling from %s at %dx%d (weight %.2f, temperature %.1f)",
        checkpoint.name,
        *spec.size,
        args.distill_weight,
        args.distill_temperature,
    )
    model = prepare_for_device(checkpoint.model)
    return Teacher(model, spec, student_spec, weight=args.distill_weight, temperature=args.distill_temperature)
