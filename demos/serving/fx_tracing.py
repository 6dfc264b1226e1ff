"""A fix for torch.fx's process-wide patching while it traces, applied before a model compiles
(demos/serving/inference.py).

torch.compile traces the model with torch.fx (AOTAutograd's make_fx), whose tracer replaces `torch.nn.Module.__call__`
and `__getattr__` on the class itself for as long as it traces, so for every thread of the process. A request that runs
a model in another thread meanwhile goes through the tracer and fails (`NameError: module is not installed as a
submodule`, seen on a /dream that overlapped the start-up compile), even though the compile works on a copy of the
model. `confine_fx_patches_to_their_thread` makes every patch the tracer installs act only in the thread that installed
it: other threads call what was there before. Serving a request never waits for a compile.
"""

from __future__ import annotations

import builtins
import functools
import threading
import warnings

import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from torch.fx._symbolic_trace import _Patcher

# The versions whose _Patcher was read and wrapped. Another version may patch differently (or no longer globally):
# there the fix is not applied and a warning says so; check, then widen this.
PATCHED_TORCH = SpecifierSet("==2.14.*")


def confine_fx_patches_to_their_thread(torch_version: str = torch.__version__) -> bool:
    """Wrap the functions torch.fx's tracer patches in, on the versions in PATCHED_TORCH; True when it is done."""
    if getattr(_Patcher.patch, "confined_to_thread", False):
        return True
    if Version(Version(torch_version).base_version) not in PATCHED_TORCH:
        warnings.warn(
            f"torch {torch_version}: the thread-confined fx patching (demos/serving/fx_tracing.py) was written for "
            f"torch {PATCHED_TORCH} and is not applied; a request running while a model compiles may fail.",
            stacklevel=2,
        )
        return False
    patch, patch_method = _Patcher.patch, _Patcher.patch_method

    @functools.wraps(patch)
    def confined_patch(self, frame_dict, name, new_fn, deduplicate=True):
        original = frame_dict[name] if name in frame_dict else getattr(builtins, name, None)
        return patch(self, frame_dict, name, _in_this_thread_only(new_fn, original), deduplicate)

    @functools.wraps(patch_method)
    def confined_patch_method(self, cls, name, new_fn, deduplicate=True):
        return patch_method(self, cls, name, _in_this_thread_only(new_fn, getattr(cls, name)), deduplicate)

    confined_patch.confined_to_thread = True
    _Patcher.patch, _Patcher.patch_method = confined_patch, confined_patch_method
    return True


def _in_this_thread_only(replacement, original):
    """`replacement` when called from the thread that made this, `original` from any other thread."""
    owner = threading.get_ident()

    @functools.wraps(replacement)
    def dispatch(*args, **kwargs):
        chosen = replacement if threading.get_ident() == owner or original is None else original
        return chosen(*args, **kwargs)

    return dispatch
