"""Predict many images with any checkpoint and write one CSV row per image (as timm's inference.py does).

    python -m demos.predict food10 photos/ --out predictions.csv
    python -m demos.predict boneage 'xrays/**/*.png' hand.dcm --out ages.csv
    python -m demos.predict your-name/food10 photos/ --top-k 3 --batch-size 16 --out predictions.csv

MODEL is a hub id, a checkpoint folder or a builtin alias; PATHS are files, folders (searched recursively for
images) or globs. A classifier's row is the file, then the top-k labels and confidences (calibrated when the
checkpoint is); a regressor's is the file and its value in the unit (one column per output of a conditioned
head, e.g. bone age for each sex), then the unit. A file that cannot be decoded gets its error in its row
and the run goes on. The Batch tab of the app (demos/tabs/batch.py) runs the same code.
"""

from __future__ import annotations

import argparse
import csv
import glob
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hub.serving_options import add_precision_option

# torch, PIL and the model code import in the functions that use them, so that `--help` answers at once.
if TYPE_CHECKING:
    import torch
    from PIL import Image

    from hub import Checkpoint

DEFAULT_TOP_K = 5
DEFAULT_BATCH_SIZE = 32


class PredictError(ValueError):
    """The command line names nothing to predict; the message says what."""


def expand_paths(patterns: Sequence[str]) -> list[Path]:
    """Files as given, folders' images (recursively, sorted), glob matches; a pattern that finds nothing is an error."""
    from demos.serving.images import DECODED_SUFFIXES

    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DECODED_SUFFIXES)
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            raise PredictError(f"'{pattern}' is no file, no folder with images, and no glob that matches a file.")
        files.extend(found)
    return files


def columns(checkpoint: Checkpoint, top_k: int) -> list[str]:
    """The CSV header for this checkpoint's predictions."""
    if checkpoint.task.is_regression:
        return ["file", *output_names(checkpoint), "unit", "error"]
    ranks = range(1, min(top_k, len(checkpoint.task.labels)) + 1)
    return ["file", *(f"{field}_{rank}" for rank in ranks for field in ("label", "confidence")), "error"]


def output_names(checkpoint: Checkpoint) -> list[str]:
    """`value` for a one-output regressor; the id2label name of each output of a conditioned one."""
    names = checkpoint.task.output_names
    return ["value"] if len(names) <= 1 else list(names)


def predict_images(
    checkpoint: Checkpoint,
    named_files: Iterable[tuple[str, Path]],
    *,
    top_k: int = DEFAULT_TOP_K,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> Iterator[dict]:
    """One row per (name, file): the prediction, or the reason the file could not be read in `error`."""
    from tqdm.auto import tqdm

    named_files = list(named_files)
    for start in tqdm(range(0, len(named_files), batch_size), desc="predicting", unit="batch", disable=not progress):
        yield from _predict_batch(checkpoint, named_files[start : start + batch_size], top_k)


def _predict_batch(checkpoint: Checkpoint, named_files: list[tuple[str, Path]], top_k: int) -> list[dict]:
    from demos.serving.images import give_back_freed_memory

    rows: list[dict] = []
    logits = batch_logits(checkpoint, _decoded(named_files, rows))
    give_back_freed_memory()  # what the processor's copies of the decoded images freed: up to ~50 MB an image
    decoded = [row for row in rows if not row["error"]]
    for row, row_logits in zip(decoded, logits, strict=True):
        if checkpoint.task.is_regression:
            row.update(_regression_row(checkpoint, row_logits))
        else:
            row.update(_top_k_row(checkpoint, row_logits, top_k))
    return rows


def _decoded(named_files: list[tuple[str, Path]], rows: list[dict]) -> Iterator[Image.Image]:
    """Each file's image, decoded when asked for; appends each file's row to `rows`, with its error if it has one."""
    from demos.serving.images import ImageDecodeError, load_image

    for name, path in named_files:
        try:
            image = load_image(path)
        except (ImageDecodeError, OSError) as err:  # OSError: unreadable (permissions, a vanished file)
            rows.append({"file": name, "error": naming(str(err), path, name)})
            continue
        rows.append({"file": name, "error": ""})
        yield image


def naming(message: str, path: Path, name: str) -> str:
    """`message` about the file at `path` with the file named `name`, as the user knows it.

    The decoder names the file it read, and that may be a temporary copy (a zip's member is extracted as "4.jpg").
    """
    message = message.replace(str(path), name)
    # The bare file name, where it stands alone: not inside the name just written, nor inside a longer name.
    return re.sub(rf"(?<![\w/.-]){re.escape(path.name)}(?![\w.-])", lambda _: name, message)


def batch_logits(checkpoint: Checkpoint, images: Iterable[Image.Image]) -> torch.Tensor:
    """Logits of a batch through the checkpoint's own processor, in the precision its predictions compute in
    (uncompiled: the compiled copy takes one image at a time).

    Each image becomes the model's input as it comes: fed an iterator of decodes, a batch holds one decoded image
    at a time and the inputs of the others, not 32 decoded photos.
    """
    import torch

    from demos.serving.inference import model_inputs, served

    with torch.inference_mode():
        inputs = [model_inputs(checkpoint, image) for image in images]
        if not inputs:
            return torch.empty(0)
        return served(checkpoint).uncompiled_predictor()(torch.cat(inputs))


def _top_k_row(checkpoint: Checkpoint, logits: torch.Tensor, top_k: int) -> dict:
    probabilities, indices = logits.softmax(-1).topk(min(top_k, logits.numel()))
    row = {}
    for rank, (p, i) in enumerate(zip(probabilities.tolist(), indices.tolist()), start=1):
        row[f"label_{rank}"], row[f"confidence_{rank}"] = checkpoint.task.labels[i], round(p, 6)
    return row


def _regression_row(checkpoint: Checkpoint, logits: torch.Tensor) -> dict:
    values = dict(zip(output_names(checkpoint), logits.tolist()))
    return {**{name: round(value, 4) for name, value in values.items()}, "unit": checkpoint.task.unit or ""}


def write_csv(file: TextIO, header: list[str], rows: Iterable[dict]) -> int:
    """Write the rows under `header` to an open text file; returns how many rows had an error."""
    writer = csv.DictWriter(file, fieldnames=header)
    writer.writeheader()
    errors = 0
    for row in rows:
        writer.writerow(row)
        errors += bool(row["error"])
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demos.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="checkpoint: hub id, folder or builtin alias")
    parser.add_argument("paths", nargs="+", metavar="PATHS", help="image files, folders or globs")
    parser.add_argument("--out", required=True, type=Path, help="the CSV file to write")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="classifiers: labels per row")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    add_precision_option(parser, "the predictions")
    args = parser.parse_args(argv)
    from demos.serving.inference import serve
    from demos.serving.precision import checked_precision
    from hub import CheckpointError, load_checkpoint

    try:
        files = expand_paths(args.paths)
        precision = checked_precision(args.prediction_precision)  # bf16 on a CPU without it: say so before loading
        checkpoint = load_checkpoint(args.model)
    except (PredictError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    checkpoint = serve(checkpoint, precision)
    rows = predict_images(checkpoint, ((str(f), f) for f in files), top_k=args.top_k, batch_size=args.batch_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as file:
        errors = write_csv(file, columns(checkpoint, args.top_k), rows)
    print(f"wrote {len(files)} rows to {args.out} ({errors} unreadable files, their errors are in the 'error' column)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
