"""Whether this server trains, and within what limits: the operator's side of the Train tab.

Training spends the server's cores for minutes and writes visitors' images to its disk, so the tab is off when the
app is reachable by others (a share link, or bound beyond localhost) unless the operator passes `--allow-training`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from demos.training.datasets import MAX_IMAGES, MAX_MEGAPIXELS, IntakeLimits
from demos.training.jobs import KEEP_S, MAX_RUN_S, JobRunner
from hub import builtin_aliases

JOBS_ROOT = Path(tempfile.gettempdir()) / "transferlab-training"  # the system temp folder: Gradio serves files there
TRAINING_MODULES = ("train", "accelerate", "datasets")  # what `python -m train` imports beyond serving's packages
LOCAL_HOSTS = ("localhost", "")  # besides loopback addresses; "" is how some callers say "the default"


@dataclass(frozen=True)
class TrainingAccess:
    allowed: bool
    reason: str = ""  # why the tab is off, for the page


def training_access(*, share: bool, host: str | None, allow_training: bool) -> TrainingAccess:
    """On for a server only this machine reaches, or when the operator allowed it; else off, saying why. Off where
    `python -m train` cannot run: a serving-only install lacks training's packages."""
    missing = [name for name in TRAINING_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return TrainingAccess(
            False,
            f"Training is off because this server lacks what training needs ({', '.join(missing)}): whoever runs the "
            "demo can install it with `pip install '.[train]'` (or `pip install -r requirements.txt` in a checkout).",
        )
    if allow_training:
        return TrainingAccess(True)
    if share:
        why = "this demo is shared through a public link"
    elif not _is_local(host):
        why = f"this demo listens on {host}, beyond this machine"
    else:
        return TrainingAccess(True)
    return TrainingAccess(
        False,
        f"Training is off because {why}: a run takes the server's cores for minutes and stores visitors' images on "
        "its disk. Whoever runs the demo can turn it on with `python -m demos --allow-training`.",
    )


def _is_local(host: str | None) -> bool:
    if host is None or host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve beyond this machine


@dataclass
class TrainingSettings:
    """What the Train tab needs from the app: whether it is on, the server's job runner and the data caps."""

    access: TrainingAccess = field(default_factory=lambda: TrainingAccess(True))
    runner: JobRunner = field(default_factory=lambda: JobRunner(JOBS_ROOT))
    limits: IntakeLimits = field(default_factory=IntakeLimits)
    base_models: tuple[str, ...] = field(default_factory=lambda: tuple(builtin_aliases()))
    # `python -m train` options every run gets, not shown as choices (e.g. ("--dataloader-workers", "0"))
    extra_options: tuple[str, ...] = ()

    @classmethod
    def off(cls) -> TrainingSettings:
        """Training off, as for a shared server whose operator did not allow it: apps built without settings."""
        return cls.from_flags(share=True, host=None, allow_training=False)

    @classmethod
    def from_flags(
        cls,
        *,
        share: bool,
        host: str | None,
        allow_training: bool,
        max_images: int = MAX_IMAGES,
        max_megapixels: float = MAX_MEGAPIXELS,
        max_run_s: float = MAX_RUN_S,
        keep_s: float = KEEP_S,
        root: Path = JOBS_ROOT,
    ) -> TrainingSettings:
        """The settings the command line's flags give (demos/__main__.py)."""
        return cls(
            access=training_access(share=share, host=host, allow_training=allow_training),
            runner=JobRunner(root, max_run_s=max_run_s, keep_s=keep_s),
            limits=IntakeLimits(max_images=max_images, max_megapixels=max_megapixels),
        )
