"""A hub dataset as the Train tab's data: read by its id where the hub is reachable, checked as uploads are.

Offline (HF_HUB_OFFLINE=1) or with the hub out of reach, the tab refuses and says to give the images another way;
the id is checked (hub/repo_ids.py) before any request. Only public datasets are read, without this server's
login: a visitor must not train on (and take home a model of) the operator's private data. Before anything is
downloaded, the dataset's files must fit the server's cap on unpacked data; then `datasets` loads it, as
`python -m train` does, and every image of its train and validation splits goes through the intake of uploads
(demos/training/datasets.py): the caps on images and megapixels, the counts per class and their warnings,
unreadable images left out, a stratified validation split drawn when the dataset has none. The checked copy is
written to the job's folder.

The run reads the dataset by its id (`python -m train --dataset owner/name`; its model card then names the dataset)
when that copy is the dataset's own train and validation splits, whole. Otherwise (a validation split drawn here,
images left out) it trains on the copy (`--dataset data`): `python -m train` validates on a split that its dataset
names, and must not meet an image the check left out.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx2
from datasets import ClassLabel, DatasetDict, Features, Value, load_dataset
from datasets import Image as ImageFeature
from datasets.exceptions import DatasetsError
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
from PIL import Image, UnidentifiedImageError

from demos.training.datasets import (
    ANOTHER_WAY,
    SPLITS,
    UNREADABLE,
    Encoded,
    IntakeError,
    IntakeLimits,
    Item,
    Prepared,
    check_columns,
    check_image_count,
    class_name,
    offline_reason,
    prepare,
    regression_item,
)
from hub.constants import IMAGE_SUFFIXES
from hub.repo_ids import repo_id_problem

DEFAULT_TARGET = "label"  # python -m train's default --target-column (train/arguments.py), which demos/ may not import
UNLABELLED = "images without a label"
OUTSIDE = "images naming a file outside the dataset"


def from_hub_dataset(
    dataset_id,
    out: Path,
    *,
    target_column: str | None = None,
    condition_column: str | None = None,
    limits: IntakeLimits = IntakeLimits(),
) -> Prepared:
    """The hub dataset `dataset_id` checked, and copied as an imagefolder into `out`; classes from `target_column`
    (default: label), or a regression when that column holds numbers (one output per value of `condition_column`)."""
    offline = offline_reason()
    if offline:
        raise IntakeError(offline)
    dataset_id = checked_id(dataset_id)
    _check_size(dataset_id, limits)
    splits = _load(dataset_id)
    if SPLITS[0] not in splits:
        raise IntakeError(
            f"'{dataset_id}' has no '{SPLITS[0]}' split to train on; its splits are: {', '.join(splits)}."
        )
    columns = _columns(splits[SPLITS[0]].features, dataset_id, target_column, condition_column)
    used = [name for name in SPLITS if name in splits]
    check_image_count(sum(len(splits[name]) for name in used), limits)
    skipped = Counter()
    items = [item for name in used for item in _items(splits[name], name, columns, skipped)]
    regression = None if columns.labels is not None else (columns.target, columns.condition)
    prepared = prepare(items, skipped, out, limits, columns=regression)
    _how_the_run_reads(prepared, dataset_id, columns, left_out=[name for name in splits if name not in SPLITS])
    return prepared


def checked_id(value) -> str:
    """`value` as a hub dataset id (owner/name), checked before any request (any API caller may send anything)."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise IntakeError("Give the hub dataset's id: owner/name, as its page on the hub shows it.")
    problem = repo_id_problem(text)
    if problem:
        raise IntakeError(
            f"'{text[:96]}' is not a hub dataset id: use owner/name, as its page on the hub shows it. {problem}"
        )
    return text


def _unreachable(dataset_id: str) -> IntakeError:
    return IntakeError(f"The hub cannot be reached from this server, so it cannot read '{dataset_id}'. {ANOTHER_WAY}")


def _check_size(dataset_id: str, limits: IntakeLimits) -> None:
    """Refuse, before any download, a dataset that is not public or whose files outweigh the cap on unpacked data."""
    try:
        info = HfApi().dataset_info(dataset_id, files_metadata=True, token=False)
    except GatedRepoError:
        raise IntakeError(
            f"'{dataset_id}' is gated on the hub: this server reads public datasets only. {ANOTHER_WAY}"
        ) from None
    except RepositoryNotFoundError:
        raise IntakeError(
            f"The hub has no public dataset '{dataset_id}': check the id (owner/name, as its page shows it). This "
            "server reads public datasets only."
        ) from None
    except (httpx2.TransportError, ConnectionError) as err:  # ConnectionError: huggingface_hub's offline mode
        raise _unreachable(dataset_id) from err
    except HfHubHTTPError as err:
        raise IntakeError(
            f"The hub answered HTTP {err.response.status_code} for '{dataset_id}': try again later. {ANOTHER_WAY}"
        ) from err
    size_mb = sum(file.size or 0 for file in info.siblings or []) / 1e6
    if size_mb > limits.max_unpacked_mb:
        raise IntakeError(
            f"'{dataset_id}' holds {size_mb:,.0f} MB of files; this server reads at most {limits.max_unpacked_mb:,.0f} "
            f"MB. {ANOTHER_WAY}"
        )


