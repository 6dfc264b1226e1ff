"""A fix for gradio's cache of output images, applied by `demos.app.build_app` (not at import).

gradio 6.31 caches an output image under the hash of its bytes and rewrites that file in place every time the
same image is produced again, so when two requests produce the same image one download can read the file while
the other truncates it (seen under load). `save_pil_to_cache_atomically` writes the file aside and renames it
into place instead, and stands in for `gradio.processing_utils.save_pil_to_cache` (which gradio's other image
savers, `save_img_array_to_cache` included, call through the module).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import gradio as gr
from gradio import processing_utils
from packaging.specifiers import SpecifierSet
from packaging.version import Version

# The versions whose save_pil_to_cache was read and replaced. Another version may have fixed the race, or changed
# the function's signature or its callers, so there the patch is not applied: check, then widen this.
PATCHED_GRADIO = SpecifierSet("==6.31.*")


def save_pil_to_cache_atomically(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """gradio's save_pil_to_cache (same arguments, same path returned), but the file is written aside and renamed."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    target = (folder / f"{name}.{format}").resolve()
    handle, staging = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(staging, target)
    except BaseException:
        os.unlink(staging)
        raise
    return str(target)


def apply_atomic_image_cache(gradio_version: str = gr.__version__) -> bool:
    """Put `save_pil_to_cache_atomically` in gradio's place on the versions in PATCHED_GRADIO; True when it is.

    On other versions gradio's own function stays, and a warning says the patch was not applied.
    """
    if processing_utils.save_pil_to_cache is save_pil_to_cache_atomically:
        return True
    if Version(gradio_version) not in PATCHED_GRADIO:
        warnings.warn(
            f"gradio {gradio_version}: the atomic image cache (demos/serving/gradio_cache.py) was written for gradio "
            f"{PATCHED_GRADIO} and is not applied; concurrent requests producing the same image may read it "
            "half-written.",
            stacklevel=2,
        )
        return False
    processing_utils.save_pil_to_cache = save_pil_to_cache_atomically
    return True
