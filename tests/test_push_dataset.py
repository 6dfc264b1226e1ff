"""python -m hub push-dataset: the demo's corrections folder published as a hub dataset, against the local stand-in."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

from demos.serving.corrections import BONE_AGE, FOOD, CorrectionStore
from hub.__main__ import main as hub_cli
from hub.push import PushError, push_dataset
from tests.test_corrections import picture
from tests.test_hub_push import online, stand_in, subprocess_env  # noqa: F401 (fixtures)
from tests.tiny_checkpoints import LABELS

REPO = "alice/food-corrections"
SIDE_FILES = {"README.md", ".gitattributes"}  # the card push writes, the file a new hub repo starts with


@pytest.fixture
def corrections(tmp_path):
    store = CorrectionStore(tmp_path / "corrections")
    for i in range(4):
        store.save_label(picture(i), LABELS[i % 2], LABELS)
        store.save_values(picture(10 + i), {"boneage": 30.0 * (i + 1), "male": ["false", "true"][i % 2]})
    return tmp_path / "corrections"


def digests(folder) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in SIDE_FILES and ".cache" not in p.parts)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_pushed_corrections_download_and_load_as_the_same_dataset(online, corrections, tmp_path, capsys):  # noqa: F811
    assert hub_cli(["push-dataset", str(corrections / FOOD), REPO]) is None
    assert "alice/food-corrections (private)" in capsys.readouterr().out
    assert online.datasets[REPO].private and not online.repos

    # A fresh process downloads: huggingface_hub fixes its download URLs from HF_ENDPOINT at import.
    pulled = str(tmp_path / "pulled")
    download = f"import huggingface_hub as h; h.snapshot_download({REPO!r}, repo_type='dataset', local_dir={pulled!r})"
    subprocess.run([sys.executable, "-c", download], env=subprocess_env(online, tmp_path), check=True, timeout=120)
    assert digests(corrections / FOOD) == digests(tmp_path / "pulled")
    local = load_dataset("imagefolder", data_dir=str(corrections / FOOD))["train"]
    remote = load_dataset("imagefolder", data_dir=pulled)["train"]
    assert sorted(remote["label"]) == sorted(local["label"]) and remote.features == local.features

    card = DatasetCard.load(tmp_path / "pulled" / "README.md")
    assert card.data.task_categories == ["image-classification"] and "`apple`, `banana`" in card.text
    assert f'load_dataset("{REPO}")' in card.text


def test_values_folder_card_names_its_columns_and_public_is_asked_for(online, corrections):  # noqa: F811
    push_dataset(corrections / BONE_AGE, "alice/bone-age-corrections", private=False, retry_delays=())
    assert not online.datasets["alice/bone-age-corrections"].private
    card = online.file("alice/bone-age-corrections", "README.md", kind="datasets").decode()
    assert "columns `boneage`, `male`" in card
    assert b"file_name,boneage,male" in online.file("alice/bone-age-corrections", "metadata.csv", kind="datasets")


def test_a_folder_without_images_fails_before_any_request(online, tmp_path):  # noqa: F811
    (tmp_path / "empty").mkdir()
    with pytest.raises(PushError, match="holds no images"):
        push_dataset(tmp_path / "empty", "alice/nothing")
    assert not online.requests
