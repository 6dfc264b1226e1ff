"""The arguments of `python -m train` (one dataclass, as transformers' example scripts have) and its error."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.checkpoint import ALLOW_PICKLE_HELP
from hub.preprocessing import AUGMENTATIONS
from train.modes import MODES
from train.regression import LOSSES

PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class TrainArguments:
    dataset: str = field(metadata={"help": "A hub dataset id or a local imagefolder (with train/ and validation/)."})
    output_dir: str = field(metadata={"help": "The run folder: the checkpoint, its metrics, plots and logs."})
    model: str = field(
        default="efficientnet-lite0", metadata={"help": "Base checkpoint: hub id, folder or builtin alias."}
    )
    target_column: str | None = field(
        default=None, metadata={"help": "Class-label or numeric column (default: label)."}
    )
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: the first image column)."})
    train_split: str = "train"
    eval_split: str = "validation"
    mode: str = field(default="two-stage", metadata={"choices": MODES, "help": "Which parameters train, and when."})
    epochs: float = field(default=3.0, metadata={"help": "Epochs of the stage that trains the whole network."})
    head_epochs: float = field(
        default=10.0, metadata={"help": "Epochs of the frozen-backbone head stage (cached features)."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Head learning rate while the whole network trains."})
    backbone_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Backbone learning rate (default: 0.2x learning rate in two-stage, 1x in full)."},
    )
    head_learning_rate: float = field(
        default=3e-3, metadata={"help": "Learning rate of the frozen-backbone head stage."}
    )
    freeze_batchnorm: bool = field(
        default=True,
        metadata={"help": "Keep BatchNorm layers on the base checkpoint's statistics while the backbone trains."},
    )
    weight_decay: float = 0.05
    warmup_ratio: float = 0.1
    batch_size: int = 32
    eval_batch_size: int = 64
    image_size: int | None = field(default=None, metadata={"help": "Train at this square size (timm checkpoints)."})
    resize: str | None = field(
        default=None,
        metadata={"choices": ("crop", "squash"), "help": "squash: the whole image to the input size (X-rays)."},
    )
    crop_pct: float | None = field(
        default=None, metadata={"help": "Fraction of the resized image the centre crop keeps."}
    )
    eval_image_size: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate at this size (train low, serve high: FixRes); the better of it and --image-size is saved."
        },
    )
    augment: str = field(
        default="random-crop",
        metadata={
            "choices": AUGMENTATIONS,
            "help": "random-crop: timm's photo transform; radiograph (or keep-whole) for X-rays.",
        },
    )
    auto_augment: str | None = field(
        default=None,
        metadata={"help": "random-crop: timm policy, e.g. rand-m9-mstd0.5 (RandAugment) or trivialaugment."},
    )
    crop_scale_min: float = field(
        default=0.25, metadata={"help": "random-crop: smallest crop area kept, as a fraction."}
    )
    color_jitter: float = field(
        default=0.3, metadata={"help": "random-crop: colour jitter (0 turns it off; off under --auto-augment)."}
    )
    random_erasing: float = field(default=0.0, metadata={"help": "random-crop: probability of timm's random erasing."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Classification: label smoothing of the targets."})
    mixup: float = field(default=0.0, metadata={"help": "Classification: timm Mixup alpha (0 = off)."})
    cutmix: float = field(default=0.0, metadata={"help": "Classification: timm CutMix alpha (0 = off)."})
    ema_decay: float | None = field(
        default=None, metadata={"help": "Keep an EMA of the weights (e.g. 0.998); saved when it validates better."}
    )
    cache_images: bool = field(
        default=True, metadata={"help": "Decode every image once into memory instead of each epoch."}
    )
    calibrate: bool = field(
        default=True, metadata={"help": "Classification: fold a temperature fitted on validation into the head."}
    )
    condition_column: str | None = field(
        default=None,
        metadata={"help": "Regression: one output per value of this column (e.g. male); each row uses its own."},
    )
    condition_labels: str | None = field(
        default=None, metadata={"help": "Names of the condition's values for id2label, e.g. false=female,true=male."}
    )
    robustness_check: bool = field(
        default=False,
        metadata={"help": "Regression on X-rays: also report MAE on validation given other sources' look."},
    )
    loss: str = field(default="mae", metadata={"choices": LOSSES, "help": "Regression loss."})
    target_name: str | None = field(default=None, metadata={"help": "Regression: what is predicted, e.g. 'bone age'."})
    target_unit: str | None = field(default=None, metadata={"help": "Regression: the unit of the target, e.g. months."})
    data_terms: str | None = field(default=None, metadata={"help": "The data's terms of use, for the model card."})
    seed: int = 42
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint-* in the output dir."})
    torch_compile: bool = field(default=False, metadata={"help": "torch.compile the model (GPU)."})
    precision: str = field(
        default="auto",
        metadata={
            "choices": PRECISIONS,
            "help": "bf16 autocast, or fp32. auto: bf16 where the GPU or CPU computes it natively (AVX512-BF16, AMX).",
        },
    )
    dataloader_workers: int = 2
    logging_steps: int = 20
    allow_pickle: bool = field(default=False, metadata={"help": f"--model: {ALLOW_PICKLE_HELP}."})
    push_to_hub: bool = field(
        default=False, metadata={"help": "After training, publish the run folder as --hub-model-id."}
    )
    hub_model_id: str | None = field(default=None, metadata={"help": "The hub repo to push to: your-name/model-name."})
    private: bool = field(default=False, metadata={"help": "Create the hub repo private."})
    demo_space: str | None = field(
        default=None, metadata={"help": "After the push, publish the demo app running the model as this Space."}
    )


class TrainError(ValueError):
    """The requested run cannot start; the message says what to change."""
