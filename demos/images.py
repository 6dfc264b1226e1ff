"""The one decoder for uploaded images: any file a user may drop on the demo -> an RGB PIL image.

Honours EXIF orientation; flattens RGBA/LA/palette transparency onto white; converts CMYK, LAB,
YCbCr and bilevel images; maps 16-bit and 32-bit grayscale (and DICOM, via pydicom) onto 8 bits by
their full value range instead of clipping at 255, as `Image.convert("L")` would. Refuses
non-images, truncated files and decompression bombs with `ImageDecodeError`, whose message says
what is wrong and what to do.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError

# A decompression bomb declares a huge canvas in a small file. 50 megapixels is above any camera
# photo or hand radiograph a user would upload, and far below what would exhaust the server's memory.
MAX_PIXELS = 50_000_000
DICOM_SUFFIXES = (".dcm", ".dicom")
DICOM_MAGIC_OFFSET = 128  # DICOM Part 10 files hold "DICM" after a 128-byte preamble


# Mean spread between an image's R, G and B values (0-255) above which it is a colour image: JPEG noise and a
# tinted scan stay below it, any photo of food or a cat is far above it.
COLOUR_SPREAD = 12


class ImageDecodeError(ValueError):
    """An upload cannot be used as an image; the message is meant for the user."""


def load_image(path: str | Path) -> Image.Image:
    """Decode an uploaded file (PNG/JPEG/WebP/TIFF/... of any bit depth, or DICOM) to an RGB image."""
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(f"No file at {path}: upload an image file.")
    if _is_dicom(path):
        return _grayscale_to_rgb(_dicom_pixels(path))
    return _decode_with_pil(path)


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
            image.load()
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
    if values.ndim == 3:  # a multi-frame DICOM: show the first frame
        values = values[0]
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L").convert("RGB")


def _dicom_pixels(path: Path) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(path)
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        _check_size((columns, rows), path.name)
        pixels = apply_modality_lut(dataset.pixel_array, dataset)
        pixels = apply_voi_lut(pixels, dataset)  # the window the modality recommends for display, if stated
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


def is_colour(image: Image.Image) -> bool:
    """Whether an RGB image holds colour, not grey levels (an X-ray model sees only grey at training time)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return float((pixels.max(-1) - pixels.min(-1)).mean()) > COLOUR_SPREAD
