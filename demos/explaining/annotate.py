"""Text drawn onto the demo's output images (channel numbers, step numbers), so a saved image still says what it shows.

PIL's own font, white on a dark box, so that it reads on any background.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

FONT_PX = 11
MARGIN_PX = 2


def label_height(font_px: int = FONT_PX) -> int:
    """The height of the box `label` draws (at most), for a layout that keeps labels off the picture."""
    return ImageFont.load_default(size=font_px).getbbox("#Agjy")[3] + 2 * MARGIN_PX


def label(
    image: Image.Image, xy: tuple[int, int], text: str, *, from_bottom: bool = False, font_px: int = FONT_PX
) -> None:
    """Write `text` onto `image` (in place) with its top-left corner at `xy`, or its bottom-left one if `from_bottom`.

    (Bottom-left keeps it clear of the title Gradio lays over an image's top-left corner.) A larger `font_px` for an
    image the page shows scaled down, so that the text still reads.
    """
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_px)
    _, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = xy[0], xy[1] - (bottom + 2 * MARGIN_PX) if from_bottom else xy[1]
    draw.rectangle((x, y, x + right + 2 * MARGIN_PX, y + bottom + 2 * MARGIN_PX), fill=(0, 0, 0))
    draw.text((x + MARGIN_PX, y + MARGIN_PX), text, fill=(255, 255, 255), font=font)
