"""The demo's one upload decoder (demos/serving/images.py), and the upload files every demo test sends.

The files are made here (a scikit-image photo, drawn 16-bit X-rays, DICOM, broken files), never taken
from the data sets. Other demo tests import the makers from this module.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from skimage import data

from demos.serving.images import MAX_PIXELS, ImageDecodeError, image_size, load_image


def cat_photo(path: Path) -> Path:
    Image.fromarray(data.chelsea()).save(path)
    return path


def xray_16bit(path: Path, high: int = 4000) -> Path:
    """A 16-bit grayscale PNG whose values (0..high) lie mostly above 255, like a 12-bit radiograph."""
    ramp = np.linspace(0, high, 64 * 48).reshape(64, 48).astype(np.uint16)
    Image.fromarray(ramp).save(path)  # PIL writes uint16 arrays as 16-bit PNG (mode I;16)
    return path


def xray_dicom(path: Path, high: int = 4000) -> Path:
    """An uncompressed 16-bit MONOCHROME2 DICOM with values 0..high."""
    return dicom_file(path, xray_ramp(high))


def xray_ramp(high: int = 4000) -> np.ndarray:
    """64x48 16-bit values rising from 0 (top left) to `high` (bottom right)."""
    return np.linspace(0, high, 64 * 48).reshape(64, 48).astype(np.uint16)


def dicom_file(path: Path, pixels: np.ndarray, **attributes) -> Path:
    """An uncompressed 16-bit grayscale DICOM of `pixels` (rows x columns, or frames x rows x columns), MONOCHROME2
    unless `attributes` (DICOM keywords, e.g. WindowCenter) say otherwise."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "DX"
    dataset.Rows, dataset.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        dataset.NumberOfFrames = pixels.shape[0]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
    dataset.PixelRepresentation = 0
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def not_an_image(path: Path) -> Path:
    path.write_bytes(b"this is a text file, not a photo\n" * 20)
    return path


def truncated_png(path: Path) -> Path:
    cat_photo(path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 3])
    return path


