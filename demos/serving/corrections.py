"""Users' corrections of the demo's answers, kept as training data in the imagefolder layout (no Gradio here).

    corrections/food/<label>/<id>.png                  class folders, one per corrected label
    corrections/bone_age/<id>.png + metadata.csv       file_name, then the target and sex columns

`python -m train --dataset corrections/food` and `python -m train.evaluate MODEL --dataset corrections/food
--split train` read either folder as it is (an imagefolder without split folders is one `train` split), and
`python -m hub push-dataset corrections/food NAME` publishes it.

Each image is the uploaded file's bytes as they came, when `datasets`' imagefolder reads that format (PNG of any
bit depth, JPEG, WebP, BMP, TIFF): a 3 MB phone JPEG costs 3 MB, not the 17-70 MB of its pixels re-encoded as PNG.
Only a format the loaders cannot read is re-encoded, losslessly, as PNG: a DICOM's stored pixels keep their bit
depth. Images a program hands over (PIL images) are saved as PNG.

What a stranger can do with the corrections of a public demo: file any image under any of the model's labels. The
app cannot tell a wrong correction from a right one, so corrections are a review queue, never trained on unseen
(`python -m train` reads them only when someone points it at the folder), and the damage is bounded: the labels are
the model's own, each session saves at most `PER_SESSION` corrections, and the folder is capped in images and
bytes (past the cap every correction is refused until the folder is published or moved).

Why hand-written: Gradio's flagging writes a CSV of temporary file paths that `datasets` cannot load (gradio
issue 5155). Writes are atomic (a file is staged in a hidden folder on the same disk and renamed into place, and
metadata.csv is rewritten whole and renamed over the old one) and serialised by a lock file, so several users,
threads or processes, lose none. The folder is capped in images and bytes; past the cap a correction is refused.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from filelock import FileLock
from PIL import Image, UnidentifiedImageError

from demos.serving.images import load_image
from hub import Checkpoint

FOOD = "food"
BONE_AGE = "bone_age"
METADATA = "metadata.csv"
MAX_IMAGES = 10_000
MAX_MB = 2_000
PER_SESSION = 20  # corrections one visitor's session may save: a few honest fixes, not a folder's worth
MAX_MONTHS = 240  # the oldest bone age the RSNA data holds is 228 months
BYTES_PER_MB = 1_000_000
# PIL's name of a format that `datasets`' imagefolder reads -> the suffix the file is saved under (MPO: the JPEG
# that phones write with a second, depth or preview, frame).
KEPT_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tiff"}
IMAGE_SUFFIXES = set(KEPT_FORMATS.values())
DICOM_DEPTHS = (np.uint8, np.uint16)  # stored pixel types a PNG holds as they are

Upload = Image.Image | str | Path  # an image a program made, or the path of an uploaded file


class CorrectionError(ValueError):
    """A correction cannot be saved; the message says why and what to do."""


class CorrectionStore:
    """The corrections folder: `save_label` for a classifier's class, `save_values` for a regressor's numbers.

    Each save names the session it comes from (a Gradio session hash): a session saves at most `per_session`
    corrections while this store lives. A program's own calls (no session) are not counted.
    """

    def __init__(
        self, root: str | Path, *, max_images: int = MAX_IMAGES, max_mb: float = MAX_MB, per_session: int = PER_SESSION
    ):
        self.root = Path(root)
        self.max_images, self.max_mb, self.per_session = max_images, max_mb, per_session
        self._staging = self.root / ".staging"  # same disk as the targets: os.replace is an atomic rename
        self._staging.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(self.root / ".lock")  # a file lock: safe across threads and processes
        self._saved_by_session: Counter[str | None] = Counter()  # read and written under the lock

    def save_label(self, upload: Upload, label: str, known: Sequence[str], session: str | None = None) -> Path:
        """Save `upload` under food/<label>/; `label` must be one the model knows (a class folder name)."""
        if label not in known:
            raise CorrectionError(
                f"'{label}' is not a class the model knows: choose one of {', '.join(known)}. "
                "(A correction must be a label the model could have given.)"
            )
        if label in {"", ".", ".."} or "/" in label or os.sep in label:
            raise CorrectionError(f"The label '{label}' cannot be a folder name: it cannot be collected.")
        with self._lock:
            self._check_room(session)
            path = self._place(upload, self.root / FOOD / label)
            self._saved_by_session[session] += 1
            return path

    def save_values(self, upload: Upload, values: dict[str, str | float], session: str | None = None) -> Path:
        """Save `upload` under bone_age/ with one metadata.csv row: its file name, then `values` (column -> value)."""
        folder = self.root / BONE_AGE
        with self._lock:
            self._check_room(session)
            rows = self._metadata_rows(folder)
            header = ["file_name", *values]
            if rows and list(rows[0]) != header:
                raise CorrectionError(
                    f"The corrections folder's {BONE_AGE}/{METADATA} has the columns {', '.join(rows[0])}, not "
                    f"{', '.join(header)} as this model needs: start the demo with another --corrections-dir."
                )
            path = self._place(upload, folder)
            self._write_metadata(folder, header, [*rows, {"file_name": path.name, **values}])
            self._saved_by_session[session] += 1
            return path

    def count(self) -> int:
        return len(self._images())

    def _images(self) -> list[Path]:
        return [
            path
            for name in (FOOD, BONE_AGE)
            for path in (self.root / name).rglob("*")
            if path.suffix in IMAGE_SUFFIXES and path.is_file()
        ]

    def _check_room(self, session: str | None) -> None:
        if session is not None and self._saved_by_session[session] >= self.per_session:
            raise CorrectionError(
                f"Thank you: this session has saved {self.per_session} corrections, as many as one visit may. "
                "The demo's operator takes more as a dataset (`python -m hub push-dataset`)."
            )
        images = self._images()
        megabytes = sum(p.stat().st_size for p in images) / BYTES_PER_MB
        if len(images) >= self.max_images or megabytes >= self.max_mb:
            raise CorrectionError(
                f"The corrections folder is full ({len(images)} images, {megabytes:,.0f} MB; the cap is "
                f"{self.max_images} images or {self.max_mb:g} MB): publish or move it, then corrections resume."
            )

    def _place(self, upload: Upload, folder: Path) -> Path:
        """Write the image under a fresh name in `folder`, whole or not at all."""
        content, suffix = stored_bytes(upload)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{uuid.uuid4().hex}{suffix}"
        self._atomic_write(content, target)
        return target

    def _atomic_write(self, content: bytes, target: Path) -> None:
        handle, staged = tempfile.mkstemp(dir=self._staging)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(staged, target)
        except BaseException:
            Path(staged).unlink(missing_ok=True)
            raise

    @staticmethod
    def _metadata_rows(folder: Path) -> list[dict]:
        path = folder / METADATA
        if not path.is_file():
            return []
        with path.open(newline="") as file:
            return list(csv.DictReader(file))

    def _write_metadata(self, folder: Path, header: list[str], rows: list[dict]) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        self._atomic_write(text.getvalue().encode(), folder / METADATA)


def stored_bytes(upload: Upload) -> tuple[bytes, str]:
    """(file content, suffix) to store for an upload: its own bytes when the loaders read its format, else a PNG."""
    if isinstance(upload, Image.Image):
        return png_bytes(upload), ".png"
    path = Path(upload)
    try:
        with Image.open(path) as image:
            suffix = KEPT_FORMATS.get(image.format)
    except (UnidentifiedImageError, OSError):  # DICOM, or something only demos/serving/images.py decodes
        suffix = None
    if suffix is not None:
        return path.read_bytes(), suffix
    pixels = dicom_pixels(path)
    return png_bytes(load_image(path) if pixels is None else pixels), ".png"


def dicom_pixels(path: Path) -> Image.Image | None:
    """A single-frame grayscale DICOM's stored pixels at their own depth (8 or 16 bits); None for anything else."""
    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except (pydicom.errors.InvalidDicomError, AttributeError, KeyError, RuntimeError, NotImplementedError, ValueError):
        return None
    if pixels.ndim != 2 or pixels.dtype not in DICOM_DEPTHS:
        return None
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":  # bright means low values: invert
        pixels = np.iinfo(pixels.dtype).max - pixels
    return Image.fromarray(pixels)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def checked_months(value) -> float:
    """A bone age a user typed, refused unless it is a number of months a child's hand can show."""
    try:
        months = float(value)
    except (TypeError, ValueError, OverflowError):
        raise CorrectionError(f"The bone age must be a number of months, not '{value}'.") from None
    if not math.isfinite(months) or not 0 <= months <= MAX_MONTHS:
        raise CorrectionError(f"The bone age must be between 0 and {MAX_MONTHS} months (20 years); got {value}.")
    return months


def target_column(checkpoint: Checkpoint) -> str:
    """The metadata column a regressor's corrections go in: the one it trained on (config.json's `target_column`), so
    `train` reads them alike; for a checkpoint from elsewhere, its target's name."""
    return checkpoint.task.target_column or (checkpoint.task.target or "value").replace(" ", "_")
