"""Users' corrections of the demo's answers, kept as training data in the imagefolder layout (no Gradio here).

    corrections/food/<label>/<id>.png                  class folders, one per corrected label
    corrections/bone_age/<id>.png + metadata.csv       file_name, then the target and sex columns

`python -m train --dataset corrections/food` and `python -m train.evaluate MODEL --dataset corrections/food
--split train` read either folder as it is (an imagefolder without split folders is one `train` split), and
`python -m hub push-dataset corrections/food NAME` publishes it. Each image is the decoded upload, saved as PNG.

Why hand-written: Gradio's flagging writes a CSV of temporary file paths that `datasets` cannot load (gradio
issue 5155). Writes are atomic (a file is staged in a hidden folder on the same disk and renamed into place, and
metadata.csv is rewritten whole and renamed over the old one) and serialised by a lock file, so several users,
threads or processes, lose none. The folder is capped in images and bytes; past the cap a correction is refused.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock
from PIL import Image

FOOD = "food"
BONE_AGE = "bone_age"
METADATA = "metadata.csv"
MAX_IMAGES = 10_000
MAX_MB = 2_000
MAX_MONTHS = 240  # the oldest bone age the RSNA data holds is 228 months
BYTES_PER_MB = 1_000_000


class CorrectionError(ValueError):
    """A correction cannot be saved; the message says why and what to do."""


class CorrectionStore:
    """The corrections folder: `save_label` for a classifier's class, `save_values` for a regressor's numbers."""

    def __init__(self, root: str | Path, *, max_images: int = MAX_IMAGES, max_mb: float = MAX_MB):
        self.root = Path(root)
        self.max_images, self.max_mb = max_images, max_mb
        self._staging = self.root / ".staging"  # same disk as the targets: os.replace is an atomic rename
        self._staging.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(self.root / ".lock")  # a file lock: safe across threads and processes

    def save_label(self, image: Image.Image, label: str, known: Sequence[str]) -> Path:
        """Save `image` under food/<label>/; `label` must be one the model knows (a class folder name)."""
        if label not in known:
            raise CorrectionError(
                f"'{label}' is not a class the model knows: choose one of {', '.join(known)}. "
                "(A correction must be a label the model could have given.)"
            )
        if label in {"", ".", ".."} or "/" in label or os.sep in label:
            raise CorrectionError(f"The label '{label}' cannot be a folder name: it cannot be collected.")
        with self._lock:
            self._check_room()
            return self._place(image, self.root / FOOD / label)

    def save_values(self, image: Image.Image, values: dict[str, str | float]) -> Path:
        """Save `image` under bone_age/ with one metadata.csv row: its file name, then `values` (column -> value)."""
        folder = self.root / BONE_AGE
        with self._lock:
            self._check_room()
            rows = self._metadata_rows(folder)
            header = ["file_name", *values]
            if rows and list(rows[0]) != header:
                raise CorrectionError(
                    f"{folder / METADATA} has the columns {', '.join(rows[0])}, not {', '.join(header)} as this model "
                    "needs: start the demo with another --corrections-dir."
                )
            path = self._place(image, folder)
            self._write_metadata(folder, header, [*rows, {"file_name": path.name, **values}])
            return path

    def count(self) -> int:
        return len(self._images())

    def _images(self) -> list[Path]:
        return [p for name in (FOOD, BONE_AGE) for p in (self.root / name).rglob("*.png") if p.is_file()]

    def _check_room(self) -> None:
        images = self._images()
        megabytes = sum(p.stat().st_size for p in images) / BYTES_PER_MB
        if len(images) >= self.max_images or megabytes >= self.max_mb:
            raise CorrectionError(
                f"The corrections folder is full ({len(images)} images, {megabytes:,.0f} MB; the cap is "
                f"{self.max_images} images or {self.max_mb:g} MB): publish or move it, then corrections resume."
            )

    def _place(self, image: Image.Image, folder: Path) -> Path:
        """Write the image as a PNG under a fresh name in `folder`, whole or not at all."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{uuid.uuid4().hex}.png"
        self._atomic_write(buffer.getvalue(), target)
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


def checked_months(value) -> float:
    """A bone age a user typed, refused unless it is a number of months a child's hand can show."""
    try:
        months = float(value)
    except (TypeError, ValueError):
        raise CorrectionError(f"The bone age must be a number of months, not '{value}'.") from None
    if not math.isfinite(months) or not 0 <= months <= MAX_MONTHS:
        raise CorrectionError(f"The bone age must be between 0 and {MAX_MONTHS} months (20 years); got {value}.")
    return months


def target_column(checkpoint) -> str:
    """The metadata column a regressor's corrections go in: the one it trained on, so `train` reads them alike."""
    path = Path(checkpoint.folder) / "training_config.json"
    if path.is_file():
        column = json.loads(path.read_text()).get("target_column")
        if column:
            return column
    return (checkpoint.task.target or "value").replace(" ", "_")