def _load(dataset_id: str) -> DatasetDict:
    """Every split of the dataset, as `python -m train --dataset` loads it (without this server's login)."""
    try:
        splits = load_dataset(dataset_id, token=False)
    except (httpx2.TransportError, ConnectionError) as err:
        raise _unreachable(dataset_id) from err
    except (DatasetsError, OSError, ValueError) as err:  # no data files, a format datasets does not read, ...
        raise IntakeError(f"'{dataset_id}' could not be read as a dataset: {err}") from err
    if not isinstance(splits, DatasetDict):
        raise IntakeError(f"'{dataset_id}' did not load as a set of named splits.")
    return splits


@dataclass(frozen=True)
class _Columns:
    image: str
    target: str
    condition: str | None
    labels: list[str] | None  # the class names; None for a regression

    @property
    def read(self) -> list[str]:
        return [self.image, self.target, *([self.condition] if self.condition else [])]


def _columns(features: Features, dataset_id: str, target_column: str | None, condition_column: str | None) -> _Columns:
    """The image column (the first), and what to predict: classes from a ClassLabel column, or a number."""
    names = list(features)
    image = next((name for name, feature in features.items() if isinstance(feature, ImageFeature)), None)
    if image is None:
        raise IntakeError(f"'{dataset_id}' has no image column; its columns are: {', '.join(names)}.")
    target = target_column or DEFAULT_TARGET
    wanted = [target, *([condition_column] if condition_column else [])]
    check_columns(wanted, names, where=f"The hub dataset '{dataset_id}'")
    feature = features[target]
    if isinstance(feature, ClassLabel):
        if condition_column:
            raise IntakeError(
                f"'{target}' holds classes: one output per value of a column is for a number to predict. Leave "
                "the condition empty, or name a numeric column to predict."
            )
        return _Columns(image, target, None, feature.names)
    if isinstance(feature, Value) and feature.dtype.startswith(("int", "uint", "float")):
        return _Columns(image, target, condition_column, None)
    kind = feature.dtype if isinstance(feature, Value) else type(feature).__name__
    raise IntakeError(
        f"The column '{target}' of '{dataset_id}' holds neither classes (a ClassLabel) nor numbers to predict (its "
        f"type: {kind}). Name the column to predict."
    )


def _items(split, name: str, columns: _Columns, skipped: Counter) -> list[Item]:
    """The split's rows as items to check and copy (the images undecoded: the intake decodes each once)."""
    cache = Path(constants.HF_HUB_CACHE).resolve()
    rows = split.select_columns(columns.read).cast_column(columns.image, ImageFeature(decode=False))
    items = []
    for index, row in enumerate(rows):
        source = _source(row[columns.image], cache, skipped)
        if source is None:
            continue
        value = row[columns.target]
        if columns.labels is None:
            text = {columns.target: "" if value is None else str(value)}
            if columns.condition:
                text[columns.condition] = _as_text(row[columns.condition])
            where = f"Row {index} of the '{name}' split"
            items.append(regression_item(source, name, text, where, columns.target, columns.condition))
        elif value is None or value < 0:  # datasets writes -1 for a row without a class
            skipped[UNLABELLED] += 1
        else:
            items.append(Item(source, name, class_name(columns.labels[value])))
    return items


def _source(value: dict | None, cache: Path, skipped: Counter) -> Path | Encoded | None:
    """Where a row's image is: its bytes, or the file datasets downloaded into the hub cache. A path elsewhere (a
    dataset may name any file, /etc/... included) is left out: a visitor's run reads nothing else of the server's."""
    if value and value.get("bytes") is not None:
        return Encoded(_file_name(value.get("path"), value["bytes"]), value["bytes"])
    path = Path(value.get("path") or "") if value else None
    if path is None or not path.is_absolute():
        skipped[UNREADABLE] += 1
        return None
    if not path.resolve().is_relative_to(cache):
        skipped[OUTSIDE] += 1
        return None
    return path


def _file_name(name: str | None, data: bytes) -> str:
    """A name for an image's bytes whose suffix names their format: the dataset's own, else the format PIL reads."""
    if name and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
        return PurePosixPath(name).name
    try:
        with Image.open(io.BytesIO(data)) as image:
            found = image.format
    except (UnidentifiedImageError, OSError):
        return "image"  # without a suffix; the intake finds it unreadable and says so
    suffixes = [suffix for suffix, format in Image.registered_extensions().items() if format == found]
    return "image" + next((suffix for suffix in suffixes if suffix in IMAGE_SUFFIXES), "")


def _as_text(value) -> str:
    """A condition value as metadata.csv writes it: datasets reads `true`/`false` there as booleans."""
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _how_the_run_reads(prepared: Prepared, dataset_id: str, columns: _Columns, *, left_out: list[str]) -> None:
    """By the id where the copy is the dataset's train and validation splits, whole; else the copy. Say which."""
    read = f"Read from the hub dataset `{dataset_id}`"
    copy = f"{read}. The run trains on the checked copy in its job folder (`--dataset {prepared.folder.name}`)"
    if prepared.skipped:
        prepared.notes.append(f"{copy}, without the files left out.")
    elif prepared.made_validation:
        prepared.notes.append(
            f"{copy}, with the validation split drawn here: `python -m train` validates on a split the dataset has."
        )
    else:
        prepared.hub_id = dataset_id
        if columns.labels is not None:  # a regression's column is named already; classes may be in another column
            prepared.target_column = columns.target
        prepared.notes.append(f"{read}, its train and validation splits: the run reads it by id.")
    if left_out:
        names = ", ".join(f"`{name}`" for name in left_out)
        plural = "s" if len(left_out) > 1 else ""
        prepared.notes.append(f"Not used: its {names} split{plural} (a run trains on train, validates on validation).")
