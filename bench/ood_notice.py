"""How often the Food tab's "fits none of the classes" notice shows, on the model's own kind of photo and on others.

    python -m bench.ood_notice --model food10 --validation ../shared/data/food10/validation

The threshold is the checkpoint's stored `ood_threshold`, or `--threshold`; a checkpoint without either gets the
one train.calibration picks on the `--validation` images (95% of them pass), and the output says which it used.
Images of other kinds: scikit-image's bundled photos (a coffee cup, an astronaut, a cat...: the kinds the
offline default backbone knows from ImageNet) and the pictures the app makes (demos/examples.py), noise with
ten seeds. Prints the threshold and where it came from, then one line per image set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from demos.examples import PICTURES, made_up_picture
from demos.serving.images import load_image
from demos.serving.inference import predicted_logits
from hub import load_checkpoint
from hub.constants import IMAGE_SUFFIXES
from train.calibration import OOD_PASS_RATE
from train.calibration import ood_threshold as calibrated_threshold

SKIMAGE_PHOTOS = [
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel", "horse",
    "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina", "rocket", "text",
]  # fmt: skip
NOISE_SEEDS = range(10)


def skimage_photos() -> dict[str, Image.Image]:
    return {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in SKIMAGE_PHOTOS}


def made_up_pictures() -> dict[str, Image.Image]:
    pictures = {f"grey-noise seed {seed}": made_up_picture("grey-noise", seed) for seed in NOISE_SEEDS}
    return pictures | {name: made_up_picture(name) for name in PICTURES if name != "grey-noise"}


def folder_images(folder: Path) -> dict[str, Image.Image]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return {str(path.relative_to(folder)): load_image(path) for path in paths}


def top_probabilities(checkpoint, images: dict[str, Image.Image]) -> dict[str, tuple[float, str]]:
    """{name: (top softmax probability, top label)} of each image."""
    result = {}
    for name, image in images.items():
        probabilities = predicted_logits(checkpoint, image).softmax(-1)
        result[name] = (float(probabilities.max()), checkpoint.task.labels[int(probabilities.argmax())])
    return result


def logits_of(checkpoint, images: dict[str, Image.Image]) -> np.ndarray:
    return np.stack([predicted_logits(checkpoint, image).numpy() for image in images.values()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="food10", help="hub id, folder or builtin alias of a classifier")
    parser.add_argument("--validation", type=Path, default=None, help="imagefolder split the model was validated on")
    parser.add_argument("--threshold", type=float, default=None, help="use this threshold instead of the stored one")
    parser.add_argument("--per-image", action="store_true", help="also print each other-kind image's top class")
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.model)
    validation = folder_images(args.validation) if args.validation else {}
    threshold, source = args.threshold, "--threshold"
    if threshold is None and checkpoint.task.ood_threshold is not None:
        threshold, source = checkpoint.task.ood_threshold, "stored in the checkpoint's config"
    if threshold is None:
        if not validation:
            raise SystemExit(f"{args.model} stores no ood_threshold: pass --validation (or --threshold).")
        threshold = calibrated_threshold(logits_of(checkpoint, validation))
        source = f"picked here on {len(validation)} validation images ({OOD_PASS_RATE:.0%} pass)"
    print(f"{args.model}: threshold {threshold:.4f} ({source})")
    sets = {"validation (in-distribution)": validation, "scikit-image photos": skimage_photos()}
    sets["made-up pictures"] = made_up_pictures()
    for title, images in sets.items():
        if not images:
            continue
        scores = top_probabilities(checkpoint, images)
        flagged = [name for name, (probability, _) in scores.items() if probability < threshold]
        print(f"{title}: notice on {len(flagged)}/{len(scores)} ({len(flagged) / len(scores):.0%})")
        if args.per_image and title != "validation (in-distribution)":
            for name, (probability, label) in scores.items():
                print(f"    {name}: {label} {probability:.0%}{'  -> notice' if name in flagged else ''}")


if __name__ == "__main__":
    main()
