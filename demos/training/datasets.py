"""A visitor's training images as the imagefolder that `python -m train --dataset FOLDER` reads, checked first.

Four ways in:
- per-class uploads: a class name and its images (`from_class_uploads`);
- one zip in imagefolder layout, `train/<class>/...` with an optional `validation/<class>/...`, or just class
  folders (`from_imagefolder_zip`);
- for regression, one zip of images with a `metadata.csv` (a `file_name` column, the numeric target, an optional
  condition column), at its top or in `train/` and `validation/` (`metadata_columns` for the pickers, then
  `from_regression_zip`);
- a hub dataset id (demos/training/hub_dataset.py), whose rows become `Item`s that go through `prepare` here.

What is not a training image is skipped and counted, never an error: macOS's `__MACOSX/` and `.DS_Store`, hidden
files and folders (`.ipynb_checkpoints`), files of other kinds, images that do not decode. What could harm the
server is refused with a message that says why: a path leading out of the folder (zip-slip), a link, a zip that
unpacks to far more than it weighs (zip bomb), more images or megapixels than the caps (`IntakeLimits`). Without a
validation split a stratified one is made: each class (or, for regression, each stretch of the target's range)
gives the same share.

Each image is written as `<split>/<class>/<number><suffix>` (regression: `<split>/<number><suffix>` beside its
metadata.csv): nothing of a visitor's file names reaches a server path.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import shutil
import stat
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from huggingface_hub import constants
from PIL import Image, UnidentifiedImageError

from hub.constants import IMAGE_SUFFIXES
from hub.contract import TaskKind

MAX_IMAGES = 2000  # images a dataset may hold: a head-only run on 2,000 photos takes minutes on 2 cores
# Megapixels of all images together, as their headers declare them: decoding is what costs before training starts
# (about 10 s per 100 megapixels of JPEG on this 2-core machine), and training decodes each image once.
MAX_MEGAPIXELS = 1000.0
MAX_UNPACKED_MB = 2048  # what a zip may unpack to, in all
# A member this much larger unpacked than packed is a zip bomb (photos barely compress; a bomb is 1000x and more)...
MAX_COMPRESSION_RATIO = 100
BOMB_FLOOR_BYTES = 1_000_000  # ...once it unpacks to more than this (a tiny text file compresses well, harmlessly)
MAX_ZIP_ENTRIES = 20_000  # a zip of a million empty files costs the server as much as a large one
VALIDATION_SHARE = 0.2  # of each class (or stretch of the target), set aside when no validation split is given
FEW_IMAGES = 5  # a class with fewer training images than this is warned about
IMBALANCE = 3.0  # the largest class this many times the smallest is warned about
MAX_CLASS_NAME = 64
SPLITS = ("train", "validation")
METADATA = "metadata.csv"
FILE_NAME = "file_name"  # the column of metadata.csv that names each image, as datasets' imagefolder reads it
SEED = 0  # of the validation draw: the same data gives the same split, so two runs on it compare fairly

MACOS = "macOS metadata (__MACOSX/, .DS_Store)"
HIDDEN = "hidden files and folders"
NOT_IMAGES = "files that are not images"
UNREADABLE = "images that could not be read"
NO_CLASS = "images outside a class folder"
OTHER_FOLDERS = "files outside train/ and validation/"
UNLISTED = "images not listed in metadata.csv"
ANOTHER_WAY = (  # where a hub dataset cannot be read
    "Give the images another way: a zip of class folders (for a regression, a zip of images with metadata.csv), "
    "or images per class."
)


class IntakeError(ValueError):
    """The data cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class IntakeLimits:
    """What one dataset may hold on this server; the operator sets these."""

    max_images: int = MAX_IMAGES
    max_megapixels: float = MAX_MEGAPIXELS
    max_unpacked_mb: float = MAX_UNPACKED_MB


