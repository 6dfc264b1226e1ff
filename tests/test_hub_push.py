"""Publishing: push a run folder to a local stand-in for the hub, load it back by repo id, survive hub failures."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import datasets.config
import pytest
import torch
from huggingface_hub import HfApi, constants, get_session
from huggingface_hub.errors import RepositoryNotFoundError
from huggingface_hub.utils._http import default_client_factory, set_client_factory
from safetensors.torch import load_file, save_file

import hub.push
from hub.__main__ import main as hub_cli
from hub.push import PushError, push_checkpoint
from hub.repo_ids import is_repo_id
from hub.space import SpaceError, publish_space
from tests.hub_server import HubStandIn
from tests.test_cards import make_run_folder
from tests.tiny_checkpoints import build_tiny_checkpoint

REPO = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_FakeTokenForTheStandIn0123456789"


@pytest.fixture
def stand_in(tmp_path):
    server = HubStandIn(tmp_path / "hub-storage").start()
    yield server
    server.stop()


@contextmanager
def online_in_this_process(stand_in):
    """This process talks to the stand-in: huggingface_hub read HF_ENDPOINT/HF_HUB_OFFLINE at import, so patch them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "ENDPOINT", stand_in.url)
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        patch.setenv("HF_TOKEN", FAKE_TOKEN)
        patch.setattr(hub.push, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))
        try:
            yield stand_in
        finally:  # a test may install a client factory of its own: later tests get huggingface_hub's default back
            set_client_factory(default_client_factory)


@contextmanager
def downloads_in_this_process(stand_in):
    """online_in_this_process, file downloads and `datasets` included: huggingface_hub built its download URLs, and
    datasets its endpoint and offline switch, from HF_ENDPOINT and HF_HUB_OFFLINE at import."""
    with online_in_this_process(stand_in), pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", stand_in.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        patch.setattr(datasets.config, "HF_ENDPOINT", stand_in.url)
        patch.setattr(
            datasets.config, "HUB_DATASETS_URL", stand_in.url + "/datasets/{repo_id}/resolve/{revision}/{path}"
        )
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
        yield stand_in


@pytest.fixture
def online(stand_in):
    with online_in_this_process(stand_in):
        yield stand_in


def subprocess_env(stand_in, tmp_path) -> dict:
    """A fresh process pointed at the stand-in, with an empty hub cache."""
    return dict(
        os.environ, HF_ENDPOINT=stand_in.url, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf-home"), HF_TOKEN=FAKE_TOKEN
    )


def digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def fixed_input() -> torch.Tensor:
    return torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)


FRESH_PROCESS_LOAD = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline
    from hub import load_checkpoint
    from hub.__main__ import main as hub_cli
    repo_id, regression_id, pulled = sys.argv[1:]
    pixels = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
    with torch.no_grad():
        logits = AutoModelForImageClassification.from_pretrained(repo_id).eval()(pixel_values=pixels).logits
        months = AutoModelForImageClassification.from_pretrained(regression_id).eval()(pixel_values=pixels).logits[:, 0]
    image = Image.fromarray(np.full((40, 48, 3), 128, np.uint8))
    labels = [p["label"] for p in pipeline("image-classification", model=repo_id)(image)]
    checkpoint = load_checkpoint(repo_id)
    regression = load_checkpoint(regression_id)
    hub_cli(["pull", repo_id, "--out", pulled])
    regression_facts = [regression.task.kind, regression.task.unit, regression.metrics]
    print(json.dumps({"logits": logits.tolist(), "months": months.tolist(), "labels": labels,
                      "metrics": checkpoint.metrics, "regression": regression_facts}))
