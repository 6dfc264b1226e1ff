"""python -m hub.space: the Space folder, its upload to the hub stand-in, its failures, and the pushed Space alone.

The end-to-end test downloads the pushed Space into an empty folder and serves its app.py in a fresh process
pointed at the stand-in, with no TransferLab checkout importable, then classifies a photo through gradio_client.
"""

import os
import queue
import re
import subprocess
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path

import gradio
import pytest
import yaml
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from huggingface_hub import snapshot_download

from demos.serving.images import load_image
from demos.serving.inference import top_k
from hub import load_checkpoint
from hub.push import PushError, push_checkpoint
from hub.space import SpaceError, main, publish_space
from tests.serving import free_port
from tests.test_cards import FOOD_TERMS, RSNA_TERMS, make_run_folder
from tests.test_demos_images import cat_photo
from tests.test_hub_push import FAKE_TOKEN, downloads_in_this_process, stand_in  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
APP_START_TIMEOUT_S = 180  # starts in ~20-35 s here; the bound allows for a machine loaded by other jobs


def header(readme: str) -> dict:
    return yaml.safe_load(readme.split("---")[1])


@pytest.fixture
def hub(stand_in, tmp_path):
    """The hub stand-in, reachable from this process (downloads too), holding a food classifier and a bone-age model."""
    with downloads_in_this_process(stand_in):
        push_checkpoint(make_run_folder(tmp_path / "food", "vit", "classification"), "alice/food-vit")
        push_checkpoint(make_run_folder(tmp_path / "bone", "resnet", "regression"), "alice/bone-resnet")
        yield stand_in