@dataclass
class Prepared:
    """An imagefolder ready for `python -m train`, and what the visitor should know about it."""

    folder: Path
    task: TaskKind
    counts: dict[str, dict[str, int]]  # split -> class (regression: condition value, or "images") -> images
    skipped: Counter = field(default_factory=Counter)  # reason -> files left out
    made_validation: bool = False  # the validation split was drawn from the given images
    warnings: list[str] = field(default_factory=list)
    target_column: str | None = None  # regression; or a hub dataset's class column, read by id
    condition_column: str | None = None
    notes: list[str] = field(default_factory=list)  # where the data came from and how the run reads it
    hub_id: str | None = None  # a hub dataset the run reads by id: its own splits, as checked in `folder`

    @property
    def dataset(self) -> str:
        """What `python -m train --dataset` gets, run in the job folder: the hub id, else the folder."""
        return self.hub_id or self.folder.name

    @property
    def images(self) -> int:
        return sum(sum(split.values()) for split in self.counts.values())

    @property
    def fingerprint(self) -> str:
        """The same for the same data prepared again (the same images, split and targets): runs on it compare."""
        digest = hashlib.sha1()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(self.folder)}:{path.stat().st_size}\n".encode())
        return digest.hexdigest()[:12]

    def split_size(self, split: str) -> int:
        return sum(self.counts.get(split, {}).values())

    def summary(self) -> str:
        """Markdown for the tab: the counts per class and split, what was skipped and made, and the warnings."""
        return "\n\n".join([self._headline(), _count_table(self.counts), *self._notes()])

    def _headline(self) -> str:
        groups = len(self.counts["train"])
        what = f"{groups} classes" if self.task is TaskKind.CLASSIFICATION else f"target `{self.target_column}`"
        if self.condition_column:
            what += f", one output per value of `{self.condition_column}` ({groups})"
        train, validation = self.split_size("train"), self.split_size("validation")
        return f"**{what}: {self.images} images** (train {train}, validation {validation})."

    def _notes(self) -> list[str]:
        notes = list(self.notes)
        if self.made_validation:
            by = "class" if self.task is TaskKind.CLASSIFICATION else "stretch of the target's range"
            notes.append(
                f"No validation split was given: {self.split_size('validation')} of the {self.images} images "
                f"({VALIDATION_SHARE:.0%} of each {by}) were set aside to validate on, the same ones every run."
            )
        if self.skipped:
            reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())
            notes.append(f"Skipped {sum(self.skipped.values())} files: {reasons}.")
        notes += [f"⚠️ {warning}" for warning in self.warnings]
        return notes


def _count_table(counts: dict[str, dict[str, int]]) -> str:
    groups = sorted({name for split in counts.values() for name in split})
    rows = [f"| {name} | {counts['train'].get(name, 0)} | {counts['validation'].get(name, 0)} |" for name in groups]
    return "\n".join(["| | train | validation |", "|---|---:|---:|", *rows])


@dataclass(frozen=True)
class Encoded:
    """An image's encoded bytes as a dataset holds them, with a file name whose suffix says their format."""

    name: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Item:
    """One image to write: where it comes from, its split (None: to be drawn) and class (regression: condition)."""

    source: Path | zipfile.ZipInfo | Encoded
    split: str | None
    label: str
    target: str | None = None  # regression: the target as metadata.csv writes it
    condition: str | None = None


@dataclass
class _Written:
    path: Path
    item: Item
    split: str


# ----------------------------------------------------------------------------- the three ways in


def from_class_uploads(
    classes: Sequence[tuple[str, Sequence[str | Path]]], out: Path, limits: IntakeLimits = IntakeLimits()
) -> Prepared:
    """An imagefolder in `out` from (class name, uploaded files) pairs; validation is drawn from them."""
    names = [class_name(name) for name, _ in classes]
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise IntakeError(f"Two classes have the same name: {', '.join(repeated)}. Give each class its own name.")
    items, skipped = [], Counter()
    for name, (_, files) in zip(names, classes, strict=True):
        for file in files:
            path = Path(file)
            if path.suffix.lower() in IMAGE_SUFFIXES:
                items.append(Item(path, None, name))
            else:
                skipped[NOT_IMAGES] += 1
    return prepare(items, skipped, out, limits)


