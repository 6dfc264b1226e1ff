"""The one decoder for uploaded images: any file a user may drop on the demo -> an RGB PIL image.

Honours EXIF orientation; flattens RGBA/LA/palette transparency onto white; converts CMYK, LAB,
YCbCr and bilevel images; maps 16-bit and 32-bit grayscale (and DICOM, via pydicom) onto 8 bits by
their full value range instead of clipping at 255, as `Image.convert("L")` would. Refuses
non-images, truncated files and decompression bombs with `ImageDecodeError`, whose message says
what is wrong and what to do.

Memory: an upload comes back with its longer side at most MAX_SIDE, decoded reduced where the format
allows it (JPEG at 1/2, 1/4 or 1/8 scale) and shrunk right after decoding otherwise, so no caller
holds more than the demo shows. A PNG is always decoded whole first, so every decode in the process
also waits for its declared pixels in one shared budget (DECODE_BUDGET): concurrent requests with
huge images decode one or two at a time instead of all together.
"""

from __future__ import annotations

import ctypes
import threading
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from hub.constants import IMAGE_SUFFIXES

# A decompression bomb declares a huge canvas in a small file. 50 megapixels is above any camera
# photo or hand radiograph a user would upload, and far below what would exhaust the server's memory.
MAX_PIXELS = 50_000_000
# The longest side an upload keeps: model inputs are at most ~384 px and Grad-CAM overlays are at input size; a
# bone-age radiograph (~1600x2080) keeps nearly all its detail for the decoded X-ray shown next to its prediction.
MAX_SIDE = 2048
# Pixels decoded at once in the whole server. Pillow holds at most 4 bytes a pixel in any mode, so two uploads at
# MAX_PIXELS (the most a 2-core server decodes at a useful speed) take at most ~400 MB before they are shrunk.
DECODE_BUDGET_PIXELS = 2 * MAX_PIXELS
DICOM_SUFFIXES = (".dcm", ".dicom")
DECODED_SUFFIXES = IMAGE_SUFFIXES | frozenset(DICOM_SUFFIXES)  # the files it is given: photos and X-rays
SIDEWAYS_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations shown turned by 90 degrees: width and height swap
DICOM_MAGIC_OFFSET = 128  # DICOM Part 10 files hold "DICM" after a 128-byte preamble


# Mean spread between an image's R, G and B values (0-255) above which it is a colour image: JPEG noise and a
# tinted scan stay below it, any photo of food or a cat is far above it.
COLOUR_SPREAD = 12


class ImageDecodeError(ValueError):
    """An upload cannot be used as an image; the message is meant for the user."""


