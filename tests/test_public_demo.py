"""Issue 14, a public demo a visitor cannot misuse: what the Model tab loads, whose models they are, how many stay
in memory, how large and how slow a load may be, and that expensive endpoints cannot starve /classify.

    OMP_WAIT_POLICY=PASSIVE python -m pytest -q tests/test_public_demo.py
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from huggingface_hub import HfApi, constants
from PIL import Image

import demos.__main__ as demos_main
from demos import app as demo_app
from demos import models as demo_models
from demos.serving.sessions import SessionModels, VisitorLimits
from demos.tabs import network_sees
from hub import CheckpointError, load_checkpoint
from tests.serving import serving
from tests.test_demos_images import cat_photo
from tests.test_hub_push import online, stand_in  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent
REFUSED = "cannot be loaded here"


@pytest.fixture(scope="module")
def tiny_root(tiny_checkpoints) -> Path:
    """The folder holding every tiny checkpoint: the root the operator allows in the tests that allow one."""
    return tiny_checkpoints[("vit", "classification")].parent


@pytest.fixture(scope="module")
def default_app(tiny_checkpoints):
    """The app as `python -m demos` builds it without flags: hub ids and aliases only."""
    with serving(tiny_checkpoints) as (url, models, _):
        yield url, models


@pytest.fixture(scope="module")
def app_allowing_tiny_root(tiny_checkpoints, tiny_root):
    with serving(tiny_checkpoints, allow_local_dirs=[tiny_root]) as (url, models, _):
        yield url, models


def load_refusal(client: Client, ref: str) -> str:
    """The message /load_model answers `ref` with, `ref` itself replaced by REF (so that messages compare)."""
    with pytest.raises(AppError) as refused:
        client.predict(ref, api_name="/load_model")
    return str(refused.value).replace(ref, "REF")


# ------------------------------------------------------------------------- 1. what the web UI may load


def test_by_default_no_folder_loads_and_a_refusal_does_not_tell_whether_the_path_exists(
    default_app, tiny_checkpoints, tmp_path
):
    url, _ = default_app
    client = Client(url, verbose=False)
    refs = [
        str(tiny_checkpoints[("timm", "regression")]),  # a real checkpoint folder the server can read
        "/etc",  # exists, no config.json
        str(tmp_path / "no" / "such" / "folder"),  # does not exist
        "../" * 8 + "etc",
        "~/.ssh",
        "./checkpoints",
    ]
    messages = {ref: load_refusal(client, ref) for ref in refs}
    assert REFUSED in messages["/etc"]
    assert set(messages.values()) == {messages["/etc"]}, messages


def test_allowed_roots_are_checked_after_resolving_symlinks_and_dotdot(tiny_checkpoints, tmp_path):
    allowed = tmp_path / "allowed"
    inside = shutil.copytree(tiny_checkpoints[("vit", "classification")], allowed / "mine")
    outside = shutil.copytree(tiny_checkpoints[("vit", "classification")], tmp_path / "outside")
    (allowed / "escape").symlink_to(outside)  # a link inside the root to a checkpoint outside it
    (allowed / "alias-of-mine").symlink_to(inside)  # a link that stays inside the root
    refused = {}
    for ref in [str(allowed / "escape"), f"{allowed}/../outside", str(outside), str(tmp_path / "missing")]:
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(ref, local_roots=[allowed])
        refused[ref] = str(err.value).replace(ref, "REF")
    assert len(set(refused.values())) == 1 and REFUSED in next(iter(refused.values()))
    assert load_checkpoint(str(inside), local_roots=[allowed]).folder == inside.resolve()
    assert load_checkpoint(str(allowed / "alias-of-mine"), local_roots=[allowed]).folder == inside.resolve()


def test_a_ref_shaped_like_a_hub_id_is_never_read_from_the_servers_disk(tiny_checkpoints, tmp_path, monkeypatch):
    """`owner/model` names a hub repo for a visitor, even where a folder of that name sits in the working directory."""
    shutil.copytree(tiny_checkpoints[("vit", "classification")], tmp_path / "owner" / "model")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="not in the local hub cache"):
        load_checkpoint("owner/model", local_roots=[tmp_path / "elsewhere"])
    assert load_checkpoint("owner/model").task.kind == "classification"  # the command line still reads the folder


def test_a_folder_under_an_allowed_root_loads_from_the_web_ui(app_allowing_tiny_root, tiny_checkpoints):
    url, _ = app_allowing_tiny_root
    folder = str(tiny_checkpoints[("resnet", "classification")])
    _, description, _ = Client(url, verbose=False).predict(folder, api_name="/load_model")
    assert "ResNetForImageClassification" in description


def test_the_command_line_still_loads_any_folder(tiny_checkpoints, tmp_path, monkeypatch):
    """The operator's --food-model/--boneage-model are not the visitor's: no --allow-local-dir is needed for them."""
    food = shutil.copytree(tiny_checkpoints[("timm", "classification")], tmp_path / "operator" / "food")
    built = []
    monkeypatch.setattr(demo_app, "launch", lambda demo, **_: built.append(demo))
    monkeypatch.setattr(torch, "set_num_threads", lambda _: None)  # keep this process's threads
    monkeypatch.chdir(tmp_path)  # the default corrections/ folder lands here, not in the checkout
    demos_main.main(["--food-model", str(food), "--boneage-model", str(tiny_checkpoints[("vit", "regression")])])
    assert len(built) == 1
    built[0].close()


# ---------------------------------------------------------------------- 2. sessions and bounded memory


def test_a_loaded_model_belongs_to_the_session_that_loaded_it(app_allowing_tiny_root, tiny_checkpoints, tmp_path):
    url, models = app_allowing_tiny_root
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    folder = str(tiny_checkpoints[("timm", "regression")])
    alice.predict(folder, api_name="/load_model")
    assert [folder, folder] in alice.predict(api_name="/feature_models")["choices"]
    assert [folder, folder] not in bob.predict(api_name="/feature_models")["choices"]
    assert [folder, folder] not in bob.predict(api_name="/model_names")["choices"]
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio keeps each session's choices
        bob.predict(folder, api_name="/model_summary")
    with pytest.raises(AppError, match="No model .* is loaded in this session"):  # a list that takes any value
        bob.predict(folder, api_name="/network_sees_classes")
    with pytest.raises(AppError, match="already loaded"):  # a visitor cannot replace what every visitor sees
        alice.predict("food", api_name="/load_model")
    assert folder not in models.names()  # nor is it the app's: outside a request there is no session
    photo = handle_file(cat_photo(tmp_path / "cat.png"))
    assert bob.predict(photo, api_name="/classify")["label"]


def fake_loader(calls: list):
    def load(ref, **limits):
        calls.append((ref, limits))
        return f"checkpoint of {ref}"  # stands in for a Checkpoint: SessionModels only stores it

    return load


def test_at_most_n_visitor_models_stay_in_memory_least_recently_used_first_out():
    calls = []
    store = SessionModels(VisitorLimits(max_loaded_models=2))
    store.load("alice", "a/one", fake_loader(calls))
    store.load("bob", "b/two", fake_loader(calls))
    assert store.get("alice", "a/one")  # alice uses hers: bob's is now the least recently used
    store.load("carol", "c/three", fake_loader(calls))
    assert len(store) == 2
    assert store.names("alice") == ["a/one"] and store.names("bob") == [] and store.names("carol") == ["c/three"]
    store.load("alice", "a/one", fake_loader(calls))  # already loaded: not loaded twice
    assert [ref for ref, _ in calls] == ["a/one", "b/two", "c/three"]


def test_the_limits_reach_the_loader_and_zero_models_means_none(tmp_path):
    calls = []
    limits = VisitorLimits(allowed_local_dirs=(tmp_path,), max_loaded_models=1, max_model_mb=12.5)
    SessionModels(limits).load("alice", "a/one", fake_loader(calls))
    assert calls == [("a/one", {"local_roots": (tmp_path,), "max_download_mb": 12.5})]
    with pytest.raises(ValueError, match="--max-loaded-models 0"):
        SessionModels(VisitorLimits(max_loaded_models=0)).load("alice", "a/one", fake_loader(calls))


def test_a_closed_session_frees_its_models():
    store = SessionModels()
    store.load("alice", "a/one", fake_loader([]))
    store.load("bob", "b/two", fake_loader([]))
    store.forget("alice")
    assert len(store) == 1 and store.names("alice") == [] and store.names("bob") == ["b/two"]


def test_a_dropped_model_says_to_load_it_again(app_allowing_tiny_root, tiny_checkpoints, monkeypatch):
    url, models = app_allowing_tiny_root
    monkeypatch.setattr(models, "visitors", SessionModels(replace(models.visitors.limits, max_loaded_models=1)))
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    folder = str(tiny_checkpoints[("timm", "classification")])
    alice.predict(folder, api_name="/load_model")
    bob.predict(folder, api_name="/load_model")  # takes the only place: alice's copy is dropped
    assert len(models.visitors) == 1
    with pytest.raises(AppError, match="load it again in the Model tab"):
        alice.predict(folder, api_name="/model_summary")


def test_a_hub_model_over_the_size_limit_is_refused_before_download(online, tiny_checkpoints, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # hub.checkpoint reads it at call time; `online` patched the rest
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    # Downloads build their URL from this template, which huggingface_hub filled in from HF_ENDPOINT at import.
    resolve_url = online.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", resolve_url)
    # gradio_client's telemetry would go to the stand-in, whose answer to that HEAD spoils a pooled connection.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    folder = tiny_checkpoints[("vit", "classification")]
    HfApi().create_repo("alice/tiny")
    HfApi().upload_folder(folder_path=folder, repo_id="alice/tiny")
    size_mb = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6

    def downloads() -> list[str]:
        return [path for _, path in online.requests if path.startswith("/alice/tiny/resolve/")]

    over_the_limit = pytest.raises(AppError, match=r"over this server's limit of .* MB per model \(--max-model-mb\)")
    with serving(tiny_checkpoints, max_model_mb=size_mb / 2) as (url, *_), over_the_limit:
        Client(url, verbose=False).predict("alice/tiny", api_name="/load_model")
    assert downloads() == [] and not (tmp_path / "hub-cache").exists()

    assert load_checkpoint("alice/tiny", max_download_mb=size_mb * 2).task.kind == "classification"
    assert downloads()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # now cached: the limit still holds, judged from the files on disk
    with pytest.raises(CheckpointError, match="over this server's limit"):
        load_checkpoint("alice/tiny", max_download_mb=size_mb / 2)


def test_a_load_that_outlasts_the_timeout_answers_and_holds_its_slot_until_it_ends():
    release = threading.Event()

    def stalled_hub(ref, **_):
        release.wait(30)
        return f"checkpoint of {ref}"

    store = SessionModels(VisitorLimits(load_timeout_s=0.3))
    began = time.perf_counter()
    with pytest.raises(ValueError, match="did not finish within 0.3 s"):
        store.load("alice", "slow/model", stalled_hub)
    assert time.perf_counter() - began < 25, "it answered without waiting for the stalled load (30 s)"
    with pytest.raises(ValueError, match="still loading another model"):  # abandoned loads cannot pile up
        store.load("bob", "other/model", fake_loader([]))
    release.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            store.load("bob", "other/model", fake_loader([]))
            break
        except ValueError:
            time.sleep(0.05)
    assert store.names("bob") == ["other/model"] and store.names("alice") == []  # the late result was not kept


def test_a_stalled_load_does_not_hang_the_tab(app_allowing_tiny_root, monkeypatch, tmp_path):
    url, models = app_allowing_tiny_root
    release = threading.Event()
    monkeypatch.setattr(models, "visitors", SessionModels(replace(models.visitors.limits, load_timeout_s=0.5)))
    monkeypatch.setattr(demo_models, "load_model", lambda ref, **_: release.wait(30))
    client = Client(url, verbose=False)
    try:
        with pytest.raises(AppError, match="did not finish within 0.5 s"):
            client.predict("slow/hub-model", api_name="/load_model")
        assert client.predict(handle_file(cat_photo(tmp_path / "cat.png")), api_name="/classify")["label"]
    finally:
        release.set()


# --------------------------------------------------------- 3. expensive work cannot starve predictions


def test_expensive_endpoints_queue_in_groups_of_their_own(default_app):
    _, models = default_app
    demo = demo_app.build_app(models=demo_app.DemoModels(checkpoints=models.checkpoints))
    events = {event.api_name: event for event in demo.fns.values() if event.api_name}
    for api_name, group in demo_app.EXPENSIVE_ENDPOINTS.items():
        assert (events[api_name].concurrency_id, events[api_name].concurrency_limit) == (group, 1)
    assert events["classify"].concurrency_id not in demo_app.EXPENSIVE_ENDPOINTS.values()


def test_classify_answers_while_four_clients_keep_dream_busy(default_app, monkeypatch, tmp_path):
    url, _ = default_app
    running, most_at_once, release, lock = [0], [0], threading.Event(), threading.Lock()

    def busy_dream(*_):
        with lock:
            running[0] += 1
            most_at_once[0] = max(most_at_once[0], running[0])
        release.wait(60)
        with lock:
            running[0] -= 1
        image = Image.new("RGB", (8, 8))
        return image, image, 0.5, "dreamt"

    monkeypatch.setattr(network_sees, "run_dream", busy_dream)
    # Four visitors, each from an address of its own (as a share link's tunnel names them): one client may hold only
    # demos.guards.queue_limits.MAX_EXPENSIVE_JOBS_PER_CLIENT dreams at once.
    dreamers = [Client(url, verbose=False, headers={"X-Forwarded-For": f"10.0.8.{i}"}) for i in range(4)]
    jobs = [c.submit("food", "banana", None, 4, 0, api_name="/dream") for c in dreamers]
    try:
        deadline = time.monotonic() + 30
        while running[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        label = Client(url, verbose=False).predict(handle_file(cat_photo(tmp_path / "cat.png")), api_name="/classify")
        assert label["label"] and not any(job.done() for job in jobs), "it answered while every dream still ran"
    finally:
        release.set()
    assert [job.result(timeout=60)[-1] for job in jobs] == ["dreamt"] * 4
    assert most_at_once[0] == 1


# ---------------------------------------------------------------------------- the flags and the README


def test_the_flags_and_their_defaults(tmp_path, monkeypatch):
    args = demos_main.parse_args([])
    assert (args.allow_local_dir, args.max_loaded_models, args.max_model_mb) == ([], 2, 1000)
    args = demos_main.parse_args(["--allow-local-dir", "a", "--allow-local-dir", "b", "--max-loaded-models", "0"])
    assert args.allow_local_dir == ["a", "b"] and args.max_loaded_models == 0
    monkeypatch.setattr(demo_app, "launch", lambda demo, **_: pytest.fail("bad flags must stop before serving"))
    with pytest.raises(SystemExit, match="--allow-local-dir .*missing: no such folder"):
        demos_main.main(["--allow-local-dir", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="--max-loaded-models must be 0 or more"):
        demos_main.main(["--max-loaded-models", "-1"])


def test_the_readme_says_what_a_visitor_can_do_and_names_every_flag_that_widens_it():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Running it in public", 1)[1].split("\n## ", 1)[0]
    for flag in ("--allow-local-dir", "--max-loaded-models", "--max-model-mb", "--share"):
        assert flag in section
