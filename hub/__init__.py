"""Checkpoint I/O shared by training and the demos: load by hub id, folder or alias; the default backbone.

The names below import hub.checkpoint (torch, transformers) when first used, not with the package: the command
lines (`python -m hub`, `python -m train`, `python -m demos`) parse their arguments, `--help` included, first.
"""

import importlib
import logging

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "Task",
    "TaskKind",
    "builtin_aliases",
    "is_timm",
    "load_checkpoint",
    "parameter_counts",
]


class _NoCudaRuntimeNote(logging.Filter):
    """Drops the one warning torch's extension builder logs at import on a machine with a CUDA toolkit and no GPU
    ("No CUDA runtime is found, using CUDA_HOME=..."): torch.compile imports it, and a CPU user would read it as a
    fault. Every other record of that logger still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No CUDA runtime is found")


# Set on the logger by name, before torch creates it: the warning is logged once, when the module first imports.
logging.getLogger("torch.utils.cpp_extension").addFilter(_NoCudaRuntimeNote())


_CONTRACT = {"Task", "TaskKind"}  # light: hub.contract imports no torch


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("hub.contract" if name in _CONTRACT else "hub.checkpoint"), name)
    raise AttributeError(f"module 'hub' has no attribute '{name}'")
