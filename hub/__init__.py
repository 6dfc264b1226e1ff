"""Checkpoint I/O shared by training and the demos: load by hub id, folder or alias; the default backbone."""

from hub.checkpoint import (
    Checkpoint,
    CheckpointError,
    Task,
    TaskKind,
    builtin_aliases,
    is_timm,
    load_checkpoint,
    parameter_counts,
    task_from_config,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "Task",
    "TaskKind",
    "builtin_aliases",
    "is_timm",
    "load_checkpoint",
    "parameter_counts",
    "task_from_config",
]