def png_bomb(path: Path, side: int = 100_000) -> Path:
    """A tiny PNG whose header declares side x side pixels (10 gigapixels): a decompression bomb."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )
    return path


# --- the decoder ---------------------------------------------------------------------------------


def test_photo_decodes_to_rgb_at_its_size(tmp_path):
    image = load_image(cat_photo(tmp_path / "cat.png"))
    assert image.mode == "RGB" and image.size == (451, 300)


def test_exif_orientation_is_honoured(tmp_path):
    wide = Image.new("RGB", (60, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write portrait shots
    wide.save(tmp_path / "phone.jpg", exif=exif)
    assert load_image(tmp_path / "phone.jpg").size == (20, 60)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "1", "I;16"])
def test_every_common_mode_becomes_rgb(tmp_path, mode):
    source = Image.fromarray(data.chelsea()).resize((40, 30))
    image = (
        source.convert("RGBA").convert(mode)
        if mode != "I;16"
        else Image.fromarray(np.asarray(source.convert("L")).astype(np.uint16) * 257)
    )
    suffix = ".jpg" if mode == "CMYK" else ".png" if mode != "P" else ".gif"
    image.save(tmp_path / f"image{suffix}")
    decoded = load_image(tmp_path / f"image{suffix}")
    assert decoded.mode == "RGB" and decoded.size == (40, 30)


def test_transparency_is_flattened_onto_white(tmp_path):
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert np.asarray(load_image(tmp_path / "clear.png")).min() == 255


def test_16bit_png_keeps_its_whole_range(tmp_path):
    decoded = np.asarray(load_image(xray_16bit(tmp_path / "xray.png")))[..., 0]
    # Clipping at 255 (what convert("L") does) would leave nearly every pixel white.
    assert decoded.min() == 0 and decoded.max() == 255
    assert 100 < np.median(decoded) < 155
    assert len(np.unique(decoded)) > 200


def test_dicom_keeps_its_whole_range(tmp_path):
    decoded = np.asarray(load_image(xray_dicom(tmp_path / "hand.dcm")))
    assert decoded.shape == (64, 48, 3)
    assert decoded.min() == 0 and decoded.max() == 255 and 100 < np.median(decoded) < 155


def test_dicom_is_recognised_without_its_suffix(tmp_path):
    assert load_image(xray_dicom(tmp_path / "upload")).size == (48, 64)


def grey(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image)
    assert (pixels == pixels[..., :1]).all(), "a grayscale DICOM decodes to grey RGB"
    return pixels[..., 0].astype(int)


def test_monochrome1_is_shown_with_low_values_bright(tmp_path):
    # MONOCHROME1 stores bone (bright on the film) as low values: decoded, it is the MONOCHROME2 image inverted.
    plain = grey(load_image(dicom_file(tmp_path / "m2.dcm", xray_ramp())))
    inverted = grey(load_image(dicom_file(tmp_path / "m1.dcm", xray_ramp(), PhotometricInterpretation="MONOCHROME1")))
    assert inverted[0, 0] == 255 and inverted[-1, -1] == 0
    assert np.abs(inverted - (255 - plain)).max() <= 1  # rounding


def test_the_window_the_file_recommends_is_applied(tmp_path):
    # Values 0..3000, window 1000..2000: a third of the image below it (black), a third above (white).
    upload = dicom_file(tmp_path / "windowed.dcm", xray_ramp(3000), WindowCenter=1500, WindowWidth=1000)
    decoded = grey(load_image(upload))
    assert (decoded == 0).mean() == pytest.approx(1 / 3, abs=0.02)
    assert (decoded == 255).mean() == pytest.approx(1 / 3, abs=0.02)
    assert len(np.unique(decoded)) > 200  # the window itself is stretched over the whole grey range


def test_a_voi_lut_table_is_applied(tmp_path):
    # A VOI LUT sequence that maps every value below 2000 to 0 and the rest to 4095: the decoded image is two-tone.
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.LUTData = np.array([0] * 2000 + [4095] * 2096, np.uint16).tobytes()  # written as OW, 16-bit words
    upload = dicom_file(tmp_path / "lut.dcm", xray_ramp(4000), VOILUTSequence=[lut])
    decoded = grey(load_image(upload))
    assert set(np.unique(decoded)) == {0, 255}
    assert (decoded == 255).mean() == pytest.approx(0.5, abs=0.02)


def test_a_multi_frame_dicom_shows_its_first_frame(tmp_path):
    frames = np.stack([xray_ramp(), np.full((64, 48), 900), xray_ramp()[::-1]])
    decoded = load_image(dicom_file(tmp_path / "frames.dcm", frames))
    assert decoded.size == (48, 64)
    assert np.array_equal(grey(decoded), grey(load_image(dicom_file(tmp_path / "first.dcm", frames[0]))))


@pytest.mark.parametrize(
    "make, message",
    [(not_an_image, "not an image"), (truncated_png, "truncated"), (png_bomb, "megapixels")],
)
def test_bad_files_raise_a_clear_error(tmp_path, make, message):
    with pytest.raises(ImageDecodeError, match=message):
        load_image(make(tmp_path / "upload.png"))


def test_bomb_limit_is_checked_before_decoding(tmp_path):
    side = int(MAX_PIXELS**0.5) + 10
    with pytest.raises(ImageDecodeError, match=f"{side}x{side}"):
        load_image(png_bomb(tmp_path / "big.png", side=side))


def test_image_size_is_the_decoded_size_without_decoding(tmp_path):
    """From the header: a phone photo stored sideways (EXIF orientation 6) is as wide as it is shown."""
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to show
    sideways = tmp_path / "sideways.jpg"
    Image.new("RGB", (40, 20), "red").save(sideways, exif=exif)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (30, 10), "blue").save(plain)
    assert image_size(sideways) == load_image(sideways).size == (20, 40)
    assert image_size(plain) == load_image(plain).size == (30, 10)
