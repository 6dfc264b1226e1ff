"""A robustness check set for radiographs: validation X-rays made to look as other sources' do.

Other hospitals' and scanners' hand X-rays differ in look, not content: the hand cropped and centred, a
black background instead of grey film, stretched contrast, another angle. `other_source_look(image, i)`
gives each validation image that look deterministically (the angle cycles with its index), so the
check set's MAE can be compared with the plain validation MAE, before and after a change.

`python -m train ... --robustness-check` reports the check set's MAE beside the validation MAE.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from hub.preprocessing import black_background, crop_to_hand

ANGLES = (-10.0, 0.0, 10.0)
HAND_MARGIN = 0.03


def other_source_look(image: Image.Image, index: int) -> Image.Image:
    """Cropped to the hand, black background, contrast stretched, rotated by ANGLES[index % 3]."""
    image = ImageOps.autocontrast(black_background(crop_to_hand(image.convert("RGB"), HAND_MARGIN)))
    return image.rotate(ANGLES[index % len(ANGLES)], resample=Image.Resampling.BILINEAR, expand=True)


def robustness_split(split, image_column: str):
    """`split` with every image given the other-source look (a datasets.Dataset; other columns unchanged)."""
    return split.map(
        lambda row, index: {image_column: other_source_look(row[image_column], index)},
        with_indices=True,
        desc="other-source look",
    )
