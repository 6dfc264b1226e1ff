"""The Train tab's two webcams in headless Chromium with a fake camera: a class row's webcam and the "Try it" picture
mirror the same way, so that a model taught with webcam snapshots is tried on pictures the same way round (issue 28:
Teachable Machine mirrors one and not the other).

Chromium's fake camera plays a Y4M video made here: one frame, dark blue on its left half and bright yellow on its
right. Both webcams use `demos.tabs.train.WEBCAM` (`gr.WebcamOptions(mirror=True)`), and Gradio mirrors the picture it
captures as it mirrors the live view: each picture the server receives is MIRRORED relative to the camera's frame
(bright half on the left). Were either webcam given `mirror=False`, its picture would be the camera's way round and
this test would fail.

Needs /usr/bin/chromium and playwright, as tests/test_browser_demo.py does; skipped, saying so, without them.
Screenshots of each step land in the test's tmp dir.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demos.training.jobs import JobRunner
from demos.training.settings import TrainingSettings
from tests.serving import serving
from tests.test_browser_demo import CHROMIUM, CHROMIUM_ARGS, open_tab, page, pytestmark  # noqa: F401  (fixtures, skips)

FRAME_SIZE = (320, 240)  # width, height: even, as 4:2:0 chroma needs
LEFT, RIGHT = (20, 40, 160), (250, 220, 40)  # the camera frame's halves: dark blue (luma 48), bright yellow (208)
AS_FILMED, MIRRORED = "as the camera films it (dark half left)", "mirrored (bright half left)"
UNFLIPPED_FRAME_JS = """video => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return canvas.toDataURL("image/png");
}"""


def camera_frame() -> np.ndarray:
    """The fake camera's picture (RGB): left and right halves of different brightness, so a mirror image shows."""
    width, height = FRAME_SIZE
    frame = np.empty((height, width, 3), np.uint8)
    frame[:, : width // 2], frame[:, width // 2 :] = LEFT, RIGHT
    return frame


def write_y4m(path: Path, frame: np.ndarray) -> Path:
    """A one-frame Y4M video of an RGB frame (Chromium's fake camera loops it): full-range BT.601 YCbCr, 4:2:0."""
    height, width, _ = frame.shape
    r, g, b = np.moveaxis(frame.astype(np.float64), -1, 0)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    blue = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    red = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b

    def plane(values: np.ndarray, step: int) -> bytes:  # averaged over step x step blocks
        values = values.reshape(height // step, step, width // step, step).mean(axis=(1, 3))
        return np.clip(np.rint(values), 0, 255).astype(np.uint8).tobytes()

    header = f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + b"FRAME\n" + plane(luma, 1) + plane(blue, 2) + plane(red, 2))
    return path


def orientation(picture: Image.Image) -> str:
    """AS_FILMED or MIRRORED, from which outer third of the picture is the brighter."""
    gray = np.asarray(picture.convert("L"), dtype=np.float64)
    third = gray.shape[1] // 3
    left, right = gray[:, :third].mean(), gray[:, -third:].mean()
    assert abs(left - right) > 100, f"not the camera's two halves: mean luma {left:.0f} left, {right:.0f} right"
    return AS_FILMED if left < right else MIRRORED


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium whose camera plays `camera_frame`, granted without a prompt (the imported `page` fixture uses it)."""
    from playwright.sync_api import sync_playwright

    video = write_y4m(tmp_path_factory.mktemp("camera") / "frame.y4m", camera_frame())
    fake_camera = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *fake_camera])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served(tiny_checkpoints, tmp_path_factory):
    """(url, models, None) of the app with the Train tab on; nothing is trained here."""
    training = TrainingSettings(runner=JobRunner(tmp_path_factory.mktemp("jobs")))
    with serving(tiny_checkpoints, training=training) as app:
        yield app.url, app.models, None


def start_webcam(page, block):
    """The webcam in the image block `block`, granted and streaming: its <video>."""
    block.get_by_title("grant webcam access").click()
    video = block.get_by_test_id("webcam-video")
    page.wait_for_function("video => video.videoWidth > 0", arg=video.element_handle())
    return video


def capture(page, block) -> Image.Image:
    """Press the capture button of `block`'s streaming webcam: the picture the server received, once the block
    shows it."""
    from playwright.sync_api import expect

    posted = "/gradio_api/upload"
    with page.expect_response(lambda response: posted in response.url and response.request.method == "POST") as sent:
        block.get_by_label("capture photo").click()
    [path] = sent.value.json()
    expect(block.locator(f'img[src$="{Path(path).name}"]')).to_be_visible()
    with Image.open(path) as picture:
        return picture.convert("RGB")


def test_the_class_webcam_and_the_try_it_webcam_both_keep_the_mirror_image_of_the_camera(page, tmp_path):
    from playwright.sync_api import expect

    open_tab(page, "Train")
    class_webcam = page.get_by_test_id("block-label").filter(has_text="Webcam").first.locator("xpath=..")
    video = start_webcam(page, class_webcam)
    # The camera's own frame, drawn without Gradio's mirroring: the fake camera films the picture the right way round
    filmed = Image.open(io.BytesIO(base64.b64decode(video.evaluate(UNFLIPPED_FRAME_JS).split(",")[1])))
    assert orientation(filmed) == AS_FILMED
    page.screenshot(path=tmp_path / "1-class-webcam-live.png", full_page=True)

    snapshot = capture(page, class_webcam)
    page.screenshot(path=tmp_path / "2-class-webcam-captured.png", full_page=True)
    page.get_by_role("button", name="Add this picture to the class").first.click()
    expect(page.get_by_text("1 webcam picture added")).to_be_visible()
    expect(class_webcam.locator("img[src*='gradio_api/file=']")).to_have_count(0)  # cleared for the next picture
    page.screenshot(path=tmp_path / "3-class-picture-added.png", full_page=True)

    try_it = page.locator("#train-try-photo")
    try_it.get_by_label("Capture from camera").click()
    start_webcam(page, try_it)
    tried = capture(page, try_it)
    page.screenshot(path=tmp_path / "4-try-it-captured.png", full_page=True)

    # Both mirrored, as the live view is: the model is tried on pictures the same way round as it was taught.
    saved = {"class webcam": orientation(snapshot), "Try it webcam": orientation(tried)}
    assert saved == {"class webcam": MIRRORED, "Try it webcam": MIRRORED}