def from_imagefolder_zip(zip_path: str | Path, out: Path, limits: IntakeLimits = IntakeLimits()) -> Prepared:
    """An imagefolder in `out` from a zip of `train/<class>/...` (and `validation/<class>/...`) or class folders."""
    with open_zip(zip_path) as archive:
        files, skipped = zip_files(archive, limits)
        has_splits = any(path.parts[0] == "train" for path, _ in files)
        items = []
        for path, info in files:
            split, parts = (path.parts[0], path.parts[1:]) if has_splits else (None, path.parts)
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped[NOT_IMAGES] += 1
            elif has_splits and split not in SPLITS:
                skipped[OTHER_FOLDERS] += 1
            elif len(parts) < 2:
                skipped[NO_CLASS] += 1
            else:
                items.append(Item(info, split, class_name(parts[0])))
        return prepare(items, skipped, out, limits, archive)


def metadata_columns(zip_path: str | Path) -> list[str]:
    """The columns of the zip's metadata.csv, for the tab's column pickers (nothing else is unpacked)."""
    with open_zip(zip_path) as archive:
        files, _ = zip_files(archive, IntakeLimits())
        tables = _metadata_tables(archive, files)
    return list(next(iter(tables.values()))[0])


def from_regression_zip(
    zip_path: str | Path,
    out: Path,
    *,
    target_column: str,
    condition_column: str | None = None,
    limits: IntakeLimits = IntakeLimits(),
) -> Prepared:
    """An imagefolder with metadata.csv in `out`, for regressing `target_column` (one output per value of
    `condition_column`, when given), from a zip of images and metadata.csv."""
    wanted = [FILE_NAME, target_column, *([condition_column] if condition_column else [])]
    with open_zip(zip_path) as archive:
        files, skipped = zip_files(archive, limits)
        tables = _metadata_tables(archive, files)
        rows = {}  # image path in the zip -> (split, row)
        for folder, (columns, table) in tables.items():
            check_columns(wanted, columns, where=str(folder / METADATA))
            split = folder.parts[0] if folder.parts else None
            rows |= {folder / (row[FILE_NAME] or "").strip(): (split, row) for row in table}
        items = []
        for path, info in files:
            if path.name == METADATA:
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped[NOT_IMAGES] += 1
            elif path not in rows:
                skipped[UNLISTED] += 1
            else:
                split, row = rows[path]
                row_name = f"{METADATA}'s row of {path.name}"
                items.append(regression_item(info, split, row, row_name, target_column, condition_column))
        return prepare(items, skipped, out, limits, archive, columns=(target_column, condition_column))


def check_columns(wanted: Iterable[str], columns: Sequence[str], *, where: str) -> None:
    """Refuse a target or condition column that `where` lacks, naming the columns it has."""
    missing = [column for column in wanted if column not in columns]
    if missing:
        raise IntakeError(
            f"{where} has no column {', '.join(repr(c) for c in missing)}; its columns are: {', '.join(columns)}. "
            "Pick the target (and condition) among these."
        )


def regression_item(source, split, row: dict, name: str, target_column: str, condition_column: str | None) -> Item:
    """The Item of a regression row ({column: text}, `name` saying which row): its target must read as a number; its
    condition, if any, is its group."""
    target = (row[target_column] or "").strip()
    try:
        float(target)
    except ValueError:
        raise IntakeError(
            f"{name} gives the {target_column} '{target[:40]}', which is not a number: the target column must hold "
            "a number on every row."
        ) from None
    condition = (row[condition_column] or "").strip() if condition_column else None
    return Item(source, split, condition or "images", target, condition)


def offline_reason() -> str | None:
    """Why this server reads no hub dataset at all, or None where it may try. Here, not in hub_dataset.py: the tab
    asks as its page is built, which need not import training's `datasets` (a second more to start the app)."""
    if constants.HF_HUB_OFFLINE:
        return f"This server works offline (HF_HUB_OFFLINE=1): it cannot read a hub dataset. {ANOTHER_WAY}"
    return None