def test_the_space_is_one_commit_of_app_requirements_card_and_the_project_code(hub, tmp_path):
    out = tmp_path / "space"
    publish_space("alice/demo", food_model="alice/food-vit", boneage_model="alice/bone-resnet", out=out)

    space = hub.spaces["alice/demo"]
    assert space.sdk == "gradio" and not space.private
    assert hub.commit_messages("alice/demo", kind="spaces") == [
        "initial commit",
        "TransferLab demo of alice/food-vit, alice/bone-resnet",
    ]
    remote = set(space.commit("main").files)
    assert {
        "app.py",
        "requirements.txt",
        "README.md",
        "hub/checkpoint.py",
        "demos/app.py",
        "demos/tabs/food.py",
    } <= remote
    assert not any("__pycache__" in name or name.startswith(("train/", "tests/")) for name in remote)
    assert remote - {".gitattributes"} == {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}

    readme = hub.file("alice/demo", "README.md", kind="spaces").decode()
    meta = header(readme)
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__ == "6.31.0"
    assert (
        meta["app_file"] == "app.py" and meta["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    )
    assert meta["models"] == ["alice/food-vit", "alice/bone-resnet"]
    # research-only data terms: the cards say license other, named and linked, and so does the Space
    assert (meta["license"], meta["license_name"], meta["license_link"]) == (
        "other",
        "research-only",
        "README.md#data-terms",
    )
    assert "## Data terms" in readme
    assert {"title", "emoji", "colorFrom", "colorTo", "tags", "short_description"} <= set(meta)
    # A visitor who signs in lets the app push to their account: creating a repo and writing to it.
    assert meta["hf_oauth"] is True and meta["hf_oauth_scopes"] == ["write-repos", "manage-repos"]
    preload = dict(entry.split(" ") for entry in meta["preload_from_hub"])
    assert set(preload) == {"alice/food-vit", "alice/bone-resnet"}
    for repo_id, files in preload.items():
        assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(files.split(","))
        assert set(files.split(",")) <= set(hub.repos[repo_id].commit("main").files)
    assert f"[alice/food-vit]({hub.url}/alice/food-vit)" in readme
    assert FOOD_TERMS in readme and RSNA_TERMS in readme
    command = "python -m hub.space alice/demo --food-model alice/food-vit --boneage-model alice/bone-resnet"
    assert f"{command}\n" in readme
    app = hub.file("alice/demo", "app.py", kind="spaces").decode()
    # The publisher's folders are theirs: neither file names one (the --out given above is under tmp_path).
    assert "--out" not in readme + app and str(tmp_path) not in readme + app and str(REPO) not in readme + app

    # Serving's pins, none of training's (datasets and tensorboard alone were ~226 MB the Space never imports).
    serve = (REPO / "requirements-serve.txt").read_text().splitlines()
    pins = [line.split("#")[0].strip() for line in serve if line and not line.startswith("#")]
    shipped = hub.file("alice/demo", "requirements.txt", kind="spaces").decode().splitlines()
    assert [line for line in shipped if not line.startswith("#")] == pins
    assert not {line.split("==")[0] for line in pins} & {"accelerate", "datasets", "tensorboard"}
    assert "food_model='alice/food-vit'" in app and "boneage_model='alice/bone-resnet'" in app
    assert "build_space_app(" in app and "prediction_precision='fp32'" in app


def test_a_space_serves_with_the_public_limits_and_trusts_only_its_proxies(monkeypatch):
    import demos.app
    from demos.guards.queue_limits import SPACE_PROXIES
    from demos.serving.sessions import MAX_LOADED_MODELS, MAX_MODEL_MB

    built = {}
    monkeypatch.setattr(demos.app, "build_app", lambda **kwargs: built.update(kwargs))
    monkeypatch.setattr(demos.app, "share_cores_between_requests", lambda: None)  # keep this process's threads
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    demos.app.build_space_app(food_model="alice/food-vit", boneage_model=None, prediction_precision="int8")
    assert built == {
        "food_model": "alice/food-vit",
        "boneage_model": None,
        "allow_local_dirs": (),
        "max_loaded_models": MAX_LOADED_MODELS,
        "max_model_mb": MAX_MODEL_MB,
        "prediction_precision": "int8",
    }
    assert os.environ["FORWARDED_ALLOW_IPS"] == SPACE_PROXIES


def test_a_model_left_out_is_stood_in_for_by_the_other(hub, tmp_path):
    out = tmp_path / "space"
    publish_space("alice/food-only", food_model="alice/food-vit", out=out, private=True, prediction_precision="int8")
    assert hub.spaces["alice/food-only"].private
    app = hub.file("alice/food-only", "app.py", kind="spaces").decode()
    assert "food_model='alice/food-vit'" in app and "boneage_model='alice/food-vit'" in app
    assert "prediction_precision='int8'" in app
    readme = hub.file("alice/food-only", "README.md", kind="spaces").decode()
    command = "python -m hub.space alice/food-only --food-model alice/food-vit --private --prediction-precision int8"
    assert f"{command}\n" in readme and "--out" not in readme
    assert header(hub.file("alice/food-only", "README.md", kind="spaces").decode())["models"] == ["alice/food-vit"]


def test_a_private_model_is_not_preloaded_and_the_space_says_so(hub, tmp_path, capsys):
    push_checkpoint(make_run_folder(tmp_path / "secret", "resnet", "regression"), "alice/secret-bone", private=True)
    publish_space("alice/demo", food_model="alice/food-vit", boneage_model="alice/secret-bone", out=tmp_path / "s")

    readme = hub.file("alice/demo", "README.md", kind="spaces").decode()
    meta = header(readme)
    assert meta["models"] == ["alice/food-vit", "alice/secret-bone"]
    assert [entry.split(" ")[0] for entry in meta["preload_from_hub"]] == ["alice/food-vit"]
    assert "alice/secret-bone is private" in readme and "HF_TOKEN" in readme
    assert "alice/food-vit is private" not in readme
    assert "note: alice/secret-bone is private: left out of preload_from_hub" in capsys.readouterr().out


def test_a_missing_model_stops_before_anything_is_written_or_created(hub, tmp_path, capsys):
    out = tmp_path / "space"
    with pytest.raises(SystemExit) as failure:
        main(
            [
                "alice/demo",
                "--food-model",
                "alice/food-vit",
                "--boneage-model",
                "alice/no-such-model",
                "--out",
                str(out),
            ]
        )
    message = str(failure.value.code)
    assert (
        "No model 'alice/no-such-model' on the hub" in message
        and "python -m hub push RUN_DIR alice/no-such-model" in message
    )
    assert "alice/demo" not in hub.spaces and not out.exists()
    with pytest.raises(SpaceError, match="use your-name/space-name"):
        publish_space("no-namespace", food_model="alice/food-vit", out=out)
    with pytest.raises(SpaceError, match="--food-model"):
        publish_space("alice/demo", out=out)


def test_a_failing_upload_keeps_the_folder_prints_the_retry_and_never_the_token(hub, tmp_path, capsys, caplog):
    out = tmp_path / "space"
    hub.fail_writes = 100
    with pytest.raises(SystemExit) as failure:
        main(["alice/demo", "--food-model", "alice/food-vit", "--private", "--out", str(out)])
    message = str(failure.value.code)
    assert "HTTP 503" in message and "after 4 tries" in message
    assert f"The local Space folder {out} is intact" in message
    assert f"python -m hub.space alice/demo --food-model alice/food-vit --private --out {out}" in message
    assert (out / "app.py").is_file() and (out / "README.md").is_file()
    captured = capsys.readouterr()
    assert FAKE_TOKEN not in message + captured.out + captured.err + caplog.text

    hub.fail_writes, hub.deny_writes = 0, True
    with pytest.raises(PushError, match="hf auth login") as refused:
        publish_space("alice/demo", food_model="alice/food-vit", out=out, retry_delays=[])
    assert FAKE_TOKEN not in str(refused.value)


def served_url(process: subprocess.Popen) -> str:
    """The URL the Space's app says it serves on (it answers there by then); fail with its output if it exits first
    or takes too long. The app picks a free port itself: one picked here could be taken before the app binds it."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    output = []
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            output.append(lines.get(timeout=0.5))
        except queue.Empty:
            if process.poll() is not None:
                pytest.fail(f"app.py exited with {process.returncode}:\n{''.join(output)}")
            continue
        started = re.search(r"Running on local URL:\s+(http://\S+)", output[-1])
        if started:
            return started.group(1)
    process.kill()
    pytest.fail(f"app.py did not start within {APP_START_TIMEOUT_S} s:\n{''.join(output)}")


def test_the_pushed_space_runs_with_no_checkout_and_classifies_a_photo(hub, tmp_path):
    publish_space("alice/demo", food_model="alice/food-vit", boneage_model="alice/bone-resnet", out=tmp_path / "built")
    space = Path(snapshot_download("alice/demo", repo_type="space", local_dir=tmp_path / "downloaded"))

    for pin in (space / "requirements.txt").read_text().split():
        if not pin.startswith("#") and "==" in pin:
            name, pinned = pin.split("==")
            assert version(name) == pinned, f"this venv lacks {pin}, which the Space installs"

    # A visitor's process: the hub is the stand-in, no token, an empty cache, and no TransferLab on the path.
    env = {k: v for k, v in os.environ.items() if k not in {"HF_TOKEN", "PYTHONPATH", "HF_HUB_OFFLINE"}}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "space-hf-home"),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",  # the line saying where it serves arrives as it is printed
        TRANSFERLAB_CACHE=str(tmp_path / "space-cache"),
    )
    elsewhere = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('demos'))"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert elsewhere.stdout.strip() == "None", (
        "TransferLab is installed in this venv: the test would not prove the copy works"
    )

    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=space, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        client = Client(served_url(process), verbose=False)
        photo = cat_photo(tmp_path / "cat.png")
        result = client.predict(handle_file(photo), api_name="/classify")
        expected = top_k(load_checkpoint(str(tmp_path / "food")), load_image(photo))
        assert {c["label"]: c["confidence"] for c in result["confidences"]} == pytest.approx(expected, abs=1e-4)
        with pytest.raises(AppError, match="folder"):  # the public-demo default: no folder of the Space's machine
            client.predict(str(space), api_name="/load_model")
    finally:
        process.kill()
        process.wait()
