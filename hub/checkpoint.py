"""Load any image checkpoint (hub id, local folder or builtin alias) as model + processor + task facts.

This is the one loader of the project: training, the demos and the hub CLI all call `load_checkpoint`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, ModelCard, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from transformers import AutoImageProcessor, AutoModelForImageClassification, PretrainedConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CHECKPOINTS = {"food10": REPO_ROOT / "checkpoints" / "food10", "boneage": REPO_ROOT / "checkpoints" / "boneage"}
SAFE_CHECKPOINT_FILES = ["*.json", "*.safetensors", "README.md", "*.png"]  # what a checkpoint needs
# Pickled weights are downloaded only so that the loader can refuse them by name.
CHECKPOINT_FILES = [*SAFE_CHECKPOINT_FILES, "pytorch_model.bin"]
HUB_PROBE_TIMEOUT_S = 4.0


class CheckpointError(RuntimeError):
    """A checkpoint could not be resolved or loaded; the message says what to do."""


@dataclass(frozen=True)
class Task:
    """What a checkpoint predicts: class labels, or one number in a stated unit."""

    kind: str  # "classification" or "regression"
    labels: tuple[str, ...] = ()
    target: str | None = None  # regression: the predicted quantity, e.g. "bone age"
    unit: str | None = None  # regression: the unit of logits[:, 0], e.g. "months"

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"


@dataclass
class Checkpoint:
    model: object  # a transformers PreTrainedModel in eval mode
    processor: object  # its image processor
    task: Task
    source: str  # what the user asked for (alias, folder or hub id)
    folder: Path  # where the files are on disk
    metrics: dict[str, float] = field(default_factory=dict)  # from the model card's model-index

    @property
    def name(self) -> str:
        return getattr(self.model.config, "_name_or_path", None) or self.source


def task_from_config(config: PretrainedConfig) -> Task:
    """Read the task facts the checkpoint contract stores in config.json."""
    if config.problem_type == "regression" or config.num_labels == 1:
        return Task(
            kind="regression",
            target=getattr(config, "target_name", None),
            unit=getattr(config, "target_unit", None),
        )
    labels = tuple(config.id2label[i] for i in range(config.num_labels))
    return Task(kind="classification", labels=labels)


def builtin_aliases() -> list[str]:
    from hub.default_backbone import BACKBONES

    return sorted(BACKBONES) + sorted(SHIPPED_CHECKPOINTS)


def resolve_folder(ref: str, *, revision: str | None = None) -> Path:
    """Turn an alias, a folder or a hub id into a local folder holding the checkpoint files."""
    from hub.default_backbone import BACKBONES, default_backbone_folder

    if ref in BACKBONES:
        return default_backbone_folder(ref)
    if ref in SHIPPED_CHECKPOINTS:
        folder = SHIPPED_CHECKPOINTS[ref]
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"The shipped checkpoint '{ref}' is missing at {folder}; train it with `python -m train`.")
        return folder
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path} is a folder but has no config.json: it is not a checkpoint folder.")
        return path
    if path.exists() or ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise CheckpointError(f"'{ref}' is not a checkpoint folder (no such directory with a config.json).")
    return _download(ref, revision=revision)


def hub_offline() -> bool:
    # Read the environment at call time: huggingface_hub reads it once, at import.
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def _download(repo_id: str, *, revision: str | None) -> Path:
    """Fetch a hub repo's checkpoint files, failing fast (not after ~20 s of retries) when offline."""
    hint = (
        f"To use a checkpoint you have on disk, pass its folder instead (e.g. `--model ./my-run`), "
        f"or one of the builtin aliases: {', '.join(builtin_aliases())}."
    )
    try:
        cached = Path(snapshot_download(repo_id, revision=revision, allow_patterns=CHECKPOINT_FILES, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        cached = None
    if hub_offline():
        if cached is None:
            raise CheckpointError(f"'{repo_id}' is not in the local hub cache and HF_HUB_OFFLINE=1 forbids downloading it. {hint}")
        return cached
    try:
        HfApi().model_info(repo_id, revision=revision, timeout=HUB_PROBE_TIMEOUT_S)
    except GatedRepoError as err:
        raise CheckpointError(f"'{repo_id}' is gated: accept its terms on the hub and log in (`hf auth login`).") from err
    except RevisionNotFoundError as err:
        raise CheckpointError(f"'{repo_id}' has no revision '{revision}'.") from err
    except RepositoryNotFoundError as err:
        raise CheckpointError(f"No hub repo '{repo_id}' (or it is private: log in with `hf auth login`). {hint}") from err
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as err:  # unreachable, timed out, or a server error
        if cached is not None:
            return cached
        raise CheckpointError(f"Could not reach the Hugging Face hub to download '{repo_id}' ({err}). {hint}") from err
    return Path(snapshot_download(repo_id, revision=revision, allow_patterns=CHECKPOINT_FILES))


ALLOW_PICKLE_HELP = "also load pickled pytorch_model.bin weights (unpickling runs code: only from authors you trust)"


def _check_weights_format(folder: Path, *, allow_pickle: bool) -> None:
    if (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file():
        return
    if (folder / "pytorch_model.bin").is_file() and not allow_pickle:
        raise CheckpointError(
            f"{folder} holds only pickled weights (pytorch_model.bin), which can run arbitrary code when loaded. "
            "Convert them to safetensors, or pass --allow-pickle if you trust their author."
        )
    if not (folder / "pytorch_model.bin").is_file():
        raise CheckpointError(f"{folder} has no model.safetensors: not a complete checkpoint.")


def card_metrics(folder: Path) -> dict[str, float]:
    """Metrics declared in the model card's model-index, keyed by metric type (e.g. 'mae', 'accuracy')."""
    card_path = folder / "README.md"
    if not card_path.is_file():
        return {}
    results = ModelCard.load(card_path).data.eval_results or []
    # A card may list several splits (train.evaluate --update-card adds test): validation's figures win.
    results = sorted(results, key=lambda result: result.dataset_split == "validation")
    return {result.metric_type: float(result.metric_value) for result in results}


def load_checkpoint(
    ref: str,
    *,
    revision: str | None = None,
    allow_pickle: bool = False,
    attn_implementation: str | None = None,
) -> Checkpoint:
    """Load model (eval mode), image processor and task facts from a hub id, folder or builtin alias.

    `attn_implementation="eager"` is needed for ViT attention maps (SDPA returns none).
    """
    folder = resolve_folder(ref, revision=revision)
    _check_weights_format(folder, allow_pickle=allow_pickle)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = AutoModelForImageClassification.from_pretrained(
            # None: safetensors when present, else the pickle allowed above (False would refuse safetensors).
            folder, use_safetensors=None if allow_pickle else True, trust_remote_code=False, **extra
        )
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{folder} is not a loadable image-classification checkpoint: {err}") from err
    model.eval()
    return Checkpoint(
        model=model,
        processor=processor,
        task=task_from_config(model.config),
        source=ref,
        folder=folder,
        metrics=card_metrics(folder),
    )
