"""Every kind of file users upload, good and bad, generated on the spot (never taken from real data).

`write_upload_zoo(folder)` returns {name: (path, expectation)}, expectation being "ok" (a prediction must
come back) or "error" (a clear message must come back, and the app must keep serving).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _hand_like(height: int = 120, width: int = 90) -> np.ndarray:
    """A bright blob on dark ground with an asymmetric notch, so rotations are visible."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.where(((x - width / 2) / (width / 3)) ** 2 + ((y - height / 2) / (height / 2.5)) ** 2 < 1, 200, 20)
    image[: height // 5, : width // 5] = 255
    return image.astype(np.uint8)


def _photo(height: int = 80, width: int = 120) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x * 2, y * 3, 255 - x * 2], -1).astype(np.uint8))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares a gigantic image (the zlib stream holds only a few rows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\x00" * (width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _dicom(path: Path, pixels: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "CR", "SYNTHETIC"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_upload_zoo(folder: Path, *, over_cap_bytes: int | None = None) -> dict[str, tuple[Path, str]]:
    """Write the zoo into `folder`; `over_cap_bytes` adds a valid JPEG padded past that size."""
    folder.mkdir(parents=True, exist_ok=True)
    zoo: dict[str, tuple[Path, str]] = {}

    def add(name: str, expectation: str, data: bytes | None = None, image: Image.Image | None = None, **save):
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        else:
            image.save(path, **save)
        zoo[name] = (path, expectation)

    photo, hand = _photo(), _hand_like()
    jpeg = io.BytesIO()
    photo.save(jpeg, "JPEG")
    png = io.BytesIO()
    photo.save(png, "PNG")

    add("zero-bytes.jpg", "error", b"")
    add("text-named.jpg", "error", b"this is not an image, only text with a .jpg name\n" * 20)
    add("truncated.jpg", "error", jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    add("truncated.png", "error", png.getvalue()[: len(png.getvalue()) // 2])
    add("bomb.png", "error", png_bomb())
    add("huge-20000.png", "error", image=Image.new("L", (20_000, 20_000)))
    add("one-pixel.png", "ok", image=Image.new("RGB", (1, 1), (120, 80, 40)))
    frames = [Image.new("P", (60, 40), i * 40) for i in range(3)]
    add("animated.gif", "ok", image=frames[0], save_all=True, append_images=frames[1:], duration=100)
    add("multipage.tiff", "ok", image=photo, save_all=True, append_images=[photo.rotate(90)])
    add("cmyk.jpg", "ok", image=photo.convert("CMYK"))
    add("palette.png", "ok", image=photo.convert("P", palette=Image.Palette.ADAPTIVE))
    add("rgba.png", "ok", image=photo.convert("RGBA"))
    add("gray16.png", "ok", image=Image.fromarray((hand.astype(np.uint16) * 257)))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    add("exif-rotated.jpg", "ok", image=photo, exif=exif)
    _dicom(folder / "xray.dcm", hand.astype(np.uint16) * 16)
    zoo["xray.dcm"] = (folder / "xray.dcm", "ok")
    add("corrupt.dcm", "error", (folder / "xray.dcm").read_bytes()[:300])
    if over_cap_bytes is not None:
        add("over-cap.jpg", "error", jpeg.getvalue() + b"\0" * (over_cap_bytes + 1))
    return zoo
