"""Shared fixtures. Every test runs offline: the hub is never reached."""

import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"  # before any Hugging Face import reads it
# Before torch loads OpenMP: spinning worker threads starve each other (and the app's server threads) on a
# shared 2-core machine; measured here, one fwd+bwd of EfficientNet-Lite0 took 4.6 s spinning, 0.09 s passive.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# torch's own switch, read when torch loads: the demo's start-up models are compiled in the background (5-15 s of
# both cores each), which would slow every other test; tests/test_demos_inference.py turns it on where it checks that.
os.environ["TORCH_COMPILE_DISABLE"] = "1"
# A Gradio cache of this session's own: apps under test delete old files from their cache (one test ages them after
# 1 s), and upload paths are content hashes, the same in every session, so sessions sharing /tmp/gradio on one
# machine deleted each other's uploads mid-request.
os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="transferlab-tests-gradio-")

import numpy as np
import pytest
from PIL import Image
from skimage import data

from tests.tiny_checkpoints import ARCHITECTURES, TASKS, build_tiny_checkpoint


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: a worker per core, at most 4: each holds torch, Gradio and the apps it serves (about 1.5 GB), and
    many tests start servers and training processes of their own."""
    return min(os.cpu_count() or 1, 4)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """The default backbone is built into a fresh cache once per session, as on a new machine."""
    os.environ["TRANSFERLAB_CACHE"] = str(tmp_path_factory.mktemp("transferlab-cache"))


@pytest.fixture(scope="session", autouse=True)
def _own_gradio_cache():
    cache = os.environ["GRADIO_TEMP_DIR"]
    yield
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """{(architecture, task): folder} for every tiny random checkpoint."""
    root = tmp_path_factory.mktemp("tiny")
    return {
        (arch, task): build_tiny_checkpoint(root / f"{arch}-{task}", arch, task)
        for arch in ARCHITECTURES
        for task in TASKS
    }


@pytest.fixture
def photo():
    """A made-up RGB photo: smooth colour gradients with a disc, 96x64."""
    y, x = np.mgrid[0:64, 0:96]
    image = np.stack([x * 2.5, y * 4.0, 255 - x * 2.5], axis=-1)
    image[(x - 48) ** 2 + (y - 32) ** 2 < 300] = (240, 200, 40)
    return Image.fromarray(image.astype(np.uint8))


@pytest.fixture(scope="module")
def cat():
    """A real photo: skimage's Chelsea the cat, 451x300 RGB."""
    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="module")
def loaded(tiny_checkpoints):
    """{(architecture, task): the demo's loaded model} for every tiny checkpoint, once per test module."""
    from demos.models import load_model  # imported here: the tests that load no demo model need not import Gradio

    return {key: load_model(str(folder)) for key, folder in tiny_checkpoints.items()}
