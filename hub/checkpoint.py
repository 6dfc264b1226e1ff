"""Load any image checkpoint (hub id, local folder or builtin alias) as model + processor + task facts.

This is the one loader of the project: training, the demos and the hub CLI all call `load_checkpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import httpx2
import torch
from huggingface_hub import HfApi, ModelCard, RepoFile, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import filter_repo_objects, validate_repo_id
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, PretrainedConfig

from hub.constants import SAFE_CHECKPOINT_FILES
from hub.contract import Task

REPO_ROOT = Path(__file__).resolve().parent.parent


def shipped_checkpoints_folder() -> Path:
    """The transferlab_checkpoints/ that `pip install .` puts next to hub/, else a checkout's checkpoints/ (checked
    in this order: another package may install a folder named checkpoints/ into site-packages)."""
    installed = REPO_ROOT / "transferlab_checkpoints"
    return installed if installed.is_dir() else REPO_ROOT / "checkpoints"


SHIPPED_CHECKPOINTS = {name: shipped_checkpoints_folder() / name for name in ("food10", "boneage")}
# Pickled weights are downloaded only so that the loader can refuse them by name.
CHECKPOINT_FILES = [*SAFE_CHECKPOINT_FILES, "pytorch_model.bin"]
HUB_PROBE_TIMEOUT_S = 4.0
BYTES_PER_MB = 1_000_000  # decimal, as the hub shows file sizes
TIMM_MODEL_TYPE = "timm_wrapper"  # transformers' TimmWrapperConfig


class CheckpointError(RuntimeError):
    """A checkpoint could not be resolved or loaded; the message says what to do."""


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
        """The checkpoint as people read it (a web page, an error message): an alias or a hub id as given, a folder
        by its own name. Never a path of this disk: `source` and the config's `_name_or_path` often are one."""
        if self.source in builtin_aliases():
            return self.source
        folder = Path(self.source).expanduser()
        return folder.resolve().name if folder.is_dir() else self.source

    @property
    def is_timm(self) -> bool:
        return is_timm(self.model.config)


def is_timm(config: PretrainedConfig | Mapping[str, object]) -> bool:
    """Whether a checkpoint is a timm model (timm's hub layout, which transformers loads as a TimmWrapper).

    The one place that asks. A loaded config says so by its model type; a `timm/*` repo's raw config.json has
    none, only timm's own `architecture` and `pretrained_cfg`.
    """
    if isinstance(config, PretrainedConfig):
        return config.model_type == TIMM_MODEL_TYPE
    return config.get("model_type") == TIMM_MODEL_TYPE or {"architecture", "pretrained_cfg"} <= config.keys()


class ParameterCounts(NamedTuple):
    trainable: int
    total: int


def parameter_counts(model: nn.Module) -> ParameterCounts:
    """How many of the model's parameters train, and how many it has (named: the order cannot be mixed up)."""
    parameters = list(model.parameters())
    return ParameterCounts(
        trainable=sum(p.numel() for p in parameters if p.requires_grad), total=sum(p.numel() for p in parameters)
    )


def computes_bf16_natively(device: torch.device | str) -> bool:
    """Whether `device` computes bf16 in hardware (a CUDA GPU that has it; a CPU with AVX512-BF16 or AMX).

    Elsewhere bf16 is emulated and slower than fp32. Training's `--precision auto` and the demo's
    `--prediction-precision bf16` ask this.
    """
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def builtin_aliases() -> list[str]:
    from hub.default_backbone import BACKBONES

    return sorted(BACKBONES) + sorted(SHIPPED_CHECKPOINTS)


def local_folder(ref: str) -> Path | None:
    """The folder on this disk that `ref` names (a shipped alias or a path to a folder); None for anything else."""
    if ref in SHIPPED_CHECKPOINTS:
        return SHIPPED_CHECKPOINTS[ref]
    path = Path(ref).expanduser()
    return path if path.is_dir() else None


def resolve_folder(
    ref: str,
    *,
    revision: str | None = None,
    local_roots: Sequence[str | Path] | None = None,
    max_download_mb: float | None = None,
) -> Path:
    """Turn an alias, a folder or a hub id into a local folder holding the checkpoint files.

    `local_roots=None` accepts any folder (the command line: the operator chooses). A sequence accepts only
    folders inside those roots, after resolving symlinks and `..`, and refuses every other path with one message
    whether it exists or not, so that a web visitor cannot probe the server's disk. `max_download_mb` refuses a
    hub repo whose checkpoint files are larger, judged from their sizes before downloading.
    """
    from hub.default_backbone import BACKBONES, default_backbone_folder

    if ref in BACKBONES:
        return default_backbone_folder(ref)
    if ref in SHIPPED_CHECKPOINTS:
        folder = SHIPPED_CHECKPOINTS[ref]
        if not (folder / "config.json").is_file():
            raise CheckpointError(
                f"The shipped checkpoint '{ref}' is missing at {folder}; train it with `python -m train`."
            )
        return folder
    if local_roots is not None:
        inside = _inside_roots(ref, local_roots)
        if inside is None:  # never looked at on disk: a hub id or refused
            return _download(_hub_id_or_refuse(ref), revision=revision, max_download_mb=max_download_mb)
        ref = str(inside)
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path} is a folder but has no config.json: it is not a checkpoint folder.")
        return path
    if path.exists() or ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise CheckpointError(f"'{ref}' is not a checkpoint folder (no such directory with a config.json).")
    return _download(ref, revision=revision, max_download_mb=max_download_mb)


def _inside_roots(ref: str, roots: Sequence[str | Path]) -> Path | None:
    """`ref` resolved (symlinks, `..`) when it lies inside one of `roots`, else None. `~` is not the visitor's home."""
    try:
        path = Path(ref).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop or a NUL byte: not a folder anyone may load
        return None
    return path if any(path.is_relative_to(Path(root).expanduser().resolve()) for root in roots) else None