def class_name(name) -> str:
    """A class name a visitor typed or a zip's folder gave, checked: it becomes a label and a folder name."""
    text = str(name or "").strip()
    if not text or len(text) > MAX_CLASS_NAME or text.startswith(".") or any(c in text for c in "/\\\0"):
        raise IntakeError(
            f"'{text[:MAX_CLASS_NAME]}' cannot name a class: use 1 to {MAX_CLASS_NAME} characters, without slashes, "
            "not starting with a dot."
        )
    return text


# ----------------------------------------------------------------------------- zips: what is refused, what skipped


def open_zip(path: str | Path) -> zipfile.ZipFile:
    """The zip at `path`, or an IntakeError that says the upload is no zip."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise IntakeError("That file is not a zip archive: zip the folder of images and upload the .zip.") from None


def zip_files(archive: zipfile.ZipFile, limits: IntakeLimits) -> tuple[list[tuple[PurePosixPath, object]], Counter]:
    """The zip's files by their path inside it (one folder wrapping everything taken off), junk skipped and counted.

    Refuses, before anything is unpacked: too many entries, a zip bomb, a path leading outside the folder, a link.
    """
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise IntakeError(f"The zip holds {len(infos)} entries; this server unpacks at most {MAX_ZIP_ENTRIES}.")
    _refuse_bombs(infos, limits)
    files, skipped = [], Counter()
    for info in infos:
        path = _member_path(info)
        if info.is_dir() or not path.parts:
            continue
        reason = _junk(path)
        if reason:
            skipped[reason] += 1
        else:
            files.append((path, info))
    return _unwrapped(files), skipped


def _refuse_bombs(infos: Sequence[zipfile.ZipInfo], limits: IntakeLimits) -> None:
    unpacked = sum(info.file_size for info in infos)
    if unpacked > limits.max_unpacked_mb * 1e6:
        raise IntakeError(
            f"The zip unpacks to {unpacked / 1e6:,.0f} MB; this server takes at most {limits.max_unpacked_mb:,.0f} MB."
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > BOMB_FLOOR_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise IntakeError(
                f"The zip's '{_shown(info.filename)}' unpacks to {ratio:,.0f} times its packed size: refused as a zip "
                "bomb. Images barely compress: zip the image files themselves."
            )


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """A member's path inside the zip; refused when it would lead outside the folder unpacked into, or is a link."""
    name = info.filename.replace("\\", "/")  # zips made on Windows may separate with backslashes
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise IntakeError(
            f"The zip holds '{_shown(info.filename)}', a path leading outside the folder it unpacks into: refused "
            "(zip-slip). Zip the folder itself, with relative paths."
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise IntakeError(f"The zip holds a link, '{_shown(info.filename)}': refused. Zip the image files themselves.")
    return path


def _junk(path: PurePosixPath) -> str | None:
    """Why a file is no training image whatever its name says (macOS metadata, hidden), else None."""
    if path.parts[0] == "__MACOSX" or path.name == ".DS_Store":
        return MACOS
    if any(part.startswith(".") for part in path.parts):
        return HIDDEN  # .ipynb_checkpoints/, .git/, ._photo.jpg
    return None


def _unwrapped(files: list[tuple[PurePosixPath, object]]) -> list[tuple[PurePosixPath, object]]:
    """Without the folder that wraps everything, as zipping a folder makes (`food/train/apple/1.jpg`)."""
    while files and all(len(path.parts) > 1 for path, _ in files):
        tops = {path.parts[0] for path, _ in files}
        if len(tops) != 1 or tops & set(SPLITS):
            break
        files = [(PurePosixPath(*path.parts[1:]), info) for path, info in files]
    return files


def _metadata_tables(archive: zipfile.ZipFile, files) -> dict[PurePosixPath, tuple[list[str], list[dict]]]:
    """{folder: (columns, rows)} of each metadata.csv at the zip's top or in train/ and validation/."""
    tables = {}
    for path, info in files:
        if path.name == METADATA and (len(path.parts) == 1 or len(path.parts) == 2 and path.parts[0] in SPLITS):
            tables[path.parent] = _read_table(archive, info, path)
    if not tables:
        raise IntakeError(
            f"The zip has no {METADATA} at its top or in train/ and validation/: a regression needs one, with a "
            f"'{FILE_NAME}' column naming each image and a numeric column to predict."
        )
    if PurePosixPath(".") in tables and len(tables) > 1:
        raise IntakeError(f"The zip has a {METADATA} at its top and in train/ or validation/: keep one layout.")
    return tables


def _read_table(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: PurePosixPath) -> tuple[list[str], list]:
    """(columns, rows as dicts) of one metadata.csv; column names are stripped of spaces around them."""
    try:
        with io.TextIOWrapper(archive.open(info), encoding="utf-8-sig", newline="") as text:
            reader = csv.DictReader(text)
            reader.fieldnames = [column.strip() for column in reader.fieldnames or []]
            return reader.fieldnames, list(reader)
    except (UnicodeDecodeError, csv.Error) as err:
        raise IntakeError(f"{path} is not a readable CSV text (UTF-8): {err}.") from None


def _shown(name: str) -> str:
    return name if len(name) <= 80 else name[:79] + "…"


# ----------------------------------------------------------------------------- writing, checking, splitting


def prepare(
    items,
    skipped: Counter,
    out: Path,
    limits: IntakeLimits,
    archive=None,
    columns: tuple[str, str | None] | None = None,
) -> Prepared:
    """Write `items` into `out` as an imagefolder (drawing validation when no item has a split), check and count.

    `columns`: regression's (target, condition) columns, written into each split's metadata.csv under their names.
    """
    if not items:
        reasons = f" (skipped: {', '.join(f'{n} {r}' for r, n in skipped.items())})" if skipped else ""
        raise IntakeError(f"No images found{reasons}. Give images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    check_image_count(len(items), limits)
    if out.exists():
        shutil.rmtree(out)  # a new dataset replaces the session's previous one
    regression = columns is not None
    written = _write_all(items, out, limits, archive, skipped)
    made_validation = not any(image.split == "validation" for image in written)
    if made_validation:
        _draw_validation(written, out, regression)
    counts = {split: dict(Counter(w.item.label for w in written if w.split == split)) for split in SPLITS}
    prepared = Prepared(
        folder=out,
        task=TaskKind.REGRESSION if regression else TaskKind.CLASSIFICATION,
        counts=counts,
        skipped=skipped,
        made_validation=made_validation,
        target_column=columns[0] if columns else None,
        condition_column=columns[1] if columns else None,
    )
    _check_counts(prepared)
    if regression:
        _write_metadata(written, out, columns)
    return prepared


def check_image_count(count: int, limits: IntakeLimits) -> None:
    """Refuse more images than this server trains on."""
    if count > limits.max_images:
        raise IntakeError(f"The data holds {count} images; this server trains on at most {limits.max_images}.")


def _write_all(items, out: Path, limits: IntakeLimits, archive, skipped: Counter) -> list[_Written]:
    written, megapixels = [], 0.0
    for number, item in enumerate(items):
        split = item.split or "train"
        folder = out / split if item.target is not None else out / split / item.label
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{number:05d}{PurePosixPath(_source_name(item.source)).suffix.lower()}"
        pixels = _decoded_pixels(path) if _copied(item.source, path, archive) else None
        if pixels is None:
            path.unlink(missing_ok=True)
            skipped[UNREADABLE] += 1
            continue
        megapixels += pixels / 1e6
        if megapixels > limits.max_megapixels:
            raise IntakeError(
                f"The images hold more than {limits.max_megapixels:,.0f} megapixels in all, the most this server "
                "trains on: send fewer or smaller images (training shrinks them to a few hundred pixels anyway)."
            )
        written.append(_Written(path, item, split))
    return written


def _source_name(source) -> str:
    if isinstance(source, zipfile.ZipInfo):
        return source.filename
    return source.name if isinstance(source, Encoded) else str(source)


def _copied(source, path: Path, archive) -> bool:
    """Copy an upload, a dataset's image or a zip member to `path`; False when the member cannot be unpacked
    (damaged, encrypted)."""
    if isinstance(source, Encoded):
        path.write_bytes(source.data)
        return True
    if not isinstance(source, zipfile.ZipInfo):
        shutil.copyfile(source, path)
        return True
    try:
        with archive.open(source) as src, path.open("wb") as dst:
            shutil.copyfileobj(src, dst)  # zipfile stops at the declared size, which the bomb check bounded
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError):
        return False
    return True


def _decoded_pixels(path: Path) -> int | None:
    """Width x height of the image at `path` once it decodes, or None when it does not.

    A JPEG is decoded at 1/8 scale (`draft`): a truncated file still fails, at a fraction of a full decode's cost.
    """
    try:
        with Image.open(path) as image:
            size = image.size
            image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return size[0] * size[1]


def _draw_validation(written: list[_Written], out: Path, regression: bool) -> None:
    """Move VALIDATION_SHARE of each class to validation/ (regression: every 1/share-th by target, per condition)."""
    groups = defaultdict(list)
    for image in written:
        groups[image.item.label].append(image)
    rng = random.Random(SEED)
    step = round(1 / VALIDATION_SHARE)
    for images in groups.values():
        if regression:  # spread over the target's range: every step-th by target value, from the middle of a step
            chosen = sorted(images, key=lambda image: float(image.item.target))[step // 2 :: step]
        else:
            chosen = rng.sample(images, round(len(images) * VALIDATION_SHARE) or min(1, len(images) - 1))
        for image in chosen:
            destination = out / "validation" / image.path.relative_to(out / "train")
            destination.parent.mkdir(parents=True, exist_ok=True)
            image.path = image.path.rename(destination)
            image.split = "validation"


def _check_counts(prepared: Prepared) -> None:
    """Refuse what cannot train; warn about what will train badly (few images, unbalanced classes)."""
    train, validation = prepared.counts["train"], prepared.counts["validation"]
    regression = prepared.task is TaskKind.REGRESSION
    if not regression and len(train) < 2:
        raise IntakeError(f"A classifier needs at least 2 classes to tell apart; the data has {len(train)}.")
    if not sum(validation.values()) or not sum(train.values()):
        raise IntakeError("Too few images to both train and validate: give at least 2 images a class.")
    unknown = sorted(set(validation) - set(train))
    if unknown and not regression:
        raise IntakeError(f"validation/ has classes that train/ lacks: {', '.join(unknown)}.")
    group, groups = ("value", "values") if regression else ("class", "classes")
    for name, count in sorted(train.items()):
        if count < FEW_IMAGES:
            prepared.warnings.append(
                f"The {group} '{name}' has only {count} training images: {FEW_IMAGES} or more give it a chance."
            )
    largest, smallest = max(train, key=train.get), min(train, key=train.get)
    if train[largest] >= IMBALANCE * train[smallest]:
        prepared.warnings.append(
            f"The {groups} are unbalanced: '{largest}' has {train[largest]} training images, '{smallest}' "
            f"{train[smallest]}. The model will lean toward the larger; give the smaller more images."
        )


def _write_metadata(written: Iterable[_Written], out: Path, columns: tuple[str, str | None]) -> None:
    """metadata.csv in each split folder: the image file, the target and the condition, under the visitor's column
    names (so that the run's command and card name them as the visitor does)."""
    target_column, condition_column = columns
    by_split = defaultdict(list)
    for image in written:
        by_split[image.split].append(image)
    for split, images in by_split.items():
        with (out / split / METADATA).open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow([FILE_NAME, target_column, *([condition_column] if condition_column else [])])
            for image in images:
                writer.writerow(
                    [image.path.name, image.item.target, *([image.item.condition] if condition_column else [])]
                )
