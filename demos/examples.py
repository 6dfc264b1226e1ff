"""Example pictures the app makes itself, free to show anywhere: none of them is food, so each one should get the
Food tab's "fits none of the classes" notice (when the checkpoint stores a threshold).

The project's real photos (../shared/data) may not be redistributed, so they are never offered as examples;
`python -m demos --examples DIR` adds a folder of your own.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from hub.default_backbone import cache_root

SIDE = 256


def grey_noise(rng: np.random.Generator) -> np.ndarray:
    return np.repeat(rng.integers(0, 256, (SIDE, SIDE, 1)), 3, axis=2)


def colour_gradient(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    return np.stack([x, y, 1 - x * y], axis=-1) * 255


def stripes(rng: np.random.Generator) -> np.ndarray:
    x = np.arange(SIDE)
    band = (x // 16) % 2
    return np.tile(np.stack([band * 230, band * 40 + 20, (1 - band) * 200], axis=-1)[None], (SIDE, 1, 1))


PICTURES = {"grey-noise": grey_noise, "colour-gradient": colour_gradient, "stripes": stripes}


def made_up_picture(name: str, seed: int = 0) -> Image.Image:
    """One of `PICTURES`, 256x256 RGB, the same for the same seed."""
    return Image.fromarray(PICTURES[name](np.random.default_rng(seed)).astype(np.uint8), mode="RGB")


@functools.cache
def made_up_pictures() -> list[Path]:
    """Every picture of `PICTURES` as a PNG in the TransferLab cache (written once), for gr.Examples."""
    folder = cache_root() / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PICTURES:
        path = folder / f"{name}.png"
        if not path.is_file():
            made_up_picture(name).save(path)
        paths.append(path)
    return paths