def _hub_id_or_refuse(ref: str) -> str:
    try:
        validate_repo_id(ref)
    except HFValidationError:
        raise CheckpointError(
            # Without the ref: a path a visitor typed, echoed back, would tell what the server made of it.
            "That model cannot be loaded here: this demo loads hub repo ids (owner/name), the builtin aliases "
            f"({', '.join(builtin_aliases())}) and checkpoint folders under the directories its operator allowed "
            "(--allow-local-dir)."
        ) from None
    return ref


def hub_offline() -> bool:
    # Read the environment at call time: huggingface_hub reads it once, at import.
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def _download(repo_id: str, *, revision: str | None, max_download_mb: float | None = None) -> Path:
    """Fetch a hub repo's checkpoint files, failing fast (not after ~20 s of retries) when offline."""
    hint = (
        f"To use a checkpoint on disk, give its folder instead, "
        f"or one of the builtin aliases: {', '.join(builtin_aliases())}."
    )
    try:
        cached = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=CHECKPOINT_FILES, local_files_only=True)
        )
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        cached = None
    if hub_offline():
        if cached is None:
            raise CheckpointError(
                f"'{repo_id}' is not in the local hub cache and HF_HUB_OFFLINE=1 forbids downloading it. {hint}"
            )
        _refuse_if_too_large(repo_id, _folder_file_sizes(cached), max_download_mb)
        return cached
    try:
        HfApi().model_info(repo_id, revision=revision, timeout=HUB_PROBE_TIMEOUT_S)
        sizes = _hub_file_sizes(repo_id, revision) if max_download_mb is not None else {}
        _refuse_if_too_large(repo_id, sizes, max_download_mb)
        # Inside the try: a gated repo shows its info to anyone and refuses only the file downloads.
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=CHECKPOINT_FILES))
    except GatedRepoError as err:
        raise CheckpointError(
            f"'{repo_id}' is gated: accept its terms on the hub and log in (`hf auth login`)."
        ) from err
    except RevisionNotFoundError as err:
        raise CheckpointError(f"'{repo_id}' has no revision '{revision}'.") from err
    except RepositoryNotFoundError as err:
        raise CheckpointError(
            f"No hub repo '{repo_id}' (or it is private: log in with `hf auth login`). {hint}"
        ) from err
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as err:  # unreachable, timed out, or a server error
        if cached is not None:
            _refuse_if_too_large(repo_id, _folder_file_sizes(cached), max_download_mb)
            return cached
        raise CheckpointError(f"Could not reach the Hugging Face hub to download '{repo_id}' ({err}). {hint}") from err


def _hub_file_sizes(repo_id: str, revision: str | None) -> dict[str, int]:
    """Bytes of each file a download would fetch, as the hub lists them."""
    files = [f for f in HfApi().list_repo_tree(repo_id, revision=revision, recursive=True) if isinstance(f, RepoFile)]
    return {f.path: f.size for f in filter_repo_objects(files, allow_patterns=CHECKPOINT_FILES, key=lambda f: f.path)}


def _folder_file_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _refuse_if_too_large(repo_id: str, sizes: dict[str, int], max_mb: float | None) -> None:
    total_mb = sum(sizes.values()) / BYTES_PER_MB
    if max_mb is not None and total_mb > max_mb:
        raise CheckpointError(
            f"'{repo_id}' is {total_mb:,.0f} MB of checkpoint files, over this server's limit of {max_mb:g} MB "
            "per model (--max-model-mb): choose a smaller model."
        )


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
    local_roots: Sequence[str | Path] | None = None,
    max_download_mb: float | None = None,
    config_overrides: Mapping[str, object] | None = None,
) -> Checkpoint:
    """Load model (eval mode), image processor and task facts from a hub id, folder or builtin alias.

    `local_roots` and `max_download_mb` restrict what loads (see `resolve_folder`): the demo passes them for its web
    visitors. `config_overrides` change the config before the weights load; training gives a base checkpoint a new
    head with them (`id2label`, `problem_type`, `target_name`, ...): a head of another size is re-initialised instead
    of failing to load, and the card's metrics, which describe the old head, are not returned.
    """
    folder = resolve_folder(ref, revision=revision, local_roots=local_roots, max_download_mb=max_download_mb)
    _check_weights_format(folder, allow_pickle=allow_pickle)
    try:
        config = _config_with(folder, config_overrides or {})
        model = AutoModelForImageClassification.from_pretrained(
            folder,
            config=config,
            ignore_mismatched_sizes=bool(config_overrides),
            # None: safetensors when present, else the pickle allowed above (False would refuse safetensors).
            use_safetensors=None if allow_pickle else True,
            trust_remote_code=False,
        )
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{folder} is not a loadable image-classification checkpoint: {err}") from err
    model.eval()
    return Checkpoint(
        model=model,
        processor=processor,
        task=Task.from_config(model.config),
        source=ref,
        folder=folder,
        metrics={} if config_overrides else card_metrics(folder),
    )


def _config_with(folder: Path, overrides: Mapping[str, object]) -> PretrainedConfig:
    """The folder's config with `overrides` applied, also keys its class does not know (e.g. `target_name`)."""
    config, unknown = AutoConfig.from_pretrained(
        folder, trust_remote_code=False, return_unused_kwargs=True, **overrides
    )
    config.update(unknown)  # from_pretrained would drop them
    if "id2label" in overrides and is_timm(config):
        # A timm config saves its outputs' names as label_names (not id2label), and would keep the base's.
        config.label_names = list(config.id2label.values())
    return config