""")


def test_cli_push_then_load_by_repo_id_in_a_fresh_process(stand_in, tmp_path):
    run = make_run_folder(tmp_path / "run", "vit", "classification")  # no README.md yet: push writes the card
    (run / "checkpoint-1").mkdir()
    (run / "checkpoint-1" / "optimizer.pt").write_bytes(b"resumable state")
    env = subprocess_env(stand_in, tmp_path)
    pushed = subprocess.run(
        [sys.executable, "-m", "hub", "push", str(run), "alice/food-vit"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pushed.returncode == 0, pushed.stderr
    assert stand_in.commit_messages("alice/food-vit") == ["initial commit", "Upload run with TransferLab"]
    remote = stand_in.repos["alice/food-vit"].commit("main").files
    published = {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "confusion_matrix.png"}
    assert published <= set(remote)
    assert not any(name.startswith("checkpoint-") for name in remote)

    regression_run = make_run_folder(tmp_path / "bone", "timm", "regression")
    with online_in_this_process(stand_in):
        push_checkpoint(regression_run, "alice/bone-timm")

    pulled = tmp_path / "pulled"
    args = [sys.executable, "-c", FRESH_PROCESS_LOAD, "alice/food-vit", "alice/bone-timm", str(pulled)]
    loaded = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert loaded.returncode == 0, loaded.stderr
    result = json.loads(loaded.stdout.strip().splitlines()[-1])

    from transformers import AutoModelForImageClassification

    with torch.no_grad():
        local_logits = AutoModelForImageClassification.from_pretrained(run).eval()(pixel_values=fixed_input()).logits
        local_months = (
            AutoModelForImageClassification.from_pretrained(regression_run)
            .eval()(pixel_values=fixed_input())
            .logits[:, 0]
        )
    assert torch.equal(torch.tensor(result["logits"]), local_logits)
    assert torch.equal(torch.tensor(result["months"]), local_months)
    assert result["regression"] == ["regression", "months", {"mae": 11.5, "rmse": 15.25, "r2": 0.83}]
    assert sorted(result["labels"]) == ["apple", "banana", "cherry"]
    assert result["metrics"] == {"accuracy": 0.8125, "f1": 0.79, "top5_accuracy": 1.0}
    assert digest(pulled)["model.safetensors"] == digest(run)["model.safetensors"]
    everything = pushed.stdout + pushed.stderr + loaded.stdout + loaded.stderr + (run / "README.md").read_text()
    assert FAKE_TOKEN not in everything
    assert 'pipeline("image-classification", model="alice/food-vit")' in (run / "README.md").read_text()


def retrain(run: Path) -> None:
    """Other weights in `run`, as a new training run leaves (a rebuilt tiny checkpoint has the same, seeded ones)."""
    weights = load_file(run / "model.safetensors")
    save_file({name: tensor + 1 for name, tensor in weights.items()}, run / "model.safetensors", {"format": "pt"})


def test_second_push_is_a_second_commit_private_and_branches_honoured(online, tmp_path):
    run = make_run_folder(tmp_path / "run", "resnet", "regression")
    push_checkpoint(run, "bob/bone-age", private=True)
    retrain(run)
    info = push_checkpoint(run, "bob/bone-age", private=True, commit_message="Second run")
    assert online.commit_messages("bob/bone-age") == ["initial commit", "Upload run with TransferLab", "Second run"]
    assert online.repos["bob/bone-age"].private
    assert HfApi().model_info("bob/bone-age").private
    with pytest.raises(RepositoryNotFoundError):  # what anyone without the token sees
        HfApi(token=False).model_info("bob/bone-age")
    assert online.file("bob/bone-age", "model.safetensors") == (run / "model.safetensors").read_bytes()
    assert info.oid == online.repos["bob/bone-age"].branches["main"]

    push_checkpoint(run, "bob/public-bone-age")
    assert not online.repos["bob/public-bone-age"].private
    retrain(run)
    push_checkpoint(run, "bob/public-bone-age", revision="experiment")
    branches = online.repos["bob/public-bone-age"].branches
    assert set(branches) == {"main", "experiment"} and branches["main"] != branches["experiment"]


def test_transient_failures_are_retried(online, tmp_path):
    run = make_run_folder(tmp_path / "run", "vit", "classification")
    online.fail_writes = 2
    push_checkpoint(run, "carol/retried")
    assert [p for m, p in online.requests if p == "/api/repos/create"] == ["/api/repos/create"] * 3
    assert online.commit_messages("carol/retried")[-1] == "Upload run with TransferLab"


def test_a_hung_request_times_out_and_is_retried(online, tmp_path):
    run = make_run_folder(tmp_path / "run", "vit", "classification")
    online.hang_writes, online.hang_s = 1, 3.0
    push_checkpoint(run, "carol/slow", request_timeout_s=0.5)
    assert len(online.commit_messages("carol/slow")) == 2


def test_a_push_that_keeps_failing_leaves_the_folder_and_says_how_to_retry(online, tmp_path, capsys, caplog):
    run = make_run_folder(tmp_path / "run", "vit", "classification")
    before = digest(run)
    online.fail_writes = 100
    with pytest.raises(SystemExit) as failure:
        hub_cli(["push", str(run), "dave/broken", "--private"])
    message = str(failure.value.code)
    assert "HTTP 503" in message and "after 4 tries" in message
    assert f"The local checkpoint {run} is intact" in message
    assert f"python -m hub push {run} dave/broken --private" in message
    after = digest(run)
    assert after.pop("README.md") and after == before  # only the card was added, before any network call
    captured = capsys.readouterr()
    assert caplog.text.count("retrying in") == 3
    assert FAKE_TOKEN not in message + captured.out + captured.err + caplog.text


def test_refused_credentials_are_not_retried_and_say_how_to_log_in(online, tmp_path):
    run = make_run_folder(tmp_path / "run", "vit", "classification")
    online.deny_writes = True
    with pytest.raises(PushError, match="hf auth login") as failure:
        push_checkpoint(run, "erin/denied")
    assert FAKE_TOKEN not in str(failure.value)
    assert [p for m, p in online.requests if m == "POST"] == ["/api/repos/create"]


def test_an_incomplete_folder_fails_before_any_network_call(online, tmp_path):
    folder = build_tiny_checkpoint(tmp_path / "half", "vit", "classification")
    (folder / "model.safetensors").unlink()
    with pytest.raises(PushError, match="missing model.safetensors, README.md"):
        push_checkpoint(folder, "frank/half")
    with pytest.raises(PushError, match="not a repo id: use your-name/model-name"):
        push_checkpoint(folder, "no-namespace")
    assert online.requests == []


def test_the_hub_rejecting_the_card_is_reported_not_retried(online, tmp_path):
    run = make_run_folder(tmp_path / "run", "vit", "classification")
    (run / "README.md").write_text("---\nbase_model: /home/me/my-local-folder\n---\n# card\n")
    with pytest.raises(PushError, match="must be hub ids"):
        push_checkpoint(run, "gina/bad-card")
    assert online.requests.count(("POST", "/api/validate-yaml")) == 1


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "me/two words", "me/x--y", "me/..", "me/model.git", ""])
def test_an_id_the_hub_would_refuse_is_refused_before_any_request(online, tmp_path, repo_id):
    run = make_run_folder(tmp_path / "run", "vit", "classification")
    with pytest.raises(PushError, match="is not a repo id: use your-name/model-name"):
        push_checkpoint(run, repo_id)
    with pytest.raises(SpaceError, match="is not a repo id: use your-name/space-name"):
        publish_space(repo_id, food_model="me/model", out=tmp_path / "space")
    assert online.requests == [] and not is_repo_id(repo_id)


def test_a_card_names_hub_ids_only_where_they_are_ids():
    assert is_repo_id("google/vit-base-patch16-224") and is_repo_id("runs/food10-192")
    assert not any(is_repo_id(path) for path in ("../data", "./runs/x", "/home/me/run", "data..old/x", None))


def test_the_request_timeout_holds_for_the_push_only_and_keeps_the_factory_in_force(online, tmp_path):
    """The push bounds its own requests; afterwards huggingface_hub's client is again the one its factory makes (here a
    factory someone set, e.g. for a proxy), without the push's timeout."""
    made = []

    def someones_factory():
        made.append(default_client_factory())
        return made[-1]

    set_client_factory(someones_factory)
    push_checkpoint(make_run_folder(tmp_path / "run", "vit", "classification"), "carol/timed", request_timeout_s=42)
    assert made[0].timeout.read == 42  # the push's requests went through that factory's client, bounded
    assert get_session() is made[-1] and get_session().timeout.read is None
