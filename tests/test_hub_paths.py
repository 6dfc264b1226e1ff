"""Hub paths the push tests leave out: large files through git LFS, faults after the repo exists, pull errors, and
the loader's gated, missing-revision and unreachable-hub answers. All against tests/hub_server.py."""

import socket

import pytest
from huggingface_hub import constants

from hub import CheckpointError, load_checkpoint
from hub.__main__ import main as hub_cli
from hub.push import PushError, pull_checkpoint, push_checkpoint
from tests.test_cards import make_run_folder
from tests.test_hub_push import online, stand_in  # noqa: F401 (fixtures)


def point_hub_at(url: str, monkeypatch) -> None:
    """Send this process's hub calls to `url`: huggingface_hub built its download URL template at import."""
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def hub(online, tmp_path, monkeypatch):
    """The stand-in, for uploads and downloads from this process, with an empty hub cache."""
    point_hub_at(online.url, monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the loader reads it at call time (conftest sets 1)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return online


@pytest.fixture
def run(tmp_path):
    return make_run_folder(tmp_path / "run", "vit", "classification")


def posts_to(stand_in, endpoint: str) -> int:
    return sum(1 for method, path in stand_in.requests if method == "POST" and path.endswith(endpoint))


def hub_unreachable(monkeypatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on once released
        sock.bind(("127.0.0.1", 0))
        point_hub_at(f"http://127.0.0.1:{sock.getsockname()[1]}", monkeypatch)


# ------------------------------------------------------------------------------------------------ push


def test_a_large_file_goes_through_lfs_and_comes_back_intact(hub, run, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks git LFS, not Xet
    hub.lfs_min_bytes = 10_000  # model.safetensors (~100 kB) is "large"; config and card stay inline
    weights = (run / "model.safetensors").read_bytes()
    push_checkpoint(run, "hana/lfs")
    uploads = [path for method, path in hub.requests if method == "PUT"]
    assert len(uploads) == 1 and uploads[0].startswith("/lfs-objects/")
    assert hub.file("hana/lfs", "model.safetensors") == weights
    pulled = pull_checkpoint("hana/lfs", out=tmp_path / "pulled")
    assert (pulled / "model.safetensors").read_bytes() == weights

    push_checkpoint(run, "hana/lfs", commit_message="Same weights")  # stored already: the batch asks for no upload
    assert [path for method, path in hub.requests if method == "PUT"] == uploads
    assert hub.commit_messages("hana/lfs")[-1] == "Same weights"


def test_a_fault_at_preupload_after_the_repo_exists_is_retried(hub, run):
    hub.fail_at["preupload"] = 1
    push_checkpoint(run, "ivan/flaky-preupload")
    assert posts_to(hub, "/preupload/main") == 2
    assert hub.commit_messages("ivan/flaky-preupload") == ["initial commit", "Upload run with TransferLab"]


def test_a_fault_at_commit_is_retried_and_leaves_one_commit(hub, run):
    hub.fail_at["commit"] = 2
    push_checkpoint(run, "ivan/flaky-commit")
    assert posts_to(hub, "/commit/main") == 3
    assert hub.commit_messages("ivan/flaky-commit") == ["initial commit", "Upload run with TransferLab"]
    assert hub.file("ivan/flaky-commit", "model.safetensors") == (run / "model.safetensors").read_bytes()


def test_a_commit_refused_after_the_repo_exists_leaves_it_unchanged_and_says_how_to_retry(hub, run):
    # 507 is not a transient status: neither huggingface_hub's backoff nor ours repeats it (a 503 that never ends is
    # retried for ~90 s by the two together, too slow for a test; test_hub_push covers retries running out).
    hub.fail_status, hub.fail_at["commit"] = 507, 100
    weights = (run / "model.safetensors").read_bytes()
    with pytest.raises(PushError) as failure:
        push_checkpoint(run, "ivan/broken")
    message = str(failure.value)
    assert "HTTP 507" in message and "intact" in message and f"python -m hub push {run} ivan/broken" in message
    assert posts_to(hub, "/commit/main") == 1
    assert hub.commit_messages("ivan/broken") == ["initial commit"]  # the repo exists, nothing half-committed
    assert (run / "model.safetensors").read_bytes() == weights


# ------------------------------------------------------------------------------------------------ pull


def add_repo(stand_in, repo_id: str, files: dict[str, bytes]) -> None:
    """A repo on the stand-in holding `files`, as somebody else pushed it."""
    stand_in.create_repo(repo_id, private=False)
    stand_in.add_commit(stand_in.repos[repo_id], "main", "their upload", files, [])


def test_pull_refuses_a_repo_without_safetensors_and_fetches_no_pickle(hub, tmp_path):
    add_repo(hub, "old/pickled", {"config.json": b"{}", "pytorch_model.bin": b"pickled weights"})
    with pytest.raises(PushError, match="no model.safetensors"):
        pull_checkpoint("old/pickled", out=tmp_path / "out")
    assert not (tmp_path / "out" / "pytorch_model.bin").exists()


@pytest.mark.parametrize(
    "repo_id, revision", [("nobody/nothing", None), ("hana/real", "no-such-branch")], ids=["no repo", "no revision"]
)
def test_pull_http_errors_name_what_was_asked(hub, run, tmp_path, repo_id, revision):
    push_checkpoint(run, "hana/real")
    with pytest.raises(PushError) as failure:
        pull_checkpoint(repo_id, revision=revision, out=tmp_path / "out")
    assert repo_id in str(failure.value) and (revision or "") in str(failure.value)


def test_pull_from_the_command_line_fails_with_a_message_not_a_traceback(hub, tmp_path):
    with pytest.raises(SystemExit) as failure:
        hub_cli(["pull", "nobody/nothing", "--out", str(tmp_path / "out")])
    assert "nobody/nothing" in str(failure.value.code)


def test_pull_with_the_hub_unreachable_fails_with_a_message(hub, tmp_path, monkeypatch):
    hub_unreachable(monkeypatch)
    with pytest.raises(PushError, match="hana/away"):
        pull_checkpoint("hana/away", out=tmp_path / "out")


# ------------------------------------------------------------------------------------------------ loader


def test_loading_a_gated_repo_says_how_to_get_access(hub, run):
    push_checkpoint(run, "corp/terms-first")
    hub.gated.add("corp/terms-first")
    with pytest.raises(CheckpointError, match="accept its terms"):
        load_checkpoint("corp/terms-first")


def test_loading_a_missing_revision_names_it(hub, run):
    push_checkpoint(run, "hana/versions")
    with pytest.raises(CheckpointError, match="v9"):
        load_checkpoint("hana/versions", revision="v9")


def test_a_cached_model_loads_when_the_hub_is_unreachable(hub, run, monkeypatch):
    push_checkpoint(run, "hana/cached")
    first = load_checkpoint("hana/cached")
    hub_unreachable(monkeypatch)
    again = load_checkpoint("hana/cached")
    assert again.folder == first.folder
    assert again.task.labels == first.task.labels
    assert (again.folder / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