class PixelBudget:
    """Pixels that may be decoded at once, shared by every thread; decodes take their share first come, first served.

    A decode that does not fit waits until earlier ones have given theirs back (a big upload is not overtaken for
    ever by a stream of small ones). One image larger than the whole budget is decoded alone.
    """

    def __init__(self, pixels: int):
        self.pixels = pixels
        self._in_use = 0
        self._queue: deque[object] = deque()
        self._changed = threading.Condition()

    @property
    def waiting(self) -> int:
        """Decodes in line for their share, the one about to get it included."""
        with self._changed:
            return len(self._queue)

    @contextmanager
    def taken(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` of the budget (waiting for them in line) while the block runs."""
        share, ticket = min(pixels, self.pixels), object()
        with self._changed:
            self._queue.append(ticket)
            self._changed.wait_for(lambda: self._queue[0] is ticket and self._in_use + share <= self.pixels)
            self._queue.popleft()
            self._in_use += share
            self._changed.notify_all()  # the next in line may fit as well
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= share
                self._changed.notify_all()


DECODE_BUDGET = PixelBudget(DECODE_BUDGET_PIXELS)
# glibc's malloc_trim, absent from other C libraries. glibc keeps the freed blocks of a big decode in its arenas for
# good: measured (tests/test_hostile_memory.py), eight 49-megapixel PNGs through /batch_predict left the server
# 182 MiB larger without a trim; a trim takes 8 ms when it gives back a decode, 0.3 ms when there is nothing to give.
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)


def give_back_freed_memory() -> None:
    """Return the memory freed by decodes (and by copies of decoded images) to the system, where the C library can."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@contextmanager
def _decoding(pixels: int) -> Iterator[None]:
    """Run a decode of `pixels` within the server's budget; then hand what a big decode freed back to the system."""
    try:
        with DECODE_BUDGET.taken(pixels):
            yield
    finally:
        if pixels > MAX_SIDE * MAX_SIDE:  # larger than anything the demo keeps
            give_back_freed_memory()


def load_image(path: str | Path) -> Image.Image:
    """Decode an uploaded file (PNG/JPEG/WebP/TIFF/... of any bit depth, or DICOM) to an RGB image."""
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(f"No file at {path}: upload an image file.")
    if _is_dicom(path):
        return _grayscale_to_rgb(_dicom_pixels(path))
    return _decode_with_pil(path)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an uploaded image as its header declares it, without decoding its pixels where PIL reads
    the header (DICOM and anything else is decoded: `load_image`'s size)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(ExifTags.Base.Orientation) in SIDEWAYS_ORIENTATIONS
    except (UnidentifiedImageError, OSError):
        return load_image(path).size
    return (height, width) if turned else (width, height)


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with path.open("rb") as file:
        file.seek(DICOM_MAGIC_OFFSET)
        return file.read(4) == b"DICM"


def _decode_with_pil(path: Path) -> Image.Image:
    name = path.name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            _check_size(image.size, name)
            image.draft(None, _fitted(image.size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still that large
            with _decoding(image.width * image.height):  # the size draft chose, before decoding
                image.load()
                _shrink(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # PIL's own, larger limit
        raise ImageDecodeError(_too_many_pixels(name, str(err))) from err
    except UnidentifiedImageError as err:
        raise ImageDecodeError(
            f"{name} is not an image that can be read: upload a PNG, JPEG, WebP, BMP, TIFF or DICOM (.dcm) file."
        ) from err
    except (OSError, SyntaxError, ValueError) as err:  # PIL reports broken data as any of these
        raise ImageDecodeError(f"{name} is damaged or truncated ({err}): upload the complete file again.") from err
    image = ImageOps.exif_transpose(image)  # phones store portrait photos sideways plus an EXIF rotation tag
    return _to_rgb(image)


def _check_size(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(_too_many_pixels(name, f"{width}x{height} pixels"))


def _fitted(size: tuple[int, int]) -> tuple[int, int]:
    """`size` scaled down (never up) to fit MAX_SIDE x MAX_SIDE, keeping its aspect ratio."""
    scale = min(1.0, MAX_SIDE / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _shrink(image: Image.Image) -> None:
    """Shrink a decoded image in place to fit MAX_SIDE: box-reduced by an integer factor, then resampled."""
    # Pillow's reduce() has no 16-bit path: 16-bit images are resampled in one (bicubic) pass instead.
    image.thumbnail((MAX_SIDE, MAX_SIDE), reducing_gap=None if image.mode.startswith("I;16") else 2.0)


def _too_many_pixels(name: str, declared: str) -> str:
    return (
        f"{name} declares too many pixels to decode safely ({declared}): a decompression bomb, or a needlessly huge "
        f"image. This demo decodes up to {MAX_PIXELS // 1_000_000} megapixels: downscale it first."
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _grayscale_to_rgb(np.asarray(image))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def _grayscale_to_rgb(values: np.ndarray) -> Image.Image:
    """Stretch a high-bit-depth grayscale array over 0-255 by its own min and max (no clipping)."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L").convert("RGB")


def _dicom_pixels(path: Path) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

    try:
        dataset = pydicom.dcmread(path)
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        _check_size((columns, rows), path.name)
        # Four shares a pixel: the raw frame, the LUTs' float64 output and the float32 copy shrunk take up to 16 bytes
        # a pixel, four times what a PIL decode takes at most.
        with _decoding(4 * rows * columns):
            pixels = pixel_array(dataset, index=0)  # a multi-frame DICOM shows its first frame: decode no other
            pixels = apply_modality_lut(pixels, dataset)
            pixels = apply_voi_lut(pixels, dataset)  # the window the modality recommends for display, if stated
            pixels = _shrunk_array(pixels)
    except ImageDecodeError:
        raise
    except (pydicom.errors.InvalidDicomError, AttributeError, KeyError) as err:
        raise ImageDecodeError(f"{path.name} is not a DICOM image with pixel data ({err}).") from err
    except (RuntimeError, NotImplementedError, ValueError, OSError) as err:
        raise ImageDecodeError(
            f"{path.name}: its DICOM pixel data cannot be decoded here ({err}). "
            "Export it as an uncompressed DICOM or a 16-bit PNG."
        ) from err
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":  # bright means low values: invert
        pixels = pixels.max() - pixels
    return np.asarray(pixels)


def _shrunk_array(values: np.ndarray) -> np.ndarray:
    """A 2-D array of values shrunk as `_shrink` shrinks an image (in float32, exact enough for 8-bit display)."""
    if max(values.shape) <= MAX_SIDE:
        return values
    image = Image.fromarray(values.astype(np.float32))
    _shrink(image)
    return np.asarray(image)


def is_colour(image: Image.Image) -> bool:
    """Whether an RGB image holds colour, not grey levels (an X-ray model sees only grey at training time)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return float((pixels.max(-1) - pixels.min(-1)).mean()) > COLOUR_SPREAD
