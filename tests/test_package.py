"""`pip install .` gives a working tool outside the checkout: the wheel is built from a copy of the project, installed
into a folder of its own, and every console command runs from an empty folder with that install on the path (the
dependencies come from this venv)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What the wheel is built from; copied so that the build leaves nothing (build/, *.egg-info) in the checkout.
SOURCES = ["pyproject.toml", "README.md", "requirements-serve.txt", "requirements-train.txt", "hub", "demos", "train",
           "checkpoints"]  # fmt: skip
COMMANDS = ["transferlab-demo", "transferlab-space", "transferlab-hub", "transferlab-train"]
TRAINING_ONLY = {"accelerate", "datasets", "tensorboard"}


def pip(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def pins(requirements: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
    return [line for line in lines if line]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """{site, wheel, run}: the wheel installed with `pip install --target`, and a runner from an empty folder."""
    root = tmp_path_factory.mktemp("package")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "dist"), str(source), cwd=root)
    (wheel,) = (root / "dist").glob("transferlab-*.whl")
    site = root / "site"
    pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=root)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}

    def run(*command: str) -> subprocess.CompletedProcess:
        done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    return {"site": site, "wheel": wheel, "run": run}


# One process of the install for what the checks below ask of its Python side (each such process costs 7-11 s of
# imports here): `show boneage` through the hub command's own main, where the demo opens, the card templates' and
# the Space's pins. The console scripts themselves run in the tests.
INSIDE = """
import contextlib, io, json
import hub.cards, hub.push, hub.space
from demos.models import default_ref
from hub.__main__ import main
shown = io.StringIO()
with contextlib.redirect_stdout(shown):
    main(["show", "boneage"])
print(json.dumps({
    "show boneage": shown.getvalue(),
    "default refs": [default_ref("food"), default_ref("boneage")],
    "files": [str(hub.cards.TEMPLATE), str(hub.push.DATASET_CARD_TEMPLATE)],
    "space": hub.space.pinned_requirements(),
}))
"""


@pytest.fixture(scope="module")
def inside(installed) -> dict:
    return json.loads(installed["run"](sys.executable, "-c", INSIDE).stdout)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_console_command_answers_outside_the_checkout(installed, command):
    usage = installed["run"](str(installed["site"] / "bin" / command), "--help").stdout
    assert usage.startswith("usage: ")


def test_the_shipped_checkpoints_come_with_the_install(installed, inside):
    site = installed["site"]
    food = installed["run"](str(site / "bin" / "transferlab-hub"), "show", "food10").stdout
    assert f"folder: {site / 'transferlab_checkpoints' / 'food10'}" in food
    accuracy = json.loads((REPO / "checkpoints" / "food10" / "eval_results.json").read_text())["metrics"]["accuracy"]
    assert "classification into 10 classes: apple_pie" in food and f"accuracy: {accuracy:.4g}" in food  # its card's
    bone = inside["show boneage"]
    assert f"folder: {site / 'transferlab_checkpoints' / 'boneage'}" in bone
    assert "regression of bone age in months" in bone
    # The demo opens on them (it fell back to the ImageNet backbone on both tabs: "French loaf" for an apple pie).
    assert inside["default refs"] == [["food10", None], ["boneage", None]]


def test_the_install_carries_its_card_templates_and_serving_pins(installed, inside):
    for path in inside["files"]:
        assert path.startswith(str(installed["site"])) and Path(path).is_file(), path
    # transferlab-space writes the Space's requirements from the install's own metadata: serving, not training.
    assert inside["space"] == pins(REPO / "requirements-serve.txt")
    assert not {pin.split("==")[0] for pin in inside["space"]} & TRAINING_ONLY


def test_training_is_an_extra(installed):
    code = "from importlib import metadata; print('\\n'.join(metadata.requires('transferlab')))"
    requires = installed["run"](sys.executable, "-c", code).stdout.splitlines()
    train = [line.split(";")[0].strip() for line in requires if 'extra == "train"' in line]
    assert train == pins(REPO / "requirements-train.txt")
    assert {pin.split("==")[0] for pin in train} == TRAINING_ONLY
